"""Bench providers: the instant profile with a real agent voice.

The instant TTS emits a tone; a tone is not speech to the VAD, so its echo would test nothing.
Here the agent speaks hibari speech (synthesized once per text, then replayed from memory), and
the LLM answers instantly with a reply long enough to talk over (~4 s).

STT, chosen per run (`BenchSTT`): `whisper` (the default) is the product's local recognizer
(faster-whisper tiny.en) hearing the caller through the line model, so the text end-of-turn rules
and the backchannel filter see what whisper really writes; `oracle` returns exactly the text the
caller has started speaking (nothing for noises): the framework-only view.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

import numpy as np
from livekit.agents import APIConnectOptions, tts
from livekit.agents import stt as stt_base
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from agent.providers import Providers
from agent.providers.instant import InstantLLM, InstantSTT
from agent.providers.profiles import build_vad

LONG_REPLY = "We are open Monday to Friday from eight until six, and Saturdays until one."
SHORT_REPLY = "Okay, go ahead."
SHORT_TRIGGERS = ("stop", "no, that's wrong", "wait")
RATE = 24000
_cache: dict[str, bytes] = {}
_lock = threading.Lock()


def speech_pcm(text: str) -> bytes:
    with _lock:
        if text not in _cache:
            from agent.providers.hibari_tts import synthesize_pcm16

            pcm = np.frombuffer(synthesize_pcm16(text), np.int16)
            # Trim the synthesizer's leading/trailing padding: it is not turn-taking latency.
            on = np.flatnonzero(np.abs(pcm) > 0.01 * 32768)
            if len(on):
                pcm = pcm[max(0, on[0] - RATE // 100) : on[-1] + RATE // 50]
            _cache[text] = pcm.tobytes()
        return _cache[text]


def reply_for(user_text: str) -> str:
    t = user_text.strip().lower()
    return SHORT_REPLY if any(t.startswith(s) for s in SHORT_TRIGGERS) else LONG_REPLY


class SpeechTTS(tts.TTS):
    voice = "bench-hibari-cached"

    def __init__(self) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=RATE, num_channels=1)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _TTSStream(tts=self, input_text=text, conn_options=conn_options)


class _TTSStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=f"speech-{time.monotonic_ns()}",
            sample_rate=RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        text = self.input_text.strip()
        pcm = _cache.get(text) or await asyncio.to_thread(speech_pcm, text) or b""
        output_emitter.push(pcm)
        output_emitter.flush()


BenchSTT = Literal["whisper", "oracle"]
STT_LABELS: dict[str, str] = {
    "whisper": "faster-whisper tiny.en through the line model (what the product hears)",
    "oracle": "oracle STT: the exact words spoken (framework only, no recognition errors)",
}


def bench_providers(stt: BenchSTT = "whisper") -> Providers:
    """The bench's providers with the chosen recognizer.

    Args:
        stt: `whisper` (the product's local STT) or `oracle` (exact words; framework only).

    Returns:
        Providers: hibari speech for the agent, an instant LLM, the shipped VAD.
    """
    t = SpeechTTS()
    recognizer: stt_base.STT
    if stt == "oracle":
        recognizer = InstantSTT()
    else:
        from agent.providers.profiles import local_stt
        from core.settings import get_settings

        recognizer = local_stt(get_settings(), threads=1)
    return Providers(f"instant-speech-{stt}", recognizer, InstantLLM(reply_for), t, build_vad(), t.voice)


def prewarm(texts: list[str]) -> None:
    for t in texts:
        speech_pcm(t)
