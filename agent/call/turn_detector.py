"""Offline text end-of-utterance detection and a backchannel gate, for the hybrid turn-taking.

`TextTurnDetector` implements livekit's `_TurnDetector` protocol: once the VAD reports silence,
the session asks it how likely the caller is done. Rules over the last transcript (whisper
punctuates, so "?" / "." endings are informative): a complete sentence gets the short
endpointing delay (`min_delay`), a sentence hanging on a filler, a conjunction, a preposition,
an article, "my", a comma or an ellipsis gets the long one (`max_delay`). It runs in
microseconds, needs no model download and cannot fail, which is why it is the shipped default
(the legacy livekit text plugin downloads its model; the audio EOT model is measured in the
benchmark).

`BackchannelGateSTT` wraps a non-streaming STT: while the agent is mid-reply, a transcript made
only of backchannel words ("uh-huh", "okay", "right") is reported as empty. livekit then treats
the overlap as a false interruption (pause, then resume the same sentence) instead of
committing a user turn that cuts the agent off. It also times each transcription: a
non-streaming STT only answers after the caller stopped, so the session's resume timer must
outlast it (see `agent.call.session.create_session`).

`EchoGateVAD` wraps the VAD with a telephony echo suppressor (the G.164-style "non-linear
processor"): while the agent has a reply in progress, uplink frames quieter than the double-talk
threshold are attenuated by 30 dB before the VAD sees them. The agent's own voice leaking back
(line echo is >= 15 dB below the caller's speech) and moderate background noise stop looking
like a barge-in; a caller talking over the agent is louder and passes at once.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from livekit import rtc
from livekit.agents import (
    AgentSession,
    AgentStateChangedEvent,
    APIConnectOptions,
    ConversationItemAddedEvent,
    UserStateChangedEvent,
    llm,
    stt,
    utils,
    vad,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from agent.call.audio_turn import RecentAudio, SmartTurn, load_smart_turn
from agent.call.early_end import EndableVADStream, speech_rule
from agent.call.echo import AgentWords, is_echo
from agent.call.line_noise import LineNoiseMeter, frame_db
from agent.providers.whisper_stt import QUICK_VERDICT

COMPLETE_P = 0.95
INCOMPLETE_P = 0.02
NEUTRAL_P = 0.6  # no punctuation and no dangling word: lean towards "done" (short delay)
UNLIKELY_THRESHOLD = 0.15

FILLERS = {"um", "umm", "uh", "uhh", "er", "erm", "ehm", "hmm", "mm", "uhm", "like", "huh", "eh"}
CONJUNCTIONS = {
    "and",
    "but",
    "or",
    "so",
    "because",
    "cause",
    "if",
    "then",
    "that",
    "which",
    "who",
    "when",
    "while",
    "although",
    "though",
    "whether",
    "until",
    "unless",
    "since",
    "than",
}
PREPOSITIONS = {
    "to",
    "for",
    "of",
    "in",
    "on",
    "at",
    "with",
    "from",
    "about",
    "into",
    "by",
    "as",
    "onto",
    "over",
    "under",
    "after",
    "before",
    "between",
    "through",
    "without",
}
DETERMINERS = {
    "a",
    "an",
    "the",
    "my",
    "your",
    "our",
    "their",
    "his",
    "her",
    "its",
    "this",
    "that",
    "these",
    "those",
    "some",
    "any",
    "another",
    "every",
    "each",
}
# A sentence cannot end on these either: subject pronouns, auxiliaries, modal verbs.
STARTERS = {
    "i",
    "i'd",
    "i'm",
    "i'll",
    "i've",
    "we",
    "we'd",
    "you",
    "is",
    "are",
    "was",
    "were",
    "can",
    "could",
    "would",
    "should",
    "will",
    "do",
    "does",
    "did",
    "have",
    "has",
    "want",
    "need",
    "just",
    "also",
    "very",
    "really",
    "it's",
    "there's",
}
DANGLING = FILLERS | CONJUNCTIONS | PREPOSITIONS | DETERMINERS | STARTERS
# whisper puts "?" after a fragment that sounds like a question ("Could you check whether?"), so
# a "?" alone does not finish a turn that ends on one of these: no finished question does.
# (Prepositions, "this"/"that" and object pronouns do end real questions: "Where are you from?")
NEVER_FINAL = (
    FILLERS
    | {"a", "an", "the", "my", "your", "our", "their", "its"}
    | {
        "and",
        "but",
        "or",
        "because",
        "cause",
        "if",
        "whether",
        "although",
        "though",
        "unless",
        "than",
        "i",
        "i'd",
        "i'm",
        "i'll",
        "i've",
        "we",
        "we'd",
    }
)

BACKCHANNELS = {
    "uh-huh",
    "uh",
    "huh",
    "mm-hmm",
    "mhm",
    "mm",
    "hmm",
    "okay",
    "ok",
    "right",
    "yeah",
    "yes",
    "yep",
    "sure",
    "alright",
    "all",
    "got",
    "it",
    "i",
    "see",
    "oh",
    "ah",
    "cool",
    "great",
    "good",
    "fine",
    "uhuh",
    "mmhmm",
}

# A call's first words are often a greeting and a breath: "Hello, | are you open on Sundays?".
# Taken alone, "Hello?" reads as a finished question, so the short endpointing delay could end the
# turn on the greeting while the caller is about to go on (`bench load` showed such openings
# transcribed in pieces among its slowest turns). The agent already greeted the caller, so a
# bare greeting waits for more (`max_delay`).
GREETINGS = {"hello", "hi", "hey", "hiya", "morning", "afternoon", "evening"}
GREETING_WORDS = GREETINGS | {"good", "there", "yes", "yeah", "oh", "okay", "ok", "so", "well", "um", "uh"}

_WORD = re.compile(r"[a-z0-9'\-]+")


# whisper repeats a fragment's last word after its own punctuation: "Can you tell me? me." for
# "Can you tell me, uh, ..." cut at the pause; the rules read the fragment without the echo
_REPEATED_LAST = re.compile(r"\b([a-z0-9']+)([?.!]+)\s+\1[?.!]*$")


def utterance_complete_probability(text: str) -> float:
    """Probability that `text` is a finished caller turn (rules, see module doc)."""
    t = text.strip().lower()
    if not t:
        return COMPLETE_P  # nothing transcribed: nothing to wait for
    t = _REPEATED_LAST.sub(r"\1\2", t)
    if t.endswith(("...", "…", ",", "-", "—", ";", ":")):
        return INCOMPLETE_P
    words = _WORD.findall(t)
    last = words[-1] if words else ""
    if words and set(words) <= GREETING_WORDS and set(words) & GREETINGS:
        return INCOMPLETE_P
    if last in NEVER_FINAL or t.rstrip("?.!").endswith(NEEDS_MORE):
        return INCOMPLETE_P
    if t.endswith(("?", "!")):
        return COMPLETE_P
    if last in DANGLING:  # whisper ends fragments with "." too: "I'd like to."
        return INCOMPLETE_P
    if t.endswith("."):
        return COMPLETE_P
    return NEUTRAL_P


# A request that names no object yet: "Can you tell me?" is how whisper writes "Can you tell me,
# uh, ..." cut at the pause; nobody calls a shop to ask only that.
NEEDS_MORE = ("tell me", "ask you", "wondering", "wondering if")

# Thanks over the agent's reply is politeness, not a turn (and whisper's favourite words for a murmur)
THANKS = {
    "thank you", "thanks", "thank you very much", "thank you so much", "thanks a lot",
    "thanks very much", "okay thank you", "okay thanks", "thank you thank you",
}  # fmt: skip

# Backchannel sounds a misheard "Stop." also comes out as (QUICK_VERDICT: not taken on their own)
INTERJECTIONS = {"ah", "oh", "uh", "um", "mm", "hm", "hmm", "huh", "eh", "er", "mhm"}

# What a caller says to stop or redirect the agent: never taken for a backchannel.
BARGE_WORDS = {
    "stop", "wait", "no", "nope", "hold", "hang", "sorry", "excuse", "pardon", "hello", "what",
    "operator", "agent", "representative", "human", "person", "someone", "somebody", "help",
    "bye", "goodbye", "cancel", "repeat", "again", "slow", "slower", "actually", "but",
}  # fmt: skip


# ... of which those that stop the agent mid-reply: kept even when the STT is unsure of them (at
# 10 dB babble the caller's real "Stop." scored 0.15-0.55). Not "bye": a murmured "uh-huh" is
# heard as an unsure "Bye.", and the agent carries on instead of cutting its reply to ask.
TAKE_TURN_WORDS = BARGE_WORDS - {"bye", "goodbye", "hang"}


def is_backchannel(text: str) -> bool:
    """True when `text`, heard while the agent speaks, is the caller listening, not taking the turn.

    Backchannel words ("uh-huh", "okay", "right") in up to three words, "?" or not ("Okay?"). And
    what whisper makes of a murmur on a phone line: recorded outputs of "mm-hmm", "Mm.", "Aha." and
    "right" through the line model are "Mm-ma.", "Amen.", "Wow.", "in that.", "MMO."
    (tests/data/whisper_backchannels.yaml): one or two short words, no question mark, no digit
    and none of `BARGE_WORDS` is taken for a backchannel too.
    """
    t = text.strip().lower()
    words = _WORD.findall(t)
    if " ".join(words) in THANKS:
        return True
    if not words or len(words) > 3:
        return False
    if all(w in BACKCHANNELS for w in words):
        return True
    return (
        len(words) <= 2
        and not t.endswith("?")
        and all(len(w) <= 5 and not any(c.isdigit() for c in w) and w not in BARGE_WORDS for w in words)
    )


def _last_user_text(chat_ctx: llm.ChatContext) -> str:
    for item in reversed(chat_ctx.items):
        if isinstance(item, llm.ChatMessage) and item.role == "user":
            return item.text_content or ""
    return ""


# Smart Turn's say only counts where it separates complete from unfinished speech: AUC 0.92-0.95
# on a clean G.711 line and at 20 dB babble, 0.80 at 10 dB (agent/call/audio_turn.py).
AUDIO_MIN_SNR_DB = 16.0
# above, with a transcript that reads complete: the turn may end at the short `sure` delay
# (TurnTuning.sure_delay) instead of waiting the full min_delay
AUDIO_SURE_P = 0.8
AUDIO_VETO_P = 0.2  # below: the audio hears an unfinished phrase (fragments on a filler: 0.01-0.02; the lowest finished question 0.53)
AUDIO_KEEP_SILENCE_S = 0.2  # the model heard turns ending in ~0.2 s of silence, not in a whole STT pass


@dataclass
class AudioOpinion:
    """What the detector needs to ask the audio end-of-turn model about the current turn."""

    model: SmartTurn
    recent: RecentAudio
    meter: LineNoiseMeter
    min_snr_db: float = AUDIO_MIN_SNR_DB  # asked (for a veto) from this line SNR up
    checks: int = 0
    vetoes: int = 0
    _early: asyncio.Future[float] | None = None
    _ahead: bool = False  # `_early` was started on the early transcript, before the VAD's end

    def hear_ahead(self, min_silence_s: float = AUDIO_KEEP_SILENCE_S) -> bool:
        """Start the model when the early STT pass has the caller's words, still during the
        VAD's end-of-speech wait: the audio it hears is the same (its trailing silence is cut
        to AUDIO_KEEP_SILENCE_S either way), and its ~45-85 ms no longer delay the commit.
        Not before `min_silence_s` of silence follows the last sound: the model would hear
        another ending. Returns whether an opinion ahead is running (or done)."""
        if self._ahead:
            return True
        if self.trailing_silence_s() < min_silence_s - 1e-6:
            return False
        self.hear_now()
        self._ahead = self._early is not None
        return self._ahead

    async def ahead_probability(self) -> float | None:
        """P(complete) from the opinion started ahead, left for `heard` to take too; None
        when none runs."""
        early = self._early if self._ahead else None
        return None if early is None else await asyncio.shield(early)

    def drop_ahead(self) -> None:
        """The caller spoke again after the early transcript: that opinion heard too little."""
        if self._ahead:
            self._early, self._ahead = None, False

    def hear_now(self) -> None:
        """Start the model on the audio as the VAD ends the caller's speech, so that it runs
        beside the STT pass instead of after it (~40 ms a turn otherwise added to the wait).
        One started ahead on this same silence is kept."""
        if self._ahead and self._early is not None:
            self._ahead = False
            return
        self._early = None
        audio = self._clean_enough_audio()
        if audio is not None:
            self._early = asyncio.ensure_future(
                asyncio.to_thread(self.model.probability, audio, self.recent.rate)
            )

    async def heard(self) -> float | None:
        """P(complete) of the turn just ended (the early one if started), or None where the line
        is too noisy for the model to tell."""
        early, self._early, self._ahead = self._early, None, False
        if early is not None:
            return await early
        audio = self._clean_enough_audio()
        return (
            None
            if audio is None
            else await asyncio.to_thread(self.model.probability, audio, self.recent.rate)
        )

    def sure_allowed(self) -> bool:
        """Whether the line is clean enough to take the model's "finished" as sure."""
        snr = self.meter.snr_db()
        return snr is not None and snr >= AUDIO_MIN_SNR_DB

    def _clean_enough_audio(self) -> np.ndarray | None:
        snr = self.meter.snr_db()
        if snr is None or snr < self.min_snr_db:
            return None
        audio = self.audio()
        return audio if len(audio) >= self.recent.rate * 0.3 else None

    def audio(self) -> np.ndarray:
        """The recent uplink, its trailing silence cut to AUDIO_KEEP_SILENCE_S."""
        x, rate = self.recent.snapshot(turn_only=True), self.recent.rate
        end = self._last_sound(x, rate)
        return x if end is None else x[: min(end + int(AUDIO_KEEP_SILENCE_S * rate), len(x))]

    def trailing_silence_s(self) -> float:
        """Seconds of the recent uplink after the caller's last sound (0 when unknown)."""
        x, rate = self.recent.snapshot(turn_only=True), self.recent.rate
        end = self._last_sound(x, rate)
        return 0.0 if end is None else (len(x) - end) / rate

    @staticmethod
    def _last_sound(x: np.ndarray, rate: int) -> int | None:
        """The sample after the last 20 ms frame 6 dB over the quietest fifth, or None."""
        n = int(rate * 0.02)
        if rate == 0 or len(x) < n:
            return None
        db = frame_db(x[len(x) % n :], n)  # whole frames, aligned to the end
        voiced = np.flatnonzero(db > np.percentile(db, 20) + 6.0)
        return None if not len(voiced) else len(x) % n + (int(voiced[-1]) + 1) * n


class TextTurnDetector:
    """livekit `_TurnDetector` over the last user transcript (English rules).

    With an `AudioOpinion` and a line measured at >= AUDIO_MIN_SNR_DB, an end the rules would
    allow is first put to the audio model; if it hears an unfinished phrase the turn waits the
    long delay (whisper writes "the, er," as "the earth.", the intonation still hangs).
    """

    def __init__(
        self,
        opinion: AudioOpinion | None = None,
        *,
        sure_delay: float | None = None,
        full_delay: float = 0.35,
        silence_s: float = 0.25,
    ) -> None:
        """Args:
        opinion: the audio model's view of the turn (`attach_audio_opinion`), or None.
        sure_delay: the session's endpointing `min_delay` when set: only an end the words and
            the audio model both call finished commits then; every other complete-looking end
            is held here until `full_delay` after the caller's last speech. None: no holding
            (the session's min_delay is `full_delay` itself).
        full_delay: the delay of a complete-looking end that is not sure (TurnTuning.min_delay).
        silence_s: the VAD's end-of-speech silence (dates the caller's last speech from the
            moment the VAD ended it).
        """
        self.opinion = opinion
        self.sure_delay, self.full_delay, self.silence_s = sure_delay, full_delay, silence_s
        self.speech_end_at: float | None = None  # when the VAD ended the caller's speech (wall clock)
        # livekit's own anchor for its delay (the caller's last speech), where the session has one
        self.last_speech: Callable[[], float | None] = lambda: None
        self.sure_commits = 0
        self.holds = self.holds_anchored = 0  # ends held to full_delay; of them, on livekit's anchor

    @property
    def model(self) -> str:
        return "callcenter-text-eou-rules"

    @property
    def provider(self) -> str:
        return "callcenter"

    async def unlikely_threshold(self, language: str | None) -> float | None:
        return UNLIKELY_THRESHOLD

    async def supports_language(self, language: str | None) -> bool:
        return not language or str(language).lower().startswith("en")

    async def predict_end_of_turn(self, chat_ctx: llm.ChatContext, *, timeout: float | None = None) -> float:
        p = utterance_complete_probability(_last_user_text(chat_ctx))
        o = self.opinion
        if p < UNLIKELY_THRESHOLD:
            return p  # the long delay: nothing to hold
        heard = None if o is None else await o.heard()
        if o is not None and heard is not None:
            o.checks += 1
            if heard < AUDIO_VETO_P:
                o.vetoes += 1
                return UNLIKELY_THRESHOLD / 2
            if self.sure_delay is not None and heard >= AUDIO_SURE_P and p >= COMPLETE_P and o.sure_allowed():
                self.sure_commits += 1
                return p  # words and voice both finished: end at the short delay
        await self._hold()
        return p

    async def _hold(self) -> None:
        """Wait until `full_delay` after the caller's last speech. livekit counts its delay from
        there too, and the time spent here is part of it: the end commits as without the
        short delay. Dated by livekit's anchor where readable, else by the VAD's end of speech;
        without either, hold the difference from now."""
        if self.sure_delay is None or self.full_delay <= self.sure_delay:
            return
        self.holds += 1
        anchor = self.last_speech()
        if anchor is not None:
            self.holds_anchored += 1
        elif self.speech_end_at is not None:  # the VAD's silence before it said so, give or take a window
            anchor = self.speech_end_at - self.silence_s
        wait = self.full_delay - self.sure_delay if anchor is None else anchor + self.full_delay - time.time()
        if wait > 0:
            await asyncio.sleep(min(wait, self.full_delay))


class BackchannelGateSTT(stt.STT):
    """Blanks pure-backchannel transcripts while the agent speaks (non-streaming STTs only), and,
    with `agent_words` fed, transcripts of the agent's own echo (agent/call/echo.py)."""

    def __init__(
        self, inner: stt.STT, *, echo_check: bool = True, min_confidence: float | None = None
    ) -> None:
        """Args:
        inner: the STT to gate.
        echo_check: also blank transcripts of the agent's own words (`agent_words`).
        min_confidence: also blank transcripts the STT scored below this (None: off; only for
            an STT whose `SpeechData.confidence` is real, see WhisperSTT.reports_confidence),
            unless they hold a word that stops the agent (TAKE_TURN_WORDS).
        """
        super().__init__(capabilities=inner.capabilities)
        self.inner = inner
        self.agent_speaking: Callable[[], bool] = lambda: False
        self.agent_words = AgentWords()  # what the agent said lately (CallAgent feeds it)
        self.echo_check, self.min_confidence = echo_check, min_confidence
        self.dropped: list[str] = []
        self.echoes: list[str] = []  # transcripts blanked as the agent's echo
        self.unsure: list[str] = []  # ... as words the STT made up from a noise
        self.latencies: deque[float] = deque(maxlen=5)  # seconds per transcription, newest last
        self.on_latency: Callable[[float], None] = lambda _s: None
        # a transcript heard over the reply was blanked or held no words (session.py resumes)
        self.on_backchannel: Callable[[], None] = lambda: None
        # monotonic time the agent's last reply finished playing uncut (session.py sets it)
        self.agent_done_at: float | None = None

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def prewarm(self) -> None:
        self.inner.prewarm()

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        started, now = time.perf_counter(), time.monotonic()
        quick = QUICK_VERDICT.set(self.quick_accept if self.agent_speaking() else None)
        try:
            ev = await self.inner.recognize(buffer, language=language, conn_options=conn_options)
        finally:
            QUICK_VERDICT.reset(quick)
        self.latencies.append(time.perf_counter() - started)
        self.on_latency(max(self.latencies))
        text = ev.alternatives[0].text if ev.alternatives else ""
        if not text.strip():
            if self.agent_speaking():
                self.on_backchannel()  # no words (a cough, a click): the verdict is in as well
            return ev
        if self.agent_speaking():
            blanked = self._why_blank(text, ev.alternatives[0].confidence)
        else:
            blanked = (
                self.echoes
                if self._echo_tail(text, now - utils.audio.calculate_audio_duration(buffer), buffer)
                else None
            )
        if blanked is not None:
            blanked.append(text)
            self.on_backchannel()
            lang = ev.alternatives[0].language
            return stt.SpeechEvent(
                type=ev.type,
                request_id=ev.request_id,
                alternatives=[stt.SpeechData(language=lang, text="", confidence=0.0)],
            )
        return ev

    def quick_accept(self, text: str) -> bool:
        """Whether an unsure transcript heard over the reply may stand without a slower, surer
        pass (whisper_stt.QUICK_VERDICT): backchannel words ("Right.", "Thank you." from a
        cough) or the agent's echo, so a better transcript would change nothing the caller
        hears. Not a bare interjection or a short nonsense word ("Ah.", "Don."): at 10 dB babble
        those were a misheard "Stop."."""
        words = _WORD.findall(text.lower())
        if not words or (len(words) == 1 and (words[0] in INTERJECTIONS or len(words[0]) < 4)):
            return False
        if " ".join(words) in THANKS or all(w in BACKCHANNELS for w in words):
            return True
        return self.echo_check and is_echo(text, self.agent_words.recent())

    def _echo_tail(self, text: str, began: float, buffer: utils.AudioBuffer) -> bool:
        """Whether a transcript heard after the agent stopped is the echo of its last words.

        The echo comes back ~250 ms late and the STT's own VAD ends its segment later still, so
        the tail of a finished reply ("... until one.") reaches the STT once the agent is quiet;
        taken as the caller's turn, the agent answered its own words, again and again. Only
        audio that began within ECHO_TAIL_S of the reply's end and stays as quiet as echo (under
        the echo gate's double-talk level) is checked, and only for echo: a caller's "okay", or
        "Yes, with a person." to the agent's offer, after the answer is a turn.
        """
        done = self.agent_done_at
        return (
            self.echo_check
            and done is not None
            and began <= done + ECHO_TAIL_S
            and _peak_dbfs(buffer) < DOUBLE_TALK_DBFS
            and is_echo(text, self.agent_words.recent())
        )

    def _why_blank(self, text: str, confidence: float) -> list[str] | None:
        """The list a transcript heard over the agent is counted in if it is blanked, else None."""
        why = blank_reason(
            text,
            confidence,
            self.agent_words.recent() if self.echo_check else None,
            min_confidence=self.min_confidence,
        )
        return (
            None if why is None else {"backchannel": self.dropped, "echo": self.echoes}.get(why, self.unsure)
        )


ECHO_TAIL_S = 0.5  # echo delay (<= ~300 ms on phone lines) plus slack for the segment's start


def _peak_dbfs(buffer: utils.AudioBuffer) -> float:
    """The loudest 20 ms of the audio, in dBFS."""
    frame = rtc.combine_audio_frames(buffer)
    pcm = np.frombuffer(frame.data, np.int16).astype(np.float32) / 32768.0
    db = frame_db(pcm, max(1, frame.sample_rate // 50) * frame.num_channels)
    return float(db.max()) if len(db) else -120.0


BlankReason = Literal["backchannel", "echo", "unsure"]


def blank_reason(
    text: str, confidence: float, agent_words: list[str] | None, *, min_confidence: float | None
) -> BlankReason | None:
    """Why a transcript heard while the agent speaks is not the caller taking the turn, or None.

    Args:
        text: the transcript.
        confidence: the STT's confidence in it.
        agent_words: the agent's recent words (`AgentWords.recent()`); None: no echo check.
        min_confidence: below this, words the STT made up from a noise (None: no such check);
            a transcript holding one of TAKE_TURN_WORDS is never blanked for it.

    Returns:
        "backchannel" (`is_backchannel`), "echo" (`is_echo`), "unsure", or None: a barge-in.
    """
    if is_backchannel(text):
        return "backchannel"
    if agent_words is not None and is_echo(text, agent_words):
        return "echo"
    if (
        min_confidence is not None
        and confidence < min_confidence
        and not TAKE_TURN_WORDS.intersection(_WORD.findall(text.lower()))
    ):
        return "unsure"
    return None


DOUBLE_TALK_DBFS = -28.0  # 8 dB under the nominal -20 dBFS speech level of a phone line
GATE_ATTENUATION_DB = 30.0
GATE_HANGOVER_S = 0.3  # keep the gate open through the quiet frames of the caller's words


class EchoGateVAD(vad.VAD):
    """Echo/noise suppression in front of the VAD while the agent is mid-reply."""

    def __init__(
        self,
        inner: vad.VAD,
        threshold_dbfs: float = DOUBLE_TALK_DBFS,
        *,
        always: bool = False,
        hangover_s: float = GATE_HANGOVER_S,
    ) -> None:
        super().__init__(capabilities=inner.capabilities)
        self.inner = inner
        self.always = always  # also gate while the caller holds the turn (noise gate for endpointing)
        self.hangover = hangover_s
        self.stt_hangover_s: float | None = None  # the STT stream's hangover (None: the same)
        self.threshold = 10 ** (threshold_dbfs / 20)
        self.gain = 10 ** (-GATE_ATTENUATION_DB / 20)
        self.agent_speaking: Callable[[], bool] = lambda: False
        self.gated_frames = 0
        self.meter = LineNoiseMeter()  # the call's line noise, from the frames outside the agent's turns
        self.recent = RecentAudio()  # the uplink's last seconds, for the audio end-of-turn model
        self._seen: deque[rtc.AudioFrame] = deque(maxlen=8)
        self._streams: weakref.WeakSet[EndableVADStream] = weakref.WeakSet()
        self.early_ends: list[float] = []  # speech ended by `end_now`: the VAD's silence then (s)

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def gate(
        self, frame: rtc.AudioFrame, state: list[float], hangover_s: float | None = None
    ) -> rtc.AudioFrame:
        """state[0] = double-talk hangover left (s); one state per VAD stream."""
        if not self.always and not self.agent_speaking():
            state[0] = 0.0
            return frame
        x = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
        if len(x) and float(np.sqrt(np.mean(x * x))) >= self.threshold:
            state[0] = self.hangover if hangover_s is None else hangover_s  # double talk
            return frame
        if state[0] > 0:
            state[0] -= frame.samples_per_channel / frame.sample_rate
            return frame
        self.gated_frames += 1
        y = (x * self.gain * 32767).astype(np.int16)
        return rtc.AudioFrame(
            data=y.tobytes(),
            sample_rate=frame.sample_rate,
            num_channels=frame.num_channels,
            samples_per_channel=frame.samples_per_channel,
        )

    def stt_stream(self) -> vad.VADStream:
        """The stream the STT cuts its utterances with (early_stt.py): its frames are what the
        STT hears, gated with `stt_hangover_s` where set. A click or cough opens the gate, and a
        long hangover let the agent's own echo through behind it: whisper wrote "We are open
        Monday." over the agent's reply and cut it."""
        return self.stream(self.stt_hangover_s)

    def stream(self, hangover_s: float | None = None) -> vad.VADStream:
        s = self.inner.stream()
        push, state = s.push_frame, [0.0]

        def _push(frame: rtc.AudioFrame) -> None:
            # The session's VAD stream and the STT's are pushed the same frame objects: keep
            # one copy of each (whichever stream is first; streams come and go with tasks).
            if not any(frame is f for f in self._seen):
                self._seen.append(frame)
                pcm = np.frombuffer(frame.data, dtype=np.int16)
                self.recent.push(pcm, frame.sample_rate)
                if not self.agent_speaking():  # the agent's turns carry its echo, not the line
                    self.meter.push(pcm, frame.sample_rate)
            push(self.gate(frame, state, hangover_s))

        s.push_frame = _push  # type: ignore[method-assign]
        wrapped = EndableVADStream(self, s, speech_rule(self.inner))
        self._streams.add(wrapped)
        return wrapped

    def end_now(self) -> bool:
        """End the caller's current speech on every stream of this VAD now (the session's and
        the STT's: agent/call/early_end.py). Returns whether any stream had speech to end."""
        ended = [s for s in list(self._streams) if s.end_now()]
        if ended:
            self.early_ends.append(max(s.early_silences[-1] for s in ended))
        return bool(ended)


def attach_audio_opinion(session: AgentSession, min_snr_db: float = AUDIO_MIN_SNR_DB) -> AudioOpinion | None:
    """Give the session's text detector the audio model's veto, fed by its echo gate's uplink.

    Args:
        session: the call's session (`create_session`).
        min_snr_db: the line SNR from which the model is asked for a veto (its "finished"
            counts as sure from AUDIO_MIN_SNR_DB only).

    Returns the opinion (its counters), or None where it cannot apply: another detector, no
    echo gate in front of the VAD, or pipecat-ai's model file not installed.
    """
    det, gate = session.turn_detection, session.vad
    if not isinstance(det, TextTurnDetector) or not isinstance(gate, EchoGateVAD):
        return None
    model = load_smart_turn()
    if model is None:
        return None
    opinion = det.opinion = AudioOpinion(model, gate.recent, gate.meter, min_snr_db)

    def _on_user_state(ev: UserStateChangedEvent) -> None:
        if ev.new_state == "speaking":
            opinion.drop_ahead()
            opinion.recent.start_turn()
        elif ev.old_state == "speaking" and ev.new_state == "listening":
            opinion.hear_now()

    def _on_agent_state(ev: AgentStateChangedEvent) -> None:
        if ev.new_state == "speaking":  # the caller's next words are a new turn (or a barge-in)
            opinion.recent.end_turn()

    def _on_item(ev: ConversationItemAddedEvent) -> None:
        if getattr(ev.item, "role", None) == "user":  # the turn was committed
            opinion.recent.end_turn()

    session.on("user_state_changed", _on_user_state)
    session.on("agent_state_changed", _on_agent_state)
    session.on("conversation_item_added", _on_item)
    return opinion
