"""Reading call reports from the calls directory: safe ids, summaries, time series."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.observability import STAGES, CallReport, load_report

CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ACTIVE_WINDOW_S = 15 * 60  # a call directory without metrics.json, touched this recently, is live


def call_dir(calls_dir: Path, call_id: str) -> Path | None:
    """The directory of a call, or None for an unsafe or unknown id (no traversal, no symlinks out)."""
    if not CALL_ID.fullmatch(call_id) or ".." in call_id:
        return None
    root = calls_dir.resolve()
    d = (root / call_id).resolve()
    if d.parent != root or not d.is_dir():
        return None
    return d


@dataclass
class CallSummary:
    id: str
    ts: float
    report: CallReport
    finished: bool

    def values(self, stage: str) -> list[float]:
        return [float(v) for t in self.report.turns if isinstance(v := t.get(stage), int | float)]

    @property
    def cache_hits(self) -> int:
        return sum(bool(t.get("cache_hit")) for t in self.report.turns)


class CallStore:
    """Scans `calls_dir`; parsed reports are kept until their metrics.json changes."""

    def __init__(self, calls_dir: Path) -> None:
        self.dir = Path(calls_dir)
        self._cache: dict[str, tuple[float, CallSummary]] = {}

    def scan(self) -> list[CallSummary]:
        out: list[CallSummary] = []
        if not self.dir.is_dir():
            return out
        for d in self.dir.iterdir():
            if d.is_symlink() or not d.is_dir() or not CALL_ID.fullmatch(d.name):
                continue
            m = d / "metrics.json"
            if m.exists():
                mt = m.stat().st_mtime
                hit = self._cache.get(d.name)
                if hit is None or hit[0] != mt:
                    hit = (mt, CallSummary(d.name, mt, load_report(d), True))
                    self._cache[d.name] = hit
                out.append(hit[1])
            else:
                mt = d.stat().st_mtime
                if time.time() - mt < ACTIVE_WINDOW_S:
                    out.append(CallSummary(d.name, mt, CallReport(d.name, []), False))
        out.sort(key=lambda c: c.ts, reverse=True)
        return out

    def transcript(self, d: Path) -> dict[str, Any]:
        try:
            data = json.loads((d / "transcript.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:.0f}"


def overview(calls: list[CallSummary], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    done = [c for c in calls if c.finished]
    hour = [c for c in done if now - c.ts <= 3600]
    v2v = [v for c in done for v in c.values("voice_to_voice")]
    turns = sum(len(c.report.turns) for c in done)
    hits = sum(c.cache_hits for c in done)
    return {
        "active_calls": sum(not c.finished for c in calls),
        "calls_total": len(done),
        "calls_last_hour": len(hour),
        "turns": turns,
        "v2v_p50_ms": ms(pct(v2v, 50)),
        "v2v_p95_ms": ms(pct(v2v, 95)),
        "cache_hit_rate": f"{hits / turns:.0%}" if turns else "—",
        "errors": sum(bool(c.report.error) for c in done),
    }


def series(calls: list[CallSummary], bucket_s: int = 300, now: float | None = None,
           span_s: int = 24 * 3600) -> dict[str, Any]:  # fmt: skip
    """Per time bucket: p50/p95 of every stage, cache hit rate, calls/hour (uPlot column arrays)."""
    now = time.time() if now is None else now
    done = [c for c in calls if c.finished and now - c.ts <= span_s]
    buckets: dict[int, list[CallSummary]] = {}
    for c in done:
        buckets.setdefault(int(c.ts // bucket_s) * bucket_s, []).append(c)
    xs = sorted(buckets)
    out: dict[str, Any] = {
        "x": xs,
        "now": now,
        "bucket_s": bucket_s,
        "calls_per_hour": [],
        "cache_hit_rate": [],
    }
    for s in STAGES:
        out[f"{s}_p50"], out[f"{s}_p95"] = [], []
    for x in xs:
        group = buckets[x]
        for s in STAGES:
            vals = [v for c in group for v in c.values(s)]
            out[f"{s}_p50"].append(_r(pct(vals, 50)))
            out[f"{s}_p95"].append(_r(pct(vals, 95)))
        n_turns = sum(len(c.report.turns) for c in group)
        out["cache_hit_rate"].append(
            round(sum(c.cache_hits for c in group) / n_turns, 3) if n_turns else None
        )
        out["calls_per_hour"].append(round(len(group) * 3600 / bucket_s, 1))
    return out


def _r(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)
