"""Run a suite of scenarios as simulated calls and judge each call on its own report.

Every scenario is one real simulated call through the one call assembly (`agent/sim/run.py:
run_call`), at most `concurrency` at a time in this process (they share the process's models
and Redis connections, as the calls of one worker do). Each call gets a private cache namespace
of its own, so a call never sees what another call of the suite (or an earlier run, or a
developer's `callcenter call`) stored: `cache: warm` (the default) stores the tenant's FAQ in it
first (`cache warm --tenant`), `cache: cold` leaves it empty. The namespace is dropped after the
call. A call's report stays under `out_dir/<scenario>/`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.eval.expectations import CallReport, CheckResult, failed_checks, judge
from agent.sim.scenario import Scenario, load_scenario
from core.errors import UserError

if TYPE_CHECKING:
    from agent.call.assemble import CallServices
    from cache.semantic import ResponseCache

log = logging.getLogger("callcenter.eval")
SCENARIO_SUFFIXES = (".yaml", ".yml")


@dataclass
class SuiteItem:
    """One scenario of the suite: its unique name (the report directory), file and content."""

    name: str
    path: Path
    scenario: Scenario


@dataclass
class ScenarioOutcome:
    """One scenario's call and its judged expectations."""

    item: SuiteItem
    out_dir: Path
    results: list[CheckResult]
    error: str | None = None  # the call failed (its checks are all failed)
    seconds: float = 0.0
    cache: str = "warm"  # what the call's private cache held: warm | cold | none (no Redis)


@dataclass
class EvalRun:
    """A whole eval run: what ran, how, and every outcome in suite order."""

    profile: str
    concurrency: int
    out_dir: Path
    outcomes: list[ScenarioOutcome] = field(default_factory=list)
    started_at: float = 0.0
    seconds: float = 0.0


def discover(inputs: list[Path]) -> list[Path]:
    """The scenario files named by `inputs`: files as given, directories' `*.yaml` / `*.yml`
    (not recursive), in name order, each file once.

    Args:
        inputs: scenario files and directories.

    Returns:
        The scenario files.

    Raises:
        UserError: a path that does not exist, or a directory without scenarios.
    """
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in SCENARIO_SUFFIXES)
            if not found:
                raise UserError(f"no scenarios (*.yaml) in {p}")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"scenario not found: {p}")
    seen: set[Path] = set()
    unique = []
    for f in out:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def load_suite(inputs: list[Path], *, quick: bool = False) -> list[SuiteItem]:
    """Load and validate every scenario before any call is placed (bad input fails fast).

    Args:
        inputs: scenario files and directories.
        quick: keep only the scenarios marked `quick: true`.

    Returns:
        The suite, with names unique (a repeated file stem gets `-2`, `-3`...).

    Raises:
        UserError: a missing path, bad YAML, an unknown key or a wrong type, an unknown tenant,
            no scenario left.
    """
    from core.tenants import load_tenant

    items: list[SuiteItem] = []
    names: set[str] = set()
    for path in discover(inputs):
        sc = load_scenario(path)
        try:
            load_tenant(sc.tenant)
        except UserError as e:
            raise UserError(f"{path}: tenant: {e}") from None
        if quick and not sc.quick:
            continue
        name, n = path.stem, 1
        while name in names:
            n += 1
            name = f"{path.stem}-{n}"
        names.add(name)
        items.append(SuiteItem(name, path, sc))
    if not items:
        raise UserError("no scenario marked 'quick: true'" if quick else "no scenarios to run")
    return items


# ---- private cache per call -------------------------------------------------------------------
def _open_private_cache(services: CallServices, ns: str, scenario: Scenario) -> ResponseCache | None:
    """A cache namespace for one call: the tenant's FAQ stored in it (warm) or empty (cold).
    None when the process has no cache (Redis unavailable or the cache disabled)."""
    base = services.cache
    if base is None:
        return None
    from agent.call.assemble import prewarm_cache
    from cache.admin import CacheAdmin
    from cache.semantic import ResponseCache

    admin = CacheAdmin(base.url, namespace=ns)  # creates the namespace's index
    try:
        if scenario.cache == "warm":
            admin.warm(tenant=scenario.tenant)
    finally:
        admin.r.close()
    cache = ResponseCache(base.url, namespace=ns, threshold=base.threshold, embedder=base.embedder)
    prewarm_cache(cache)
    return cache


def _drop_namespace(url: str, ns: str) -> None:
    """Delete a private namespace: its index and every key under it."""
    import redis

    r = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=2)
    try:
        try:
            r.ft(f"{ns}:idx").dropindex(delete_documents=False)
        except redis.ResponseError:
            pass
        batch = list(r.scan_iter(match=f"{ns}:*", count=1000))
        for i in range(0, len(batch), 500):
            r.delete(*batch[i : i + 500])
    except (redis.RedisError, OSError) as e:
        log.warning("eval: could not drop cache namespace %s: %s", ns, e)
    finally:
        r.close()


# ---- running ----------------------------------------------------------------------------------
async def _run_one(
    item: SuiteItem, out_root: Path, profile: str, services: CallServices, run_id: str
) -> ScenarioOutcome:
    from agent.sim.run import run_call

    out_dir = out_root / item.name
    t0 = time.monotonic()
    ns = f"cc-eval-{run_id}-{item.name}"
    cache: ResponseCache | None = None
    error: str | None = None
    try:
        cache = await asyncio.to_thread(_open_private_cache, services, ns, item.scenario)
        result = await run_call(
            item.path, out_dir, profile=profile, services=dataclasses.replace(services, cache=cache)
        )
        error = result.error
    except UserError as e:
        error = str(e)
    except Exception as e:  # noqa: BLE001 - one broken call fails its checks, not the suite
        log.exception("eval: %s failed", item.name)
        error = f"{type(e).__name__}: {e}"
    finally:
        if cache is not None:
            await cache.close()
            await asyncio.to_thread(_drop_namespace, cache.url, ns)
    report = CallReport.read(out_dir)
    if error is not None and report.error is None:  # failed before the report was written
        results = failed_checks(item.scenario, item.name, f"call failed: {error}")
    else:
        results = judge(item.scenario, report, item.name)
    state = "none" if services.cache is None else item.scenario.cache
    return ScenarioOutcome(item, out_dir, results, error or report.error, time.monotonic() - t0, state)


async def run_suite(
    suite: list[SuiteItem],
    out_dir: Path,
    *,
    profile: str | None = None,
    concurrency: int = 2,
    on_done: Callable[[ScenarioOutcome], None] | None = None,
    services: CallServices | None = None,
) -> EvalRun:
    """Place every scenario's call (at most `concurrency` at a time) and judge it.

    Args:
        suite: from `load_suite`.
        out_dir: each call's report goes to `out_dir/<scenario name>/`.
        profile: provider profile (default: the `CALLCENTER_PROFILE` setting).
        concurrency: calls running at the same time.
        on_done: called as each scenario finishes (progress).
        services: the call services (default: the process's shared ones, `shared_services`).

    Returns:
        The run, outcomes in suite order.

    Raises:
        UserError: an unknown profile.
    """
    from agent.providers import build_providers
    from agent.sim.run import shared_services
    from core.settings import get_settings

    s = get_settings()
    profile = profile or s.profile
    # load the models (and check the profile) once, off the event loop, before the clock starts
    await asyncio.to_thread(lambda: build_providers(profile, s).prewarm())
    if services is None:
        services = await asyncio.to_thread(shared_services, True)
    run = EvalRun(profile, concurrency, out_dir, started_at=time.time())
    run_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    sem = asyncio.Semaphore(concurrency)
    t0 = time.monotonic()

    async def one(item: SuiteItem) -> ScenarioOutcome:
        async with sem:
            outcome = await _run_one(item, out_dir, profile, services, run_id)
        if on_done is not None:
            on_done(outcome)
        return outcome

    run.outcomes = list(await asyncio.gather(*(one(i) for i in suite)))
    run.seconds = time.monotonic() - t0
    return run


def run_suite_sync(suite: list[SuiteItem], out_dir: Path, **kw: Any) -> EvalRun:
    """`run_suite` in a fresh event loop (the CLI)."""
    return asyncio.run(run_suite(suite, out_dir, **kw))
