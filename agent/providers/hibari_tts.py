"""Local TTS plugin: hibari (Kokoro-distilled, 24 kHz), voice "heart" bundled in `hibari-tts`.

The engine lives in core/local_tts.py (the cache admin renders cached answers with it too).
Non-streaming per request; `LocalVoice` wraps it in livekit's `tts.StreamAdapter`, which
splits the LLM stream into sentences (the first one after its first clause, see first_clause.py),
so the reply starts while the LLM still writes the rest.
"""

from __future__ import annotations

import asyncio
import time

from livekit.agents import APIConnectOptions, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from agent.providers.first_clause import FirstClauseTokenizer
from core.local_tts import SAMPLE_RATE, VOICE, load_hibari, synthesize_pcm16


class HibariTTS(tts.TTS):
    voice = VOICE

    def __init__(self, *, threads: int = 1) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=SAMPLE_RATE, num_channels=1
        )
        self._threads = threads

    @property
    def model(self) -> str:
        return "hibari-heart"

    @property
    def provider(self) -> str:
        return "hibari"

    def prewarm(self) -> None:
        load_hibari(self._threads)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _HibariStream(tts=self, input_text=text, conn_options=conn_options)


class _HibariStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=f"hibari-{time.monotonic_ns()}",
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        text = self.input_text.strip()
        if text:
            pcm = await asyncio.to_thread(synthesize_pcm16, text, getattr(self._tts, "_threads", 1))
            output_emitter.push(pcm)
        output_emitter.flush()


class LocalVoice(tts.StreamAdapter):
    """The local voice as the session uses it: hibari fed clause- and sentence-sized pieces."""

    def __init__(self, engine: HibariTTS | None = None) -> None:
        self.engine = engine or HibariTTS()
        super().__init__(tts=self.engine, sentence_tokenizer=FirstClauseTokenizer())
