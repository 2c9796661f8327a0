"""One setting (`CALLCENTER_PROFILE` / `--profile`) chooses every provider of a call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from livekit.agents import inference, llm, stt, tts, vad

from core.errors import UserError
from core.settings import Settings

ProfileName = Literal["local", "cloud", "instant", "local-fastllm"]


@dataclass
class Providers:
    name: str
    stt: stt.STT
    llm: llm.LLM
    tts: tts.TTS
    vad: vad.VAD
    voice: str  # identifies the TTS voice, so cached audio is only replayed in the same voice

    def prewarm(self) -> None:
        for p in (self.stt, self.llm, self.tts):
            p.prewarm()


def build_vad() -> vad.VAD:
    # Native silero VAD from livekit-local-inference (weights embedded, no download).
    return inference.VAD(min_silence_duration=0.25, activation_threshold=0.5)


def build_providers(profile: str, settings: Settings) -> Providers:
    if profile == "local":
        from agent.providers.hibari_tts import HibariTTS
        from agent.providers.local_llm import LocalLLM
        from agent.providers.whisper_stt import WhisperSTT

        t = HibariTTS()
        return Providers(
            "local",
            WhisperSTT(threads=settings.stt_threads),
            LocalLLM(max_tokens=settings.llm_max_tokens),
            t,
            build_vad(),
            t.voice,
        )
    if profile == "local-fastllm":
        # Load tests: real local STT/TTS/VAD, instant LLM, so the numbers measure our code.
        from agent.providers.hibari_tts import HibariTTS
        from agent.providers.instant import InstantLLM
        from agent.providers.whisper_stt import WhisperSTT

        t = HibariTTS()
        return Providers("local-fastllm", WhisperSTT(threads=1), InstantLLM(), t, build_vad(), t.voice)
    if profile == "instant":
        from agent.providers.instant import InstantLLM, InstantSTT, InstantTTS

        t = InstantTTS()
        return Providers("instant", InstantSTT(), InstantLLM(), t, build_vad(), t.voice)
    if profile == "cloud":
        return _cloud(settings)
    raise UserError(f"unknown profile '{profile}' (choose local, cloud)")


def _cloud(settings: Settings) -> Providers:
    """OpenAI gpt-4o-mini + gpt-4o-mini-transcribe (realtime streaming) + ElevenLabs streaming TTS.

    `OPENAI_BASE_URL` may point at any OpenAI-compatible server (vLLM, Ollama, Groq...).
    """
    try:
        from livekit.plugins import elevenlabs, openai
    except ImportError as e:
        raise UserError(f"cloud profile needs {e.name} (run ./install.sh)") from None
    if not settings.openai_api_key:
        raise UserError("cloud profile needs OPENAI_API_KEY")
    common: dict[str, Any] = {"api_key": settings.openai_api_key}
    if settings.openai_base_url:
        common["base_url"] = settings.openai_base_url
    the_llm = openai.LLM(model=settings.llm_model, **common)
    the_stt = openai.STT(
        model=settings.stt_model, language="en", use_realtime=settings.stt_realtime, **common
    )
    if settings.elevenlabs_api_key:
        extra: dict[str, Any] = {}
        if settings.elevenlabs_base_url:
            extra["base_url"] = settings.elevenlabs_base_url
        the_tts: tts.TTS = elevenlabs.TTS(
            api_key=settings.elevenlabs_api_key, voice_id=settings.elevenlabs_voice_id, **extra
        )
        voice = f"elevenlabs-{settings.elevenlabs_voice_id}"
    else:
        # Without an ElevenLabs key, keep the call fully working on the local voice.
        from agent.providers.hibari_tts import HibariTTS

        the_tts = HibariTTS()
        voice = the_tts.voice  # type: ignore[attr-defined]
    return Providers("cloud", the_stt, the_llm, the_tts, build_vad(), voice)
