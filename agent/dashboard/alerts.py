"""Alert rules with Prometheus-like state: ok -> pending (condition true) -> firing (true for `for_s`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.dashboard.calls import CallSummary, pct


@dataclass
class Rule:
    name: str
    description: str
    threshold: float
    for_s: float
    measure: Callable[[list[CallSummary], dict[str, Any], float], float | None]
    since: float | None = None  # when the condition became true
    value: float | None = None

    def evaluate(self, calls: list[CallSummary], cache_stats: dict[str, Any], now: float) -> str:
        self.value = self.measure(calls, cache_stats, now)
        if self.value is None or self.value <= self.threshold:
            self.since = None
            return "ok"
        if self.since is None:
            self.since = now
        return "firing" if now - self.since >= self.for_s else "pending"


def _recent(calls: list[CallSummary], now: float, window: float) -> list[CallSummary]:
    return [c for c in calls if c.finished and now - c.ts <= window]


def v2v_p95(calls: list[CallSummary], _stats: dict[str, Any], now: float) -> float | None:
    return pct([v for c in _recent(calls, now, 300) for v in c.values("voice_to_voice")], 95)


def bypass_rate(_calls: list[CallSummary], stats: dict[str, Any], _now: float) -> float | None:
    n = stats.get("lookups", 0) + stats.get("bypasses", 0)
    return stats.get("bypasses", 0) / n if n else None


def error_rate(calls: list[CallSummary], _stats: dict[str, Any], now: float) -> float | None:
    recent = _recent(calls, now, 3600)
    return sum(bool(c.report.error) for c in recent) / len(recent) if recent else None


class Alerts:
    def __init__(self, v2v_p95_s: float = 1.5, bypass: float = 0.5, errors: float = 0.05) -> None:
        self.rules = [
            Rule("voice_to_voice_p95", f"p95 voice-to-voice > {v2v_p95_s * 1000:.0f} ms for 5 min",
                 v2v_p95_s, 300, v2v_p95),
            Rule("cache_bypass_rate", f"cache bypass rate > {bypass:.0%}", bypass, 0, bypass_rate),
            Rule("error_rate", f"calls with errors > {errors:.0%} (last hour)", errors, 0, error_rate),
        ]  # fmt: skip

    def evaluate(self, calls: list[CallSummary], cache_stats: dict[str, Any],
                 now: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
        now = time.time() if now is None else now
        out = []
        for r in self.rules:
            state = r.evaluate(calls, cache_stats, now)
            out.append({"name": r.name, "description": r.description, "state": state, "value": r.value})
        return out
