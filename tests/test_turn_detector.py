"""The offline text end-of-utterance rules, the backchannel lexicon, the scenario extensions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import yaml
from livekit.agents import llm

from agent.bench.turns.corpus import CONDITIONS, CORPUS_DIR, HARDEST, load_cases, make_case
from agent.call.turn_detector import (
    UNLIKELY_THRESHOLD,
    TextTurnDetector,
    is_backchannel,
    utterance_complete_probability,
)
from agent.sim.caller import synthesize_sound
from agent.sim.scenario import Scenario, Turn


@pytest.mark.parametrize(
    "text",
    [
        "What are your opening hours?",
        "I'd like to change my delivery address.",
        "Do you deliver on Sundays!",
        "thanks",
        "",
        "Yes.",  # an answer to the agent's question, not a greeting
        "Okay.",
        "Hello? Are you open on Sundays?",
        "Hi, what are your opening hours?",
        "No, no.",  # a repeated word that is the whole answer
        "What are your hours? hours.",
    ],
)
def test_complete(text: str) -> None:
    assert utterance_complete_probability(text) >= UNLIKELY_THRESHOLD


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to, um,",
        "I'd like to um",
        "I want to ask about the",
        "My question is about my",
        "Could you check whether...",
        "I need a key cut for my, uh,",
        "I'd like to.",
        "and",
        "so I was wondering if",
        "Can you tell me, uh",
        "Wait…",
        "Hello?",  # a greeting before the question: the caller is about to go on
        "Hi.",
        "Hi there.",
        "Yes, hello.",
        "Good morning!",
        "Can you tell me? me.",  # whisper repeats the fragment's last word (bench, clean line)
        "I need a key cut for my. my.",
    ],
)
def test_incomplete(text: str) -> None:
    assert utterance_complete_probability(text) < UNLIKELY_THRESHOLD


def test_detector_reads_the_last_user_message() -> None:
    ctx = llm.ChatContext()
    ctx.add_message(role="assistant", content="How can I help?")
    ctx.add_message(role="user", content="I'd like to, um,")
    det = TextTurnDetector()
    p = asyncio.run(det.predict_end_of_turn(ctx))
    assert p < asyncio.run(det.unlikely_threshold("en"))
    ctx.add_message(role="user", content="change my address.")
    assert asyncio.run(det.predict_end_of_turn(ctx)) > UNLIKELY_THRESHOLD
    assert asyncio.run(det.supports_language("en")) and not asyncio.run(det.supports_language("de"))


@pytest.mark.parametrize(
    ("text", "bc"),
    [
        ("uh-huh", True),
        ("Okay.", True),
        ("right", True),
        ("Mm-hmm.", True),
        ("yeah okay", True),
        ("Thank you very much.", True),  # over the agent's reply: politeness, not a turn
        ("Thanks a lot!", True),
        ("Thank you, bye.", False),
        ("Stop.", False),
        ("No, that's wrong.", False),
        ("Wait, do you have a store?", False),
        ("", False),
    ],
)
def test_backchannel(text: str, bc: bool) -> None:
    assert is_backchannel(text) is bc


def test_hesitation_and_sound_turns() -> None:
    t = Turn(say="I'd like to, um, change my address.", hesitate_after=4, hesitate_s=0.6)
    assert t.fragments() == ["I'd like to, um,", "change my address."]
    assert Turn(say="Hello there").fragments() == ["Hello there"]
    Turn(sound="cough", barge_in_after=1.0)
    with pytest.raises(ValueError):
        Turn(say="Hi", hesitate_after=1)  # nothing after the pause
    with pytest.raises(ValueError):
        Turn(sound="cough", say="hi")
    for kind in ("cough", "click", "burst"):
        a = synthesize_sound(kind, seed=3)
        assert 0.05 < len(a) / 8000 < 0.8 and np.max(np.abs(a)) < 1.0
        assert np.array_equal(a, synthesize_sound(kind, seed=3))


def test_corpus_files_match_the_generator() -> None:
    import yaml

    for cond, (*_, n) in CONDITIONS.items():
        for i in range(n):
            p = CORPUS_DIR / cond / f"{cond}-{i:02d}.yaml"
            assert yaml.safe_load(p.read_text()) == make_case(cond, i), p


def test_corpus_extends_past_the_shipped_cases() -> None:
    """Asking for more cases than ship adds fresh generated ones after the files, in order."""
    shipped = CONDITIONS[HARDEST][3]
    cases = load_cases(HARDEST, shipped + 5)
    assert len(cases) == shipped + 5
    assert [c.name for c in cases[shipped - 1 : shipped + 1]] == [
        f"{HARDEST}-{shipped - 1:02d}",
        f"{HARDEST}-{shipped:02d}",
    ]
    assert (
        cases[shipped + 4].model_dump()
        == Scenario.model_validate(make_case(HARDEST, shipped + 4)).model_dump()
    )
    assert len({c.line.seed for c in cases}) > shipped  # new lines, not the shipped ones again


async def test_resume_timer_outlasts_a_slow_transcription() -> None:
    """A real barge-in must not be taken for a false one because whisper answered late: the
    session's resume timeout follows the STT's recent transcription time."""
    from livekit import rtc

    from agent.call.session import TurnTuning, create_session
    from agent.providers.instant import InstantLLM, InstantTTS
    from agent.providers.profiles import Providers, build_vad
    from agent.providers.whisper_stt import WhisperSTT
    from agent.sim.caller_voice import synthesize_caller

    tts = InstantTTS()
    slow_stt = WhisperSTT(threads=1, window_s=0)  # whisper's classic 30 s window: ~0.35 s per turn
    providers = Providers("test", slow_stt, InstantLLM(), tts, build_vad(), tts.voice)
    tuning = TurnTuning()  # the shipped values
    session = create_session(providers, tuning=tuning)
    assert session.options.interruption["false_interruption_timeout"] == tuning.false_interruption_timeout
    rate = 16000
    pcm = synthesize_caller("Sorry, actually, what time do you close today?", rate)
    frame = rtc.AudioFrame((np.clip(pcm, -1, 1) * 32767).astype(np.int16).tobytes(), rate, 1, len(pcm))
    ev = await session.stt.recognize([frame])
    assert "close" in ev.alternatives[0].text.lower()
    slowest = max(session.stt.latencies)
    expected = min(
        tuning.max_false_interruption_timeout,
        max(tuning.false_interruption_timeout, slowest + tuning.stt_latency_margin),
    )
    assert session.options.interruption["false_interruption_timeout"] == pytest.approx(expected)
    assert expected > tuning.false_interruption_timeout  # that whisper needs longer than 0.15 s
    await session.aclose()


async def test_a_backchannel_resumes_the_paused_reply_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "uh-huh" over the reply pauses it; once the gate has blanked the transcript, the reply
    resumes through livekit's own resume path without waiting out the resume timer (which, at
    10 dB babble, made the pause long enough for callers to take the turn)."""
    import agent.call.session as session_mod
    from agent.bench.turns import run as bench_run
    from agent.bench.turns.corpus import load_cases

    case = load_cases("clean", 1)[0]  # case 0: a backchannel 0.6-2 s into the first reply
    assert [t.label for t in case.turns][1] == "backchannel"
    verdicts: list[bool] = []
    real = session_mod.resume_paused_reply

    def spy(session):  # calls through: the real session, the real livekit activity
        verdicts.append(real(session))
        return verdicts[-1]

    monkeypatch.setattr(session_mod, "resume_paused_reply", spy)
    reply_s = bench_run.prewarm([case])
    run = await bench_run.run_case(case, "shipped", "clean", reply_s, None)
    assert run.error is None
    assert True in verdicts, verdicts  # a paused reply was resumed by the verdict, not the timer
    assert run.score.false_interruption == [False], run.score.notes


async def test_instant_stt_returns_only_words_already_spoken() -> None:
    """The oracle STT of the benchmarks times each line by the duration the simulator gives it:
    a later line is never returned early because an earlier one was already said."""
    import asyncio

    from livekit import rtc

    from agent.providers.instant import WORD_SETTLE_S, InstantSTT

    stt = InstantSTT()
    silence = rtc.AudioFrame(bytes(320), 16000, 1, 160)
    stt.expect("one two", 0.0)  # said at once
    stt.expect("three four five six", 30.0)  # takes 30 s: not said yet
    await asyncio.sleep(WORD_SETTLE_S + 0.05)
    first = await stt.recognize([silence])
    assert first.alternatives[0].text == "one two"
    again = await stt.recognize([silence])
    assert again.alternatives[0].text == ""  # the second line's words are still to come


# ---- the rules on what the product's STT really writes (tests/data/whisper_*.yaml) ---------------
def _recorded(name: str) -> list[dict[str, object]]:
    doc = yaml.safe_load((Path(__file__).parent / "data" / f"whisper_{name}.yaml").read_text())
    return list(doc[name])


def test_unfinished_fragments_as_whisper_writes_them_wait_for_more() -> None:
    rows = _recorded("fragments")
    kept = [r for r in rows if not r["rewritten"]]
    assert len(kept) >= 12  # "I'd like to.", "Could you check whether?", "Can you tell me? Huh", ...
    for r in kept:
        assert utterance_complete_probability(str(r["heard"])) < UNLIKELY_THRESHOLD, r
    # a "?" after a dangling word is whisper's, not the caller's
    for text in ("Could you check whether?", "Can you tell me?", "Is it for the?", "I was wondering if?"):
        assert utterance_complete_probability(text) < UNLIKELY_THRESHOLD, text
    for text in ("Where are you from?", "Can you do that?", "Who do I speak to?", "Can you help me?"):
        assert utterance_complete_probability(text) >= UNLIKELY_THRESHOLD, text


def test_backchannels_as_whisper_writes_them_do_not_take_the_turn() -> None:
    rows = _recorded("backchannels")
    for r in rows:
        heard = str(r["heard"])
        assert (not heard.strip() or is_backchannel(heard)) is (not r["known_miss"]), r
    # what a caller says to take the turn is never blanked, short or not
    for text in (
        "Stop.",
        "Wait.",
        "No.",
        "Bye.",
        "Human.",
        "Agent.",
        "Hello?",
        "Price?",
        "Billing.",
        "Sunday 9",
    ):
        assert not is_backchannel(text), text
