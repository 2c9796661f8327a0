"""Local TTS plugin: hibari (Kokoro-distilled, 24 kHz), voice "heart" bundled in `hibari-tts`.

Non-streaming per request; the session's `tts.StreamAdapter` splits the LLM stream into
sentences, so the first sentence is spoken while the LLM still writes the rest.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
from livekit.agents import APIConnectOptions, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from core.errors import UserError

SAMPLE_RATE = 24000
_ENGINE_LOCK = threading.Lock()
_ENGINE = None
_SYNTH_LOCK = threading.Lock()


def load_hibari(threads: int = 1):  # -> hibari.Hibari
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            try:
                from hibari import Hibari
            except ImportError:
                raise UserError("local TTS missing: hibari-tts is not installed (run ./install.sh)") from None
            _ENGINE = Hibari(threads=threads)
        return _ENGINE


def synthesize_pcm16(text: str, threads: int = 1) -> bytes:
    """Whole-utterance synthesis to 16-bit PCM at 24 kHz (used for cache audio too)."""
    engine = load_hibari(threads)
    with _SYNTH_LOCK:  # one synthesis at a time per process: concurrent calls share the engine
        audio = engine(text)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()


class HibariTTS(tts.TTS):
    voice = "hibari-heart"

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
            pcm = await asyncio.to_thread(synthesize_pcm16, text, self._tts._threads)
            output_emitter.push(pcm)
        output_emitter.flush()
