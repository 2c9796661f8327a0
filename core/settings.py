"""Process-wide configuration from environment variables (prefix CALLCENTER_) and .env."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.redact import redact_url

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / ".data"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Never echoed in an error message; URL fields are echoed with their credentials masked.
SECRET_FIELDS = {"admin_token", "mcp_token", "openai_api_key", "elevenlabs_api_key"}
URL_FIELDS = {"redis_url", "openai_base_url", "elevenlabs_base_url"}
# Per-stage providers (agent/providers/stages.py): each OpenAI-compatible stage's own endpoint.
STAGE_SECRET_FIELDS = {"stt_api_key", "llm_api_key", "embeddings_api_key"}
STAGE_URL_FIELDS = {"stt_base_url", "llm_base_url", "embeddings_base_url"}
SECRET_FIELDS |= STAGE_SECRET_FIELDS
URL_FIELDS |= STAGE_URL_FIELDS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLCENTER_", env_file=".env", extra="ignore")

    profile: Literal["local", "cloud"] = "local"
    # Anything but the default must already exist: a mistyped path would otherwise start a new,
    # empty embedded Redis (and re-download models) without a word.
    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="models, embedded Redis, jobs")
    tenants_dir: Path = REPO_ROOT / "tenants"
    default_tenant: str = "acme"

    # Redis: unset -> the embedded Redis Stack (cache/redis_server.py) is used.
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")

    # MCP document server (tasks/docs_server.py).
    docs_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1, le=1024 * 1024 * 1024)
    # Backup versions kept per document; older ones are deleted after each edit.
    docs_keep_versions: int = Field(default=20, ge=1, le=10_000)
    mcp_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"
    # Bearer token for the streamable-HTTP transport; required when bound to a non-loopback address.
    mcp_token: str | None = Field(default=None, validation_alias="CALLCENTER_MCP_TOKEN")
    # A running document job without a heartbeat for this long is reported as worker_lost.
    job_stale_after_s: float = Field(default=30.0, gt=0)
    # Stretch document jobs to at least this long (tests simulate minutes-long jobs); unset: none.
    docs_job_min_duration_s: float | None = Field(default=None, ge=0, le=15 * 60)
    # False: summaries and document jobs use the deterministic path instead of the LLM (tests).
    tasks_llm: bool | None = None
    # Celery over Redis (tasks/celery_app.py): an unacked job is redelivered after the visibility
    # timeout, which must outlast the longest job (16 min); tests shrink all three.
    celery_visibility_timeout: float = Field(default=20 * 60.0, gt=0)
    celery_restore_interval: float = Field(default=10.0, gt=0)
    celery_restore_throttle: int = Field(default=6, ge=1)

    # Threads of the ONNX sentence embedder (cache/embedder.py).
    embed_threads: int = Field(default=1, ge=1, le=64)

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

    # Per-stage providers (agent/providers/stages.py, docs/deploy.md). Unset: the profile's preset
    # (local: local everywhere; cloud: openai STT and LLM, ElevenLabs TTS when ELEVEN_API_KEY is
    # set). A stage's own base URL needs its own key: OPENAI_API_KEY only goes to OPENAI_BASE_URL.
    stt_provider: Literal["local", "openai"] | None = None
    llm_provider: Literal["local", "openai"] | None = None
    tts_provider: Literal["local", "elevenlabs"] | None = None
    embeddings_provider: Literal["local", "openai"] | None = None
    stt_base_url: str | None = None
    stt_api_key: str | None = Field(default=None, repr=False)
    llm_base_url: str | None = None
    llm_api_key: str | None = Field(default=None, repr=False)
    embeddings_base_url: str | None = None
    embeddings_api_key: str | None = Field(default=None, repr=False)
    embeddings_model: str = "text-embedding-3-small"
    # Whether the LLM gets tools (documents, end call). Unset: only the cloud preset's OpenAI LLM;
    # small self-hosted models cannot call tools reliably (true for e.g. a 70B on Groq or vLLM).
    llm_tools: bool | None = None
    # Pre-read the call's prompt on a self-hosted LLM server at call start (llama.cpp, vLLM,
    # Ollama keep a prompt cache): agent/providers/openai_llm.py. Hosted APIs would bill it.
    llm_prefill: bool = False

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
    # Noise suppression on the caller's audio, in front of the VAD and the STT (agent/call/
    # denoise.py): off, dtln or dfn3; the default is chosen by bench-results/denoise.json.
    denoise: Literal["off", "dtln", "dfn3"] = "off"
    # A second opinion on end of turn from the audio (Smart Turn v3.2, agent/call/audio_turn.py),
    # asked only where the call's line measures clean enough; off: the text rules alone.
    audio_eou: bool = True
    # ... and where it and the early transcript both call the turn finished, the turn ends then,
    # before the VAD's end-of-speech silence (agent/call/early_commit.py)
    early_commit: bool = True

    # Semantic cache.
    cache_enabled: bool = True
    # CALLCENTER_SCOPE_CHECK: answer questions the tenant's facts do not cover with an offer of a
    # person instead of the LLM (agent/call/scope.py); off for a tenant whose facts are not curated
    scope_check: bool = True
    # Cosine distance in (0, 1]; lower is stricter (tuned: cache/README.md). 1 already matches
    # unrelated questions; above it the cache would answer anything.
    cache_threshold: float = Field(default=0.25, gt=0, le=1)
    # Two-stage matching (cache/verifier.py): the KNN's nearest `cache_verifier_k` entries within
    # `cache_verifier_max_distance`, then a learned acceptance step; a candidate is served when its
    # probability is >= `cache_verifier_accept` (None: the value trained with the weights, chosen
    # on eval/cache/tune_*). Off: the nearest entry within `cache_threshold`, as before.
    cache_verifier: bool = True
    cache_verifier_accept: float | None = Field(default=None, ge=0, le=1)
    cache_verifier_max_distance: float = Field(default=0.6, gt=0, le=1)
    cache_verifier_k: int = Field(default=4, ge=1, le=20)
    # Entry TTL: at least a minute, at most 10 years (0 or negative would expire at once).
    cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=60, le=10 * 365 * 24 * 3600)
    # Per-tenant cap (least useful evicted first); below 100 a warm-up silently evicts its own FAQ.
    cache_max_entries: int = Field(default=10_000, ge=100, le=10_000_000)
    cache_lookup_budget_ms: float = Field(default=150.0, gt=0, le=10_000)
    # The cache's embedding model (cache/embedders.py): minilm, mpnet (optional extra) or openai
    # (CALLCENTER_EMBEDDINGS_* endpoint). Unset: openai when CALLCENTER_EMBEDDINGS_PROVIDER=openai,
    # else minilm. A change needs `callcenter cache reembed` (the index records its model).
    cache_embedder: Literal["minilm", "mpnet", "openai"] | None = None

    # Celery workers run at this niceness (0-19): on a box shared with agent processes, a
    # summary or document job must not take CPU from a caller's turn (tasks/celery_app.py).
    worker_nice: int = Field(default=10, ge=0, le=19)

    # Context window (issue 5).
    context_keep_recent: int = 10
    context_max_messages: int = 30

    # Documents by voice (MCP). Every call gets a document desk that connects on the first
    # document request: to this streamable-HTTP server when set (docker-compose's mcp-docs,
    # e.g. http://mcp-docs:8765/mcp), else to a stdio child serving `CALLCENTER_DOCS_DIR`.
    documents: bool = True
    docs_mcp_url: str | None = None

    # Call reports (recording, transcript, metrics: caller PII) are deleted this many days after
    # the call (agent/call/retention.py); 0 keeps them forever.
    call_retention_days: float = Field(default=30.0, ge=0)

    dashboard_open_on_localhost: bool = True  # read-only pages without a token, loopback only
    admin_token: str | None = Field(default=None, validation_alias="CALLCENTER_ADMIN_TOKEN")

    @field_validator("data_dir")
    @classmethod
    def _data_dir_exists(cls, v: Path) -> Path:
        p = v.expanduser()
        if p.resolve() == DEFAULT_DATA_DIR.resolve():
            return p  # created on first use
        if p.exists() and not p.is_dir():
            raise ValueError("is not a directory")
        if not p.is_dir():
            raise ValueError(
                "no such directory (create it first; only the default .data/ is created for you)"
            )
        if not os.access(p, os.W_OK | os.X_OK):
            raise ValueError("directory is not writable")
        return p

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        try:
            parts = urlsplit(v)
            port = parts.port  # raises ValueError on a non-numeric or out-of-range port
        except ValueError:
            raise ValueError("not a valid URL") from None
        del port
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis.sock")
        elif parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("expected redis://[:password@]host:port/db, rediss://… or unix:///path")
        return v

    @field_validator("mcp_log_level", mode="before")
    @classmethod
    def _upper_level(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("mcp_token")
    @classmethod
    def _token_strength(cls, v: str | None) -> str | None:
        if not v:
            return None
        if len(v) < 16:
            raise ValueError("too short: use at least 16 random characters (openssl rand -hex 24)")
        return v

    @field_validator(
        "stt_provider", "llm_provider", "tts_provider", "embeddings_provider", "cache_embedder", mode="before"
    )
    @classmethod
    def _stage_provider(cls, v: Any) -> Any:
        if isinstance(v, str):
            return v.strip().lower() or None  # empty: the profile's preset
        return v

    @field_validator("stt_base_url", "llm_base_url", "embeddings_base_url")
    @classmethod
    def _stage_base_url(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        v = v.strip()
        try:
            parts = urlsplit(v)
            port = parts.port  # raises ValueError on a non-numeric or out-of-range port
        except ValueError:
            raise ValueError("not a valid URL") from None
        del port
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http(s)://host[:port]/v1 (an OpenAI-compatible API)")
        return v.rstrip("/")

    @field_validator("stt_api_key", "llm_api_key", "embeddings_api_key")
    @classmethod
    def _stage_api_key(cls, v: str | None) -> str | None:
        return (v.strip() or None) if v is not None else None

    def stage_endpoint(self, stage: str) -> tuple[str | None, str | None, str]:
        """(base URL, API key, name of the key's setting) of an OpenAI-compatible stage.

        The stage's own `CALLCENTER_<STAGE>_BASE_URL` / `_API_KEY`, else `OPENAI_BASE_URL` /
        `OPENAI_API_KEY`; a stage with its own base URL never borrows OPENAI_API_KEY (it would
        send the OpenAI key to another host)."""
        own_url: str | None = getattr(self, f"{stage}_base_url")
        own_key: str | None = getattr(self, f"{stage}_api_key")
        key_setting = f"CALLCENTER_{stage.upper()}_API_KEY"
        if own_url:
            return own_url, own_key, key_setting
        key = own_key or self.openai_api_key
        return self.openai_base_url, key, key_setting if own_key else "OPENAI_API_KEY"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        from core.errors import UserError

        err = e.errors()[0]
        loc = str(err["loc"][0]) if err["loc"] else "?"
        # `loc` is the field name, or the alias (e.g. REDIS_URL) for fields that have one.
        aliases = {f.validation_alias: n for n, f in Settings.model_fields.items() if f.validation_alias}
        field = aliases.get(loc, loc)
        info = Settings.model_fields.get(field)
        alias = info.validation_alias if info and isinstance(info.validation_alias, str) else None
        name = alias or f"CALLCENTER_{field.upper()}"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise UserError(f"setting {name}={_printable(field, err.get('input'))}: {msg}") from None


def _printable(field: str, value: Any) -> str:
    """The offending value for an error line: secrets hidden, URLs without credentials, short."""
    if field in SECRET_FIELDS:
        return "(hidden)"
    text = str(value)
    if field in URL_FIELDS:
        text = redact_url(text)
    text = text if len(text) <= 80 else text[:77] + "..."
    return repr(text)
