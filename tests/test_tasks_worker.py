"""Summarize on a real Celery worker process, and worker death: the job is reported, then redelivered."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from core.settings import REPO_ROOT
from tests.support.workers import WorkerProcess, client_app, stdio_params


def long_call(turns: int = 40) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": "Hi, my name is Maria Lopez and my order number is A-483920. The sofa arrived damaged.",
        },
        {
            "role": "assistant",
            "content": "I'm sorry, Maria. I'll send you a prepaid return label by email today.",
        },
    ]
    topics = ["delivery window", "warranty", "store hours", "gift cards", "assembly service", "payment plans"]
    for i in range(turns):
        t = topics[i % len(topics)]
        msgs.append({"role": "user", "content": f"Another question: how does the {t} work for item {i}?"})
        msgs.append({"role": "assistant", "content": f"The {t} works as described on our website, item {i}."})
    return msgs


@pytest.fixture(scope="module")
def queue() -> str:
    return f"test-tasks-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def worker(redis_url: str, queue: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    w = WorkerProcess(redis_url, queue, tmp_path_factory.mktemp("logs")).start()
    yield w
    w.stop()


@pytest.mark.slow
def test_summarize_keeps_early_facts_with_the_llm(redis_url: str, queue: str, worker: WorkerProcess) -> None:
    app = client_app(redis_url, queue)
    msgs = long_call(40)
    res = app.send_task("callcenter.summarize", kwargs={"previous_summary": "", "messages": msgs}).get(
        timeout=240
    )
    assert res["llm"] is True and res["messages"] == len(msgs)
    assert "A-483920" in res["summary"] and "Maria Lopez" in res["summary"]
    assert "return label" in res["summary"]  # the promise made
    assert len(res["summary"]) < 1500  # short: it replaces ~80 messages in the context


def test_summarize_folds_into_previous_summary(redis_url: str, queue: str, worker: WorkerProcess) -> None:
    """A second fold (payload form, extractive) keeps the facts of the first one."""
    app = client_app(redis_url, queue)
    first = app.send_task("callcenter.summarize", kwargs={"messages": long_call(3), "use_llm": False}).get(
        timeout=30
    )
    later = [
        {
            "role": "user",
            "content": "Also my account number is 7781-22, and the invoice INV-5521 looks wrong.",
        },
        {"role": "assistant", "content": "I'll escalate the invoice to billing and call you back tomorrow."},
    ]
    payload = {"previous_summary": first["summary"], "messages": later, "use_llm": False}
    res = app.send_task("callcenter.summarize", args=[payload]).get(timeout=120)
    for fact in ("A-483920", "Maria Lopez", "7781-22", "INV-5521", "escalate the invoice"):
        assert fact in res["summary"], (fact, res["summary"])
    assert res["llm"] is False


async def _status(c: Client, job_id: str) -> dict[str, Any]:
    r = await c.call_tool("job_status", {"job_id": job_id})
    assert not r.is_error, r.content
    assert r.structured_content is not None
    return r.structured_content


async def _wait(
    c: Client, job_id: str, pred: Any, timeout: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    trail = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = await _status(c, job_id)
        trail.append(st)
        if pred(st):
            return st, trail
        await asyncio.sleep(0.4)
    raise AssertionError(f"timed out; last states: {[(s['state'], s['progress']) for s in trail[-5:]]}")


@pytest.mark.slow
async def test_worker_death_is_reported_and_the_job_redelivered(
    redis_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Its own queue and short broker timings, so the redelivery happens in seconds (production
    # keeps visibility_timeout above the longest job; see tasks/celery_app.py).
    q = f"test-death-{uuid.uuid4().hex[:6]}"
    fast = {
        "CALLCENTER_CELERY_VISIBILITY_TIMEOUT": "3",
        "CALLCENTER_CELERY_RESTORE_INTERVAL": "1",
        "CALLCENTER_CELERY_RESTORE_THROTTLE": "1",
        "CALLCENTER_TASKS_LLM": "0",
    }
    docs = tmp_path / "docs"
    shutil.copytree(REPO_ROOT / "documents", docs)
    env = {
        "REDIS_URL": redis_url,
        "CALLCENTER_CELERY_QUEUE": q,
        "CALLCENTER_DOCS_JOB_MIN_DURATION_S": "6",
        "CALLCENTER_JOB_STALE_AFTER_S": "3",
        **fast,
    }
    logs = tmp_path_factory.mktemp("logs")
    first = WorkerProcess(redis_url, q, logs, fast).start()
    second: WorkerProcess | None = None
    try:
        async with Client(stdio_params(docs, env)) as c:
            r = await c.call_tool("analyze_document", {"name": "policy.md"})
            assert r.structured_content is not None
            job_id = r.structured_content["job_id"]
            await _wait(c, job_id, lambda s: s["state"] == "running" and s["progress"] > 0, 30)

            first.kill()  # SIGKILL mid-job: no ack, no warm shutdown
            lost, _ = await _wait(c, job_id, lambda s: s["state"] != "running", 15)
            assert lost["state"] == "worker_lost" and "retried" in lost["message"], lost

            second = WorkerProcess(redis_url, q, logs, fast).start()
            done, trail = await _wait(c, job_id, lambda s: s["state"] in ("succeeded", "failed"), 60)
        assert done["state"] == "succeeded", done
        assert done["result"]["attempt"] == 2 and done["attempt"] == 2
        assert any(s["state"] == "running" and s["attempt"] == 2 for s in trail)
        assert "Returns and Refunds Policy" in done["result"]["summary"]
    finally:
        first.stop()
        if second:
            second.stop()


def test_prefork_child_death_requeues_at_once(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The default pool: a crashed child is rejected back to the queue (task_reject_on_worker_lost)."""
    import psutil

    q = f"test-prefork-{uuid.uuid4().hex[:6]}"
    w = WorkerProcess(
        redis_url, q, tmp_path_factory.mktemp("logs"), {"CALLCENTER_TASKS_LLM": "0"}, pool="prefork"
    )
    w.start()
    try:
        app = client_app(redis_url, q)
        kwargs = {"name": "p.md", "text": "# P\n\nPay $5 within 3 days.", "min_duration_s": 4}
        r = app.send_task("callcenter.analyze_document", kwargs=kwargs)
        deadline = time.monotonic() + 30
        while r.state != "PROGRESS" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert w.proc is not None
        children = psutil.Process(w.proc.pid).children()
        assert len(children) == 1
        children[0].kill()
        res = r.get(timeout=60)
        assert res["attempt"] == 2 and res["key_facts"] == ["Pay $5 within 3 days."]
        assert "WorkerLostError" in w.log_text()
    finally:
        w.stop()


def test_worker_runs_below_the_agents_cpu_priority(worker: WorkerProcess) -> None:
    # A summary or document job must not take the CPU from a caller's turn on a shared box.
    import psutil

    from core.settings import get_settings

    assert worker.proc is not None
    assert psutil.Process(worker.proc.pid).nice() == get_settings().worker_nice == 10
