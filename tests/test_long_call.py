"""A long call through `callcenter call`'s path keeps the LLM's context bounded while a real
Celery worker folds the older turns into a summary.

The shipped scenarios/long-call.yaml has 40 turns against the shipped window (10 recent messages
kept, a fold past 30); the test plays its first 20 turns against a window about half that size,
so the same fold-and-shrink cycle happens in half the wall time.

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
import yaml

from agent.call.assemble import CallServices
from agent.sim.run import run_call
from core.settings import REPO_ROOT, Settings
from tests.support.workers import WorkerProcess

# acme's facts list none of the products this call asks about: every question reaches the LLM
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_scope_step")]
TURNS = 20
KEEP_RECENT, MAX_MESSAGES = 4, 16  # the call folds in batches of 8 (ContextManager.batch)


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


async def test_a_long_call_stays_within_the_context_bound(
    redis_url: str, worker: WorkerProcess, tmp_path: Path
) -> None:
    shipped = yaml.safe_load((REPO_ROOT / "scenarios" / "long-call.yaml").read_text())
    scenario = tmp_path / "long-call.yaml"
    scenario.write_text(yaml.safe_dump({**shipped, "turns": shipped["turns"][:TURNS]}))
    settings = Settings(
        redis_url=redis_url, context_keep_recent=KEEP_RECENT, context_max_messages=MAX_MESSAGES
    )
    services = CallServices.open(settings, use_cache=False, sandbox_docs=True)
    assert services.jobs is not None
    result = await run_call(scenario, tmp_path / "call", profile="instant", services=services)
    assert result.error is None
    tokens = [t.context_tokens for t in result.turns if t.context_tokens is not None]
    assert len(result.turns) == TURNS and len(tokens) >= TURNS - 2, [t.user_text for t in result.turns]
    stats = result.transcript["context"]
    assert stats["summaries"] >= 1, (stats, worker.log_text()[-2000:])  # Celery folded turns in
    # bounded: once the window is full (MAX_MESSAGES / 2 turns) the prompt stops growing with the
    # call; unbounded, turn 20 would carry 2.5 times the messages of turn 8
    full = MAX_MESSAGES // 2
    assert max(tokens[full:]) <= 1.3 * max(tokens[:full]) + 40, tokens  # + the summary's few lines
    # each fold swaps a batch of messages for the summary: the prompt shrinks, then grows again
    assert any(b < a for a, b in zip(tokens, tokens[1:], strict=False)), tokens
