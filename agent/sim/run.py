"""Glue for one simulated call: load inputs, build providers and cache, run, print."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from livekit.agents.utils import http_context
from rich.console import Console

from agent import observability
from agent.providers import build_providers
from agent.sim.call import CallResult, SimulatedCall, print_result
from agent.sim.scenario import load_scenario
from core.errors import UserError
from core.memory import release_free_memory
from core.settings import get_settings
from core.tenants import load_tenant


def open_cache() -> Any:
    """The shared semantic cache, or None when it is disabled or cannot start."""
    s = get_settings()
    if not s.cache_enabled:
        return None
    try:
        from cache.redis_server import ensure_redis
        from cache.semantic import ResponseCache
    except ImportError:
        return None
    cache = ResponseCache(ensure_redis(s), threshold=s.cache_threshold)
    prewarm_cache(cache)
    return cache


def prewarm_cache(cache: Any) -> None:
    """Load the embedding model and create the index before the call, not on the first turn."""
    try:
        cache.embedder.embed("warm up")
        cache._ensure_index_sync()
    except Exception as e:  # noqa: BLE001 - a cache that cannot warm up is bypassed per lookup
        import logging

        logging.getLogger("callcenter.cache").warning("cache prewarm failed: %s", e)


def open_context(redis_url: str | None = None) -> Any:
    """The bounded-context manager; without Redis it still bounds the window (no summaries)."""
    from agent.call.context import ContextManager
    from agent.call.jobs import JobClient

    s = get_settings()
    jobs = None
    try:
        from cache.redis_server import ensure_redis

        jobs = JobClient(redis_url or ensure_redis(s))
    except UserError:
        pass
    return ContextManager(jobs, keep_recent=s.context_keep_recent, max_messages=s.context_max_messages)


async def run_call(
    scenario_path: Path,
    out_dir: Path,
    *,
    profile: str | None = None,
    turn_mode: str = "vad",
    use_cache: bool = True,
    console: Console | None = None,
    cache: Any = None,
    documents: bool = False,
) -> CallResult:
    if turn_mode not in ("vad", "eot"):
        raise UserError(f"unknown --turn '{turn_mode}' (choose vad, eot)")
    s = get_settings()
    scenario = load_scenario(scenario_path)
    tenant = load_tenant(scenario.tenant)
    providers = build_providers(profile or s.profile, s)
    providers.prewarm()
    if cache is None and use_cache:
        cache = open_cache()
    desk = None
    if documents or scenario_path.stem.startswith("documents"):
        from agent.call.documents import DeskConfig, sandbox_docs

        # a per-call copy of the documents: a simulated call's edits never touch the repo's
        desk = DeskConfig(docs_dir=sandbox_docs(out_dir)).build()
        await desk.start()  # unreachable: the call still runs, document turns say so
    observability.call_started(tenant.name, providers.name)
    call = SimulatedCall(
        scenario, tenant, providers, out_dir, cache=cache, turn_mode=turn_mode, console=console
    )  # type: ignore[arg-type]
    try:
        # plugins that use livekit's shared HTTP session (ElevenLabs) need one outside a worker job
        async with http_context.open():
            result = await call.run()
    finally:
        observability.call_ended(tenant.name, providers.name)
        # many calls share this process (core/memory.py); trimming a large heap takes a while,
        # so not on the event loop the other calls run on
        await asyncio.to_thread(release_free_memory)
    observability.record_call(result, tenant.name, providers.name)
    if console is not None:
        print_result(result, console)
    return result


def run_call_sync(scenario_path: Path, out_dir: Path, **kw: Any) -> CallResult:
    return asyncio.run(run_call(scenario_path, out_dir, **kw))
