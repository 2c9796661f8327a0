"""Writes of a cache lookup made ahead of its turn (`ResponseCache.lookup_ahead`, issue #23 item 1).

The agent looks an early transcript up during the VAD's end-of-speech wait. If the caller goes
on, that lookup never happened for the admin: its statistics and the entry's hit count are
queued here, and written only when the turn serves the result (`AheadLookup.commit`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aredis

from cache.schema import CacheHit

STATS_TIMEOUT_S = 0.2  # as the cache's own statistics: best effort, never slowing a turn

# The writes of a lookup made ahead of its turn (`ResponseCache.lookup_ahead`): kept until the
# turn uses that lookup, dropped with it when the caller goes on.
DEFERRED: contextvars.ContextVar[list[Callable[[], Awaitable[None]]] | None] = contextvars.ContextVar(
    "cache_deferred_writes", default=None
)


def mark_served(r: aredis.Redis, ekey: str, pipe: Any) -> Callable[[], Awaitable[None]]:
    """Count a hit on entry `ekey`: in `pipe` (executed with the lookup's reads) for a lookup
    of its turn; kept for `AheadLookup.commit` for one made ahead. Returns what the lookup
    awaits once it is a hit (nothing more to do, or queue the deferred write)."""
    deferred = DEFERRED.get()
    if deferred is None:
        pipe.hincrby(ekey, "hits", 1)
        pipe.hset(ekey, "last_hit", time.time())

        async def nothing() -> None:
            return None

        return nothing

    async def write() -> None:
        try:
            wpipe = r.pipeline(transaction=False)
            wpipe.hincrby(ekey, "hits", 1)
            wpipe.hset(ekey, "last_hit", time.time())
            await asyncio.wait_for(wpipe.execute(), timeout=STATS_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - a hit count is best effort
            pass

    async def queue() -> None:
        deferred.append(write)

    return queue


@dataclass
class AheadLookup:
    """A lookup made on an early transcript: its result, and the statistics and entry hit
    counts it would have written, held until `commit`."""

    hit: CacheHit | None
    outcome: str
    writes: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def commit(self) -> None:
        """The turn used this lookup: count it, as `lookup` would have."""
        writes, self.writes = self.writes, []
        for write in writes:
            await write()
