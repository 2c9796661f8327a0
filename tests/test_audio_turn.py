"""The audio end-of-turn veto (Smart Turn v3.2 from pipecat-ai's wheel) behind the text rules."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit.agents import llm

from agent.call.audio_turn import RecentAudio, load_smart_turn
from agent.call.line_noise import LineNoiseMeter
from agent.call.turn_detector import (
    AUDIO_VETO_P,
    UNLIKELY_THRESHOLD,
    AudioOpinion,
    TextTurnDetector,
    utterance_complete_probability,
)
from agent.sim.caller_voice import synthesize_caller
from agent.sim.line import LineModel
from agent.sim.scenario import LineConfig, NoiseType

FRAGMENT = "I want to ask about the, er,"  # the caller is still thinking...
AS_WRITTEN = "I want to ask about the earth."  # ... and whisper wrote a finished sentence
QUESTION = "Is the garden center open today?"


def heard(text: str, noise: NoiseType = "none", snr: float | None = None) -> np.ndarray:
    """The caller saying `text` through a G.711 line, with 0.5 s before and 0.25 s after."""
    pad = np.zeros(int(0.25 * 8000), np.float32)
    line = LineModel(LineConfig(codec="pcmu", noise=noise, snr_db=snr, seed=5))
    return line.process_all(np.concatenate([pad, pad, synthesize_caller(text), pad]))


def opinion(text: str, noise: NoiseType = "none", snr: float | None = None) -> AudioOpinion:
    model = load_smart_turn()
    assert model is not None, "pipecat-ai (Smart Turn's model file) is installed by install.sh"
    earlier = np.concatenate(
        [heard(q, noise, snr) for q in ("What are your opening hours?", "Do you deliver?")]
    )
    meter, recent = LineNoiseMeter(), RecentAudio()
    pcm = (np.concatenate([earlier, heard(text, noise, snr)]) * 32767).astype(np.int16)
    for i in range(0, len(pcm), 160):  # 20 ms frames, as the echo gate passes them
        meter.push(pcm[i : i + 160], 8000)
        recent.push(pcm[i : i + 160], 8000)
    return AudioOpinion(model, recent, meter)


def chat(text: str) -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content=text)
    return ctx


def test_the_model_hears_a_hanging_phrase_from_a_finished_question() -> None:
    model = load_smart_turn()
    assert model is not None
    assert model.probability(heard(FRAGMENT), 8000) < AUDIO_VETO_P < model.probability(heard(QUESTION), 8000)


def test_a_finished_looking_transcript_of_an_unfinished_phrase_waits_on_a_clean_line() -> None:
    assert utterance_complete_probability(AS_WRITTEN) >= UNLIKELY_THRESHOLD  # the rules alone end it
    o = opinion(FRAGMENT)
    p = asyncio.run(TextTurnDetector(o).predict_end_of_turn(chat(AS_WRITTEN)))
    assert p < UNLIKELY_THRESHOLD and (o.checks, o.vetoes) == (1, 1)
    o = opinion(QUESTION)
    p = asyncio.run(TextTurnDetector(o).predict_end_of_turn(chat(QUESTION)))
    assert p >= UNLIKELY_THRESHOLD and (o.checks, o.vetoes) == (1, 0)


@pytest.mark.parametrize("snr", [10.0, 5.0])
def test_on_a_noisy_line_the_audio_is_not_asked(snr: float) -> None:
    o = opinion(FRAGMENT, "babble", snr)
    est = o.meter.snr_db()
    assert est is not None and est < 16
    p = asyncio.run(TextTurnDetector(o).predict_end_of_turn(chat(AS_WRITTEN)))
    assert p == utterance_complete_probability(AS_WRITTEN) and o.checks == 0


def test_an_unfinished_transcript_never_needs_the_audio() -> None:
    o = opinion(FRAGMENT)
    p = asyncio.run(TextTurnDetector(o).predict_end_of_turn(chat("I want to ask about the, er,")))
    assert p < UNLIKELY_THRESHOLD and o.checks == 0


def test_trailing_silence_is_cut_to_what_the_model_was_trained_on() -> None:
    o = opinion(QUESTION)
    silence = np.zeros(8000, np.int16)  # a whole second of the STT's pass after the caller stopped
    for i in range(0, len(silence), 160):
        o.recent.push(silence[i : i + 160], 8000)
    full, cut = o.recent.snapshot(), o.audio()
    assert len(full) - len(cut) >= 8000  # the added second (and the 0.25 s pad beyond 0.2 s) is gone
