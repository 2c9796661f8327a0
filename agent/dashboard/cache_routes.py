"""Cache pages and JSON API, all through the shared service layer `cache.admin.CacheAdmin`.

The page, search, entry list and review queue show cached questions and answers (caller data):
they need the read or admin token. Stats are counts only (overview level). Invalidate, warm and
review decisions (approve / edit / reject a candidate the LLM wrote) need the admin token as a
Bearer header."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.errors import UserError

if TYPE_CHECKING:
    from agent.dashboard.app import Dashboard

log = logging.getLogger("callcenter.dashboard")
MAX_UPLOAD = 5 * 1024 * 1024
MAX_REVIEW_BODY = 16 * 1024
REVIEW_ACTIONS = ("approve", "edit", "reject")
FAQ_SUFFIXES = {".yaml", ".yml", ".csv", ".tsv", ".jsonl", ".ndjson", ".json"}
ENTRY_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _tenant(request: Request, value: str | None = None) -> str | None:
    t = (value if value is not None else request.query_params.get("tenant", "")).strip()
    if not t:
        return None
    if not TENANT.fullmatch(t):
        raise UserError("bad tenant name")
    return t


def _k(request: Request) -> int:
    try:
        return max(1, min(int(request.query_params.get("k", "5")), 50))
    except ValueError:
        raise UserError("k must be a number") from None


class CacheDown(Exception):
    """Redis is unreachable (the URL, which may hold a password, is never shown)."""


def routes(dash: Dashboard) -> list[Route]:
    async def call(fn: Any, *args: Any, **kw: Any) -> Any:
        return await run_in_threadpool(fn, *args, **kw)

    async def service() -> Any:
        try:
            return await call(dash.admin)
        except (UserError, OSError) as e:
            raise CacheDown("cache unavailable: Redis is unreachable") from e

    def errors(handler: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except UserError as e:
                return JSONResponse({"error": str(e)}, 400)
            except CacheDown as e:
                return JSONResponse({"error": str(e)}, 503)
            except (redis.RedisError, OSError) as e:
                log.warning("cache operation failed: %s", type(e).__name__)
                return JSONResponse({"error": "cache unavailable: Redis error"}, 503)

        return wrapped

    async def page(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()[:500]
        err = None
        results: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        stats: dict[str, Any] = {}
        try:
            tenant = _tenant(request)
            admin = await service()
            if q:
                results = await call(admin.search, q, tenant=tenant, k=5)
            pending = await call(admin.pending, tenant, 200)
            entries = [e for e in await call(admin.list, tenant, 200) if e["status"] != "pending"]
            stats = await call(admin.stats)
        except (UserError, CacheDown) as e:
            err, tenant = str(e), None
        return dash.page(request, "cache.html", q=q, tenant=tenant or "", results=results, entries=entries,
                         pending=pending, stats=stats, error=err)  # fmt: skip

    async def search(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        if not q:
            raise UserError("q is required")
        admin = await service()
        rows = await call(admin.search, q[:500], tenant=_tenant(request), k=_k(request))
        return JSONResponse([{"id": r["id"], "question": r["question"], "distance": r["distance"],
                              "would_hit": r.get("would_hit", False)} for r in rows])  # fmt: skip

    async def entries(request: Request) -> Response:
        admin = await service()
        return JSONResponse(await call(admin.list, _tenant(request), 500))

    async def stats(request: Request) -> Response:
        admin = await service()
        return JSONResponse(await call(admin.stats))

    @errors
    async def delete(request: Request) -> Response:
        if (denied := dash.access.check_admin(request)) is not None:
            return denied
        eid = request.path_params["entry_id"]
        if not ENTRY_ID.fullmatch(eid):
            return JSONResponse({"error": "bad entry id"}, 400)
        admin = await service()
        try:
            n = await call(admin.invalidate, entry_id=eid)
        except UserError as e:
            return JSONResponse({"error": str(e)}, 404)
        return JSONResponse({"deleted": n, "id": eid})

    async def review_list(request: Request) -> Response:
        admin = await service()
        return JSONResponse(await call(admin.pending, _tenant(request), 500))

    @errors
    async def review(request: Request) -> Response:
        """POST {"action": "approve" | "edit" | "reject", "answer": "..." (edit)}."""
        if (denied := dash.access.check_admin(request)) is not None:
            return denied
        eid = request.path_params["entry_id"]
        if not ENTRY_ID.fullmatch(eid):
            return JSONResponse({"error": "bad entry id"}, 400)
        body = await request.body()
        if len(body) > MAX_REVIEW_BODY:
            raise UserError("request too large")
        try:
            data = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise UserError("expected a JSON object {action, answer}") from None
        action = data.get("action") if isinstance(data, dict) else None
        if action not in REVIEW_ACTIONS:
            raise UserError("action must be approve, edit or reject")
        answer = data.get("answer")
        if action == "edit" and not isinstance(answer, str):
            raise UserError("edit needs the new 'answer' text")
        admin = await service()
        try:
            await call(admin.candidate, eid)  # unknown or not pending: 404, nothing changed
        except UserError as e:
            return JSONResponse({"error": str(e)}, 404)
        if action == "reject":
            await call(admin.reject, eid)
            return JSONResponse({"rejected": eid})
        row = await call(admin.approve, eid, answer if action == "edit" else None)
        return JSONResponse({"approved": eid, "answer": row["answer"], "edited": action == "edit"})

    async def warm(request: Request) -> Response:
        if (denied := dash.access.check_admin(request)) is not None:
            return denied
        async with request.form(max_files=1, max_fields=5) as form:
            up = form.get("file")
            tenant_field = form.get("tenant")
            if not isinstance(up, UploadFile):
                raise UserError("upload a FAQ file in the 'file' field")
            suffix = Path(up.filename or "").suffix.lower()
            if suffix not in FAQ_SUFFIXES:
                raise UserError("FAQ file must be .yaml, .csv or .jsonl")
            data = await up.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise UserError("file too large (> 5 MB)")
        tenant = _tenant(request, tenant_field if isinstance(tenant_field, str) else "")
        with tempfile.TemporaryDirectory(prefix="cc-warm-") as tmp:
            path = Path(tmp) / f"faq{suffix}"
            path.write_bytes(data)
            admin = await service()
            res = await call(admin.warm, path, tenant=tenant)
        return JSONResponse({k: res[k] for k in ("stored", "skipped", "total", "ids")})

    g, p = dash.guard, dash.private
    return [
        Route("/cache", p(page)),
        Route("/api/cache/search", p(errors(search))),
        Route("/api/cache/entries", p(errors(entries))),
        Route("/api/cache/stats", g(errors(stats))),
        Route("/api/cache/review", p(errors(review_list))),
        Route("/api/cache/review/{entry_id}", review, methods=["POST"]),
        Route("/api/cache/warm", errors(warm), methods=["POST"]),
        Route("/api/cache/{entry_id}", delete, methods=["DELETE"]),
    ]
