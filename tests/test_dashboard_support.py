"""Shared data for the observability and dashboard tests: one real simulated call (instant profile)
answered through a real semantic cache (embedded Redis, own namespace) warmed with a tenant's FAQ."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NS = f"dash-{uuid.uuid4().hex[:8]}"
CALL_ID = "20261126-sim-opening-hours"
_done: dict[str, Any] = {}


def simulated_call(redis_url: str, root: Path) -> tuple[Path, Any]:
    """(calls_dir, CallResult), run once per test session."""
    if "calls_dir" not in _done:
        from agent.sim.run import run_call
        from cache.admin import CacheAdmin
        from cache.semantic import ResponseCache

        CacheAdmin(redis_url, namespace=NS).warm(tenant="acme")
        calls_dir = root / "calls"

        async def go() -> Any:
            cache = ResponseCache(redis_url, namespace=NS, budget_ms=5000)
            try:
                return await run_call(
                    ROOT / "scenarios" / "opening-hours.yaml",
                    calls_dir / CALL_ID,
                    profile="instant",
                    cache=cache,
                )
            finally:
                await cache.close()

        _done["result"] = asyncio.run(go())
        _done["calls_dir"] = calls_dir
    return _done["calls_dir"], _done["result"]
