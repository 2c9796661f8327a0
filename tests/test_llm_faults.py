"""LLM endpoint faults mid-call (issue 10): simulated calls on the `cloud` profile whose real
OpenAI plugin talks to `tests.support.fake_openai` in a fault mode on the first caller turn.

Budget under test is livekit-agents' own: `APIConnectOptions()` = 3 retries (0.1 s, then 2 s
apart), 10 s per request. After the last attempt `agent.call.recovery` says a short apology.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.call.assemble import Call
from agent.call.recovery import APOLOGY, LLMRecovery
from agent.sim.call import CallResult
from agent.sim.run import run_call
from core.settings import get_settings
from tests.support.fake_openai import FakeOpenAI, answer_for, running_fake_openai, use_fake_for_cloud

pytestmark = pytest.mark.slow
SCENARIO = Path(__file__).resolve().parent / "data" / "cloud-faults.yaml"
MAX_ATTEMPTS = 4  # livekit-agents default: 1 + max_retry (3)


class RecordingCache:
    """The `ResponseCache` interface `CallAgent` uses, in memory: always a miss, records stores."""

    def __init__(self) -> None:
        self.stored: list[dict[str, Any]] = []

    async def lookup(self, question: str, **kw: Any) -> None:
        return None

    async def store(self, question: str, answer: str, **kw: Any) -> None:
        self.stored.append({"question": question, "answer": answer, **kw})

    async def attach_audio(self, *a: Any, **kw: Any) -> None:
        return None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with running_fake_openai(api_key="dummy") as server:
        use_fake_for_cloud(monkeypatch, server)
        try:
            yield server
        finally:
            get_settings.cache_clear()


@pytest.fixture
def recoveries(monkeypatch: pytest.MonkeyPatch) -> list[LLMRecovery]:
    """The recovery each call's assembly attached (`agent/call/assemble.py`), in call order."""
    made: list[LLMRecovery] = []
    start = Call.start

    async def start_and_keep(self: Call, *a: Any, **kw: Any) -> None:
        await start(self, *a, **kw)
        assert self.recovery is not None  # attached by the assembly, not by this test
        made.append(self.recovery)

    monkeypatch.setattr(Call, "start", start_and_keep)
    return made


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


async def _call(tmp_path: Path, cache: Any = None) -> CallResult:
    result = await run_call(SCENARIO, tmp_path, profile="cloud", use_cache=False, cache=cache)
    assert result.error is None, result.error
    assert any(e["type"] == "hangup" for e in result.events)  # the caller finished the script
    assert len(result.turns) == 3
    return result


def _assert_answered(result: CallResult, index: int) -> None:
    t = result.turns[index]
    assert t.user_text, t
    assert _norm(answer_for(t.user_text)) in _norm(t.agent_text), t
    assert t.voice_to_voice is not None and 0.05 < t.voice_to_voice < 30, t  # hang guard only


def _said(result: CallResult, text: str) -> bool:
    """The agent said `text` (transcript items; robust to the per-turn attribution on a busy box)."""
    items = result.transcript["items"]
    return any(i["role"] == "assistant" and _norm(text) in _norm(i["text"] or "") for i in items)


def _next_turn_works(result: CallResult) -> None:
    assert _said(result, answer_for("Do you deliver?")), result.transcript["items"]
    assert result.turns[1].voice_to_voice is not None, result.turns[1]


def _outcomes(fake: FakeOpenAI) -> list[str]:
    return [r.outcome for r in fake.chat_requests()]


async def test_500_then_success_is_retried(
    fake: FakeOpenAI, recoveries: list[LLMRecovery], tmp_path: Path
) -> None:
    fake.configure(mode="error", status=500, fail_times=1)
    result = await _call(tmp_path)
    outcomes = _outcomes(fake)
    assert outcomes[0] == "error 500" and "ok" in outcomes, outcomes
    _assert_answered(result, 0)
    _assert_answered(result, 1)
    assert recoveries[0].apologies == 0 and APOLOGY not in result.turns[0].agent_text


async def test_429_with_retry_after_is_retried(
    fake: FakeOpenAI, recoveries: list[LLMRecovery], tmp_path: Path
) -> None:
    fake.configure(mode="rate_limit", retry_after=1, fail_times=1)
    result = await _call(tmp_path)
    reqs = fake.chat_requests()
    assert reqs[0].outcome == "rate_limit" and reqs[1].outcome == "ok", _outcomes(fake)
    assert reqs[1].messages == reqs[0].messages  # the same request, retried
    _assert_answered(result, 0)
    _assert_answered(result, 1)
    assert recoveries[0].apologies == 0


async def test_hang_past_timeout_then_next_attempt_answers(
    fake: FakeOpenAI, recoveries: list[LLMRecovery], tmp_path: Path
) -> None:
    fake.configure(mode="hang", hang_s=60, fail_times=1)
    result = await _call(tmp_path)
    reqs = fake.chat_requests()
    assert reqs[0].outcome == "hang" and reqs[1].outcome == "ok", _outcomes(fake)
    # the client gave up on the hung request at its timeout (10 s), not at the server's 60 s
    assert 8 < reqs[1].at - reqs[0].at < 20, reqs[1].at - reqs[0].at
    _assert_answered(result, 0)
    assert result.turns[0].voice_to_voice is not None and result.turns[0].voice_to_voice > 8
    _assert_answered(result, 1)


async def test_final_failure_apologises_and_keeps_the_call(
    fake: FakeOpenAI, recoveries: list[LLMRecovery], tmp_path: Path
) -> None:
    # every attempt at the first question fails (however many streams the session starts)
    fake.configure(mode="error", status=500, only_if=r"close")
    cache = RecordingCache()
    result = await _call(tmp_path, cache=cache)
    outcomes = _outcomes(fake)
    assert outcomes.count("error 500") >= MAX_ATTEMPTS, outcomes
    asked = [r for r in fake.chat_requests() if "close" in r.messages[-1]["content"].lower()]
    assert len(asked) % MAX_ATTEMPTS == 0 or len(asked) > MAX_ATTEMPTS  # retried to the budget
    [rec] = recoveries
    assert rec.failures >= 1 and rec.apologies == 1
    assert _said(result, APOLOGY), result.transcript["items"]  # the caller heard the apology
    _next_turn_works(result)  # and the next question was answered normally
    assert all(_norm(APOLOGY) not in _norm(s["answer"]) for s in cache.stored)
    assert [s["question"] for s in cache.stored if "close" in s["question"].lower()] == []


async def test_broken_stream_is_not_cached(
    fake: FakeOpenAI, recoveries: list[LLMRecovery], tmp_path: Path
) -> None:
    fake.configure(mode="break", break_after=3, fail_times=1)
    cache = RecordingCache()
    result = await _call(tmp_path, cache=cache)
    outcomes = _outcomes(fake)
    assert outcomes[0] == "break", outcomes
    broken_answer = fake.chat_requests()[0].answer
    partial = " ".join(broken_answer.split()[:3])
    # text already streamed cannot be retried (it may be spoken): the framework gives up at once
    assert recoveries[0].apologies == 1
    assert _said(result, APOLOGY), result.transcript["items"]
    assert not _said(result, broken_answer)  # the rest never arrived
    _next_turn_works(result)
    # nothing of the failed answer reached the cache; the good one did (the cache path is live)
    assert all(_norm(partial) not in _norm(s["answer"]) for s in cache.stored), cache.stored
    assert any(_norm(s["answer"]) == _norm(answer_for("Do you deliver?")) for s in cache.stored)
