"""Benchmarks that run simulated calls: each prints a table and writes JSON."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agent.report import STAGES, summarize
from agent.runner import run_call


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
