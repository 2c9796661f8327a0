"""`callcenter bench load --quick` in small: concurrent simulated calls in one process."""

from __future__ import annotations

import pytest

from agent.bench.load import run_load
from core.memory import release_free_memory

pytestmark = pytest.mark.slow


def test_concurrent_calls_complete_and_report() -> None:
    doc = run_load(calls=3, duration=12, processes=1, profile="local-fastllm", use_cache=False, ramp=2)
    assert doc["errors"] == 0, doc["error_samples"]
    assert doc["ramp_s"] == 2
    assert doc["calls_completed"] >= 3
    assert doc["turns_answered"] >= 3 and doc["unanswered_turns"] == 0
    assert 0 < doc["voice_to_voice_p50"] <= doc["voice_to_voice_p95"] < 10  # generous: hangs only
    slow = doc["slowest_turns"]
    assert slow and slow == sorted(slow, key=lambda t: -t["v2v"])
    assert slow[0]["v2v"] == pytest.approx(max(t["v2v"] for t in slow))
    assert {"scenario", "turn", "eou", "stt", "heard", "cache"} <= set(slow[0])


def test_freed_memory_goes_back_to_the_os() -> None:
    # glibc on Debian: calls run side by side in one process trim the heap when they end
    assert release_free_memory() is True
