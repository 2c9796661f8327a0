"""The local voice speaks a reply's first clause before the LLM has finished the sentence."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import tts

from agent.providers.first_clause import (
    FirstClauseTokenizer,
    pace_needed,
    split_first_clause,
    split_first_phrase,
)
from agent.providers.hibari_tts import HibariTTS, LocalVoice


@pytest.mark.parametrize(
    ("sentence", "cut"),
    [
        ("Sure, we are open.", ("Sure,", " we are open.")),
        (
            "Our store is at 12 Main Street; parking is free.",
            ("Our store is at 12 Main Street;", " parking is free."),
        ),
        ("So, yes, we deliver.", ("So, yes,", " we deliver.")),  # "So," alone is too short to say
        ("It costs 1,000 dollars.", None),  # a thousands separator is not a clause
        ("We open at 9:30 daily.", None),
        ("Sure,", None),  # nothing after the clause yet: wait for it
        ("We are open Monday to Saturday.", None),
    ],
)
def test_split_first_clause(sentence: str, cut: tuple[str, str] | None) -> None:
    assert split_first_clause(sentence) == cut


@pytest.mark.parametrize(
    ("sentence", "cut"),
    [
        (
            "Acme Hardware is open Monday to",
            ("Acme Hardware is open", " Monday to"),
        ),
        ("The store is located at 12 Main", ("The store is located", " at 12 Main")),
        ("We deliver within ten", None),  # two words before the phrase: too short to say alone
        ("We are open Mon", None),  # "Mon" may still become "Monday" or "Montgomery"
        ("Our store is on", None),  # "on" may become "only": wait for the next character
        ("Our store is only open", None),
        ("You will need to bring it", None),  # "to" is no phrase start
    ],
)
def test_split_first_phrase(sentence: str, cut: tuple[str, str] | None) -> None:
    assert split_first_phrase(sentence) == cut


async def _pieces(words: list[str], per_word_s: float = 0.0) -> tuple[list[str], list[str]]:
    """Push a reply word by word; return the pieces the stream emitted before end_input and all."""
    stream = FirstClauseTokenizer().stream()
    for w in words:
        stream.push_text(w + " ")
        await asyncio.sleep(per_word_s)
    early = []
    while not stream._event_ch.empty():  # what is ready before the LLM has finished
        early.append((await stream.__anext__()).token)
    stream.end_input()
    rest = [t.token async for t in stream]
    return early, early + rest


async def test_stream_cuts_only_the_first_sentence() -> None:
    reply = "Sure, we are open Monday to Saturday, eight to six. Sundays, we are closed. Anything else?"
    early, pieces = await _pieces(reply.split(" "))
    assert early[0].strip() == "Sure,"
    assert [p.strip() for p in pieces][1] == "we are open Monday to Saturday, eight to six."
    assert "Sundays, we are closed." in pieces[2]  # later sentences keep their commas
    assert " ".join(p.strip() for p in pieces) == reply  # nothing lost, nothing repeated


async def test_first_sentence_without_a_clause_is_not_cut() -> None:
    reply = "We deliver within ten miles. For more, ask at the desk."
    _, pieces = await _pieces(reply.split(" "))
    assert pieces[0].strip() == "We deliver within ten miles."
    assert " ".join(p.strip() for p in pieces) == reply


async def test_unfinished_first_sentence_is_cut_at_a_phrase() -> None:
    writing = "Acme Hardware is open Monday to Saturday".split(" ")
    assert await _ready_while_writing(writing, 0.0) == ["Acme Hardware is open"]
    reply = "Acme Hardware is open Monday to Saturday 8am to 6pm. Anything else?"
    _, pieces = await _pieces(reply.split(" "))
    assert [p.strip() for p in pieces][:2] == ["Acme Hardware is open", "Monday to Saturday 8am to 6pm."]
    assert " ".join(p.strip() for p in pieces) == reply


async def test_slow_llm_falls_back_from_a_short_clause_to_a_longer_phrase() -> None:
    # "Sure," plays too briefly for a slow LLM; "Sure, we are open" plays long enough.
    writing = "Sure, we are open on Sundays from".split(" ")
    assert await _ready_while_writing(writing, 0.06) == ["Sure, we are open"]


async def _ready_while_writing(words: list[str], per_word_s: float) -> list[str]:
    """Pieces the TTS gets while the LLM is still writing the first sentence."""
    early, _ = await _pieces(words, per_word_s)
    return [p.strip() for p in early]


async def test_a_slow_llm_gets_no_cut_after_a_short_clause() -> None:
    # ~40 characters/s (the local model on busy cores): "Sure," plays 0.6 s, and the rest of
    # the sentence would not be written by then; the caller would hear "Sure," and silence.
    writing = "Sure, we are open Monday to".split(" ")
    assert await _ready_while_writing(writing, 0.0) == ["Sure,"]  # a fast LLM: cut
    # a slow one: not "Sure," alone; the phrase before "Monday" plays long enough
    assert await _ready_while_writing(writing, 0.12) == ["Sure, we are open"]
    assert await _ready_while_writing(writing[:4], 0.12) == []  # no phrase yet: wait
    # a long clause plays long enough for the rest to arrive at that pace
    long = "Our store is at 12 Main Street, next to the".split(" ")
    assert await _ready_while_writing(long, 0.12) == ["Our store is at 12 Main Street,"]


def test_pace_needed_is_lower_for_longer_clauses() -> None:
    assert pace_needed("Sure,") > 100 > 30 > pace_needed("Our store is at 12 Main Street,")


class _RecordingHibari(HibariTTS):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def synthesize(self, text: str, **kw):  # type: ignore[no-untyped-def]
        self.texts.append(text.strip())
        return super().synthesize(text, **kw)


@pytest.mark.slow
async def test_local_voice_speaks_the_clause_before_the_sentence_is_written() -> None:
    engine = _RecordingHibari()
    voice = LocalVoice(engine)
    assert isinstance(voice, tts.StreamAdapter) and voice.capabilities.streaming
    stream = voice.stream()
    for w in "Sure, we are open Monday to".split(" "):  # the LLM is still writing
        stream.push_text(w + " ")
    first = await asyncio.wait_for(stream.__anext__(), 60)  # audio before the sentence ends
    assert first.frame.samples_per_channel > 0
    assert engine.texts == ["Sure,"]
    stream.push_text("Saturday, eight to six.")
    stream.end_input()
    async for _ in stream:
        pass
    await stream.aclose()
    assert engine.texts == ["Sure,", "we are open Monday to Saturday, eight to six."]
