"""What the STT gate blanks while the agent speaks: its own echo (agent/call/echo.py), and words
whisper made up from a noise (agent/call/turn_detector.py `blank_reason`)."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from livekit import rtc

from agent.bench.turns.corpus import BARGE_INS
from agent.bench.turns.voice import LONG_REPLY
from agent.call.echo import AgentWords, is_echo, words_of
from agent.call.session import TurnTuning
from agent.call.turn_detector import blank_reason
from agent.providers.whisper_stt import transcript_confidence
from core.settings import REPO_ROOT

# What a caller says over a reply, some of it reusing the reply's own words
BARGE_INS_OVER_THE_REPLY = [
    *BARGE_INS,
    "Sorry?",
    "No.",
    "Wait, until one on Saturdays? I thought it was two.",
    "What about Sundays?",
    "Hold on, I need the Springfield store.",
    "Can I speak to someone?",
    "Actually, I wanted to ask about delivery.",
    "Are you open on public holidays?",
]


def spoken(text: str) -> list[str]:
    w = AgentWords()
    w.add(text)
    return w.recent()


def test_contractions_and_punctuation_compare_equal() -> None:
    assert words_of("We're open, Mon\u2019s...") == ["we", "are", "open", "mon", "is"]
    assert words_of("We are open.") == words_of("We're open")
    assert words_of("don't") == ["do", "not"]


def test_whispers_digits_compare_equal_to_the_agents_number_words() -> None:
    assert words_of("until 1.") == words_of("until one")  # a traced call's echo tail
    assert words_of("From 8:00 until 6.") == ["from", "eight", "until", "six"]
    assert words_of("Call 2024") == ["call", "2024"]  # larger numbers stay digits
    assert is_echo("until 1.", spoken(LONG_REPLY))


@pytest.mark.parametrize(
    "heard",
    [
        "Friday.",  # recorded in the clean-line bench behind a burst
        "We are open Monday.",
        "We're open Monday to Friday.",
        "from eight until six",
        "and Saturdays until one.",
    ],
)
def test_the_replys_own_words_are_echo(heard: str) -> None:
    assert is_echo(heard, spoken(LONG_REPLY))


@pytest.mark.parametrize("heard", BARGE_INS_OVER_THE_REPLY)
def test_a_caller_talking_over_the_reply_is_not_echo(heard: str) -> None:
    assert not is_echo(heard, spoken(LONG_REPLY)), heard


def test_nothing_said_or_nothing_heard_is_not_echo() -> None:
    assert not is_echo("We are open Monday.", [])
    assert not is_echo("", spoken(LONG_REPLY))
    # a short caller word is the caller's even where the agent said it too
    assert not is_echo("No.", spoken("No, we don't deliver on Sundays."))
    assert is_echo("We don't deliver on Sundays.", spoken("No, we don't deliver on Sundays."))


def test_agent_words_keep_the_latest_in_order() -> None:
    w = AgentWords(keep=5)
    w.add("one two three")
    w.add(" four five six")
    assert w.recent() == ["two", "three", "four", "five", "six"]


async def test_the_gate_blanks_whisper_hearing_the_agents_echo_behind_a_click() -> None:
    """The real path: the agent's synthesized reply, 20 dB down behind a handset click, through
    whisper. The transcript is the reply's words; with the agent's words fed, the gate blanks it
    (and counts it as echo); without them, the same transcript would have cut the reply."""
    from agent.bench.turns.voice import RATE, speech_pcm
    from agent.call.turn_detector import BackchannelGateSTT
    from agent.providers.whisper_stt import WhisperSTT
    from agent.sim.caller import synthesize_sound
    from agent.sim.line import LINE_RATE

    reply = np.frombuffer(speech_pcm(LONG_REPLY), np.int16).astype(np.float32) / 32768
    echo = soxr.resample(reply, RATE, LINE_RATE)[: int(1.6 * LINE_RATE)] * 10 ** (-20 / 20)
    audio = np.concatenate([synthesize_sound("click", 3), echo, np.zeros(LINE_RATE // 5, np.float32)])
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    frame = rtc.AudioFrame(pcm.tobytes(), LINE_RATE, 1, len(pcm))

    gate = BackchannelGateSTT(WhisperSTT(threads=1))
    gate.agent_speaking = lambda: True
    heard = (await gate.recognize([frame])).alternatives[0].text
    assert heard and is_echo(heard, spoken(LONG_REPLY)), heard  # whisper heard the echo's words
    assert gate.echoes == []  # ... and, not told what the agent said, let them through

    gate.agent_words.add(LONG_REPLY)
    ev = await gate.recognize([frame])
    assert ev.alternatives[0].text == "" and gate.echoes == [heard]
    gate.agent_speaking = lambda: False  # the agent silent: the same words are the caller's
    assert (await gate.recognize([frame])).alternatives[0].text == heard


def _line_frame(pcm24k: bytes, gain_db: float) -> rtc.AudioFrame:
    from agent.bench.turns.voice import RATE
    from agent.sim.line import LINE_RATE

    audio = soxr.resample(np.frombuffer(pcm24k, np.int16).astype(np.float32) / 32768, RATE, LINE_RATE)
    audio = np.concatenate([audio * 10 ** (gain_db / 20), np.zeros(LINE_RATE // 4, np.float32)])
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return rtc.AudioFrame(pcm.tobytes(), LINE_RATE, 1, len(pcm))


async def test_the_echo_of_a_finished_replys_last_words_is_not_the_callers_turn() -> None:
    """The reply's tail comes back ~250 ms late and reaches the STT once the agent is quiet.
    Heard from audio that began just after the reply ended, the gate blanks it as echo; the same
    words long after, and a caller's own answer right after the reply, are the caller's."""
    import time

    from agent.bench.turns.voice import speech_pcm
    from agent.call.turn_detector import BackchannelGateSTT
    from agent.providers.whisper_stt import WhisperSTT

    tail = _line_frame(speech_pcm("and Saturdays until one."), -17.0)
    gate = BackchannelGateSTT(WhisperSTT(threads=1))
    gate.agent_words.add(LONG_REPLY)
    gate.agent_speaking = lambda: False

    gate.agent_done_at = time.monotonic() - 0.3  # the reply ended as this audio began
    assert (await gate.recognize([tail])).alternatives[0].text == ""
    assert len(gate.echoes) == 1 and is_echo(gate.echoes[0], spoken(LONG_REPLY))

    gate.agent_done_at = time.monotonic() - 10.0  # ... ended long before: the caller's words
    assert (await gate.recognize([tail])).alternatives[0].text.strip()

    gate.agent_done_at = time.monotonic()
    # the caller's own words, at a caller's level, even ones that repeat the agent's
    for answer in ("Okay.", "And what about Sundays?", "and Saturdays until one."):
        heard = (await gate.recognize([_line_frame(speech_pcm(answer), 0.0)])).alternatives[0].text
        assert heard.strip(), answer
    assert len(gate.echoes) == 1 and gate.dropped == [] and gate.unsure == []


async def test_over_the_reply_no_words_is_a_verdict_too() -> None:
    """A cough whisper hears nothing in, over the reply: the gate reports it (the session then
    resumes the paused reply at once instead of when its timer runs out); with the agent quiet,
    nothing is reported."""
    from agent.call.turn_detector import BackchannelGateSTT
    from agent.providers.whisper_stt import WhisperSTT
    from agent.sim.caller import synthesize_sound
    from agent.sim.line import LINE_RATE

    audio = np.concatenate([synthesize_sound("cough", 2), np.zeros(LINE_RATE // 4, np.float32)])
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    frame = rtc.AudioFrame(pcm.tobytes(), LINE_RATE, 1, len(pcm))
    gate = BackchannelGateSTT(WhisperSTT(threads=1))
    verdicts: list[None] = []
    gate.on_backchannel = lambda: verdicts.append(None)
    gate.agent_speaking = lambda: True
    assert (await gate.recognize([frame])).alternatives[0].text == ""
    assert len(verdicts) == 1
    gate.agent_speaking = lambda: False
    assert (await gate.recognize([frame])).alternatives[0].text == ""
    assert len(verdicts) == 1


def test_whisper_outputs_over_the_reply_are_blanked_or_kept_as_recorded() -> None:
    """Recorded bench outputs: made-up words on coughs and murmurs are blanked, the caller's
    barge-ins (however unsure whisper is of "Stop." at 10 dB) pass."""
    import yaml

    rows = yaml.safe_load((REPO_ROOT / "tests" / "data" / "whisper_over_reply.yaml").read_text())["heard"]
    shipped = TurnTuning().gate_min_confidence
    made = {r["made_by"] for r in rows}
    assert made == {"caller", "backchannel", "noise"} and len(rows) >= 60
    for r in rows:
        why = blank_reason(r["heard"], r["confidence"], spoken(LONG_REPLY), min_confidence=shipped)
        expect_blank = r["made_by"] != "caller" and not r["known_miss"]
        assert (why is not None) is expect_blank, (r, why)
    # the confidence check is what blanks some of them: without it they would cut the reply
    unsure = [
        r for r in rows if blank_reason(r["heard"], r["confidence"], None, min_confidence=shipped) == "unsure"
    ]
    assert unsure and all(
        blank_reason(r["heard"], r["confidence"], None, min_confidence=None) is None for r in unsure
    )


def test_confidence_reads_both_of_whispers_doubts() -> None:
    assert transcript_confidence(0.05, -0.2) == pytest.approx(0.95)
    assert transcript_confidence(0.7, -0.2) == pytest.approx(0.3)  # probably no speech at all
    assert transcript_confidence(0.05, -3.0) == pytest.approx(0.25)  # words it barely believes
    assert transcript_confidence(0.0, -9.0) == 0.0 and transcript_confidence(0.0, 0.5) == 1.0


async def test_whisper_reports_its_confidence() -> None:
    """The local STT's SpeechData.confidence is the decode's, not a constant: clear speech scores
    high, and the session reads it (transcript_confidence) for the gate and the intent step."""
    from agent.providers.whisper_stt import WhisperSTT
    from agent.sim.caller_voice import synthesize_caller
    from agent.sim.line import LINE_RATE

    pcm = (np.clip(synthesize_caller("Stop.", LINE_RATE), -1, 1) * 32767).astype(np.int16)
    pad = np.zeros(LINE_RATE // 2, np.int16)
    audio = np.concatenate([pad, pcm, pad])
    ev = await WhisperSTT(threads=1).recognize([rtc.AudioFrame(audio.tobytes(), LINE_RATE, 1, len(audio))])
    assert "stop" in ev.alternatives[0].text.lower()
    assert 0.6 < ev.alternatives[0].confidence < 1.0


def test_the_gate_lets_an_unsure_transcript_stand_only_where_its_words_decide() -> None:
    from agent.call.turn_detector import BackchannelGateSTT
    from agent.providers.whisper_stt import WhisperSTT

    gate = BackchannelGateSTT(WhisperSTT(threads=1))
    gate.agent_words.add(LONG_REPLY)
    assert gate.quick_accept("Thank you.")  # a backchannel: blanked whatever its score
    assert gate.quick_accept("Right.") and gate.quick_accept("Friday.")  # ... and echo
    assert gate.quick_accept("until 1.")  # the agent's echo
    assert not gate.quick_accept("Don.")  # maybe a misheard "Stop.": worth the surer pass
    assert not gate.quick_accept("Ah.")  # ... as it was once at 10 dB babble
    assert not gate.quick_accept("I'm not a fan of the")
