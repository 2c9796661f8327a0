"""The dashboard web app: overview, calls, cache admin, Prometheus /metrics (Starlette, server-rendered).

Stable routes: GET / , GET /metrics, GET /calls, GET /calls/{id}, GET /calls/{id}/audio,
GET /calls/{id}/waterfall.png, GET /cache,
GET /api/overview, GET /api/cache/search?q=&tenant=, GET /api/cache/entries, GET /api/cache/stats,
DELETE /api/cache/{id}, POST /api/cache/warm (multipart `file`, optional `tenant`), GET/POST /login,
POST /logout.

Access (agent/dashboard/auth.py): the overview, /metrics and /api/cache/stats are aggregates and
may be open to loopback clients; everything showing caller data (calls, transcripts, recordings,
cached questions) needs the read or admin token; changes need the admin token.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, Gauge
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.dashboard import cache_routes
from agent.dashboard.alerts import Alerts
from agent.dashboard.auth import COOKIE, COOKIE_MAX_AGE_S, NO_READ_TOKEN, Access, login_form, safe_next
from agent.dashboard.calls import (
    GAPS,
    CallStore,
    CallSummary,
    ReportSource,
    call_dir,
    has_file,
    ms,
    open_file,
    overview,
    pct,
    series,
)
from agent.observability import STAGES, Experiment, Metrics, compare, safe_label
from core.call_report import WATERFALL
from core.errors import UserError

HERE = Path(__file__).parent
log = logging.getLogger("callcenter.dashboard")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Handler = Callable[[Request], Awaitable[Response]]
CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class FileDescriptorResponse(Response):
    """A regular file already opened safely (`calls.open_file`), streamed from its fd and closed
    however the response ends (a client that disconnects included). One `Range: bytes=a-b` is
    honoured so the recording player can seek."""

    def __init__(self, fd: int, request: Request, media_type: str) -> None:
        self.fd = fd
        size = os.fstat(fd).st_size
        self.start, self.length, status = 0, size, 200
        headers = {"Accept-Ranges": "bytes"}
        m = _RANGE.fullmatch(request.headers.get("range", "").strip())
        if m and (m.group(1) or m.group(2)):
            a, b = m.group(1), m.group(2)
            first = int(a) if a else max(0, size - int(b))
            last = min(int(b), size - 1) if a and b else size - 1
            if first >= size or first > last:
                status, self.length = 416, 0
                headers["Content-Range"] = f"bytes */{size}"
            else:
                status, self.start, self.length = 206, first, last - first + 1
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        headers["Content-Length"] = str(self.length)
        super().__init__(None, status, headers, media_type)
        self.headers["content-length"] = str(self.length)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})  # fmt: skip
            pos, left = self.start, self.length
            if scope.get("method") == "HEAD":
                left = 0
            while left > 0:
                chunk = await anyio.to_thread.run_sync(os.pread, self.fd, min(CHUNK, left), pos)
                if not chunk:
                    break  # the file shrank under us: end early rather than hang
                pos, left = pos + len(chunk), left - len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            if left > 0 or self.length == 0 or scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(self.fd)


class SecurityHeaders:
    """Pure ASGI middleware: CSP, nosniff, no referrer to other sites, no caching on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


class Dashboard:
    def __init__(self, calls_dir: Path, redis_url: str | None, access: Access,
                 experiment: Experiment | None = None, namespace: str = "cc") -> None:  # fmt: skip
        self.calls = CallStore(Path(calls_dir))
        self.redis_url = redis_url
        self.access = access
        self.experiment = experiment
        self.metrics = Metrics()
        self.bad_reports = Gauge(
            "callcenter_bad_reports",
            "call reports in the calls directory skipped as malformed or unreadable",
            registry=self.metrics.registry,
        )
        self.pending_candidates = Gauge(
            "callcenter_cache_pending_candidates",
            "cache answers the LLM wrote that wait for an admin's review (never served before)",
            ["tenant"],
            registry=self.metrics.registry,
        )
        self._pending_tenants: set[str] = set()
        self.recorded: set[str] = set()
        self.alerts = Alerts()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["datetime"] = _datetime
        self.templates.env.filters["duration"] = _duration
        self._admin: Any = None
        self.namespace = namespace

    # -- shared pieces --
    def admin(self) -> Any:
        """The shared cache service layer (`cache.admin.CacheAdmin`), opened on first use."""
        if self._admin is None:
            from cache.admin import CacheAdmin

            self._admin = CacheAdmin(self.redis_url, namespace=self.namespace)
        return self._admin

    def cache_stats(self) -> dict[str, Any]:
        try:
            return self.admin().stats()
        except Exception as e:  # noqa: BLE001 - the overview must render without Redis
            log.warning("cache stats unavailable: %s", type(e).__name__)
            return {}

    def arm(self, call_id: str) -> str | None:
        return self.experiment.assign(call_id) if self.experiment else None

    def scan(self) -> list[CallSummary]:
        calls = self.calls.scan()
        self.bad_reports.set(len(self.calls.bad))
        return calls

    def sync_metrics(self) -> None:
        calls = self.scan()
        for c in calls:
            if c.finished and c.id not in self.recorded:
                self.recorded.add(c.id)
                # the validated report, not its path: the files are read once, safely (calls.py)
                self.metrics.record_call(ReportSource.of(self.calls.dir / c.id, c.report), arm=self.arm(c.id))
        self.metrics.active_calls.labels(**Metrics.labels(None, None, None)).set(
            sum(not c.finished for c in calls)
        )
        self.sync_pending()

    def sync_pending(self) -> None:
        """Pending review candidates per tenant; a tenant whose queue emptied reads 0, not its
        last value. Without Redis the gauge keeps its last values (the scrape still answers)."""
        try:
            counts = self.admin().pending_by_tenant()
        except Exception as e:  # noqa: BLE001 - /metrics must answer without the cache
            log.warning("pending candidates unavailable: %s", type(e).__name__)
            return
        seen = {safe_label(t): n for t, n in counts.items()}
        for tenant in self._pending_tenants - seen.keys():  # reported before, none pending now
            self.pending_candidates.labels(tenant=tenant).set(0)
        for tenant, n in seen.items():
            self.pending_candidates.labels(tenant=tenant).set(n)
        self._pending_tenants |= seen.keys()

    def guard(self, fn: Handler) -> Handler:
        """Aggregates only (no caller text, no call ids): may be open on loopback."""

        async def wrapped(request: Request) -> Response:
            denied = self.access.check_overview(request)
            return denied if denied is not None else await fn(request)

        return wrapped

    def private(self, fn: Handler) -> Handler:
        """Caller data: the read or admin token, from every client."""

        async def wrapped(request: Request) -> Response:
            denied = self.access.check_read(request)
            return denied if denied is not None else await fn(request)

        return wrapped

    def page(self, request: Request, name: str, **ctx: Any) -> Response:
        authed = self.access.check_read(request) is None
        return self.templates.TemplateResponse(request, name, {"nav": name, "authed": authed, **ctx})

    # -- views --
    async def index(self, request: Request) -> Response:
        calls = self.scan()
        stats = await run_in_threadpool(self.cache_stats)
        may_read = self.access.check_read(request) is None  # the recent calls list ids: caller data
        ctx = {
            "o": overview(calls, bad_reports=len(self.calls.bad)),
            "alerts": self.alerts.evaluate(calls, stats),
            "series": series(calls),
            "stats": stats,
            "recent": calls[:10] if may_read else None,
            "ab": self.ab(calls),
            "ms": ms,
            "pct": pct,
        }
        return self.page(request, "overview.html", **ctx)

    def ab(self, calls: list[Any]) -> dict[str, Any] | None:
        if not self.experiment:
            return None
        per: dict[str, list[float]] = {a: [] for a in sorted(self.experiment.arms)}
        for c in calls:
            if c.finished:
                per[self.experiment.assign(c.id)] += c.values("voice_to_voice")
        return {"name": self.experiment.name, **compare(per)}

    async def api_overview(self, request: Request) -> Response:
        calls = self.scan()
        stats = await run_in_threadpool(self.cache_stats)
        return JSONResponse({"overview": overview(calls, bad_reports=len(self.calls.bad)), "series": series(calls),
                             "alerts": self.alerts.evaluate(calls, stats), "cache": stats})  # fmt: skip

    async def metrics_text(self, request: Request) -> Response:
        self.sync_metrics()
        return Response(self.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    async def calls_list(self, request: Request) -> Response:
        calls = self.scan()
        return self.page(
            request, "calls.html", calls=calls[:200], bad_reports=len(self.calls.bad), ms=ms, pct=pct
        )

    async def call_view(self, request: Request) -> Response:
        d = call_dir(self.calls.dir, request.path_params["call_id"])
        if d is None:
            return Response("call not found", 404)
        calls = self.scan()
        if d.name in self.calls.bad:
            return Response("call report unreadable (malformed; see the dashboard log)", 404)
        c = next((c for c in calls if c.id == d.name), None)
        if c is None:
            return Response("call not found", 404)
        return self.page(request, "call.html", c=c, transcript=self.calls.transcript(d), stages=STAGES,
                         has_audio=has_file(d, "call.wav"), arm=self.arm(c.id), ms=ms, gaps=GAPS,
                         has_waterfall=has_file(d, WATERFALL))  # fmt: skip

    async def call_audio(self, request: Request) -> Response:
        d = call_dir(self.calls.dir, request.path_params["call_id"])
        fd = open_file(d, "call.wav") if d is not None else None
        if fd is None:
            return Response("not found", 404)
        return FileDescriptorResponse(fd, request, "audio/wav")

    async def call_waterfall(self, request: Request) -> Response:
        """The call's waterfall chart, opened like its recording (no traversal, no symlinks)."""
        d = call_dir(self.calls.dir, request.path_params["call_id"])
        fd = open_file(d, WATERFALL) if d is not None else None
        if fd is None:
            return Response("not found", 404)
        return FileDescriptorResponse(fd, request, "image/png")

    # -- browser login: a cookie that opens the read routes (never the admin ones) --
    async def login_page(self, request: Request) -> Response:
        return login_form(request.query_params.get("next", "/"))

    async def login(self, request: Request) -> Response:
        if not self.access.same_origin(request):
            return login_form("/", "cross-site login refused", 403)
        async with request.form(max_files=0, max_fields=4, max_part_size=4096) as form:
            token, nxt = form.get("token"), form.get("next")
        nxt = safe_next(nxt if isinstance(nxt, str) else "/")
        if self.access.admin is None and self.access.read is None:
            return login_form(nxt, NO_READ_TOKEN, 403)
        token = token.strip() if isinstance(token, str) else ""
        if not token or self.access.role_of(token) is None:
            return login_form(nxt, "wrong token", 403)
        resp = RedirectResponse(nxt, 303)
        resp.set_cookie(COOKIE, Access.cookie_value(token), max_age=COOKIE_MAX_AGE_S, path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
        return resp

    async def logout(self, request: Request) -> Response:
        resp = RedirectResponse("/", 303)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return resp


def _datetime(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(s: float | None) -> str:
    if s is None:
        return "—"
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.1f} {unit}"
    return f"{s:.0f} s"


def create_app(calls_dir: Path | str, redis_url: str | None, admin_token: str | None,
               open_readonly_on_localhost: bool = True, experiment: Experiment | None = None,
               cache_namespace: str = "cc", read_token: str | None = None) -> Starlette:  # fmt: skip
    """The app; `UserError` for a placeholder or too-short token (an empty one opens nothing)."""
    access = Access.build(admin_token, read_token, open_readonly_on_localhost)
    dash = Dashboard(Path(calls_dir), redis_url, access, experiment, cache_namespace)
    g, p = dash.guard, dash.private
    routes = [
        Route("/", g(dash.index)),
        Route("/metrics", g(dash.metrics_text)),
        Route("/api/overview", g(dash.api_overview)),
        Route("/calls", p(dash.calls_list)),
        Route("/calls/{call_id}", p(dash.call_view)),
        Route("/calls/{call_id}/audio", p(dash.call_audio)),
        Route("/calls/{call_id}/waterfall.png", p(dash.call_waterfall)),
        Route("/login", dash.login_page, methods=["GET"]),
        Route("/login", dash.login, methods=["POST"]),
        Route("/logout", dash.logout, methods=["POST"]),
        *cache_routes.routes(dash),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.dashboard = dash
    return app


def run_dashboard(host: str = "127.0.0.1", port: int = 8700, calls_dir: Path | str = "calls",
                  experiment: Path | str | None = None) -> None:  # fmt: skip
    """`callcenter dashboard --host H --port P`: settings give the admin token and Redis; the
    optional experiment file (YAML/JSON, see `agent.observability.load_experiment`) adds the A/B table."""
    import uvicorn

    from agent.dashboard.auth import DashboardTokens
    from core.settings import get_settings

    s = get_settings()
    read_token = getattr(s, "read_token", None) or DashboardTokens().read_token
    open_local = bool(getattr(s, "dashboard_open_on_localhost", True))
    exp = experiment_from(experiment) if experiment else None
    app = create_app(calls_dir, s.redis_url, s.admin_token, open_readonly_on_localhost=open_local,
                     experiment=exp, read_token=read_token)  # fmt: skip
    access: Access = app.state.dashboard.access
    if access.admin is None and access.read is None:
        log.warning("no CALLCENTER_ADMIN_TOKEN / CALLCENTER_READ_TOKEN: calls, recordings and the cache "
                    "cannot be viewed, only the overview%s", " (loopback)" if open_local else "")  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def experiment_from(path: Path | str) -> Experiment:
    """`load_experiment` with every way a file can be wrong turned into one `UserError` line."""
    import yaml

    from agent.observability import load_experiment

    try:
        return load_experiment(path)
    except OSError as e:
        raise UserError(f"experiment file {path}: {e.strerror or type(e).__name__}") from None
    except (ValueError, TypeError, AttributeError, yaml.YAMLError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].removeprefix(f"{path}: ")[:200]
        raise UserError(f"experiment file {path}: {first}") from None
