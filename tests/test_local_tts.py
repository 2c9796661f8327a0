"""The embedded voice: no dead air before an answer, a natural gap after it."""

from __future__ import annotations

import numpy as np

from agent.call.agent import pcm_frames
from core.local_tts import KEEP_LEAD_S, KEEP_TAIL_S, SAMPLE_RATE, synthesize_pcm16, trim_silence


def _voiced_span(pcm: np.ndarray, threshold: float = 0.01) -> tuple[float, float]:
    voiced = np.flatnonzero(np.abs(pcm.astype(np.float32) / 32768) > threshold)
    return voiced[0] / SAMPLE_RATE, (len(pcm) - voiced[-1]) / SAMPLE_RATE


def test_synthesis_has_no_lead_in_pad() -> None:
    # hibari pads each sentence with ~0.3 s before and ~0.5 s after: the caller would wait
    # through the lead on every turn.
    pcm = np.frombuffer(synthesize_pcm16("The store is located at 12 Main Street."), dtype=np.int16)
    lead, tail = _voiced_span(pcm)
    assert lead <= KEEP_LEAD_S + 0.05
    assert 0.05 <= tail <= KEEP_TAIL_S + 0.06


def test_trim_keeps_speech_and_handles_silence() -> None:
    rate = SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)).astype(np.float32)
    padded = np.concatenate([np.zeros(rate // 2, np.float32), tone, np.zeros(rate, np.float32)])
    out = trim_silence(padded, rate)
    assert abs(len(out) - (rate + int(KEEP_LEAD_S * rate) + int(KEEP_TAIL_S * rate))) <= 10
    assert np.isclose(np.sum(out**2), np.sum(tone**2), rtol=1e-6)  # the whole tone is kept
    assert len(trim_silence(np.zeros(rate, np.float32), rate)) == 0


def test_cached_audio_stored_with_its_pads_is_played_without_the_lead() -> None:
    rate = SAMPLE_RATE
    tone = (8000 * np.sin(2 * np.pi * 200 * np.arange(rate // 2) / rate)).astype(np.int16)
    old = np.concatenate([np.zeros(int(0.3 * rate), np.int16), tone]).tobytes()
    played = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in pcm_frames(old, rate)])
    lead, _ = _voiced_span(played)
    assert lead <= KEEP_LEAD_S + 0.005
