"""Bearer-token checks: admin mutations always need the token; read-only views may be open to
loopback clients (with a loopback Host header, against DNS rebinding) when the setting allows."""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def bearer(request: Request) -> str | None:
    h = request.headers.get("authorization", "")
    scheme, _, value = h.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        ip_ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ip_ok = False
    hdr = request.headers.get("host", "")
    name = hdr.rsplit(":", 1)[0] if not hdr.endswith("]") else hdr
    return ip_ok and name.lower() in LOCAL_HOSTS


def require_admin(request: Request, token: str | None) -> Response | None:
    """None when the request carries the admin token; else 401 (missing) or 403 (wrong)."""
    got = bearer(request)
    if got is None:
        return JSONResponse(
            {"error": "admin token required (Authorization: Bearer …)"}, 401,
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    if not token or not hmac.compare_digest(got.encode(), token.encode()):
        return JSONResponse({"error": "invalid admin token"}, 403)
    return None


def require_read(request: Request, token: str | None, open_on_localhost: bool) -> Response | None:
    if open_on_localhost and _is_loopback(request):
        return None
    return require_admin(request, token)
