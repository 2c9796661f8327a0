"""The local STT's short window: fast path used for short utterances, classic path otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from agent.providers.whisper_stt import (
    QUICK_VERDICT,
    RATE,
    WhisperSTT,
    classic_affordable,
    degeneracy,
    drop_repeated_sentences,
    looks_degenerate,
    window_for,
)
from agent.sim.caller_voice import synthesize_caller
from agent.sim.line import LineModel
from agent.sim.scenario import LineConfig


def _pcm16k(text: str) -> np.ndarray:
    return soxr.resample(synthesize_caller(text), 8000, RATE).astype(np.float32)


@pytest.mark.parametrize(
    ("text", "logprob", "cap", "bad"),
    [
        ("What are your opening hours?", -0.2, False, False),
        ("No, that's wrong.", -0.3, False, False),
        ("Can I speak to a real person? Can I speak to", -0.2, False, True),  # decoder looping
        ("where where where where where where where where", -0.2, False, True),
        ("", -0.1, False, True),  # nothing decoded from audio the VAD called speech
        ("Where is the store?", -1.4, False, True),  # unsure
        ("Where is the store?", -0.2, True, True),  # ran into the token cap
    ],
)
def test_degenerate_transcripts_are_recognised(text: str, logprob: float, cap: bool, bad: bool) -> None:
    assert looks_degenerate(text, logprob, cap) is bad


def test_only_a_merely_unsure_transcript_counts_as_unsure() -> None:
    assert degeneracy("Where is the store?", -1.4, False) == "unsure"
    # broken words stay broken however unsure: these always get the classic pass
    assert degeneracy("Where is the store?", -1.4, True) == "cap"
    assert degeneracy("where where where where where where", -1.4, False) == "repeat"
    assert degeneracy("", -1.4, False) == "empty"
    assert degeneracy("Where is the store?", -0.5, False) is None


@pytest.mark.parametrize(
    ("short_s", "window", "budget", "redo"),
    [
        (0.08, 6.0, 0.8, True),  # idle: a 6 s window in 80 ms, the 30 s pass ~0.4 s
        (0.25, 6.0, 0.8, False),  # busy cores: the 30 s pass would take ~1.25 s
        (0.15, 10.0, 0.8, True),
        (0.25, 6.0, None, True),  # no budget: always
        (0.01, 6.0, 0.0, False),  # budget 0: never
    ],
)
def test_the_classic_pass_must_fit_the_budget(short_s: float, window: float, budget, redo: bool) -> None:
    assert classic_affordable(short_s, window, budget) is redo


def test_an_unsure_transcript_is_redone_only_within_the_budget() -> None:
    # "Do you deliver?" at 10 dB babble: whisper tiny hears "to deliver." / "the lever." at
    # log-prob -1.5 to -1.7 (below the -1 that makes a transcript unsure)
    line = LineModel(LineConfig(codec="pcmu", snr_db=10, noise="babble", seed=3))
    pcm = soxr.resample(line.process_all(synthesize_caller("Do you deliver?")), 8000, RATE)
    pcm = pcm.astype(np.float32)
    always = WhisperSTT(threads=2, window_s=10, fallback_budget_s=30)
    always._transcribe(pcm)
    assert (always.fallbacks, always.unsure_kept) == (1, 0)
    never = WhisperSTT(threads=2, window_s=10, fallback_budget_s=0)
    kept = never._transcribe(pcm)
    assert (never.fallbacks, never.unsure_kept, never.short_windows) == (0, 1, 0)
    assert kept.strip()  # the short window's own words, not nothing


def test_short_utterance_takes_the_short_window() -> None:
    stt = WhisperSTT(threads=2, window_s=10)
    text = stt._transcribe(_pcm16k("Hi, what are your opening hours?"))
    assert "opening hours" in text.lower()
    assert (stt.short_windows, stt.fallbacks) == (1, 0)


def test_classic_window_when_disabled_or_too_long() -> None:
    off = WhisperSTT(threads=2, window_s=0)
    assert "store" in off._transcribe(_pcm16k("Where is the store?")).lower()
    assert off.short_windows == off.fallbacks == 0

    fast = WhisperSTT(threads=2, window_s=3)  # a 3 s window cannot hold this 3+ s sentence
    long = _pcm16k("My order number is four eight two one three, and I would like to know where it is.")
    assert len(long) > 2.5 * RATE
    assert "order" in fast._transcribe(long).lower()
    assert fast.short_windows == fast.fallbacks == 0


def test_silence_falls_back_to_the_classic_window() -> None:
    stt = WhisperSTT(threads=2, window_s=10)
    stt._transcribe(np.zeros(RATE, dtype=np.float32))
    assert stt.fallbacks == 1 and stt.short_windows == 0


def test_over_the_reply_an_unsure_short_window_stands_if_the_gate_would_blank_its_words() -> None:
    """Audio that overlapped the agent's reply (QUICK_VERDICT, set by the STT gate and the early
    pass): an unsure short-window transcript the gate's word rules would blank anyway is kept
    instead of redone the classic way (the reply is paused until the verdict is in); one they
    would not blank (it might be a misheard "Stop.") is redone as before."""
    silence = np.zeros(RATE, dtype=np.float32)  # the short window writes an unsure "you"

    def quick_run(accept: bool) -> WhisperSTT:
        stt = WhisperSTT(threads=2, window_s=10)
        seen: list[str] = []
        token = QUICK_VERDICT.set(lambda text: seen.append(text) is None and accept)
        try:
            stt._transcribe(silence)
        finally:
            QUICK_VERDICT.reset(token)
        assert seen, "the unsure transcript was not offered"
        return stt

    kept = quick_run(accept=True)
    assert kept.quick_kept == 1 and kept.fallbacks == 0
    redone = quick_run(accept=False)
    assert redone.quick_kept == 0 and redone.fallbacks == 1
    plain = WhisperSTT(threads=2, window_s=10)  # not over the reply: redone as before
    plain._transcribe(silence)
    assert plain.fallbacks == 1 and plain.quick_kept == 0


@pytest.mark.parametrize(
    ("seconds", "max_s", "window"),
    [(1.2, 10, 6.0), (2.9, 10, 6.0), (3.4, 10, 7.0), (6.5, 10, 10.0), (9.4, 10, 10.0), (2.0, 5, 5.0)],
)
def test_window_follows_the_utterance(seconds: float, max_s: float, window: float) -> None:
    assert window_for(seconds, max_s) == window


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Where is the store? Where is the store", "Where is the store?"),
        ("Hello? Hello?", "Hello?"),
        ("No. That's wrong. No.", "No. That's wrong."),
        ("Where is the store? Do you deliver?", "Where is the store? Do you deliver?"),
        ("Where is it? Where is the store?", "Where is it? Where is the store?"),  # not a repeat
    ],
)
def test_a_decode_loop_is_cut_at_the_repeat(text: str, kept: str) -> None:
    assert drop_repeated_sentences(text) == kept


def test_the_window_is_sized_to_the_utterance() -> None:
    stt = WhisperSTT(threads=2, window_s=10)
    assert "deliver" in stt._transcribe(_pcm16k("Do you deliver?")).lower()
    assert (stt.short_windows, stt.last_window_s) == (1, 6.0)  # not the 10 s maximum
