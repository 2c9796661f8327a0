"""DocumentDesk in a real AgentSession, against the real MCP document server (streamable-http and
stdio) and a real Celery worker on the embedded Redis. The LLM is the instant one, so timings
measure only our own overhead."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.call.assemble import CallServices, build_call
from agent.call.documents import UNREACHABLE, DocumentDesk
from agent.providers import build_providers
from core.settings import REPO_ROOT, get_settings
from core.tenants import load_tenant
from sip.behaviours import SimCallControl
from tests.support.workers import McpHttpServer, WorkerProcess, stdio_params

PLAIN = "What are your opening hours?"


@pytest.fixture(scope="module")
def queue() -> str:
    return f"test-docagent-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = tmp_path_factory.mktemp("docs") / "docs"
    shutil.copytree(REPO_ROOT / "documents", docs)
    return docs


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def worker(redis_url: str, queue: str, logs: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(redis_url, queue, logs).start()
    yield w
    w.stop()


def env(redis_url: str, queue: str, job_s: float) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "CALLCENTER_CELERY_QUEUE": queue,
        "CALLCENTER_TASKS_LLM": "0",  # deterministic analysis: the worker's LLM is not under test
        "CALLCENTER_DOCS_JOB_MIN_DURATION_S": str(job_s),
        "CALLCENTER_JOB_STALE_AFTER_S": "2",  # a killed worker is noticed within seconds
    }


@pytest.fixture(scope="module")
def server(
    redis_url: str, queue: str, docs_dir: Path, worker: WorkerProcess, logs: Path
) -> Iterator[McpHttpServer]:
    s = McpHttpServer(docs_dir, logs, env(redis_url, queue, 3)).start()
    yield s
    s.stop()


class Call:
    """A text-level call through the one assembly (`build_call`) with the given document desk;
    instant providers, so timings measure only our own overhead."""

    def __init__(self, desk: DocumentDesk, cache: Any = None) -> None:
        self.desk = desk
        self.call = build_call(
            load_tenant("acme"),
            build_providers("instant", get_settings()),
            SimCallControl(),
            CallServices(cache=cache),
            out_dir=Path(tempfile.mkdtemp(prefix="doccall-")),
            desk=desk,
        )
        self.turn_log, self.agent, self.session = self.call.turn_log, self.call.agent, self.call.session
        self.said: list[str] = []
        self.session.on("conversation_item_added", self._item)

    def _item(self, ev: Any) -> None:
        if getattr(ev.item, "role", "") == "assistant":
            self.said.append(ev.item.text_content or "")

    async def ask(self, text: str) -> str:
        result = await self.session.run(user_input=text)
        return " ".join(
            ev.item.text_content or ""
            for ev in result.events
            if hasattr(ev, "item") and getattr(ev.item, "role", "") == "assistant"
        )

    async def wait_said(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.said:
                if needle in s:
                    return s
            await asyncio.sleep(0.1)
        raise AssertionError(f"agent never said {needle!r}: {self.said}")


@pytest.fixture
async def call(server: McpHttpServer) -> AsyncIterator[Call]:
    desk = DocumentDesk.http(server.url, poll_s=0.3, quiet_s=0.3)
    c = Call(desk)
    assert await desk.start()
    await c.call.start()  # the agent attaches the desk to its session on entering
    yield c
    await c.call.aclose()


async def job_state(server_url: str, job_id: str, owner: str) -> str:
    """A job's state as its owner (the call that started it) sees it, from another connection."""
    probe = DocumentDesk.http(server_url, owner=owner)
    try:
        return (await probe._call("job_status", job_id=job_id, owner=owner))["state"]
    finally:
        await probe.aclose()


# ---- happy paths ---------------------------------------------------------------------------------
async def test_read_only_intents(call: Call) -> None:
    t0 = time.monotonic()
    a = await call.ask("Can you search the documents for mattress removal?")
    assert "Old mattress removal" in a and "section Services" in a, a
    a = await call.ask("What does the policy say about refunds?")
    assert "5 business days" in a, a
    assert time.monotonic() - t0 < 5  # fast path: no Celery
    assert "open" in await call.ask(PLAIN)  # not a document request: the LLM answers
    gens = call.turn_log.generations
    assert [g.used_tool for g in gens[:2]] == [True, True] and not gens[2].used_tool


async def test_edit_intent(call: Call, docs_dir: Path) -> None:
    a = await call.ask("In the contract, change $14.50 to $15.25")
    assert a.startswith("Done") and "$15.25" in a, a
    assert "$15.25 per pallet" in (docs_dir / "contract.md").read_text()
    a = await call.ask("In the contract, change $99.99 to $1.00")
    assert "couldn't find $99.99" in a, a


async def test_analysis_answers_meanwhile_and_speaks_result(call: Call) -> None:
    a = await call.ask("Please analyze the returns policy.")
    assert "started the analysis of the Returns and Refunds Policy" in a and "It takes" in a, a
    job_id = next(iter(call.desk.jobs))
    other = await call.ask(PLAIN)  # the conversation goes on while the job runs
    assert "open" in other, other
    await asyncio.sleep(1.0)
    status = await call.ask("How is it going?")
    assert "percent done" in status or "just finished" in status, status
    result = await call.wait_said("is ready", timeout=30)
    assert (
        result.startswith("The analysis of the Returns and Refunds Policy is ready.")
        and "Key facts" in result
    )
    assert call.desk.jobs[job_id].state == "succeeded"


async def test_compare_and_cancel_intents(call: Call, server: McpHttpServer) -> None:
    a = await call.ask("Compare the two price lists")
    assert "started the comparison of the Price List" in a, a
    b = await call.ask("Cancel the comparison")
    assert b.startswith("OK, I stopped the comparison"), b
    job_id = next(iter(call.desk.jobs))
    deadline = time.monotonic() + 10  # a running task notices the request within a second
    while (state := await job_state(server.url, job_id, call.desk.owner)) not in ("cancelled", "succeeded"):
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.3)


async def test_compare_result_over_stdio(
    redis_url: str, queue: str, docs_dir: Path, worker: WorkerProcess
) -> None:
    params = stdio_params(docs_dir, env(redis_url, queue, 1))
    desk = DocumentDesk.stdio(docs_dir, params.env, poll_s=0.3, quiet_s=0.3)
    c = Call(desk)
    assert await desk.start()
    await c.call.start()
    try:
        a = await c.ask("What changed between price list version 1 and version 2?")
        assert "comparison" in a, a
        said = await c.wait_said("is ready", timeout=30)
        assert "Price List" in said
    finally:
        await desk.aclose()
        await c.call.aclose()


# ---- hang-up, worker death, server crash ---------------------------------------------------------
async def test_hangup_revokes_running_job(
    redis_url: str, queue: str, docs_dir: Path, worker: WorkerProcess, logs: Path
) -> None:
    s = McpHttpServer(docs_dir, logs, env(redis_url, queue, 30)).start()
    try:
        desk = DocumentDesk.http(s.url, poll_s=0.3)
        c = Call(desk)
        await desk.start()
        await c.call.start()
        await c.ask("Please analyze the contract")
        job_id = next(iter(desk.jobs))
        deadline = time.monotonic() + 20
        while await job_state(s.url, job_id, desk.owner) != "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.3)
        await desk.aclose()  # the caller hangs up
        await c.call.aclose()
        deadline = time.monotonic() + 10
        while (state := await job_state(s.url, job_id, desk.owner)) != "cancelled":
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.3)
    finally:
        s.stop()


async def test_worker_death_is_told_and_call_continues(redis_url: str, docs_dir: Path, logs: Path) -> None:
    q = f"test-docdeath-{uuid.uuid4().hex[:6]}"
    w = WorkerProcess(redis_url, q, logs).start()
    s = McpHttpServer(docs_dir, logs, env(redis_url, q, 30)).start()
    desk = DocumentDesk.http(s.url, poll_s=0.3, quiet_s=0.3)
    c = Call(desk)
    try:
        await desk.start()
        await c.call.start()
        await c.ask("Please analyze the returns policy")
        job = next(iter(desk.jobs.values()))
        deadline = time.monotonic() + 20
        while job.state != "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        w.kill()
        told = await c.wait_said("document service stopped", timeout=20)
        assert "the analysis of the Returns and Refunds Policy" in told
        assert "open" in await c.ask(PLAIN)  # the call goes on
        assert "interrupted" in await c.ask("How is it going?")
    finally:
        await desk.aclose()
        await c.call.aclose()
        s.stop()
        w.stop()


async def test_mcp_server_crash_during_a_call(redis_url: str, queue: str, docs_dir: Path, logs: Path) -> None:
    s = McpHttpServer(docs_dir, logs, env(redis_url, queue, 3)).start()
    desk = DocumentDesk.http(s.url, call_timeout_s=3)
    c = Call(desk)
    try:
        await desk.start()
        await c.call.start()
        assert "Old mattress removal" in await c.ask("Search the documents for mattress removal")
        assert s.proc is not None
        s.proc.send_signal(19)  # SIGSTOP: the next request hangs inside the server...
        pending = asyncio.create_task(c.ask("Which document mentions pallets?"))
        await asyncio.sleep(0.5)
        s.kill()  # ...which then dies with the request in flight
        t0 = time.monotonic()
        assert await pending == UNREACHABLE
        assert time.monotonic() - t0 < 5
        assert "open" in await c.ask(PLAIN)  # the call continues
        assert await c.ask("Search the documents for pallets") == UNREACHABLE  # still down: told again
    finally:
        await desk.aclose()
        await c.call.aclose()
        s.stop()


# ---- cache and latency ---------------------------------------------------------------------------
async def test_document_turns_are_never_cached(redis_url: str, server: McpHttpServer) -> None:
    from cache.semantic import ResponseCache

    cache = ResponseCache(redis_url, namespace=f"docagent{uuid.uuid4().hex[:6]}")
    desk = DocumentDesk.http(server.url)
    tenant = load_tenant("acme")
    c = Call(desk, cache=cache)
    agent, session = c.agent, c.session
    await desk.start()
    await c.call.start()
    q_doc = "Search the documents for mattress removal"
    try:
        await session.run(user_input=q_doc)
        await session.run(user_input=PLAIN)
        await agent.drain()
        keys = dict(tenant=tenant.name, language=tenant.language, knowledge_version=tenant.knowledge_version)
        # call answers wait for review (issue 20 item 4): the document turn left not even a
        # candidate; the plain one did, and once approved it serves
        from cache.admin import CacheAdmin

        admin = CacheAdmin(redis_url, namespace=cache.namespace)
        pending = admin.pending()
        assert [r["question"] for r in pending] == [PLAIN], pending
        admin.approve(pending[0]["id"])
        assert await cache.lookup(PLAIN, **keys, context=[], voice="none") is not None  # the cache works
        assert await cache.lookup(q_doc, **keys, context=[], voice="none") is None
        assert agent.turn_log.generations[0].used_tool
    finally:
        await desk.aclose()
        await session.aclose()


async def test_turn_latency_with_a_running_job(
    redis_url: str, queue: str, docs_dir: Path, worker: WorkerProcess, logs: Path
) -> None:
    s = McpHttpServer(docs_dir, logs, env(redis_url, queue, 40)).start()
    desk = DocumentDesk.http(s.url)  # the shipped poll interval (1 s)
    c = Call(desk)
    try:
        await desk.start()
        await c.call.start()

        async def sample(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await c.ask(PLAIN)
                out.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.1)
            return out

        async def loop_lag(seconds: float) -> float:
            """Worst lateness of a 10 ms timer: anything blocking the event loop shows up here."""
            worst, end = 0.0, time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                await asyncio.sleep(0.01)
                worst = max(worst, time.perf_counter() - t0 - 0.01)
            return worst * 1000

        await sample(2)  # warm-up
        idle = await sample(20)
        lag_idle = await loop_lag(3)
        await c.ask("Please analyze the returns policy")
        job = next(iter(desk.jobs.values()))
        while job.state != "running":
            await asyncio.sleep(0.2)
        busy = await sample(20)
        lag_busy = await loop_lag(3)  # three job_status polls fall inside
        assert job.state == "running"  # the job really ran the whole time
        print(f"\nevent-loop max lag idle {lag_idle:.1f} ms, with running job {lag_busy:.1f} ms")
        assert lag_busy < 100
        mi, mb = statistics.median(idle), statistics.median(busy)
        print(
            f"\nturn latency median idle {mi:.1f} ms, with running job {mb:.1f} ms ({(mb / mi - 1) * 100:+.1f} %)"
        )
        print(f"idle {[round(x, 1) for x in idle]}\nbusy {[round(x, 1) for x in busy]}")
        assert mb <= mi * 1.10 + 50
    finally:
        await desk.aclose()
        await c.call.aclose()
        s.stop()


# ---- the scenario through the simulated phone call -----------------------------------------------
async def test_documents_scenario_simulated_call(
    redis_url: str, queue: str, worker: WorkerProcess, tmp_path: Path
) -> None:
    """scenarios/documents.yaml as `callcenter call` runs it (instant profile: real VAD and audio
    path): the assembled call reads and searches the documents through the MCP server (a stdio
    child on a per-call copy) and closes it at hang-up."""
    from agent.call.documents import DeskConfig
    from agent.sim.run import run_call

    services = CallServices(
        desk=DeskConfig(docs_dir=REPO_ROOT / "documents", env=env(redis_url, queue, 10)), sandbox_docs=True
    )
    result = await run_call(
        REPO_ROOT / "scenarios" / "documents.yaml", tmp_path / "call", profile="instant", services=services
    )
    assert result.error is None and result.call is not None
    desk = result.call.desk
    assert desk is not None and desk._closed  # closed at hang-up with the call
    assert not desk.server.initialized or desk._tools == {}  # the MCP session is gone
    assert (tmp_path / "call" / "documents" / "contract.md").exists()  # the call's own copy
    said = [f"{g.user_text!r} -> {g.answer}" for g in result.call.turn_log.generations]
    print("\n" + "\n".join(said + desk.spoken))
    # The simulated line is real time: on a loaded machine the endpointing can cut a sentence in
    # two turns (seen here on the shared 2 cores), which changes what the caller asked. The exact
    # flow is checked by test_documents_scenario_text; here: the call completes, the desk acts,
    # the plain question is answered by the LLM and a job result is spoken while the call is on.
    tool_answers = [g.answer for g in result.call.turn_log.generations if g.used_tool]
    assert tool_answers, said
    assert not any(UNREACHABLE in a for a in tool_answers), said  # really reached the MCP server
    assert any("mattress" in a.lower() for a in tool_answers), said  # searched
    assert any("business days" in a for a in tool_answers), said  # a section read from the file
    assert any("open" in g.answer and not g.used_tool for g in result.call.turn_log.generations)
    assert any(" is ready" in s for s in desk.spoken), (said, desk.spoken)


async def test_documents_scenario_text(call: Call, docs_dir: Path) -> None:
    """scenarios/documents.yaml turn by turn at text level (deterministic): each line does its job."""
    from agent.sim.scenario import load_scenario

    shutil.copy(REPO_ROOT / "documents" / "contract.md", docs_dir / "contract.md")  # undo other edits
    answers = []
    for turn in load_scenario(REPO_ROOT / "scenarios" / "documents.yaml").turns:
        if turn.pause:
            await asyncio.sleep(min(turn.pause, 8))
        elif turn.say:
            answers.append(await call.ask(turn.say))
    search, read, edit, analyze, plain, progress, bye = answers
    assert "Old mattress removal" in search and edit.startswith("Done: I changed $14.50 to $15.25")
    assert "refund" in read.lower() and "days" in read.lower(), read  # the section, read aloud
    assert "started the analysis of the Returns and Refunds Policy" in analyze
    assert "open" in plain and "Returns and Refunds Policy" in progress
    assert "goodbye" in bye.lower(), bye  # "Thanks, that's all." is a closing: the intent step ends the call
    assert "$15.25 per pallet" in (docs_dir / "contract.md").read_text()
    await call.wait_said("The analysis of the Returns and Refunds Policy is ready")
    # the closing is answered by the intent step, which is never cached either
    assert [g.used_tool for g in call.turn_log.generations] == [True, True, True, True, False, True, True]


async def test_cloud_profile_gets_the_tools(server: McpHttpServer) -> None:
    """With documents as tools (cloud profile) the LLM sees livekit's MCP function tools plus the desk's job tools."""
    from livekit.agents import llm

    desk = DocumentDesk.http(server.url, poll_s=0.3, quiet_s=0.3)
    c = Call(desk)
    c.agent.documents_as_tools = True  # what the assembly sets on the cloud profile
    try:
        assert await desk.start()
        await c.call.start()
        ctx = llm.ToolContext(c.agent.tools)  # what the LLM is offered (valid, no duplicates)
        names = set(ctx.function_tools)
        assert {"search_documents", "read_document", "edit_document", "analyze_document"} <= names
        assert {"compare_documents", "document_job_progress"} <= names and "cancel_job" not in names
        hits = await ctx.function_tools["search_documents"]({"query": "mattress removal", "limit": 1})
        assert hits["hits"][0]["section"] == "Services"
        started = await ctx.function_tools["analyze_document"]("policy.md")
        assert "started the analysis" in started
        progress = await ctx.function_tools["document_job_progress"]()
        assert progress.startswith("The analysis of the Returns and Refunds Policy"), progress
        await c.wait_said(
            "is ready", timeout=60
        )  # the shared worker may finish an earlier job first  # the watcher speaks it, as for the local profile
    finally:
        await desk.aclose()
        await c.call.aclose()


async def test_stdio_server_killed_then_reconnects(
    redis_url: str, queue: str, docs_dir: Path, worker: WorkerProcess
) -> None:
    """The call's own stdio server child dies: the caller is told, later turns reconnect."""
    import os
    import signal

    import psutil

    from agent.call.documents import RECONNECT_BACKOFF_S

    own = docs_dir.parent / f"docs-{uuid.uuid4().hex[:6]}"  # tells this test's server child apart
    shutil.copytree(docs_dir, own)
    marker = str(own)
    desk = DocumentDesk.stdio(own, stdio_params(own, env(redis_url, queue, 1)).env, call_timeout_s=3)
    c = Call(desk)

    def server_children() -> list[psutil.Process]:
        kids = psutil.Process(os.getpid()).children(recursive=True)
        return [
            p
            for p in kids
            if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE
            and "mcp" in p.cmdline()
            and marker in p.cmdline()
        ]

    try:
        assert await desk.start()
        await c.call.start()
        children = server_children()
        assert children  # the call's own server (a launcher may sit above it)
        for child in children:
            child.send_signal(signal.SIGKILL)
        for child in children:
            child.wait(5)
        assert await c.ask("Search the documents for pallets") == UNREACHABLE
        assert "open" in await c.ask(PLAIN)
        await asyncio.sleep(RECONNECT_BACKOFF_S)
        assert "pallet" in (await c.ask("Search the documents for pallets")).lower()  # a fresh server
        assert len(server_children()) == 1
    finally:
        await desk.aclose()
        await c.call.aclose()
    assert not server_children()  # hang-up closed the server it spawned


async def test_another_call_cannot_see_or_cancel_this_calls_job(call: Call, server: McpHttpServer) -> None:
    """Jobs belong to the call that started them: a second call's desk gets `unknown_job`."""
    from agent.call.documents import ToolRefused

    await call.ask("Please analyze the contract")
    job_id = next(iter(call.desk.jobs))
    other = DocumentDesk.http(server.url, owner="another-call")
    try:
        for tool in ("job_status", "cancel_job"):
            with pytest.raises(ToolRefused) as e:
                await other._call(tool, job_id=job_id, owner=other.owner)
            assert e.value.code == "unknown_job"
    finally:
        await other.aclose()
    assert await job_state(server.url, job_id, call.desk.owner) in ("queued", "running", "succeeded")
