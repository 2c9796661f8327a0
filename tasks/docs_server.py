"""MCP document server (mcp 2.x `MCPServer`, formerly FastMCP) over one documents directory.

Read-only tools answer directly from disk (fast path, no Celery). `analyze_document` and
`compare_documents` enqueue a Celery job and return a job id at once; `job_status` and
`cancel_job` follow it. Every anticipated failure is a `ToolError` whose text starts with a code:
not_found, outside_docs, too_large, binary, unsupported_type, section_not_found, bad_range,
bad_edit, no_match, version_not_found, bad_query, unknown_job, jobs_unavailable.
Run: `callcenter mcp serve --docs DIR --transport stdio|streamable-http`.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from kombu.exceptions import OperationalError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from core.settings import REPO_ROOT
from tasks import jobs
from tasks.celery_app import TASK_ANALYZE, TASK_COMPARE, app
from tasks.docs_store import DEFAULT_MAX_BYTES, DocError, DocStore

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DOCS_DIR = REPO_ROOT / "documents"
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
            raise ToolError(f"jobs_unavailable: {type(e).__name__}: {e}") from e

    return wrapper  # type: ignore[return-value]


def _job_options() -> dict[str, Any]:
    """Server-wide job knobs passed to the worker (so one worker serves servers with different needs)."""
    opts: dict[str, Any] = {}
    if raw := os.environ.get("CALLCENTER_DOCS_JOB_MIN_DURATION_S"):
        opts["min_duration_s"] = float(raw)
    if raw := os.environ.get("CALLCENTER_TASKS_LLM"):
        opts["use_llm"] = raw.lower() not in ("0", "false", "no")
    return opts


def job_status_of(job_id: str) -> dict[str, Any]:
    info = jobs.lookup(job_id)
    if info is None:
        raise ToolError(f"unknown_job: no job {job_id!r} (jobs are kept for 24 hours)")
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
    docs = Path(docs_dir or os.environ.get("CALLCENTER_DOCS_DIR") or DEFAULT_DOCS_DIR)
    limit = max_bytes or int(os.environ.get("CALLCENTER_DOCS_MAX_BYTES", DEFAULT_MAX_BYTES))
    store = DocStore(docs, max_bytes=limit)
    mcp = MCPServer(
        "callcenter-documents",
        instructions="Company documents: list, read, search and edit them; analyze or compare them as "
        "background jobs (returns a job id; poll job_status).",
        log_level=os.environ.get("CALLCENTER_MCP_LOG_LEVEL", "WARNING"),  # type: ignore[arg-type]
    )

    def submit(kind: str, task: str, documents: list[str], kwargs: dict[str, Any]) -> dict[str, Any]:
        jobs.ping()  # fail fast and cleanly before Celery starts its own reconnect loops
        r = app.send_task(task, kwargs={**kwargs, **_job_options()})
        jobs.record(r.id, {"kind": kind, "documents": documents})
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
    def analyze_document(name: str) -> dict[str, Any]:
        """Start a background analysis (summary, key facts, action items). Returns a job_id at once."""
        text = store.read_text(name)
        return submit("analysis", TASK_ANALYZE, [name], {"name": name, "text": text})

    @mcp.tool()
    @_tool_errors
    def compare_documents(a: str, b: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Start a background comparison of two documents (a, b) or of a document's saved `version`
        with its current text (a, version). Returns a job_id at once."""
        if (b is None) == (version is None):
            raise ToolError("bad_compare: give either b (another document) or version (of a)")
        if b is not None:
            a_name, a_text, b_name, b_text = a, store.read_text(a), b, store.read_text(b)
        else:
            a_name, a_text = f"{a}@{version}", store.read_version(a, str(version))
            b_name, b_text = a, store.read_text(a)
        kwargs = {"a_name": a_name, "a_text": a_text, "b_name": b_name, "b_text": b_text}
        return submit("comparison", TASK_COMPARE, [a_name, b_name], kwargs)

    @mcp.tool()
    @_tool_errors
    def job_status(job_id: str) -> dict[str, Any]:
        """State of a background job: queued, running (with progress 0..1 and stage), succeeded (with
        result), failed (with error), cancelled, or worker_lost (it will be retried)."""
        return job_status_of(job_id)

    @mcp.tool()
    @_tool_errors
    def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel a background job (e.g. the caller hung up). Finished jobs are left as they are."""
        status = job_status_of(job_id)
        if status["state"] in ("succeeded", "failed", "cancelled"):
            return {**status, "message": f"already {status['state']}"}
        jobs.request_cancel(job_id)  # a running task polls this and stops
        app.control.revoke(job_id)  # a queued one is dropped by the worker that receives it
        if status["state"] == "queued":
            app.backend.mark_as_revoked(job_id, reason="cancelled")
        return {**job_status_of(job_id), "message": "cancellation requested"}

    return mcp


def serve(
    docs_dir: Path | str | None, transport: str = "stdio", host: str = "127.0.0.1", port: int = 8765
) -> None:
    server = build_server(docs_dir)
    if transport == "stdio":
        server.run("stdio")
    elif transport == "streamable-http":
        server.run("streamable-http", host=host, port=port)
    else:
        raise ValueError(f"unknown transport {transport!r}: use stdio or streamable-http")
