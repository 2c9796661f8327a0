"""Who may see what on the dashboard.

Three levels:
- **overview** (`/`, `/api/overview`, `/metrics`, `/api/cache/stats`: aggregates, no caller text or
  call ids): open to loopback clients with a loopback Host header (against DNS rebinding) when
  `CALLCENTER_DASHBOARD_OPEN_ON_LOCALHOST` is true (the default); otherwise like caller data.
- **caller data** (calls, transcripts, recordings, cached questions and answers): the read token
  (`CALLCENTER_READ_TOKEN`) or the admin token, from every client, loopback included. Presented as
  `Authorization: Bearer …`, or by a browser through the login form, which sets an HttpOnly,
  SameSite=Strict cookie holding an HMAC of the token (not the token itself).
- **admin** (invalidate, warm): the admin token as a Bearer header only. The cookie never opens
  these: a cross-site page can make a browser send cookies, never an Authorization header.

Tokens are compared with `hmac.compare_digest`. An unset, empty or blank token is "not
configured" and opens nothing; a placeholder (`change-me`) or a token shorter than 16 characters
is refused when the app is built.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from core.errors import UserError

LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
COOKIE = "cc_dashboard"
COOKIE_MAX_AGE_S = 12 * 3600
MIN_TOKEN_CHARS = 16
# Values shipped in examples or typed in a hurry: refused whatever their length.
PLACEHOLDERS = {"change-me", "changeme", "change_me", "change-this", "replace-me", "secret", "password",
                "admin", "token", "test", "example", "xxx", "your-token-here", "please-change-me"}  # fmt: skip
NOT_CONFIGURED = "admin token not configured on the server (set CALLCENTER_ADMIN_TOKEN)"
NO_READ_TOKEN = (
    "read token not configured on the server (set CALLCENTER_READ_TOKEN, or CALLCENTER_ADMIN_TOKEN)"
)
_SAFE_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9/._~%?=&+-]*$")
Role = Literal["admin", "read"]


class DashboardTokens(BaseSettings):
    """The dashboard's read token (`CALLCENTER_READ_TOKEN`, env or .env), read here so the
    dashboard needs nothing more from the shared settings than the admin token."""

    model_config = SettingsConfigDict(env_prefix="CALLCENTER_", env_file=".env", extra="ignore")
    read_token: str | None = None


def configured(value: str | None, name: str) -> str | None:
    """The token to enforce: None when unset, empty or blank (nothing is opened by it); a
    placeholder or a short token is a `UserError` (the value itself is never echoed)."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    squashed = re.sub(r"[^a-z0-9]", "", v.lower())
    if v.lower() in PLACEHOLDERS or any(p in squashed for p in ("changeme", "replaceme", "changethis")):
        raise UserError(f"{name} is a placeholder value: set it to a random secret (openssl rand -hex 24)")
    if any(c.isspace() for c in v):
        raise UserError(
            f"{name} contains whitespace (an inline comment in an env file?): use a random secret"
        )
    if len(v) < MIN_TOKEN_CHARS:
        raise UserError(
            f"{name} is too short: use at least {MIN_TOKEN_CHARS} random characters (openssl rand -hex 24)"
        )
    return v


def bearer(request: Request) -> str | None:
    h = request.headers.get("authorization", "")
    scheme, _, value = h.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        ip_ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ip_ok = False
    hdr = request.headers.get("host", "")
    name = hdr.rsplit(":", 1)[0] if not hdr.endswith("]") else hdr
    return ip_ok and name.lower() in LOCAL_HOSTS


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def safe_next(value: str | None) -> str:
    """A local path to return to after logging in; anything else (another site, a scheme) is `/`."""
    v = (value or "").strip()
    return v if len(v) <= 2000 and _SAFE_NEXT.fullmatch(v) else "/"


@dataclass(frozen=True)
class Access:
    admin: str | None
    read: str | None
    open_local: bool

    @classmethod
    def build(cls, admin: str | None, read: str | None, open_local: bool) -> Access:
        return cls(configured(admin, "CALLCENTER_ADMIN_TOKEN"), configured(read, "CALLCENTER_READ_TOKEN"),
                   open_local)  # fmt: skip

    # -- tokens --
    def role_of(self, token: str) -> Role | None:
        if self.admin is not None and _same(token, self.admin):
            return "admin"
        if self.read is not None and _same(token, self.read):
            return "read"
        return None

    @staticmethod
    def cookie_value(token: str) -> str:
        """What the browser keeps: an HMAC keyed by the token (rotating the token voids it)."""
        return hmac.new(token.encode(), b"callcenter-dashboard-session-v1", hashlib.sha256).hexdigest()

    def cookie_ok(self, request: Request) -> bool:
        got = request.cookies.get(COOKIE)
        if not got:
            return False
        return any(t is not None and _same(got, self.cookie_value(t)) for t in (self.admin, self.read))

    # -- checks: None lets the request through, else the refusal to send --
    def check_overview(self, request: Request) -> Response | None:
        if self.open_local and is_loopback(request):
            return None
        return self.check_read(request)

    def check_read(self, request: Request) -> Response | None:
        got = bearer(request)
        if got is not None:
            return None if self.role_of(got) else _refuse(request, 403, "invalid token")
        if self.cookie_ok(request):
            return None
        if self.admin is None and self.read is None:
            return _refuse(request, 403, NO_READ_TOKEN)
        return _refuse(request, 401, "token required (Authorization: Bearer …, or log in at /login)")

    def check_admin(self, request: Request) -> Response | None:
        if self.admin is None:
            return JSONResponse({"error": NOT_CONFIGURED}, 403)
        got = bearer(request)
        if got is None:
            return JSONResponse({"error": "admin token required (Authorization: Bearer …)"}, 401,
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        if self.role_of(got) != "admin":
            return JSONResponse({"error": "invalid admin token"}, 403)
        return None

    def same_origin(self, request: Request) -> bool:
        """A form post from this dashboard.

        `Sec-Fetch-Site` is set by the browser itself (no page script can forge it), so when it is
        present it decides; `Origin` alone can be `null` on a same-origin post (Chromium does so
        under a strict referrer policy). Without it (an older browser, or not a browser) a
        foreign `Origin` is refused; the token is required either way.
        """
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return site in ("same-origin", "none")
        origin = request.headers.get("origin")
        if origin is None:
            return True
        try:
            return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
        except ValueError:
            return False


def login_form(next_path: str = "/", error: str | None = None, status: int = 200) -> HTMLResponse:
    """A minimal page of its own (no template context needed); the CSP allows it as is."""
    from html import escape

    msg = f'<p class="state firing" id="login-error">{escape(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>callcenter — log in</title>
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body><main><h2>Log in</h2>{msg}
<p>Calls, transcripts, recordings and the cache need the dashboard's read or admin token.</p>
<form method="post" action="/login" id="login-form">
<input type="hidden" name="next" value="{escape(safe_next(next_path))}">
<label>token <input type="password" name="token" id="login-token" autocomplete="current-password"
 required></label> <button type="submit">Log in</button></form></main></body></html>"""
    return HTMLResponse(body, status)


def _refuse(request: Request, status: int, message: str) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if _wants_html(request):
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        page = login_form(nxt, None if status == 401 else message, status)
        page.headers.update(headers)
        return page
    return JSONResponse({"error": message}, status, headers=headers)
