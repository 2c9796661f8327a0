"""Which provider serves each stage of a call (STT, LLM, TTS, the cache's embeddings).

The profiles `local` and `cloud` are presets over the stages; `CALLCENTER_<STAGE>_PROVIDER`
overrides one stage. A stage that is not chosen is never built, so it is never tried and never
"fails over" on a call. Each OpenAI-compatible stage has its own endpoint and key
(`Settings.stage_endpoint`). Nothing here loads a model: `plan_stages` only decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import UserError
from core.settings import Settings

STAGES = ("stt", "llm", "tts", "embeddings")
PRESETS = ("local", "cloud")
SHORT = {"stt": "stt", "llm": "llm", "tts": "tts", "embeddings": "emb"}


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint; `base_url` None is api.openai.com."""

    base_url: str | None
    api_key: str = field(repr=False)
    model: str


@dataclass(frozen=True)
class EmbeddingsStage:
    """What the cache's embedder should use (`Providers.embeddings`); `endpoint` for openai."""

    provider: str
    endpoint: Endpoint | None = None


@dataclass(frozen=True)
class StagePlan:
    preset: str
    stt: str
    llm: str
    tts: str
    embeddings: str
    llm_tools: bool
    overrides: tuple[tuple[str, str], ...] = ()  # (stage, provider) that differ from the preset

    @property
    def name(self) -> str:
        """A short metrics label: the preset, plus the stages that differ from it, e.g.
        `local.llm-openai` (only `[A-Za-z0-9_.-]`, at most 40 characters: observability.safe_label)."""
        parts = [self.preset, *(f"{SHORT[s]}-{p}" for s, p in self.overrides)]
        name = ".".join(parts)
        return name if len(name) <= 40 else f"{self.preset}.custom"


def preset_stages(preset: str, *, has_eleven_key: bool) -> dict[str, str]:
    if preset == "cloud":
        # without an ElevenLabs key the cloud preset speaks with the local voice (as it always did)
        tts = "elevenlabs" if has_eleven_key else "local"
        return {"stt": "openai", "llm": "openai", "tts": tts, "embeddings": "local"}
    return dict.fromkeys(STAGES, "local")


def plan_stages(preset: str, settings: Settings) -> StagePlan:
    """The provider of every stage: the preset's, overridden by `CALLCENTER_<STAGE>_PROVIDER`."""
    if preset not in PRESETS:
        raise UserError(f"unknown profile '{preset}' (choose local, cloud)")
    base = preset_stages(preset, has_eleven_key=bool(settings.elevenlabs_api_key))
    chosen = dict(base)
    for stage in STAGES:
        explicit = getattr(settings, f"{stage}_provider")
        if explicit:
            chosen[stage] = explicit
    if settings.llm_tools is None:
        tools = preset == "cloud" and chosen["llm"] == "openai"
    elif settings.llm_tools and chosen["llm"] != "openai":
        raise UserError(
            "CALLCENTER_LLM_TOOLS=true needs CALLCENTER_LLM_PROVIDER=openai (the local model cannot call tools)"
        )
    else:
        tools = settings.llm_tools
    overrides = tuple((s, chosen[s]) for s in STAGES if chosen[s] != base[s])
    return StagePlan(
        preset, chosen["stt"], chosen["llm"], chosen["tts"], chosen["embeddings"], tools, overrides
    )


def endpoint(stage: str, settings: Settings, model: str, *, preset: str) -> Endpoint:
    """The chosen remote stage's endpoint, or a one-line UserError naming the missing setting."""
    base_url, key, key_setting = settings.stage_endpoint(stage)
    if not key:
        if key_setting == "OPENAI_API_KEY":
            need = f"OPENAI_API_KEY or CALLCENTER_{stage.upper()}_API_KEY"
        else:  # its own base URL: OPENAI_API_KEY is not sent there
            need = f"{key_setting} (its own base URL does not get OPENAI_API_KEY; any value for a server without auth)"
        who = (
            f"CALLCENTER_{stage.upper()}_PROVIDER=openai"
            if getattr(settings, f"{stage}_provider")
            else f"{preset} profile (openai {stage.upper()})"
        )
        raise UserError(f"{who} needs {need}")
    return Endpoint(base_url, key, model)


def embeddings_stage(plan: StagePlan, settings: Settings) -> EmbeddingsStage:
    if plan.embeddings == "openai":
        return EmbeddingsStage(
            "openai", endpoint("embeddings", settings, settings.embeddings_model, preset=plan.preset)
        )
    return EmbeddingsStage("local")
