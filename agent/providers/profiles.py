"""The providers of a call: `CALLCENTER_PROFILE` / `--profile` picks a preset (local, cloud),
`CALLCENTER_<STAGE>_PROVIDER` overrides single stages (agent/providers/stages.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from livekit.agents import inference, llm, stt, tts, vad
from livekit.agents.stt import STT
from livekit.agents.tts import TTS

from agent.providers.stages import EmbeddingsStage, StagePlan, embeddings_stage, endpoint, plan_stages
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
    # engines behind a FallbackAdapter (which prewarms only its primary): loaded up front too, or
    # the first fallback would load them mid-call (whisper's first load took ~2 s here)
    standby: tuple[STT | TTS, ...] = ()
    # the LLM is given tools (documents, end call): gpt-4o-mini can, the local models cannot
    llm_tools: bool = False
    # what the cache's embedder should use (the cache does not read it yet: docs/deploy.md)
    embeddings: EmbeddingsStage = dataclasses.field(default_factory=lambda: EmbeddingsStage("local"))

    def prewarm(self) -> None:
        for p in (self.stt, self.llm, self.tts, *self.standby):
            p.prewarm()


def build_vad() -> vad.VAD:
    # Native silero VAD from livekit-local-inference (weights embedded, no download).
    return inference.VAD(min_silence_duration=0.25, activation_threshold=0.5)


def local_stt(settings: Settings, threads: int | None = None) -> stt.STT:
    from agent.providers.whisper_stt import WhisperSTT

    return WhisperSTT(
        threads=threads or settings.stt_threads,
        window_s=settings.stt_window_s,
        fallback_budget_s=settings.stt_fallback_budget_s,
    )


def build_providers(profile: str, settings: Settings) -> Providers:
    if profile in ("local", "cloud"):
        return build_stages(plan_stages(profile, settings), settings)
    if profile == "local-fastllm":
        # Load tests: real local STT/TTS/VAD, instant LLM, so the numbers measure our code.
        from agent.providers.hibari_tts import HibariTTS, LocalVoice
        from agent.providers.instant import InstantLLM

        stt = local_stt(settings, threads=1)
        return Providers("local-fastllm", stt, InstantLLM(), LocalVoice(), build_vad(), HibariTTS.voice)
    if profile == "instant":
        from agent.providers.instant import InstantLLM, InstantSTT, InstantTTS

        t = InstantTTS()
        return Providers("instant", InstantSTT(), InstantLLM(), t, build_vad(), t.voice)
    raise UserError(f"unknown profile '{profile}' (choose local, cloud)")


# ---- cloud: each cloud engine falls back to the local one (issue #10) ------------------------
# STT: a phone caller waits in silence while we transcribe, and the local whisper answers in
# well under a second, so we give up on the cloud quickly instead of retrying it. A healthy
# cloud transcription or realtime connect takes about a second; 5 s is already a long pause on
# a call. (For the HTTP path the openai plugin applies it to the connect only; its read timeout
# stays 30 s.)
STT_ATTEMPT_TIMEOUT_S = 5.0
# HTTP path: no retry. The adapter wraps the batch STTs in a StreamAdapter whose `recognize`
# loop retries around the plugin's own, so max_retry=1 would mean four uploads, not two.
STT_MAX_RETRY_HTTP = 0
# Realtime path: the STT stream lives for the whole call, and once it falls back it stays on
# whisper until the call ends, so one reconnect (0.1 s later) absorbs a dropped websocket.
STT_MAX_RETRY_REALTIME = 1
# TTS: one retry (0.1 s later) keeps a single failed request from switching the voice mid-call;
# a second failure means ElevenLabs is down, and the caller hears the local voice. The
# per-attempt timeout is the session's TTS timeout (`AgentSession` conn_options, 10 s).
TTS_MAX_RETRY = 1
ELEVENLABS_ENCODING = "pcm_16000"


class BatchFallbackSTT(stt.FallbackAdapter):
    """`stt.FallbackAdapter` over batch (non-streaming) STTs that says it is one.

    The stock adapter always claims streaming and cuts utterances with its own VAD. Saying
    non-streaming lets the session cut them with its tuned, echo-gated VAD and keep the
    backchannel gate (agent/call/session.py), exactly as with the bare HTTP transcription STT.
    """

    @property
    def capabilities(self) -> stt.STTCapabilities:
        return dataclasses.replace(super().capabilities, streaming=False)


class VoiceFallbackTTS(tts.FallbackAdapter):
    """`tts.FallbackAdapter` that knows whether its primary voice served a synthesis.

    Cached answer audio is stored under the primary voice id (`Providers.voice`); audio spoken
    by the fallback voice must not be (see `primary_voice_token`). Built from public events
    only: every availability change bumps `epoch`, and `primary_up` follows the primary's.
    """

    def __init__(self, primary: tts.TTS, fallback: tts.TTS, *, max_retry_per_tts: int) -> None:
        super().__init__([primary, fallback], max_retry_per_tts=max_retry_per_tts)
        self.primary = primary
        self.primary_up = True
        self.epoch = 0
        self.on("tts_availability_changed", self._on_availability)

    def _on_availability(self, ev: tts.AvailabilityChangedEvent) -> None:
        self.epoch += 1
        if ev.tts is self.primary:
            self.primary_up = ev.available


def primary_voice_token(t: tts.TTS | None) -> int | None:
    """Take one before and one after a synthesis: equal and not None means the primary voice
    spoke all of it. The adapter always tries the first available TTS first, and every switch
    or recovery fires an event that bumps the epoch; a recovery in between only makes this
    over-cautious. A TTS without fallback always speaks in its own voice."""
    if not isinstance(t, VoiceFallbackTTS):
        return 0
    return t.epoch if t.primary_up else None


def build_stages(plan: StagePlan, settings: Settings) -> Providers:
    """Build only the chosen provider of each stage. The cloud engines (OpenAI STT, ElevenLabs
    TTS) are each backed by the local engine through livekit's `FallbackAdapter`; a remote LLM
    has no fallback (agent/call/recovery.py apologises when it gives up)."""
    standby: list[stt.STT | tts.TTS] = []
    if plan.stt == "openai":
        the_stt, whisper = _openai_stt(plan, settings)
        standby.append(whisper)
    else:
        the_stt = local_stt(settings)
    the_llm = _openai_llm(plan, settings) if plan.llm == "openai" else _local_llm(settings)
    if plan.tts == "elevenlabs":
        the_tts, voice, hibari = _elevenlabs_tts(settings)
        standby.append(hibari)
    else:
        from agent.providers.hibari_tts import HibariTTS, LocalVoice

        the_tts, voice = LocalVoice(), HibariTTS.voice
    return Providers(
        plan.name,
        the_stt,
        the_llm,
        the_tts,
        build_vad(),
        voice,
        tuple(standby),
        llm_tools=plan.llm_tools,
        embeddings=embeddings_stage(plan, settings),
    )


def _plugin(name: str, stage: str) -> Any:
    try:
        if name == "openai":
            from livekit.plugins import openai

            return openai
        from livekit.plugins import elevenlabs

        return elevenlabs
    except ImportError as e:
        raise UserError(f"the {name} {stage} needs {e.name} (run ./install.sh)") from None


def _local_llm(settings: Settings) -> llm.LLM:
    from agent.providers.local_llm import LocalLLM

    return LocalLLM(max_tokens=settings.llm_max_tokens)


def _openai_llm(plan: StagePlan, settings: Settings) -> llm.LLM:
    """OpenAI `gpt-4o-mini` streaming, or any OpenAI-compatible server (`CALLCENTER_LLM_BASE_URL`:
    vLLM, Ollama, llama.cpp, Groq, Together; docs/deploy.md)."""
    openai = _plugin("openai", "LLM")
    ep = endpoint("llm", settings, settings.llm_model, preset=plan.preset)
    kw: dict[str, Any] = {"model": ep.model, "api_key": ep.api_key}
    if ep.base_url:
        kw["base_url"] = ep.base_url
    if "llm_max_tokens" in settings.model_fields_set:
        # set explicitly: bounds the remote replies too (a small self-hosted model rambles)
        kw["max_completion_tokens"] = settings.llm_max_tokens
    if settings.llm_prefill:
        from agent.providers.openai_llm import PrefillOpenAILLM

        return PrefillOpenAILLM(**kw)
    return openai.LLM(**kw)


def _openai_stt(plan: StagePlan, settings: Settings) -> tuple[stt.STT, stt.STT]:
    """`gpt-4o-mini-transcribe` (realtime, or HTTP per utterance with `CALLCENTER_STT_REALTIME=false`)
    behind a FallbackAdapter to the local whisper; returns (adapter, whisper)."""
    from agent.observability import watch_fallbacks

    openai = _plugin("openai", "STT")
    ep = endpoint("stt", settings, settings.stt_model, preset=plan.preset)
    kw: dict[str, Any] = {"api_key": ep.api_key}
    if ep.base_url:
        kw["base_url"] = ep.base_url
    cloud_stt = openai.STT(model=ep.model, language="en", use_realtime=settings.stt_realtime, **kw)
    whisper = local_stt(settings)
    if cloud_stt.capabilities.streaming:
        the_stt: stt.FallbackAdapter = stt.FallbackAdapter(
            [cloud_stt, whisper],
            vad=build_vad(),  # cuts utterances for whisper (a batch STT) inside the adapter
            attempt_timeout=STT_ATTEMPT_TIMEOUT_S,
            max_retry_per_stt=STT_MAX_RETRY_REALTIME,
        )
    else:
        the_stt = BatchFallbackSTT(
            [cloud_stt, whisper],
            vad=build_vad(),  # the constructor wants one; the session's StreamAdapter cuts instead
            attempt_timeout=STT_ATTEMPT_TIMEOUT_S,
            max_retry_per_stt=STT_MAX_RETRY_HTTP,
        )
    watch_fallbacks(the_stt)
    return the_stt, whisper


def _elevenlabs_tts(settings: Settings) -> tuple[tts.TTS, str, tts.TTS]:
    """ElevenLabs streaming behind a FallbackAdapter to hibari; returns (adapter, voice, hibari)."""
    from agent.observability import watch_fallbacks
    from agent.providers.hibari_tts import HibariTTS, LocalVoice

    elevenlabs = _plugin("elevenlabs", "TTS")
    if not settings.elevenlabs_api_key:
        raise UserError("CALLCENTER_TTS_PROVIDER=elevenlabs needs ELEVEN_API_KEY")
    extra: dict[str, Any] = {}
    if settings.elevenlabs_base_url:
        extra["base_url"] = settings.elevenlabs_base_url
    # Raw 16 kHz PCM, not the plugin's default MP3: an MP3 stream starts with ~50 ms of encoder
    # priming silence the caller waits through on every reply (measured: bench-cloud-overhead),
    # and the phone line is 8 kHz, so 16 kHz loses nothing the caller could hear.
    primary = elevenlabs.TTS(
        api_key=settings.elevenlabs_api_key,
        voice_id=settings.elevenlabs_voice_id,
        encoding=ELEVENLABS_ENCODING,
        **extra,
    )
    local_tts = HibariTTS()
    fallback = VoiceFallbackTTS(primary, LocalVoice(local_tts), max_retry_per_tts=TTS_MAX_RETRY)
    watch_fallbacks(fallback)
    # the primary voice: cached audio is only stored/replayed in it (primary_voice_token)
    return fallback, f"elevenlabs-{settings.elevenlabs_voice_id}", local_tts
