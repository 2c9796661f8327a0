"""Process-wide configuration from environment variables (prefix CALLCENTER_) and .env."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLCENTER_", env_file=".env", extra="ignore")

    profile: Literal["local", "cloud"] = "local"
    data_dir: Path = Field(default=REPO_ROOT / ".data", description="models, embedded Redis, jobs")
    tenants_dir: Path = REPO_ROOT / "tenants"
    default_tenant: str = "acme"

    # Redis: unset -> the embedded Redis Stack (cache/redis_server.py) is used.
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")

    # Cloud profile (keys come from the provider's usual env vars).
    openai_api_key: str | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    llm_model: str = "gpt-4o-mini"
    stt_model: str = "gpt-4o-mini-transcribe"
    # False: the HTTP /audio/transcriptions endpoint (per utterance, after the VAD) for
    # OpenAI-compatible servers without the realtime transcription websocket.
    stt_realtime: bool = True
    elevenlabs_api_key: str | None = Field(default=None, validation_alias="ELEVEN_API_KEY")
    elevenlabs_base_url: str | None = None
    elevenlabs_voice_id: str = "EXAVITQu4vr4xnSDxMaL"

    # Local profile knobs.
    llm_threads: int = 2
    llm_max_tokens: int = 80
    stt_threads: int = 2
    # Whisper encodes this many seconds instead of its 30 s window (0: the classic 30 s);
    # ~0.1 s instead of ~0.35 s per caller turn on 2 cores (agent/providers/whisper_stt.py).
    stt_window_s: float = Field(default=10.0, ge=0, le=30)
    # An unsure short-window transcript is redone over the 30 s window only when that redo is
    # expected to take at most this long (it costs 1.3-1.5 s on busy cores). Unset: always redo;
    # a latency gain of e.g. 0.8 could not be shown on our load runs (README, Load).
    stt_fallback_budget_s: float | None = Field(default=None, ge=0, le=30)

    # Semantic cache.
    cache_enabled: bool = True
    cache_threshold: float = 0.25  # cosine distance; lower is stricter (tuned: cache/README.md)
    cache_ttl_s: int = 7 * 24 * 3600
    cache_max_entries: int = 10_000
    cache_lookup_budget_ms: float = 150.0

    # Celery workers run at this niceness (0-19): on a box shared with agent processes, a
    # summary or document job must not take CPU from a caller's turn (tasks/celery_app.py).
    worker_nice: int = Field(default=10, ge=0, le=19)

    # Context window (issue 5).
    context_keep_recent: int = 10
    context_max_messages: int = 30

    # Call reports (recording, transcript, metrics: caller PII) are deleted this many days after
    # the call (agent/call/retention.py); 0 keeps them forever.
    call_retention_days: float = Field(default=30.0, ge=0)

    dashboard_open_on_localhost: bool = True  # read-only pages without a token, loopback only
    admin_token: str | None = Field(default=None, validation_alias="CALLCENTER_ADMIN_TOKEN")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        from core.errors import UserError

        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        info = Settings.model_fields.get(field)
        alias = info.validation_alias if info and isinstance(info.validation_alias, str) else None
        name = alias or f"CALLCENTER_{field.upper()}"
        raise UserError(f"setting {name}={err.get('input')!r}: {err['msg']}") from None
