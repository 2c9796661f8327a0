"""The agent's own words heard back: telling line echo from a caller who talks over the agent.

A phone line returns the agent's voice 15-30 dB down. The echo gate (`EchoGateVAD`) attenuates
it, but a click, a cough or a burst of noise opens the gate, and for its hangover the echo passes
with it: whisper then writes the agent's own words ("We are open Monday.") and the session took
them for a barge-in that cut the reply (docs/turn-taking.md). Whisper is as confident about that
echo as about real speech, so the words are the tell: a transcript made, in order, of what the
agent has just said is its echo.

`AgentWords` keeps the agent's last words as it speaks them (fed by `CallAgent.transcription_node`);
`is_echo` compares a transcript against them.
"""

from __future__ import annotations

import re
from collections import deque
from difflib import SequenceMatcher

# the agent's words kept: a reply and a half, since echo lags the audio by tens of milliseconds
KEEP_WORDS = 80
# share of the transcript's words found, in order, in the agent's last words
ECHO_MATCH = 0.75
# a short transcript holding one of these is the caller's ("Sorry?", "No, wait"), even if the
# agent said the same word
CALLER_WORDS = {
    "stop", "wait", "no", "nope", "hold", "sorry", "excuse", "pardon", "hello", "what",
    "operator", "agent", "representative", "human", "person", "bye", "goodbye", "cancel",
    "repeat", "again", "slow", "slower", "actually",
}  # fmt: skip

_CONTRACTIONS = (
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'m\b"), " am"),
    (re.compile(r"'d\b"), " would"),
    (re.compile(r"'s\b"), " is"),
)
_WORD = re.compile(r"[a-z0-9]+")
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
# whisper writes the agent's "until one" as "until 1." and "eight" as "8:00"
_NUMBERS = {
    **{str(n): w for n, w in enumerate(_ONES)},
    **{str(10 * (k + 3)): w for k, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split())},
    "00": "",
}


def words_of(text: str) -> list[str]:
    """Lower-case words with contractions and small numbers spelled out ("We're open 'til 8:00"
    and "We are open 'til eight" compare equal)."""
    t = text.lower().replace("\u2019", "'")
    for pattern, full in _CONTRACTIONS:
        t = pattern.sub(full, t)
    words = (_NUMBERS.get(w, w) for w in _WORD.findall(t))
    return [w for w in words if w]


class AgentWords:
    """The agent's most recent words, in the order it spoke them."""

    def __init__(self, keep: int = KEEP_WORDS) -> None:
        self._words: deque[str] = deque(maxlen=keep)

    def add(self, text: str) -> None:
        """Append a piece of the agent's speech (a text delta of any size)."""
        self._words.extend(words_of(text))

    def recent(self) -> list[str]:
        return list(self._words)


def is_echo(heard: str, spoken: list[str]) -> bool:
    """True when `heard` is the agent's own speech coming back.

    Args:
        heard: a transcript of the uplink taken while the agent was speaking.
        spoken: the agent's recent words (`AgentWords.recent()`).

    Returns:
        Whether at least ECHO_MATCH of the transcript's words appear, in order, among the
        agent's recent words, unless it is a short transcript holding one of CALLER_WORDS.
    """
    h = words_of(heard)
    if not h or not spoken:
        return False
    if len(h) <= 2 and any(w in CALLER_WORDS for w in h):
        return False
    blocks = SequenceMatcher(None, spoken, h, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks) >= ECHO_MATCH * len(h)
