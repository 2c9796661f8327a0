"""`callcenter bench load`: many concurrent simulated calls in one or more worker processes.

Each call slot places calls back to back (a mix of scenarios) until the duration is over; the
slots start spread over `ramp` seconds, as calls arrive on a real line (0: a synchronized burst).
Measured per process: voice-to-voice of every answered turn, event-loop lag (a 50 ms ticker's
overshoot), CPU and RSS, call errors. Processes are independent, like agent workers behind the
LiveKit server's load-based dispatch; their numbers are merged at the end.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from agent.call.report import percentile
from core.settings import REPO_ROOT as ROOT

MIX = ["opening-hours.yaml", "noisy-babble.yaml", "insurance-claim.yaml"]


async def _loop_lag(stop: asyncio.Event, out: list[float], period: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(period)
        out.append(max(0.0, loop.time() - t0 - period))


def _prewarm(profile: str, use_cache: bool) -> Any:
    """What an agent worker does before it accepts calls (its prewarm): import the call code,
    load the models, warm the cache's embedder. Done inside the measured window, it ran on the
    event loop: the import (~4 s) was counted as loop lag, and the first call's model loading
    (~0.9 s) held up the calls starting next to it. Returns the process's cache (or None): the
    calls share it and its Redis connections, as the calls of one worker process would."""
    from agent.providers import build_providers
    from agent.sim.run import shared_services
    from core.settings import get_settings

    build_providers(profile, get_settings()).prewarm()
    return shared_services(use_cache)


async def _slot(
    i: int, start_after: float, deadline: float, profile: str, services: Any, res: dict[str, list[Any]]
) -> None:
    from agent.sim.run import run_call

    await asyncio.sleep(start_after)
    n = 0
    while time.monotonic() < deadline:
        scenario = ROOT / "scenarios" / MIX[(i + n) % len(MIX)]
        with tempfile.TemporaryDirectory() as d:
            try:
                r = await run_call(scenario, Path(d), profile=profile, services=services)
                if r.error:
                    res["errors"].append(r.error)
                res["turns"] += [
                    {"scenario": scenario.stem, "turn": t.index, "v2v": t.voice_to_voice, "eou": t.eou_delay,
                     "stt": t.stt_delay, "llm": t.llm_ttft, "tts": t.tts_ttfb, "heard": t.user_text,
                     "cache": t.cache_outcome}
                    for t in r.turns if t.voice_to_voice is not None
                ]  # fmt: skip
                res["unanswered"].append(sum(t.voice_to_voice is None for t in r.turns))
            except Exception as e:  # noqa: BLE001 - a load test counts errors, it does not stop
                res["errors"].append(f"{type(e).__name__}: {e}")
        n += 1
        res["calls"].append(1)


async def _run_process(
    calls: int, duration: float, profile: str, use_cache: bool, ramp: float = 0.0
) -> dict[str, Any]:
    services = _prewarm(profile, use_cache)
    proc = psutil.Process()
    proc.cpu_percent()
    rss0 = proc.memory_info().rss
    res: dict[str, list[Any]] = {"errors": [], "calls": [], "unanswered": [], "turns": []}
    lag: list[float] = []
    rss: list[tuple[float, int]] = []
    stop = asyncio.Event()
    lag_task = asyncio.create_task(_loop_lag(stop, lag))
    start = time.monotonic()

    async def sample_rss() -> None:
        while not stop.is_set():
            rss.append((time.monotonic() - start, proc.memory_info().rss))
            await asyncio.sleep(1.0)

    rss_task = asyncio.create_task(sample_rss())
    deadline = start + duration
    # Calls arrive spread over `ramp` seconds (0: all at the same instant, a synchronized burst:
    # the same scenarios then end their questions at the same moment, call after call).
    await asyncio.gather(
        *(_slot(i, i * ramp / calls, deadline, profile, services, res) for i in range(calls))
    )
    stop.set()
    await asyncio.gather(lag_task, rss_task)
    elapsed = time.monotonic() - start
    cpu = proc.cpu_percent() / 100.0
    peak = max(r for _, r in rss) if rss else proc.memory_info().rss
    early = [r for t, r in rss if t >= 0.1 * elapsed][:5]
    late = [r for t, r in rss][-5:]
    return {
        "turns": res["turns"],
        "lag": lag,
        "errors": res["errors"],
        "calls_completed": len(res["calls"]),
        "unanswered_turns": int(sum(res["unanswered"])),
        "cpu_cores": cpu,
        "rss_start_mb": rss0 / 2**20,
        "rss_peak_mb": peak / 2**20,
        "rss_growth_pct": (100.0 * (np.mean(late) - np.mean(early)) / np.mean(early))
        if early and late
        else None,
        "elapsed_s": elapsed,
        "concurrent_calls": calls,
    }


def _process_entry(args: tuple[int, float, str, bool, float]) -> dict[str, Any]:
    return asyncio.run(_run_process(*args))


def run_load(
    calls: int, duration: float, processes: int, profile: str, use_cache: bool, ramp: float = 0.0
) -> dict[str, Any]:
    per = [calls // processes + (1 if i < calls % processes else 0) for i in range(processes)]
    if processes == 1:
        parts = [_process_entry((calls, duration, profile, use_cache, ramp))]
    else:
        # Not `with Pool()`: its exit kills the workers, whose semaphores were then reported
        # leaked at shutdown. Closing lets them exit on their own; kill only on an error.
        pool = mp.get_context("spawn").Pool(processes)
        try:
            parts = pool.map(_process_entry, [(n, duration, profile, use_cache, ramp) for n in per])
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    turns = [t for p in parts for t in p["turns"]]
    v2v = [t["v2v"] for t in turns]
    lag = [v for p in parts for v in p["lag"]]
    growth = [p["rss_growth_pct"] for p in parts if p["rss_growth_pct"] is not None]
    return {
        "concurrent_calls": calls,
        "processes": processes,
        "profile": profile,
        "duration_s": duration,
        "ramp_s": ramp,
        "calls_completed": sum(p["calls_completed"] for p in parts),
        "turns_answered": len(v2v),
        "unanswered_turns": sum(p["unanswered_turns"] for p in parts),
        "voice_to_voice_p50": percentile(v2v, 50),
        "voice_to_voice_p95": percentile(v2v, 95),
        "loop_lag_p50_ms": (percentile(lag, 50) or 0) * 1000,
        "loop_lag_p95_ms": (percentile(lag, 95) or 0) * 1000,
        "loop_lag_max_ms": (max(lag) if lag else 0) * 1000,
        "cpu_cores_used": sum(p["cpu_cores"] for p in parts),
        "memory_per_call_mb": sum(p["rss_peak_mb"] - p["rss_start_mb"] for p in parts) / max(calls, 1),
        "rss_growth_pct_max": max(growth) if growth else None,
        "errors": sum(len(p["errors"]) for p in parts),
        "error_samples": [e for p in parts for e in p["errors"]][:5],
        # where the tail comes from: the slowest answered turns with their end-of-turn and STT times
        "slowest_turns": sorted(turns, key=lambda t: -t["v2v"])[:8],
    }
