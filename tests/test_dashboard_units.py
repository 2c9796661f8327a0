"""Dashboard pieces without a browser: alert states over time, call-id path safety, series buckets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent.dashboard.alerts import Alerts
from agent.dashboard.calls import CallStore, CallSummary, call_dir, overview, series
from agent.observability import CallReport


def summary(cid: str, ts: float, v2v: list[float], error: str | None = None) -> CallSummary:
    turns = [{"index": i, "voice_to_voice": v, "cache_hit": i == 0} for i, v in enumerate(v2v)]
    return CallSummary(cid, ts, CallReport(cid, turns, error=error), True)


def test_v2v_alert_pending_then_firing_then_ok() -> None:
    alerts = Alerts(v2v_p95_s=1.0)
    t0 = 1_000_000.0

    def state(calls: list[CallSummary], now: float) -> str:
        return next(a["state"] for a in alerts.evaluate(calls, {}, now) if a["name"] == "voice_to_voice_p95")

    assert state([summary("a", t0, [0.5, 0.6])], t0) == "ok"
    slow = [summary("b", t0 + 10, [2.0, 2.5])]
    assert state(slow, t0 + 10) == "pending"
    slow.append(summary("c", t0 + 200, [2.2]))
    assert state(slow, t0 + 200) == "pending"  # 190 s above the threshold: not yet 5 min
    slow.append(summary("d", t0 + 310, [2.1]))
    assert state(slow, t0 + 310) == "firing"
    assert state([summary("e", t0 + 400, [0.4])], t0 + 400) == "ok"  # the old slow calls left the window


def test_bypass_and_error_rate_alerts() -> None:
    alerts = Alerts(bypass=0.5, errors=0.05)
    now = 2_000_000.0
    calls = [summary("a", now - 10, [0.5]), summary("b", now - 20, [0.5], error="RuntimeError: x")]
    got = {a["name"]: a for a in alerts.evaluate(calls, {"lookups": 2, "bypasses": 8}, now)}
    assert got["cache_bypass_rate"]["state"] == "firing" and got["cache_bypass_rate"]["value"] == 0.8
    assert got["error_rate"]["state"] == "firing" and got["error_rate"]["value"] == 0.5
    got = {a["name"]: a for a in alerts.evaluate([], {}, now)}
    assert got["cache_bypass_rate"]["state"] == got["error_rate"]["state"] == "ok"


def test_call_dir_rejects_traversal(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    (calls / "c1").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", calls / "link")
    assert call_dir(calls, "c1") == (calls / "c1").resolve()
    for bad in ("..", "../secret", "c1/..", ".hidden", "a" * 200, "link", "", "c1\x00", "c1\n", "nope"):
        assert call_dir(calls, bad) is None, bad


def test_store_overview_and_series(tmp_path: Path) -> None:
    d = tmp_path / "c1"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"turns": [{"voice_to_voice": 0.4, "cache_hit": True},
                                                          {"voice_to_voice": 0.6}], "profile": "instant"}))  # fmt: skip
    (tmp_path / "live").mkdir()  # no metrics.json yet: a call in progress
    calls = CallStore(tmp_path).scan()
    o = overview(calls)
    assert o["active_calls"] == 1 and o["calls_total"] == 1 and o["turns"] == 2
    assert o["v2v_p50_ms"] == "500" and o["cache_hit_rate"] == "50%"
    s = series(calls)
    assert len(s["x"]) == 1 and s["voice_to_voice_p50"] == [500.0] and s["cache_hit_rate"] == [0.5]
