"""`callcenter call`: one simulated call through the assembled product (`agent/call/assemble.py`).

Loads the scenario and tenant, builds the providers and the process's call services once
(cache, Celery job client, documents), runs the call on the simulated line and prints the
per-turn table.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from livekit.agents.utils import http_context
from rich.console import Console

from agent.call.assemble import CallOptions, CallServices
from agent.providers import build_providers
from agent.sim.call import CallResult, SimulatedCall, print_result
from agent.sim.scenario import load_scenario
from core.errors import UserError
from core.memory import release_free_memory
from core.settings import get_settings
from core.tenants import load_tenant

_SERVICES: dict[bool, CallServices] = {}


def shared_services(use_cache: bool = True) -> CallServices:
    """The call services of this process, opened on first use (the calls of one process share
    them, as the calls of one worker process do)."""
    if use_cache not in _SERVICES:
        _SERVICES[use_cache] = CallServices.open(use_cache=use_cache, sandbox_docs=True)
    return _SERVICES[use_cache]


async def run_call(
    scenario_path: Path,
    out_dir: Path,
    *,
    profile: str | None = None,
    turn_mode: str = "vad",
    use_cache: bool = True,
    console: Console | None = None,
    cache: Any = None,
    services: CallServices | None = None,
    options: CallOptions | None = None,
) -> CallResult:
    """Run one scenario as a simulated phone call and write its report to `out_dir`.

    Args:
        scenario_path: the scenario YAML.
        out_dir: where call.wav, transcript.json and metrics.json go.
        profile: provider profile (default: the `CALLCENTER_PROFILE` setting).
        turn_mode: "vad" (shipped) or "eot".
        use_cache: False runs without the semantic cache.
        console: where the live transcript and the table are printed (None: silent).
        cache: a specific cache (tests, benchmarks with a private namespace).
        services: the call services to use instead of the process's shared ones.
        options: turn handling and limits (default: shipped values with `turn_mode`).

    Raises:
        UserError: a bad scenario, tenant, profile or turn mode.
    """
    if turn_mode not in ("vad", "eot"):
        raise UserError(f"unknown --turn '{turn_mode}' (choose vad, eot)")
    s = get_settings()
    scenario = load_scenario(scenario_path)
    tenant = load_tenant(scenario.tenant)
    providers = build_providers(profile or s.profile, s)
    providers.prewarm()
    if services is None:
        services = await asyncio.to_thread(shared_services, use_cache or cache is not None)
    if cache is not None:
        services = dataclasses.replace(services, cache=cache)
    call = SimulatedCall(
        scenario,
        tenant,
        providers,
        out_dir,
        services=services,
        options=options or CallOptions(turn_mode=turn_mode),  # type: ignore[arg-type]
        console=console,
    )
    try:
        # plugins that use livekit's shared HTTP session (ElevenLabs) need one outside a worker job
        async with http_context.open():
            result = await call.run()
    finally:
        # many calls share this process (core/memory.py); trimming a large heap takes a while,
        # so not on the event loop the other calls run on
        await asyncio.to_thread(release_free_memory)
    if console is not None:
        print_result(result, console)
    return result


def run_call_sync(scenario_path: Path, out_dir: Path, **kw: Any) -> CallResult:
    return asyncio.run(run_call(scenario_path, out_dir, **kw))
