"""A 40-turn call through `callcenter call`'s path keeps the LLM's context bounded while a real
Celery worker folds the older turns into a summary (scenarios/long-call.yaml).

The instant profile keeps this test at wall-clock speed of the call itself: real session, VAD and
audio path, the instant LLM reporting its prompt size (estimated at 4 characters a token). The
same scenario on the local profile is measured in the README (`callcenter call --scenario
scenarios/long-call.yaml --no-cache`, with `callcenter worker celery` running).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.call.assemble import CallServices
from agent.sim.run import run_call
from core.settings import REPO_ROOT, Settings
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.slow
CONTEXT_GOAL = 900


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> str:
    q = f"test-longcall-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("CALLCENTER_CELERY_QUEUE", q)  # the call's job client sends here
    return q


@pytest.fixture
def worker(redis_url: str, queue: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    # deterministic summaries: the summarizer's LLM is not what this test is about
    w = WorkerProcess(redis_url, queue, tmp_path / "logs", {"CALLCENTER_TASKS_LLM": "0"}).start()
    yield w
    w.stop()


async def test_forty_turns_stay_within_the_context_bound(
    redis_url: str, worker: WorkerProcess, tmp_path: Path
) -> None:
    services = CallServices.open(Settings(redis_url=redis_url), use_cache=False, sandbox_docs=True)
    assert services.jobs is not None
    result = await run_call(
        REPO_ROOT / "scenarios" / "long-call.yaml", tmp_path / "call", profile="instant", services=services
    )
    assert result.error is None
    tokens = [t.context_tokens for t in result.turns if t.context_tokens is not None]
    assert len(result.turns) == 40 and len(tokens) >= 36, [t.user_text for t in result.turns]
    assert max(tokens) <= CONTEXT_GOAL, tokens
    stats = result.transcript["context"]
    assert stats["summaries"] >= 1, (stats, worker.log_text()[-2000:])  # Celery folded turns in
    # each fold swaps a batch of messages for the summary: the prompt shrinks, then grows again
    assert any(b < a for a, b in zip(tokens, tokens[1:], strict=False)), tokens
