"""Prometheus output parsed back after recording a real simulated call; A/B assignment and compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.observability import STAGES, Experiment, Metrics, compare, load_experiment, safe_label
from tests.test_dashboard_support import CALL_ID, simulated_call


def families(m: Metrics) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(m.text().decode())}


def value(fams: dict, family: str, sample: str, **labels: str) -> float:  # type: ignore[type-arg]
    for s in fams[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {sample} {labels}")


@pytest.fixture(scope="module")
def call(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return simulated_call(redis_url, tmp_path_factory.mktemp("obs"))


def test_record_call_from_report_dir(call) -> None:  # type: ignore[no-untyped-def]
    calls_dir, result = call
    m = Metrics()
    m.call_started("acme", "instant", "a")
    m.record_call(calls_dir / CALL_ID, arm="a")
    m.call_ended("acme", "instant", "a")
    fams = families(m)
    lab = {"tenant": "acme", "profile": "instant", "experiment": "a"}
    turns = json.loads((calls_dir / CALL_ID / "metrics.json").read_text())["turns"]
    assert value(fams, "callcenter_calls", "callcenter_calls_total", **lab) == 1
    assert value(fams, "callcenter_turns", "callcenter_turns_total", **lab) == len(turns) == 3
    hits = sum(t["cache_hit"] for t in turns)
    assert hits >= 1  # the FAQ was warmed: the opening-hours question is answered from the cache
    assert value(fams, "callcenter_cache_hits", "callcenter_cache_hits_total", **lab) == hits
    assert value(fams, "callcenter_cache_misses", "callcenter_cache_misses_total", **lab) == 3 - hits
    assert value(fams, "callcenter_active_calls", "callcenter_active_calls", **lab) == 0
    for stage in STAGES:
        vals = [t[stage] for t in turns if t[stage] is not None]
        fam = f"callcenter_{stage}_seconds"
        assert value(fams, fam, f"{fam}_count", **lab) == len(vals)
        assert value(fams, fam, f"{fam}_sum", **lab) == pytest.approx(sum(vals))
    v2v = [t["voice_to_voice"] for t in turns if t["voice_to_voice"] is not None]
    assert v2v  # the agent answered
    assert value(fams, "callcenter_voice_to_voice_seconds", "callcenter_voice_to_voice_seconds_bucket",
                 le="+Inf", **lab) == len(v2v)  # fmt: skip
    below_1s = sum(v <= 1.0 for v in v2v)
    assert value(fams, "callcenter_voice_to_voice_seconds", "callcenter_voice_to_voice_seconds_bucket",
                 le="1.0", **lab) == below_1s  # fmt: skip
    # no caller text, number or scenario text in any label
    texts = [t["user_text"] for t in turns] + ["+1555"]
    for f in fams.values():
        for s in f.samples:  # type: ignore[attr-defined]
            assert set(s.labels) <= {"tenant", "profile", "experiment", "kind", "le"}
            assert not any(x in v for x in texts for v in s.labels.values())


def test_record_call_result_and_errors(call, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, result = call
    m = Metrics()
    rep = m.record_call(result, tenant="acme", profile="instant")
    assert rep.call_id == CALL_ID and len(rep.turns) == 3
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "metrics.json").write_text(json.dumps({
        "turns": [{"index": 0, "user_text": "my number is 555 0100", "interrupted": True, "cache_outcome": "bypass:pii",
                   "context_tokens": 420, "cache_lookup_ms": 12.0}],
        "profile": "local", "error": "TimeoutError: caller said 555 0100",
    }))  # fmt: skip
    (bad / "transcript.json").write_text(json.dumps({"tenant": "Acme Corp <x>", "events": [
        {"type": "transfer", "t": 3.0}, {"type": "false_interruption", "t": 1.0}]}))  # fmt: skip
    m.record_call(bad)
    fams = families(m)
    lab = {
        "tenant": "other",
        "profile": "local",
        "experiment": "none",
    }  # odd tenant text never becomes a label
    assert value(fams, "callcenter_errors", "callcenter_errors_total", kind="TimeoutError", **lab) == 1
    assert value(fams, "callcenter_interruptions", "callcenter_interruptions_total", kind="true", **lab) == 1
    assert value(fams, "callcenter_interruptions", "callcenter_interruptions_total", kind="false", **lab) == 1
    assert value(fams, "callcenter_transfers", "callcenter_transfers_total", **lab) == 1
    assert value(fams, "callcenter_cache_bypasses", "callcenter_cache_bypasses_total", **lab) == 1
    assert value(fams, "callcenter_context_tokens", "callcenter_context_tokens", **lab) == 420
    assert (
        value(fams, "callcenter_cache_lookup_seconds", "callcenter_cache_lookup_seconds_sum", **lab) == 0.012
    )
    # the caller's number never reaches any label (values may contain digits: timestamps)
    assert not any("555" in v for f in fams.values() for smp in f.samples for v in smp.labels.values())


def test_safe_label() -> None:
    assert safe_label("acme") == "acme"
    assert safe_label(None) == "none"
    assert safe_label("+1 555 0100") == "other"
    assert safe_label("x" * 41) == "other"


def test_ab_assignment_is_stable_and_balanced(tmp_path: Path) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: threshold\narms:\n  a: {cache_threshold: 0.15}\n  b: {cache_threshold: 0.25}\n")
    exp = load_experiment(cfg)
    again = Experiment("threshold", {"a": {"cache_threshold": 0.15}, "b": {"cache_threshold": 0.25}})
    ids = [f"call-{i}" for i in range(2000)]
    arms = [exp.assign(i) for i in ids]
    assert arms == [again.assign(i) for i in ids]  # stable across objects (and processes: sha256)
    assert 0.45 < arms.count("a") / len(arms) < 0.55
    assert exp.overrides(exp.assign("call-1")) in ({"cache_threshold": 0.15}, {"cache_threshold": 0.25})
    other = Experiment("endpointing", exp.arms)  # another experiment reshuffles
    assert [other.assign(i) for i in ids] != arms
    skew = Experiment("skew", exp.arms, {"a": 9, "b": 1})
    assert 0.85 < [skew.assign(i) for i in ids].count("a") / len(ids) < 0.95
    with pytest.raises(ValueError):
        Experiment("one", {"a": {}})


def test_compare_flags_real_differences_only() -> None:
    rng = np.random.default_rng(7)
    same = compare({"a": rng.normal(0.8, 0.1, 200), "b": rng.normal(0.8, 0.1, 200)})
    assert same["significant"] is False and same["p_value"] > 0.05
    diff = compare({"a": rng.normal(0.8, 0.1, 200), "b": rng.normal(0.9, 0.1, 200)})
    assert diff["significant"] is True and diff["p_value"] < 0.001
    assert diff["arms"]["a"]["n"] == 200
    assert diff["arms"]["a"]["p50"] < diff["arms"]["b"]["p50"] < diff["arms"]["b"]["p95"]
    few = compare({"a": [0.1, 0.2], "b": [0.9, 1.0]})
    assert few["significant"] is False and few["p_value"] is None  # too few samples to say


def test_a_malformed_or_symlinked_report_is_recorded_without_its_bad_values(tmp_path: Path) -> None:
    """`turns` not a list, NaN latencies, a symlinked report: counted as a call, never a crash."""
    m = Metrics()
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "metrics.json").write_text(
        '{"turns": [{"voice_to_voice": NaN, "eou_delay": 0.3}], "profile": "local"}'
    )
    (odd / "transcript.json").write_text('{"events": 7, "tenant": "acme"}')
    rep = m.record_call(odd)
    assert len(rep.turns) == 1 and rep.events == []
    lab = {"tenant": "acme", "profile": "local", "experiment": "none"}
    fams = families(m)
    assert (
        value(fams, "callcenter_voice_to_voice_seconds", "callcenter_voice_to_voice_seconds_count", **lab)
        == 0
    )
    assert value(fams, "callcenter_eou_delay_seconds", "callcenter_eou_delay_seconds_count", **lab) == 1
    linked = tmp_path / "linked"
    linked.mkdir()
    (tmp_path / "secret.json").write_text('{"turns": [{"user_text": "private"}]}')
    (linked / "metrics.json").symlink_to(tmp_path / "secret.json")
    assert m.record_call(linked).turns == []  # never read through a symlink
    (odd / "metrics.json").write_text('{"turns": 5}')
    assert m.record_call(odd).turns == []
