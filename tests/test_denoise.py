"""The uplink's noise suppression (agent/call/denoise.py) in the real session path.

A call is assembled as the simulator does it (`build_call`, the simulator's audio input set on
the session, `call.start()`), with a VAD that records every frame the session hands it: what
the VAD (and the STT, fed from the same frames) hears. The caller's speech and the line's
noise are known parts (agent/sim/line.py: babble at 10 dB through G.711), so the noise left in
the caller's pauses and the speech-to-pause ratio are measured on the frames the VAD got.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soxr
from livekit import rtc
from livekit.agents import vad

from agent.call.assemble import CallOptions, CallServices, build_call
from agent.call.denoise import BLOCK_LATENCY_S, DenoisedAudioInput, make_denoiser
from agent.providers import build_providers
from agent.sim.audio_io import TICK, TL_RATE, SimAudioInput, SimAudioOutput, to_frame
from agent.sim.caller_voice import synthesize_caller
from agent.sim.line import LINE_RATE, LineModel
from agent.sim.scenario import LineConfig
from core.errors import UserError
from core.settings import get_settings
from core.tenants import load_tenant
from sip.behaviours import SimCallControl

PAD_S = 0.8  # the caller silent before and after the sentence: the line's noise alone
HANG_GUARD_S = 60.0


class RecordingVAD(vad.VAD):
    """The instant profile's VAD, keeping a copy of every frame the session pushes to each of
    its streams (the session may open more than one; each gets the whole uplink)."""

    def __init__(self, inner: vad.VAD) -> None:
        super().__init__(capabilities=inner.capabilities)
        self.inner = inner
        self.streams: list[list[rtc.AudioFrame]] = []

    @property
    def frames(self) -> list[rtc.AudioFrame]:
        return self.streams[0] if self.streams else []

    def stream(self) -> vad.VADStream:
        s = self.inner.stream()
        push, frames = s.push_frame, list[rtc.AudioFrame]()
        self.streams.append(frames)

        def record(frame: rtc.AudioFrame) -> None:
            frames.append(frame)
            push(frame)

        s.push_frame = record  # type: ignore[method-assign]
        return s


@pytest.fixture(scope="module")
def noisy_line() -> tuple[np.ndarray, slice, slice]:
    """A sentence at 10 dB babble through the line, at the simulator's 16 kHz; where the
    speech and where the pauses are."""
    voice = np.asarray(synthesize_caller("Can you tell me when my order arrives?"), np.float32)
    pad = np.zeros(int(PAD_S * LINE_RATE), np.float32)
    cfg = LineConfig(seed=3, codec="pcmu", noise="babble", snr_db=10.0)
    heard = LineModel(cfg, direction_seed=1).process_all(np.concatenate([pad, voice, pad]))
    audio = soxr.resample(heard, LINE_RATE, TL_RATE, quality="LQ").astype(np.float32)
    audio = audio[: len(audio) // TICK * TICK]
    p = int(PAD_S * TL_RATE)
    return audio, slice(p // 4, p), slice(p + TL_RATE // 10, len(audio) - p)


async def _session_frames(
    mode: str, audio: np.ndarray, tmp_path: Path
) -> tuple[list[rtc.AudioFrame], object]:
    """Run `audio` through a started call's session; the frames its VAD received."""
    base = build_providers("instant", get_settings())
    recorder = RecordingVAD(base.vad)
    control = SimCallControl("completed", events=[], clock=lambda: 0.0, call_id=f"sim-denoise-{mode}")
    call = build_call(
        load_tenant("acme"),
        dataclasses.replace(base, vad=recorder),
        control,
        CallServices(),
        out_dir=tmp_path,
        options=CallOptions(turn_mode="vad-fixed", denoise=mode),  # type: ignore[arg-type]
    )
    line = SimAudioInput()
    call.session.input.audio = line
    call.session.output.audio = SimAudioOutput()
    try:
        await call.start()
        installed = call.session.input.audio
        n = len(audio) // TICK
        for i in range(n):
            line.push(to_frame(audio[i * TICK : (i + 1) * TICK]))
        async with asyncio.timeout(HANG_GUARD_S):
            while len(recorder.frames) < n:
                await asyncio.sleep(0.02)
    finally:
        await call.aclose()
    return recorder.frames[:n], installed


def _pcm(frames: list[rtc.AudioFrame]) -> np.ndarray:
    return np.concatenate([np.frombuffer(f.data, np.int16) for f in frames]).astype(np.float32) / 32768


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x * x) + 1e-12))


def _lag(x: np.ndarray, y: np.ndarray, max_s: float = 0.2) -> int:
    """Samples by which y trails x (cross-correlation peak)."""
    n = len(x)
    return max(range(int(max_s * TL_RATE)), key=lambda d: float(np.dot(x[: n - d], y[d:n])))


async def test_off_passes_the_line_bit_exact(
    noisy_line: tuple[np.ndarray, slice, slice], tmp_path: Path
) -> None:
    audio, _, _ = noisy_line
    frames, installed = await _session_frames("off", audio, tmp_path)
    assert isinstance(installed, SimAudioInput)  # no stage in the path at all
    sent = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    assert np.array_equal(np.concatenate([np.frombuffer(f.data, np.int16) for f in frames]), sent)


# (mode, pause noise at least this many dB lower, speech-over-pause ratio up by at least this):
# DTLN is mixed half and half with the line (agent/call/denoise.py: DTLN_STRENGTH), so its
# pauses can drop 6 dB at most (measured 6.0, ratio 6.6 -> 9.9 dB); DFN3 may attenuate 20 dB
# (measured 20.0, ratio 6.6 -> 20.2 dB).
@pytest.mark.parametrize(("mode", "quieter_db", "snr_gain_db"), [("dtln", 5.0, 2.5), ("dfn3", 15.0, 10.0)])
async def test_stage_cleans_what_the_vad_hears_without_added_delay(
    mode: str,
    quieter_db: float,
    snr_gain_db: float,
    noisy_line: tuple[np.ndarray, slice, slice],
    tmp_path: Path,
) -> None:
    audio, pause, speech = noisy_line
    frames, installed = await _session_frames(mode, audio, tmp_path)
    assert isinstance(installed, DenoisedAudioInput)
    # one frame out per frame in, same size and rate: the stage never holds frames back
    assert all(f.samples_per_channel == TICK and f.sample_rate == TL_RATE for f in frames)
    out = _pcm(frames)
    lag = _lag(audio, out)
    # the cleaned audio trails the line by the stage's block latency, never more (+ 5 ms)
    assert 0 < lag <= (BLOCK_LATENCY_S[mode] + 0.005) * TL_RATE, lag / TL_RATE
    aligned = out[lag:]
    noise_in, noise_out = _db(audio[pause]), _db(aligned[pause])
    snr_in = _db(audio[speech]) - noise_in
    snr_out = _db(aligned[speech.start : speech.stop - lag]) - noise_out
    assert noise_in - noise_out >= quieter_db, (noise_in, noise_out)
    assert snr_out - snr_in >= snr_gain_db, (snr_in, snr_out)


def test_a_bad_setting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCENTER_DENOISE", "rnnoise")
    get_settings.cache_clear()
    try:
        with pytest.raises(UserError) as e:
            get_settings()
    finally:
        get_settings.cache_clear()
    msg = str(e.value)
    assert "CALLCENTER_DENOISE='rnnoise'" in msg and "'dtln'" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="unknown denoise mode"):
        make_denoiser("rnnoise")  # type: ignore[arg-type]
