"""`callcenter bench turns`: every config on the same corpus, one process, calls concurrent."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from statistics import quantiles
from typing import Any

from rich.console import Console
from rich.table import Table

from agent.bench.turns.corpus import CONDITIONS, HARDEST, load_cases
from agent.bench.turns.run import CaseRun, prewarm, run_all
from agent.bench.turns.score import aggregate
from agent.bench.turns.voice import STT_LABELS, BenchSTT
from agent.call.session import BENCH_CONFIGS, TurnTuning

SHIPPED = "shipped"
QUICK_CASES = 3
# Real-time calls mostly wait on the 20 ms clock; more than this many starve 2 shared cores
# and the loop lag would show up as turn-taking delay.
DEFAULT_CONCURRENCY = 6


async def _lag_monitor(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.05)
        samples.append(loop.time() - t - 0.05)


async def bench_turns(
    console: Console,
    *,
    quick: bool = False,
    cases: int | None = None,
    configs: list[str] | None = None,
    conditions: list[str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    keep: Path | None = None,
    tuning: TurnTuning | None = None,
    stt: BenchSTT = "whisper",
    first: int = 0,
) -> dict[str, Any]:
    """Run the turn corpus through simulated calls; `tuning` overrides the shipped values
    (sweeps) for the tuned configs; `stt` picks the recognizer (voice.STT_LABELS); `first`
    skips that many cases of each condition (a held-out stretch, `corpus.load_cases`)."""
    configs = configs or list(BENCH_CONFIGS)
    conditions = conditions or ([HARDEST] if quick else list(CONDITIONS))
    n = cases if cases is not None else (QUICK_CASES if quick else None)
    by_cond = {c: load_cases(c, n, first) for c in conditions}
    reply_s = prewarm([s for v in by_cond.values() for s in v])
    plan = [(cfg, cond, sc) for cond, scs in by_cond.items() for sc in scs for cfg in configs]
    console.print(
        f"[dim]bench turns: {len(plan)} calls ({len(configs)} configs × "
        f"{sum(map(len, by_cond.values()))} cases), {concurrency} at a time; STT: {STT_LABELS[stt]}[/]"
    )
    done = 0

    def progress(r: CaseRun) -> None:
        nonlocal done
        done += 1
        if r.error or done % 10 == 0 or done == len(plan):
            console.print(f"[dim]  {done}/{len(plan)} {r.config} {r.case} {r.error or ''}[/]")

    lags: list[float] = []
    stop = asyncio.Event()
    mon = asyncio.create_task(_lag_monitor(lags, stop))
    t0 = time.monotonic()
    runs = await run_all(
        plan, reply_s, concurrency=concurrency, keep=keep, progress=progress, tuning=tuning, stt=stt
    )
    stop.set()
    await mon
    table: dict[str, dict[str, Any]] = {}
    for cond in conditions:
        table[cond] = {}
        for cfg in configs:
            rs = [r for r in runs if r.condition == cond and r.config == cfg]
            agg = aggregate([r.score for r in rs if r.error is None])
            agg["errors"] = sum(r.error is not None for r in rs)
            table[cond][cfg] = agg
    hardest = HARDEST if HARDEST in table else conditions[0]
    return {
        "shipped": SHIPPED,
        "condition": hardest,
        "configs": table[hardest],
        "conditions": table,
        "meta": {
            "calls": len(plan),
            "wall_s": round(time.monotonic() - t0, 1),
            "concurrency": concurrency,
            "loop_lag_p95_ms": round(quantiles(lags, n=20)[-1] * 1000, 1) if len(lags) > 20 else None,
            "cpus": os.cpu_count(),
            "stt": stt,
            "stt_label": STT_LABELS[stt],
            "reply_voiced_s": reply_s,
            "notes": [f"{r.config}/{r.case}: {x}" for r in runs for x in r.score.notes][:200],
        },
    }


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v * 100:.0f}%" if pct else f"{v * 1000:.0f}"


def print_tables(doc: dict[str, Any], console: Console) -> None:
    for cond, cfgs in doc["conditions"].items():
        t = Table(
            title=f"bench turns — {cond} (G.711, echo){'  ← goals' if cond == doc['condition'] else ''}"
        )
        for col in (
            "config",
            "n",
            "false int",
            "pause",
            "cut-in",
            "cut-in hes",
            "missed BI",
            "react ms",
            "EOU ms",
            "EOU hes ms",
        ):
            t.add_column(col, justify="left" if col == "config" else "right")
        for name, m in cfgs.items():
            t.add_row(
                name + (" *" if name == doc["shipped"] else ""),
                str(m["cases"]),
                _fmt(m["false_interruption_rate"], True),
                _fmt(m["pause_resume_rate"], True),
                _fmt(m["premature_cutin_rate"], True),
                _fmt(m["premature_cutin_rate_hesitation"], True),
                _fmt(m["missed_bargein_rate"], True),
                _fmt(m["bargein_reaction_p50"]),
                _fmt(m["eou_delay_p50"]),
                _fmt(m["eou_delay_p50_hesitation"]),
            )
        console.print(t)
    console.print(f"STT: {doc['meta'].get('stt_label', 'not recorded')}")


def markdown_table(doc: dict[str, Any]) -> str:
    head = (
        "| condition | config | cases | false int. | pause+resume | premature | premature (hesitation) "
        "| missed barge-in | reaction p50 | EOU p50 |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for cond, cfgs in doc["conditions"].items():
        for name, m in cfgs.items():
            rows.append(
                f"| {cond} | {name} | {m['cases']} | {_fmt(m['false_interruption_rate'], True)} | "
                f"{_fmt(m['pause_resume_rate'], True)} | {_fmt(m['premature_cutin_rate'], True)} | "
                f"{_fmt(m['premature_cutin_rate_hesitation'], True)} | {_fmt(m['missed_bargein_rate'], True)} | "
                f"{_fmt(m['bargein_reaction_p50'])} ms | {_fmt(m['eou_delay_p50'])} ms |"
            )
    stt = doc["meta"].get("stt_label", "not recorded")
    return f"STT: {stt}\n\n" + head + "\n".join(rows) + "\n"


def plot(doc: dict[str, Any], path: Path) -> Path | None:
    """Trade-off: barge-in reaction vs false interruptions, EOU delay vs premature cut-ins."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    markers = "osD^v<>"
    for ci, cfgs in enumerate(doc["conditions"].values()):
        for ki, m in enumerate(cfgs.values()):
            color = f"C{ki}"
            kw = {"marker": markers[ci % len(markers)], "color": color, "s": 60}
            if m["bargein_reaction_p50"] is not None and m["false_interruption_rate"] is not None:
                a.scatter(m["bargein_reaction_p50"] * 1000, m["false_interruption_rate"] * 100, **kw)
            if m["eou_delay_p50"] is not None and m["premature_cutin_rate"] is not None:
                b.scatter(m["eou_delay_p50"] * 1000, m["premature_cutin_rate"] * 100, **kw)
    for ki, name in enumerate(next(iter(doc["conditions"].values()))):
        a.scatter([], [], color=f"C{ki}", label=name)
    for ci, cond in enumerate(doc["conditions"]):
        a.scatter([], [], color="gray", marker=markers[ci % len(markers)], label=cond)
    a.axvline(300, ls=":", c="k")
    a.axhline(2, ls=":", c="k")
    b.axvline(400, ls=":", c="k")
    b.axhline(3, ls=":", c="k")
    a.set(xlabel="barge-in reaction p50 (ms)", ylabel="false interruptions (%)", title="interrupting")
    b.set(
        xlabel="EOU delay p50, complete questions (ms)", ylabel="premature cut-ins (%)", title="endpointing"
    )
    a.legend(fontsize=7)
    fig.suptitle(
        f"callcenter bench turns ({doc['meta'].get('stt', '?')} STT) — dotted lines: goals (lower-left is better)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "turns.json", out_dir / "turns.md"]
    paths[0].write_text(json.dumps(doc, indent=2))
    paths[1].write_text(markdown_table(doc))
    png = plot(doc, out_dir / "turns.png")
    return paths + ([png] if png else [])


def run_sync(console: Console, **kw: Any) -> dict[str, Any]:
    return asyncio.run(bench_turns(console, **kw))
