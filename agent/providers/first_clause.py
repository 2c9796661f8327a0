"""Sentence chunking for a non-streaming TTS that speaks the reply's first clause on its own.

livekit's `tts.StreamAdapter` sends a batch TTS one sentence at a time, so the caller hears
nothing until the LLM has written the whole first sentence and the TTS has rendered all of it.
Here the first sentence of a reply is cut after its first clause ("Sure," / "Our store is at
12 Main Street,"): that piece goes to the TTS as soon as the next word arrives, and is rendered
in a third of the time (hibari: 15 vs 49 ms for "Sure," vs the full sentence, idle; under
`bench load`'s ten calls the full sentence took 0.1-0.5 s). The rest follows sentence by
sentence, as before.

A first sentence without a clause mark ("Acme Hardware is open Monday to Saturday 8am to 6pm.")
is cut at its first phrase boundary instead: before a preposition, a conjunction or a weekday,
after at least three words ("Acme Hardware is open" / "Monday to Saturday ..."), while the LLM is
still writing it. The local 0.5B model writes such a sentence in 0.3-0.5 s, all of which the
caller used to wait; the cut costs one short pause (hibari ends each piece with ~0.17 s of
silence) where a speaker would pause anyway.

Only when the LLM writes fast enough: the rest of the sentence must be written and rendered
while the clause plays, or the caller hears "Sure," and then silence, and takes the turn (the
local 0.5B model on two busy cores writes slower than that; gpt-4o-mini and the instant test LLM
write faster). The pace is measured on the reply's own first words.
"""

from __future__ import annotations

import re
import time

from livekit.agents import tokenize
from livekit.agents.tokenize import SentenceStream, token_stream

# a clause mark followed by a space: not "1,000" or "12:30"
_CLAUSE_END = re.compile(r"[,;:](?=\s)")
MIN_CLAUSE_CHARS = 4  # "Sure," "Yes," "Okay,"; not a lone "So," or "Oh,"
SPOKEN_CHARS_PER_S = 15.0  # hibari's speaking rate ("Sure," = 0.58 s with its lead-in)
LEAD_IN_S = 0.3
REST_CHARS = 50  # what typically follows the clause in the first sentence
RENDER_MARGIN_S = 0.2  # rendering the rest takes this long on a busy machine


# Words that open a phrase a speaker may pause before. Not "to" ("Monday to Saturday", "need
# to") nor "that" (a determiner as often as a conjunction).
_PHRASE_WORDS = (
    "at on in from for with within by about after before during until between over under near"
    " around through and but or because if when while which who where every"
    " monday tuesday wednesday thursday friday saturday sunday weekdays weekends"
)
_PHRASE_START = re.compile(r"\s(?:" + "|".join(_PHRASE_WORDS.split()) + r")(?=[\s,.;:!?])", re.I)
MIN_PHRASE_WORDS = 3  # "We are open | on Sundays"; not "We deliver | within ten miles"


def split_first_phrase(sentence: str) -> tuple[str, str] | None:
    """("Acme Hardware is open", " Monday to Saturday") for an unfinished first sentence: cut
    before its first phrase word once that word is complete, or None."""
    for m in _PHRASE_START.finditer(sentence):
        head, tail = sentence[: m.start()], sentence[m.start() :]
        if len(head.split()) >= MIN_PHRASE_WORDS:
            return head, tail
    return None


def split_first_clause(sentence: str) -> tuple[str, str] | None:
    """("Sure,", " we are open.") for "Sure, we are open.", None when there is no clause to cut
    off or nothing after it yet."""
    for m in _CLAUSE_END.finditer(sentence):
        head, tail = sentence[: m.end()], sentence[m.end() :]
        if len(head.strip()) < MIN_CLAUSE_CHARS:
            continue
        return (head, tail) if tail.strip() else None
    return None


def pace_needed(clause: str) -> float:
    """Characters per second the LLM must write for the rest to be ready before the clause ends."""
    plays_s = LEAD_IN_S + len(clause.strip()) / SPOKEN_CHARS_PER_S
    return REST_CHARS / max(plays_s - RENDER_MARGIN_S, 0.1)


class _FirstClauseStream(token_stream.BufferedSentenceStream):
    """One reply: sentences, the first cut after its first clause when the LLM is fast enough."""

    def __init__(self, sentences: tokenize.SentenceTokenizer, context_len: int) -> None:
        self._sentences = sentences
        self._first_pending = True
        self._chars = 0
        self._first_at: float | None = None
        self._last_at = 0.0
        # min_token_len 1: the sentence tokenizer already merges short sentences into the next.
        super().__init__(tokenizer=self._split, min_token_len=1, min_ctx_len=context_len)

    def push_text(self, text: str) -> None:
        self._last_at = time.monotonic()
        if self._first_at is None:
            self._first_at = self._last_at
        self._chars += len(text)
        super().push_text(text)

    def pace(self) -> float:
        """Characters per second written so far (infinite when they all came at once)."""
        elapsed = self._last_at - (self._first_at or self._last_at)
        return float("inf") if elapsed < 1e-3 else self._chars / elapsed

    def _split(self, text: str) -> list[str]:
        sentences = self._sentences.tokenize(text)
        if not self._first_pending or not sentences:
            return sentences
        complete = len(sentences) > 1  # the first sentence is all there: no gap can follow
        for cut in self._cuts(sentences[0], complete):
            if complete or self.pace() >= pace_needed(cut[0]):
                # The stream emits every token but the last (kept as context): returning two
                # or more means the head is spoken now.
                self._first_pending = False
                return [cut[0], cut[1], *sentences[1:]]
        self._first_pending = not complete
        return sentences

    @staticmethod
    def _cuts(sentence: str, complete: bool) -> list[tuple[str, str]]:
        """Where the first sentence may be cut, earliest first. A written sentence is cut only
        at a clause mark: a phrase cut there would add a pause to save a few ms of rendering."""
        clause = split_first_clause(sentence)
        phrase = None if complete else split_first_phrase(sentence)
        cuts = [c for c in (phrase, clause) if c is not None]
        return sorted(cuts, key=lambda c: len(c[0]))


class FirstClauseTokenizer(tokenize.SentenceTokenizer):
    """Sentences (livekit's blingfire tokenizer), the very first one cut after its first clause."""

    def __init__(self, *, min_sentence_len: int = 20, stream_context_len: int = 10) -> None:
        self._sentences = tokenize.blingfire.SentenceTokenizer(
            min_sentence_len=min_sentence_len, retain_format=True
        )
        self._context_len = stream_context_len

    def tokenize(self, text: str, *, language: str | None = None) -> list[str]:
        return self._sentences.tokenize(text)

    def stream(self, *, language: str | None = None) -> SentenceStream:
        return _FirstClauseStream(self._sentences, self._context_len)
