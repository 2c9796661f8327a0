"""A free TCP port on loopback (the embedded Redis, test servers)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; a race with another process is
    possible, so callers that bind it must handle "address in use")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
