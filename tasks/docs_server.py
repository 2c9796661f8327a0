"""MCP document server (mcp 2.x `MCPServer`, formerly FastMCP) over one documents directory.

Read-only tools answer directly from disk (fast path, no Celery). `analyze_document` and
`compare_documents` enqueue a Celery job and return a job id at once; `job_status` and
`cancel_job` follow it. Every anticipated failure is a `ToolError` whose text starts with a code:
not_found, outside_docs, too_large, binary, unsupported_type, section_not_found, bad_range,
bad_edit, no_match, version_not_found, bad_query, bad_owner, unknown_job, jobs_unavailable.

Jobs belong to their owner: the `owner` argument (the call's room name) or, without one, the stdio
server process (one client each) or a legacy HTTP session (`mcp-session-id`); session-less HTTP
requests must pass `owner`. Another owner gets `unknown_job`, exactly as for a job that does not
exist. The streamable-HTTP transport needs `Authorization: Bearer $CALLCENTER_MCP_TOKEN` when
the token is set, and refuses to start on a non-loopback address without one.
Run: `callcenter mcp serve --docs DIR --transport stdio|streamable-http`.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from kombu.exceptions import OperationalError
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import UserError
from core.redact import redact_text
from core.settings import REPO_ROOT, get_settings
from tasks import jobs
from tasks.celery_app import TASK_ANALYZE, TASK_COMPARE, app
from tasks.docs_store import DocError, DocStore

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DOCS_DIR = REPO_ROOT / "documents"
TOKEN_ENV = "CALLCENTER_MCP_TOKEN"
_OWNER = re.compile(r"^[\w.:@+-]{1,200}$")
# A stdio server serves exactly one client: jobs started without an owner belong to this process.
_STDIO_SESSION = uuid.uuid4().hex
_STATE = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "PROGRESS": "running",
    "RETRY": "retrying",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
}


def _tool_errors(fn: F) -> F:
    """Turn our typed failures into MCP tool errors (is_error=True with a readable message)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DocError as e:
            raise ToolError(str(e)) from e
        except ToolError:
            raise
        except (OSError, redis.RedisError, OperationalError, RuntimeError) as e:
            # Redis/broker down (Celery signals a dead result consumer with RuntimeError), disk trouble.
            raise ToolError(f"jobs_unavailable: {type(e).__name__}: {redact_text(str(e))}") from e

    return wrapper  # type: ignore[return-value]


def _job_options() -> dict[str, Any]:
    """Server-wide job knobs passed to the worker (so one worker serves servers with different needs)."""
    s = get_settings()
    opts: dict[str, Any] = {}
    if s.docs_job_min_duration_s is not None:
        opts["min_duration_s"] = s.docs_job_min_duration_s
    if s.tasks_llm is not None:
        opts["use_llm"] = s.tasks_llm
    return opts


def owner_of(ctx: Context | None, owner: str | None) -> str:
    """The owner a job is filed under: the caller's `owner` (room name), else its MCP session."""
    if owner is not None:
        if not _OWNER.match(owner):
            raise ToolError("bad_owner: owner is 1-200 letters, digits or . _ : @ + -")
        return f"owner:{owner}"
    request = ctx.request_context.request if ctx is not None else None
    if request is None:
        return f"session:{_STDIO_SESSION}"  # stdio: one process per client
    # Streamable HTTP: the server-issued session id (128 random bits) on every request.
    headers = getattr(request, "headers", None)
    sid = headers.get("mcp-session-id") if headers is not None else None
    if not sid:  # the session-less 2026 protocol: nothing ties two requests together
        raise ToolError("bad_owner: pass owner (e.g. the call's room name) to start or follow jobs over HTTP")
    return f"session:{sid}"


def job_status_of(job_id: str, owner: str) -> dict[str, Any]:
    info = jobs.lookup(job_id)
    # A job of another owner (or one filed before jobs had owners) is indistinguishable from none.
    if (
        info is None
        or not isinstance(info.get("owner"), str)
        or not hmac.compare_digest(info["owner"], owner)
    ):
        raise ToolError(f"unknown_job: no job {job_id!r} for this caller (jobs are kept for 24 hours)")
    res = app.AsyncResult(job_id)
    celery_state = res.state
    meta = res.info if isinstance(res.info, dict) else {}
    out: dict[str, Any] = {
        "job_id": job_id,
        "kind": info.get("kind"),
        "documents": info.get("documents"),
        "state": _STATE.get(celery_state, celery_state.lower()),
        "progress": 0.0,
        "stage": None,
        "attempt": meta.get("attempt", 1),
        "age_s": round(time.time() - info["submitted_at"], 1),
        "result": None,
        "error": None,
        "message": "",
    }
    if celery_state in ("PENDING", "RECEIVED"):
        out["message"] = "waiting for a worker"
    elif celery_state in ("STARTED", "PROGRESS"):
        out["progress"], out["stage"] = meta.get("progress", 0.0), meta.get("stage")
        silent = time.time() - meta.get("heartbeat", time.time())
        if silent > jobs.stale_after_s():
            # acks_late keeps the message unacked, so it is redelivered when a worker is back.
            out["state"] = "worker_lost"
            out["message"] = f"no progress for {silent:.0f} s: the worker died; the job will be retried"
        elif out["attempt"] > 1:
            out["message"] = f"retrying after a lost worker (attempt {out['attempt']})"
    elif celery_state == "SUCCESS":
        out["progress"], out["result"] = 1.0, res.result
        out["attempt"] = (res.result or {}).get("attempt", 1)
    elif celery_state == "FAILURE":
        out["error"] = f"{type(res.result).__name__}: {res.result}"
    elif celery_state == "REVOKED":
        out["message"] = "cancelled"
    return out


def build_server(docs_dir: Path | str | None = None, max_bytes: int | None = None) -> MCPServer:
    settings = get_settings()
    docs = Path(docs_dir or os.environ.get("CALLCENTER_DOCS_DIR") or DEFAULT_DOCS_DIR)
    limit = max_bytes or settings.docs_max_bytes
    try:
        store = DocStore(docs, max_bytes=limit, keep_versions=settings.docs_keep_versions)
    except DocError as e:
        raise UserError(str(e)) from None
    mcp = MCPServer(
        "callcenter-documents",
        instructions="Company documents: list, read, search and edit them; analyze or compare them as "
        "background jobs (returns a job id; poll job_status with the same owner).",
        log_level=settings.mcp_log_level,
    )

    def submit(
        kind: str, task: str, documents: list[str], kwargs: dict[str, Any], owner: str
    ) -> dict[str, Any]:
        jobs.ping()  # fail fast and cleanly before Celery starts its own reconnect loops
        r = app.send_task(task, kwargs={**kwargs, **_job_options()})
        jobs.record(r.id, {"kind": kind, "documents": documents, "owner": owner})
        return {"job_id": r.id, "state": "queued", "kind": kind, "documents": documents}

    @mcp.tool()
    @_tool_errors
    def list_documents() -> dict[str, Any]:
        """List the documents: name, title, size in bytes, last modified (UTC)."""
        return {"documents": store.list()}

    @mcp.tool()
    @_tool_errors
    def read_document(
        name: str, section: str | None = None, start_line: int | None = None, end_line: int | None = None
    ) -> dict[str, Any]:
        """Read a document, optionally one section (by heading) and/or a 1-based inclusive line range."""
        return store.read(name, section=section, start_line=start_line, end_line=end_line)

    @mcp.tool()
    @_tool_errors
    def search_documents(query: str, limit: int = 5) -> dict[str, Any]:
        """Full-text search over all documents; each hit has name, line, section and a snippet."""
        return {"query": query, "hits": store.search(query, limit)}

    @mcp.tool()
    @_tool_errors
    def edit_document(
        name: str,
        section: str | None = None,
        new_text: str | None = None,
        find: str | None = None,
        replace: str | None = None,
    ) -> dict[str, Any]:
        """Edit a document: replace a section's body (section + new_text) or every occurrence of
        `find` with `replace`. The old text is kept as a version (see list_versions)."""
        return store.edit(name, section=section, new_text=new_text, find=find, replace=replace)

    @mcp.tool()
    @_tool_errors
    def list_versions(name: str) -> dict[str, Any]:
        """Backup versions of a document, oldest first (usable as compare_documents' version)."""
        return {"name": name, "versions": store.versions(name)}

    @mcp.tool()
    @_tool_errors
    def restore_document(name: str, version: str) -> dict[str, Any]:
        """Make a saved version (see list_versions) the document's text again. The text it
        replaces is kept as a new version, so a restore can itself be undone."""
        return store.restore(name, version)

    @mcp.tool()
    @_tool_errors
    def analyze_document(name: str, owner: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
        """Start a background analysis (summary, key facts, action items). Returns a job_id at once.
        `owner` (e.g. the call's room name) is who may follow or cancel the job; default: this session."""
        who = owner_of(ctx, owner)
        text = store.read_text(name)
        return submit("analysis", TASK_ANALYZE, [name], {"name": name, "text": text}, who)

    @mcp.tool()
    @_tool_errors
    def compare_documents(
        a: str,
        b: str | None = None,
        version: str | None = None,
        owner: str | None = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Start a background comparison of two documents (a, b) or of a document's saved `version`
        with its current text (a, version). Returns a job_id at once. `owner` as for analyze_document."""
        who = owner_of(ctx, owner)
        if (b is None) == (version is None):
            raise ToolError("bad_compare: give either b (another document) or version (of a)")
        if b is not None:
            a_name, a_text, b_name, b_text = a, store.read_text(a), b, store.read_text(b)
        else:
            a_name, a_text = f"{a}@{version}", store.read_version(a, str(version))
            b_name, b_text = a, store.read_text(a)
        kwargs = {"a_name": a_name, "a_text": a_text, "b_name": b_name, "b_text": b_text}
        return submit("comparison", TASK_COMPARE, [a_name, b_name], kwargs, who)

    @mcp.tool()
    @_tool_errors
    def job_status(job_id: str, owner: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
        """State of a background job: queued, running (with progress 0..1 and stage), succeeded (with
        result), failed (with error), cancelled, or worker_lost (it will be retried). Give the same
        `owner` the job was started with."""
        return job_status_of(job_id, owner_of(ctx, owner))

    @mcp.tool()
    @_tool_errors
    def cancel_job(job_id: str, owner: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
        """Cancel a background job (e.g. the caller hung up). Finished jobs are left as they are.
        Give the same `owner` the job was started with."""
        who = owner_of(ctx, owner)
        status = job_status_of(job_id, who)
        if status["state"] in ("succeeded", "failed", "cancelled"):
            return {**status, "message": f"already {status['state']}"}
        jobs.request_cancel(job_id)  # a running task polls this and stops
        app.control.revoke(job_id)  # a queued one is dropped by the worker that receives it
        if status["state"] == "queued":
            app.backend.mark_as_revoked(job_id, reason="cancelled")
        return {**job_status_of(job_id, who), "message": "cancellation requested"}

    return mcp


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname or 0.0.0.0-style wildcard: reachable from elsewhere


class BearerAuth:
    """ASGI guard: every HTTP request needs `Authorization: Bearer <token>` (constant-time compare),
    and a browser request (it carries an Origin header) must come from the server's own origin."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan: starts the session manager
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        scheme, _, cred = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(cred.strip(), self.token):
            await _deny(send, 401, "invalid_token", f"send Authorization: Bearer ${TOKEN_ENV}")
            return
        origin = headers.get(b"origin")
        if origin is not None and origin.split(b"://", 1)[-1] != headers.get(b"host", b""):
            await _deny(send, 403, "forbidden_origin", "cross-origin requests are not accepted")
            return
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, error: str, description: str) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", f'Bearer error="{error}"'.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def http_app(server: MCPServer, host: str, token: str | None) -> ASGIApp:
    """The streamable-HTTP app with our guards. Refuses (UserError) to be open off loopback."""
    loopback = is_loopback(host)
    if not loopback and not token:
        raise UserError(
            f"refusing to serve documents on {host} without a token: set {TOKEN_ENV} "
            "(clients send Authorization: Bearer <token>) or bind to 127.0.0.1"
        )
    security = None
    if loopback:  # DNS-rebinding protection: only loopback Host/Origin headers are accepted
        names = ["127.0.0.1", "localhost", "[::1]", host if ":" not in host else f"[{host.strip('[]')}]"]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f"{n}:*" for n in names],
            allowed_origins=[f"http://{n}:*" for n in names],
        )
    asgi: ASGIApp = server.streamable_http_app(host=host, transport_security=security)
    return BearerAuth(asgi, token) if token else asgi


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(
    docs_dir: Path | str | None,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
    max_bytes: int | None = None,
) -> None:
    """Run the server; bad settings, ports or a missing token raise UserError before anything starts."""
    if transport not in ("stdio", "streamable-http"):
        raise UserError(f"unknown transport {transport!r}: use stdio or streamable-http")
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: a TCP port is 1-65535")
    settings = get_settings()
    server = build_server(docs_dir, max_bytes)
    if transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    asgi = http_app(server, host, settings.mcp_token)
    _check_port_free(host, port)
    uvicorn.run(asgi, host=host.strip("[]"), port=port, log_level=settings.mcp_log_level.lower())
