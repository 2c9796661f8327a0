"""Instant in-process providers for `bench pipeline`: zero model latency, real plugin plumbing.

The STT returns what the simulated caller said (the simulator tells it through `expect`),
the LLM answers at once, the TTS emits a tone of plausible length. What remains in the
measured latency is the framework's own overhead (VAD, endpointing, scheduling, I/O).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from livekit.agents import APIConnectOptions, llm, stt, tts, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

WORD_SETTLE_S = 0.1  # a word counts as said once this long past its estimated end


class InstantSTT(stt.STT):
    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self.expected: list[str] = []
        self._started: list[float] = []  # wall time each expected text began to be spoken
        self._durations: list[float | None] = []  # how long each takes to say

    def expect(self, text: str, duration_s: float | None = None) -> None:
        """The caller starts saying `text` now, for `duration_s` seconds (None: unknown, so a
        transcript may return every word at once)."""
        self.expected.append(text)
        self._started.append(time.time())
        self._durations.append(duration_s)

    def _spoken_prefix(self, i: int, now: float) -> int:
        """How many words of expected[i] were said by `now` (word ends spread over the caller's
        synthesized duration by character count): a real STT cannot return words not yet spoken."""
        words = self.expected[i].split()
        dur = self._durations[i]
        if dur is None:  # nobody said how long it takes: assume everything was said
            return len(words)
        total = sum(len(w) + 1 for w in words)
        elapsed, n, pos = now - self._started[i] - WORD_SETTLE_S, 0, 0
        for w in words:
            pos += len(w) + 1
            if pos / total * dur > elapsed:
                break
            n += 1
        return n

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        # The words the caller has said since the last segment: a hesitation's first fragment
        # alone, "Wait," of "Wait, do you...", "" for a segment that was only noise or echo.
        now, out = time.time(), []
        while self.expected:
            n = self._spoken_prefix(0, now)
            words = self.expected[0].split()
            out += words[:n]
            if n < len(words):
                rest = " ".join(words[n:])
                dur = self._durations[0]
                if dur is not None:  # the rest takes its share of the line, by characters
                    dur *= (len(rest) + 1) / (len(self.expected[0]) + 1)
                self.expected[0], self._durations[0] = rest, dur
                self._started[0] = now  # approximate: the rest is timed from here
                break
            self.expected.pop(0)
            self._started.pop(0)
            self._durations.pop(0)
        text = " ".join(out)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=LanguageCode("en"), text=text, confidence=1.0)],
        )


class InstantLLM(llm.LLM):
    """Answers at once, word by word: `reply_for(last caller text)`, or the same sentence always."""

    reply = "Sure, we are open Monday to Saturday, eight to six."

    def __init__(self, reply_for: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.reply_for = reply_for or (lambda _text: self.reply)

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _InstantLLMStream(self, chat_ctx=chat_ctx, tools=[], conn_options=conn_options)


class _InstantLLMStream(llm.LLMStream):
    async def _run(self) -> None:
        last = ""
        for item in self._chat_ctx.items:
            if isinstance(item, llm.ChatMessage) and item.role == "user":
                last = item.text_content or ""
        assert isinstance(self._llm, InstantLLM)
        rid = f"instant-{time.monotonic_ns()}"
        words = self._llm.reply_for(last).split(" ")
        for word in words:
            self._event_ch.send_nowait(
                llm.ChatChunk(id=rid, delta=llm.ChoiceDelta(role="assistant", content=word + " "))
            )
        # No model reads the prompt here: its size is estimated (4 characters a token), so the
        # context bound can be checked on this profile too. Real models report their own count.
        prompt = sum(
            len(i.text_content or "") for i in self._chat_ctx.items if isinstance(i, llm.ChatMessage)
        )
        usage = llm.CompletionUsage(
            completion_tokens=len(words),
            prompt_tokens=-(-prompt // 4),
            total_tokens=-(-prompt // 4) + len(words),
        )
        self._event_ch.send_nowait(llm.ChatChunk(id=rid, usage=usage))


class InstantTTS(tts.TTS):
    voice = "instant-tone"

    def __init__(self) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=24000, num_channels=1)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _InstantTTSStream(tts=self, input_text=text, conn_options=conn_options)


class _InstantTTSStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=f"tone-{time.monotonic_ns()}", sample_rate=24000, num_channels=1, mime_type="audio/pcm"
        )
        seconds = max(0.3, 0.07 * len(self.input_text.split()))
        t = np.arange(int(24000 * seconds)) / 24000
        tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        output_emitter.push((tone * 32767).astype(np.int16).tobytes())
        output_emitter.flush()
