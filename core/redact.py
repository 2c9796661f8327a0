"""Make URLs and secrets safe to print: `redact_url("redis://:pw@h:6379/0")` -> `redis://***@h:6379/0`.

Use it for every URL that goes into an error message or a log line (REDIS_URL, LIVEKIT_URL, an
OpenAI base URL): any of them may carry `user:password@` or a `?password=` / `?token=` query.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_QUERY = re.compile(r"pass|secret|token|key|auth|sig|credential", re.IGNORECASE)
# Anything that looks like `scheme://user:pass@` inside free text (e.g. an exception message).
_USERINFO_IN_TEXT = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def redact_url(url: str) -> str:
    """`url` with any user-info and secret-looking query values replaced by ***; never raises."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Free text (e.g. `str(exc)`) with `scheme://user:pass@` user-info masked."""
    return _USERINFO_IN_TEXT.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def has_credentials(url: str) -> bool:
    """True when `url` carries user-info (`user@` or `user:password@`) in its authority."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return "@" in url
