"""`callcenter doctor`: check every configured component and say why one is down (issue 24).

Each check is a small function returning a `Row` (component, what was checked, status, latency
ms, one-line reason). Reasons never carry secrets: URLs go through `core.redact`, and every known
secret value (API keys, tokens, the Redis password) is masked in every row before it is shown.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx

from core.errors import UserError
from core.redact import redact_text, redact_url
from core.settings import Settings

OK, DOWN, SKIPPED, NOT_CONFIGURED = "ok", "down", "skipped", "not configured"


@dataclass
class Row:
    component: str
    check: str
    status: str
    latency_ms: float | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _why(e: BaseException) -> str:
    """A short reason for an exception: connection refused / timeout / DNS, else its message."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            return "connection refused"
        if isinstance(seen, TimeoutError | httpx.TimeoutException):
            return "no answer (timed out)"
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e).split()) or type(e).__name__
    return redact_text(text)[:160]


def _timed(component: str, check: str, fn: Callable[[], str]) -> Row:
    t0 = time.perf_counter()
    try:
        detail = fn()
        return Row(component, check, OK, round((time.perf_counter() - t0) * 1000, 1), detail)
    except UserError as e:
        return Row(component, check, DOWN, None, str(e))
    except Exception as e:  # noqa: BLE001 - a doctor reports, it never raises
        return Row(component, check, DOWN, round((time.perf_counter() - t0) * 1000, 1), _why(e))


def _http_error(r: httpx.Response, key_setting: str) -> str:
    if r.status_code == 401:
        return f"HTTP 401: the server rejected the API key ({key_setting})"
    try:
        msg = r.json().get("error", {}).get("message", "")
    except Exception:  # noqa: BLE001
        msg = r.text[:100]
    return f"HTTP {r.status_code}: {' '.join(str(msg).split())[:120]}"


def _silent_wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 8000)
    return buf.getvalue()


def check_remote_stage(stage: str, settings: Settings, model: str, timeout: float, preset: str) -> Row:
    """A 1-token request to an OpenAI-compatible stage (chat / transcription / embeddings)."""
    from agent.providers.stages import endpoint

    component = f"{stage} (openai)"
    try:
        ep = endpoint(stage, settings, model, preset=preset)
    except UserError as e:
        return Row(component, "settings", DOWN, None, str(e))
    base = (ep.base_url or "https://api.openai.com/v1").rstrip("/")
    shown = redact_url(base)
    _, _, key_setting = settings.stage_endpoint(stage)
    headers = {"Authorization": f"Bearer {ep.api_key}"}

    def run(check: str) -> str:
        with httpx.Client(timeout=timeout, headers=headers) as c:
            try:
                if stage == "llm":
                    body = {"model": model, "messages": [{"role": "user", "content": "Say OK."}]}
                    r = c.post(f"{base}/chat/completions", json={**body, "max_tokens": 1})
                elif stage == "embeddings":
                    r = c.post(f"{base}/embeddings", json={"model": model, "input": "ok"})
                else:
                    r = c.post(
                        f"{base}/audio/transcriptions",
                        files={"file": ("silence.wav", _silent_wav(), "audio/wav")},
                        data={"model": model},
                    )
                    if r.status_code in (404, 405):
                        m = c.get(f"{base}/models")
                        if m.status_code == 200 and settings.stt_realtime:
                            return f"{shown}: no /audio/transcriptions; GET /models answered (realtime not probed)"
                        raise UserError(
                            f"{shown} has no /audio/transcriptions (HTTP {r.status_code}): calls fall back to whisper"
                        )
            except httpx.HTTPError as e:
                raise UserError(f"{_why(e)}: {shown}") from None
        if r.status_code != 200:
            raise UserError(f"{_http_error(r, key_setting)} from {shown}")
        return f"{shown} model {model}"

    what = {
        "llm": "chat max_tokens=1",
        "embeddings": "one /embeddings call",
        "stt": "silent WAV to /audio/transcriptions",
    }
    return _timed(component, what[stage], lambda: run(what[stage]))


def check_local_stage(stage: str, settings: Settings) -> Row:
    def run() -> str:
        if stage == "stt":
            import numpy as np

            from agent.providers.whisper_stt import load_whisper

            segs, _ = load_whisper(settings.stt_threads).transcribe(
                np.zeros(8000, dtype=np.float32), language="en"
            )
            list(segs)
            return "whisper loaded, 0.5 s transcribed"
        if stage == "llm":
            from core.local_llm import LocalLLMEngine

            LocalLLMEngine.shared().stream_chat(
                [{"role": "user", "content": "Say OK."}], lambda _d: None, max_tokens=1
            )
            return "Qwen2.5-0.5B loaded, 1 token generated"
        if stage == "tts":
            from core.local_tts import synthesize_pcm16

            synthesize_pcm16("OK.")
            return "hibari loaded, one word spoken"
        from cache.embedder import get_embedder

        get_embedder().embed("ok")
        return "MiniLM loaded, one text embedded"

    return _timed(f"{stage} (local)", "model loads + one request", run)


def check_redis(settings: Settings, timeout: float) -> tuple[Row, str | None]:
    from cache.redis_server import ensure_redis, redacted

    url: list[str] = []

    def run() -> str:
        import redis

        url.append(ensure_redis(settings))
        redis.Redis.from_url(url[0], socket_timeout=timeout, socket_connect_timeout=timeout).ping()
        return redacted(url[0])

    row = _timed("redis", "PING", run)
    if row.status == DOWN and url:
        row.reason = f"{row.reason}: {redacted(url[0])}"
    return row, (url[0] if row.status == OK else None)


def check_celery(redis_url: str | None, timeout: float) -> Row:
    if redis_url is None:
        return Row("celery", "worker ping", SKIPPED, None, "needs Redis, which is down")
    from agent.call.jobs import JobClient

    def run() -> str:
        client = JobClient(redis_url)
        replies = client.app.control.ping(timeout=timeout, limit=1)
        if not replies:
            raise UserError(
                f"no worker answered a ping within {timeout:g} s (start: callcenter worker celery)"
            )
        return f"worker {next(iter(replies[0]))} answered"

    return _timed("celery", "worker ping", run)


def check_mcp(settings: Settings, timeout: float) -> Row:
    if not settings.documents:
        return Row(
            "mcp documents", "connect + list tools", NOT_CONFIGURED, None, "CALLCENTER_DOCUMENTS=false"
        )
    from agent.call.documents import DeskConfig

    cfg = (
        DeskConfig(url=settings.docs_mcp_url)
        if settings.docs_mcp_url
        else DeskConfig(
            docs_dir=None
            if not os.environ.get("CALLCENTER_DOCS_DIR")
            else __import__("pathlib").Path(os.environ["CALLCENTER_DOCS_DIR"])
        )
    )
    where = redact_url(settings.docs_mcp_url) if settings.docs_mcp_url else "stdio child"

    def run() -> str:
        async def go() -> bool:
            desk = cfg.build(call_timeout_s=timeout)
            try:
                return await desk.start()
            finally:
                await desk.aclose()

        if not asyncio.run(go()):
            raise UserError(f"MCP server unreachable: {where}")
        return where

    return _timed("mcp documents", "connect + list tools", run)


def check_livekit(timeout: float) -> Row:
    url, key, secret = (os.environ.get(v) for v in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"))
    if not url:
        return Row("livekit", "Twirp ListRooms", NOT_CONFIGURED, None, "LIVEKIT_URL not set")

    def run() -> str:
        from livekit import api
        from livekit.api.twirp_client import ServerError

        from sip.operator import check_livekit_url

        check_livekit_url(url)
        if not key or not secret:
            raise UserError("LIVEKIT_API_KEY / LIVEKIT_API_SECRET not set")
        shown = redact_url(url)

        async def go() -> int:
            lk = api.LiveKitAPI(url, key, secret)
            try:
                res = await asyncio.wait_for(lk.room.list_rooms(api.ListRoomsRequest()), timeout)
                return len(res.rooms)
            finally:
                await lk.aclose()

        try:
            n = asyncio.run(go())
        except ServerError as e:
            raise UserError(f"{shown}: {e.code}: {e.message}") from None
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{_why(e)}: {shown}") from None
        return f"{shown}: {n} room(s)"

    return _timed("livekit", "Twirp ListRooms", run)


def run_checks(settings: Settings, timeout: float = 5.0) -> list[Row]:
    """Every row; raises UserError only for settings that are bad as a whole (exit 2)."""
    from agent.providers.stages import plan_stages

    plan = plan_stages(settings.profile, settings)
    models = {"stt": settings.stt_model, "llm": settings.llm_model, "embeddings": settings.embeddings_model}
    rows: list[Row] = []
    for stage in ("stt", "llm", "tts", "embeddings"):
        provider = getattr(plan, stage)
        if provider == "openai":
            rows.append(check_remote_stage(stage, settings, models[stage], timeout, plan.preset))
        elif provider == "elevenlabs":
            rows.append(Row("tts (elevenlabs)", "none", SKIPPED, None, "ElevenLabs check not implemented"))
        else:
            rows.append(check_local_stage(stage, settings))
    redis_row, url = check_redis(settings, timeout)
    rows += [redis_row, check_celery(url, timeout), check_mcp(settings, timeout), check_livekit(timeout)]
    return scrub(rows, settings)


def scrub(rows: list[Row], settings: Settings) -> list[Row]:
    secrets = [
        getattr(settings, f) or ""
        for f in (
            "openai_api_key",
            "elevenlabs_api_key",
            "mcp_token",
            "admin_token",
            "stt_api_key",
            "llm_api_key",
            "embeddings_api_key",
        )
    ] + [os.environ.get("LIVEKIT_API_SECRET", ""), os.environ.get("LIVEKIT_API_KEY", "")]
    for r in rows:
        for s in secrets:
            if len(s) >= 4:
                r.reason = r.reason.replace(s, "***")
                r.check = r.check.replace(s, "***")
    return rows
