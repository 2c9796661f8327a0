"""The dashboard web app: overview, calls, cache admin, Prometheus /metrics (Starlette, server-rendered).

Stable routes: GET / , GET /metrics, GET /calls, GET /calls/{id}, GET /calls/{id}/audio, GET /cache,
GET /api/overview, GET /api/cache/search?q=&tenant=, GET /api/cache/entries, GET /api/cache/stats,
DELETE /api/cache/{id}, POST /api/cache/warm (multipart `file`, optional `tenant`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.dashboard import cache_routes
from agent.dashboard.alerts import Alerts
from agent.dashboard.auth import require_read
from agent.dashboard.calls import CallStore, call_dir, ms, overview, pct, series
from agent.observability import STAGES, Experiment, Metrics, compare

HERE = Path(__file__).parent
log = logging.getLogger("callcenter.dashboard")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[Request], Awaitable[Response]]


class SecurityHeaders:
    """Pure ASGI middleware: CSP, nosniff, no referrer, no caching on every response."""

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
    def __init__(self, calls_dir: Path, redis_url: str | None, admin_token: str | None,
                 open_readonly_on_localhost: bool, experiment: Experiment | None = None,
                 namespace: str = "cc") -> None:  # fmt: skip
        self.calls = CallStore(Path(calls_dir))
        self.redis_url = redis_url
        self.token = admin_token
        self.open_local = open_readonly_on_localhost
        self.experiment = experiment
        self.metrics = Metrics()
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

    def sync_metrics(self) -> None:
        calls = self.calls.scan()
        for c in calls:
            if c.finished and c.id not in self.recorded:
                self.recorded.add(c.id)
                self.metrics.record_call(self.calls.dir / c.id, arm=self.arm(c.id))
        self.metrics.active_calls.labels(**Metrics.labels(None, None, None)).set(
            sum(not c.finished for c in calls)
        )

    def guard(self, fn: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            denied = require_read(request, self.token, self.open_local)
            return denied if denied is not None else await fn(request)

        return wrapped

    def page(self, request: Request, name: str, **ctx: Any) -> Response:
        return self.templates.TemplateResponse(request, name, {"nav": name, **ctx})

    # -- views --
    async def index(self, request: Request) -> Response:
        calls = self.calls.scan()
        stats = await run_in_threadpool(self.cache_stats)
        ctx = {
            "o": overview(calls),
            "alerts": self.alerts.evaluate(calls, stats),
            "series": series(calls),
            "stats": stats,
            "recent": calls[:10],
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
        calls = self.calls.scan()
        stats = await run_in_threadpool(self.cache_stats)
        return JSONResponse({"overview": overview(calls), "series": series(calls),
                             "alerts": self.alerts.evaluate(calls, stats), "cache": stats})  # fmt: skip

    async def metrics_text(self, request: Request) -> Response:
        self.sync_metrics()
        return Response(self.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    async def calls_list(self, request: Request) -> Response:
        return self.page(request, "calls.html", calls=self.calls.scan()[:200], ms=ms, pct=pct)

    async def call_view(self, request: Request) -> Response:
        d = call_dir(self.calls.dir, request.path_params["call_id"])
        if d is None:
            return Response("call not found", 404)
        c = next((c for c in self.calls.scan() if c.id == d.name), None)
        if c is None:
            return Response("call not found", 404)
        return self.page(request, "call.html", c=c, transcript=self.calls.transcript(d), stages=STAGES,
                         has_audio=(d / "call.wav").is_file(), arm=self.arm(c.id), ms=ms)  # fmt: skip

    async def call_audio(self, request: Request) -> Response:
        d = call_dir(self.calls.dir, request.path_params["call_id"])
        if d is None or not (d / "call.wav").is_file():
            return Response("not found", 404)
        return FileResponse(d / "call.wav", media_type="audio/wav")


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
               cache_namespace: str = "cc") -> Starlette:  # fmt: skip
    dash = Dashboard(
        Path(calls_dir), redis_url, admin_token, open_readonly_on_localhost, experiment, cache_namespace
    )
    g = dash.guard
    routes = [
        Route("/", g(dash.index)),
        Route("/metrics", g(dash.metrics_text)),
        Route("/api/overview", g(dash.api_overview)),
        Route("/calls", g(dash.calls_list)),
        Route("/calls/{call_id}", g(dash.call_view)),
        Route("/calls/{call_id}/audio", g(dash.call_audio)),
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

    from agent.observability import load_experiment
    from core.settings import get_settings

    s = get_settings()
    if host not in ("127.0.0.1", "localhost", "::1") and not s.admin_token:
        log.warning("listening on %s without CALLCENTER_ADMIN_TOKEN: remote clients are refused", host)
    open_local = bool(getattr(s, "dashboard_open_on_localhost", True))
    exp = load_experiment(experiment) if experiment else None
    app = create_app(
        calls_dir, s.redis_url, s.admin_token, open_readonly_on_localhost=open_local, experiment=exp
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
