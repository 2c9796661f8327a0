"""Benchmarks that run simulated calls: each prints a table and writes JSON."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agent.call.report import STAGES, percentile, summarize
from agent.sim.run import run_call


async def bench_pipeline(
    scenario: Path, profiles: list[str], runs: int, console: Console, cache: bool = False
) -> dict[str, Any]:
    """The same call with instant providers (framework overhead only) and the real local ones."""
    out: dict[str, Any] = {"scenario": scenario.name, "runs": runs, "profiles": {}}
    for profile in profiles:
        turns = []
        for r in range(runs):
            with tempfile.TemporaryDirectory() as d:
                res = await run_call(scenario, Path(d), profile=profile, use_cache=cache)
            if res.error:
                raise RuntimeError(f"{profile} run {r} failed: {res.error}")
            turns += res.turns
        s = summarize(turns)
        s["answered_turns"] = sum(t.voice_to_voice is not None for t in turns)
        out["profiles"][profile] = s
        console.print(f"[dim]{profile}: {len(turns)} turns measured[/]")
    table = Table(title=f"bench pipeline — {scenario.name}, p50 / p95 in ms")
    table.add_column("profile")
    for st in STAGES:
        table.add_column(st, justify="right")
    for profile, s in out["profiles"].items():
        cells = []
        for st in STAGES:
            p50, p95 = s[f"{st}_p50"], s[f"{st}_p95"]
            cells.append("—" if p50 is None else f"{p50 * 1000:.0f} / {p95 * 1000:.0f}")
        table.add_row(profile, *cells)
    console.print(table)
    return out


def write_json(doc: dict[str, Any], path: Path | None, console: Console) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    console.print(f"[dim]wrote {path}[/]")


async def bench_cache_calls(scenario: Path, profile: str, console: Console) -> dict[str, Any]:
    """Voice-to-voice of one scenario cold (empty cache) vs warm (its questions cached with audio).

    Both runs use a fresh, private namespace, so live entries are never touched or used.
    """
    import uuid

    from agent.call.assemble import prewarm_cache
    from agent.providers import build_providers
    from agent.sim.scenario import load_scenario
    from cache.admin import CacheAdmin
    from cache.redis_server import ensure_redis
    from cache.semantic import ResponseCache
    from core.local_tts import SAMPLE_RATE, synthesize_pcm16
    from core.settings import get_settings

    sc = load_scenario(scenario)
    ns = f"bench-calls-{uuid.uuid4().hex[:8]}"
    url = ensure_redis()
    admin = CacheAdmin(url, namespace=ns)
    voice = build_providers(profile, get_settings()).voice
    out: dict[str, Any] = {"scenario": scenario.name, "profile": profile}
    try:
        for phase in ("cold", "warm"):
            if phase == "warm":
                # CacheAdmin is the sync admin service (it runs its own loop): keep it off ours
                await asyncio.to_thread(
                    admin.warm,
                    tenant=sc.tenant,
                    audio=True,
                    synthesize=lambda t: (synthesize_pcm16(t), SAMPLE_RATE),
                    voice=voice,
                )
            cache = ResponseCache(url, namespace=ns)
            prewarm_cache(cache)
            with tempfile.TemporaryDirectory() as d:
                res = await run_call(scenario, Path(d), profile=profile, cache=cache)
            await cache.close()
            v2v = [t.voice_to_voice for t in res.turns if t.voice_to_voice is not None]
            hits = [t.voice_to_voice for t in res.turns if t.cache_hit and t.voice_to_voice is not None]
            out[phase] = {
                "voice_to_voice_p50": percentile(v2v, 50),
                "hits": sum(t.cache_hit for t in res.turns),
                "turns": len(res.turns),
                "hit_voice_to_voice_p50": percentile(hits, 50),
                "eou_delay_p50": percentile([t.eou_delay for t in res.turns if t.eou_delay is not None], 50),
            }
            console.print(f"[dim]{phase}: {out[phase]}[/]")
    finally:
        await asyncio.to_thread(admin.invalidate, everything=True)  # the private namespace only
    return out
