"""The MCP document server over its real transports (streamable-http and stdio), with a real Celery
worker process on the real embedded Redis (`redis_url` fixture from tests/conftest.py)."""

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
from tasks.docs_store import VERSIONS_DIR
from tests.support.workers import McpHttpServer, WorkerProcess, client_app, stdio_params

MAX_BYTES = 64 * 1024
ROOM = "call-acme-test"  # the owner HTTP tests file their jobs under (the desk passes its room)
TOOLS = {
    "list_documents",
    "read_document",
    "search_documents",
    "edit_document",
    "list_versions",
    "restore_document",
    "analyze_document",
    "compare_documents",
    "job_status",
    "cancel_job",
}


class ToolFailed(Exception):
    pass


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    r = await client.call_tool(tool, args)
    if r.is_error:
        raise ToolFailed(r.content[0].text if r.content else "error")
    assert r.structured_content is not None
    return r.structured_content


async def wait_state(
    client: Client, job_id: str, states: set[str], timeout: float = 60, owner: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Poll job_status until the job is in one of `states`; returns the final status and the trail."""
    trail: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    mine = {"owner": owner} if owner else {}
    while time.monotonic() < deadline:
        st = await call(client, "job_status", job_id=job_id, **mine)
        trail.append(st)
        if st["state"] in states:
            return st, trail
        await asyncio.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached {states}: {trail[-3:]}")


@pytest.fixture(scope="module")
def queue() -> str:
    return f"test-mcp-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample documents plus the bad files the server must refuse."""
    root = tmp_path_factory.mktemp("docs")
    docs = root / "docs"
    shutil.copytree(REPO_ROOT / "documents", docs)
    (docs / "huge.md").write_text("# Huge\n\n" + ("lorem ipsum dolor sit amet " * 4000))  # > MAX_BYTES
    (docs / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (docs / "image.bin").write_bytes(b"\x00\x01")
    (root / "secret.md").write_text("# Secret\n\noutside the documents directory\n")
    (docs / "escape.md").symlink_to(root / "secret.md")
    return docs


@pytest.fixture(scope="module")
def worker(redis_url: str, queue: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    # LLM stays enabled on the worker (the default); servers below pass use_llm=False per job.
    w = WorkerProcess(redis_url, queue, tmp_path_factory.mktemp("logs")).start()
    yield w
    w.stop()


def server_env(redis_url: str, queue: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "CALLCENTER_CELERY_QUEUE": queue,
        "CALLCENTER_TASKS_LLM": "0",
        "CALLCENTER_DOCS_MAX_BYTES": str(MAX_BYTES),
        **extra,
    }


@pytest.fixture(scope="module")
def http_server(
    redis_url: str,
    queue: str,
    docs_dir: Path,
    worker: WorkerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[McpHttpServer]:
    s = McpHttpServer(docs_dir, tmp_path_factory.mktemp("logs"), server_env(redis_url, queue)).start()
    yield s
    s.stop()


async def test_tools_have_typed_schemas(http_server: McpHttpServer) -> None:
    async with Client(http_server.url) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == TOOLS
    read = tools["read_document"].input_schema
    assert read["required"] == ["name"] and {"section", "start_line", "end_line"} <= set(read["properties"])
    assert tools["search_documents"].input_schema["properties"]["limit"]["type"] == "integer"


async def test_list_read_search(http_server: McpHttpServer) -> None:
    async with Client(http_server.url) as c:
        docs = {d["name"]: d for d in (await call(c, "list_documents"))["documents"]}
        assert {"policy.md", "contract.md", "prices-v1.md", "prices-v2.md"} <= set(docs)
        assert "secret.md" not in docs and not any(n.startswith(VERSIONS_DIR) for n in docs)
        assert docs["policy.md"]["title"] == "Returns and Refunds Policy"

        sec = await call(c, "read_document", name="policy.md", section="Refunds")
        assert sec["text"].startswith("## Refunds") and "5 business days" in sec["text"]
        assert "Escalation" not in sec["text"]
        rng = await call(c, "read_document", name="contract.md", start_line=1, end_line=3)
        assert (
            rng["start_line"] == 1 and rng["end_line"] == 3 and rng["text"].startswith("# Service Agreement")
        )

        hits = (await call(c, "search_documents", query="mattress removal", limit=3))["hits"]
        assert len(hits) == 3 and hits[0]["snippet"].startswith("| Old mattress removal")
        assert hits[0]["section"] == "Services" and hits[0]["line"] > 0


@pytest.mark.parametrize(
    ("tool", "args", "code"),
    [
        ("read_document", {"name": "missing.md"}, "not_found"),
        ("read_document", {"name": "../../etc/passwd"}, "outside_docs"),
        ("read_document", {"name": "/etc/passwd"}, "outside_docs"),
        ("read_document", {"name": "escape.md"}, "outside_docs"),  # symlink pointing out
        ("read_document", {"name": f"{VERSIONS_DIR}/policy.md"}, "outside_docs"),
        ("read_document", {"name": "huge.md"}, "too_large"),
        ("read_document", {"name": "blob.txt"}, "binary"),
        ("read_document", {"name": "image.bin"}, "unsupported_type"),
        ("read_document", {"name": "policy.md", "section": "Warranty"}, "section_not_found"),
        ("read_document", {"name": "policy.md", "start_line": 50, "end_line": 60}, "bad_range"),
        ("search_documents", {"query": "?!"}, "bad_query"),
        ("edit_document", {"name": "../policy.md", "find": "a", "replace": "b"}, "outside_docs"),
        ("edit_document", {"name": "policy.md", "find": "no such text", "replace": "b"}, "no_match"),
        ("edit_document", {"name": "policy.md"}, "bad_edit"),
        ("analyze_document", {"name": "huge.md", "owner": ROOM}, "too_large"),
        ("analyze_document", {"name": "../../etc/passwd", "owner": ROOM}, "outside_docs"),
        ("compare_documents", {"a": "policy.md", "b": "missing.md", "owner": ROOM}, "not_found"),
        (
            "compare_documents",
            {"a": "policy.md", "version": "20990101T000000.000000Z", "owner": ROOM},
            "version_not_found",
        ),
        ("job_status", {"job_id": "no-such-job", "owner": ROOM}, "unknown_job"),
        # Session-less HTTP: a job without an owner would be anyone's, so it is refused.
        ("analyze_document", {"name": "policy.md"}, "bad_owner"),
        ("job_status", {"job_id": "no-such-job"}, "bad_owner"),
        ("restore_document", {"name": "policy.md", "version": "nope"}, "version_not_found"),
    ],
)
async def test_bad_input_is_a_clear_tool_error(
    http_server: McpHttpServer, tool: str, args: dict[str, Any], code: str
) -> None:
    async with Client(http_server.url) as c:
        with pytest.raises(ToolFailed) as e:
            await call(c, tool, **args)
    assert f"{code}:" in str(e.value)


async def test_edit_is_atomic_and_versioned(http_server: McpHttpServer, docs_dir: Path) -> None:
    async with Client(http_server.url) as c:
        before = (docs_dir / "contract.md").read_text()
        r = await call(c, "edit_document", name="contract.md", find="$14.50", replace="$15.25")
        assert r["replacements"] == 1 and r["backup_version"]
        r2 = await call(
            c,
            "edit_document",
            name="contract.md",
            section="Liability",
            new_text="Capped at $75,000 per incident.",
        )
        after = (docs_dir / "contract.md").read_text()
        assert "$15.25 per pallet" in after and "Capped at $75,000 per incident." in after
        assert "$50,000" not in after and "## Liability" in after and "# Service Agreement" in after
        versions = (await call(c, "list_versions", name="contract.md"))["versions"]
        assert versions == [r["backup_version"], r2["backup_version"]]
        assert not list(docs_dir.glob(".*.tmp"))  # no temp file left behind
        first = docs_dir / VERSIONS_DIR / "contract.md" / f"{versions[0]}.bak"
        assert first.read_text() == before

        job = await call(c, "compare_documents", a="contract.md", version=versions[0], owner=ROOM)
        st, _ = await wait_state(c, job["job_id"], {"succeeded", "failed"}, owner=ROOM)
        assert st["state"] == "succeeded", st
        res = st["result"]
        assert res["removed_lines"] >= 2 and res["added_lines"] >= 2
        assert any(ch["before"] and "$14.50" in ch["before"] for ch in res["changes"])
        assert "$15.25" in res["diff"]


async def test_binary_edit_is_refused_and_restore_document_undoes_edits(
    http_server: McpHttpServer, docs_dir: Path
) -> None:
    """A NUL byte used to brick a document (every read: "binary"); now it is refused, and any edit
    can be undone over MCP with restore_document."""
    async with Client(http_server.url) as c:
        before = (docs_dir / "policy.md").read_bytes()
        for args in (
            {"find": "Refunds", "replace": "Ref\x00unds"},
            {"section": "Refunds", "new_text": "\x00\x01\x02 binary"},
        ):
            with pytest.raises(ToolFailed, match="binary:"):
                await call(c, "edit_document", name="policy.md", **args)
        assert (docs_dir / "policy.md").read_bytes() == before
        assert (await call(c, "read_document", name="policy.md"))["text"].startswith("# Returns")

        v = (await call(c, "edit_document", name="policy.md", find="5 business days", replace="9 days"))[
            "backup_version"
        ]
        r = await call(c, "restore_document", name="policy.md", version=v)
        assert (
            r["restored_version"] == v
            and r["backup_version"] in (await call(c, "list_versions", name="policy.md"))["versions"]
        )
        assert (docs_dir / "policy.md").read_bytes() == before
        with pytest.raises(ToolFailed, match="version_not_found:"):
            await call(c, "restore_document", name="policy.md", version="../../etc/passwd")


async def test_jobs_belong_to_the_call_that_started_them(
    http_server: McpHttpServer, redis_url: str, queue: str, docs_dir: Path
) -> None:
    """Another call (another owner, or another stdio server) cannot see or cancel a job: to it the
    job does not exist. The owner itself follows it from any connection (the desk reconnects)."""
    async with Client(http_server.url) as a, Client(http_server.url) as b:
        mine = await call(a, "analyze_document", name="policy.md", owner="call-acme-1")
        for tool in ("job_status", "cancel_job"):
            with pytest.raises(ToolFailed, match="unknown_job:"):
                await call(b, tool, job_id=mine["job_id"], owner="call-acme-2")
            with pytest.raises(ToolFailed, match="bad_owner:"):
                await call(b, tool, job_id=mine["job_id"])
        with pytest.raises(ToolFailed, match="bad_owner:"):
            await call(a, "job_status", job_id=mine["job_id"], owner="x" * 300)
        st = await call(b, "job_status", job_id=mine["job_id"], owner="call-acme-1")
        assert st["state"] != "cancelled"  # the other call's cancel did nothing
        done, _ = await wait_state(
            a, mine["job_id"], {"succeeded", "failed", "cancelled"}, owner="call-acme-1"
        )
        assert done["state"] == "succeeded"

        # A stdio server has one client: its jobs without an owner are that client's alone.
        async with Client(stdio_params(docs_dir, server_env(redis_url, queue))) as s1:
            anon = await call(s1, "analyze_document", name="contract.md")
            async with Client(stdio_params(docs_dir, server_env(redis_url, queue))) as s2:
                with pytest.raises(ToolFailed, match="unknown_job:"):
                    await call(s2, "cancel_job", job_id=anon["job_id"])
            with pytest.raises(ToolFailed, match="unknown_job:"):
                await call(a, "job_status", job_id=anon["job_id"], owner="call-acme-1")
            st, _ = await wait_state(s1, anon["job_id"], {"succeeded", "failed", "cancelled"})
            assert st["state"] == "succeeded"


async def test_analyze_and_compare_jobs(http_server: McpHttpServer) -> None:
    async with Client(http_server.url) as c:
        t0 = time.monotonic()
        job = await call(c, "analyze_document", name="policy.md", owner=ROOM)
        assert time.monotonic() - t0 < 2.0 and job["state"] == "queued"  # returns at once
        cmp = await call(c, "compare_documents", a="prices-v1.md", b="prices-v2.md", owner=ROOM)
        st, _ = await wait_state(c, job["job_id"], {"succeeded", "failed"}, owner=ROOM)
        assert st["state"] == "succeeded", st
        res = st["result"]
        assert "Returns and Refunds Policy" in res["summary"] and res["llm"] is False
        assert any("$9.95" in f for f in res["key_facts"])
        assert any("escalate" in a for a in res["action_items"])

        st, _ = await wait_state(c, cmp["job_id"], {"succeeded", "failed"}, owner=ROOM)
        res = st["result"]
        assert not res["identical"] and "$949.00" in res["diff"]
        assert {
            "before": "| Nord coffee table | FUR-1010 | $189.00 |",
            "after": "| Nord coffee table | FUR-1010 | $169.00 |",
        } in res["changes"]
        assert "Oslo ottoman" in res["differences"]


async def test_long_job_reports_progress_over_stdio(
    redis_url: str, queue: str, docs_dir: Path, worker: WorkerProcess
) -> None:
    env = server_env(redis_url, queue, CALLCENTER_DOCS_JOB_MIN_DURATION_S="5")
    async with Client(stdio_params(docs_dir, env)) as c:
        job = await call(c, "analyze_document", name="contract.md")
        st, trail = await wait_state(c, job["job_id"], {"succeeded", "failed"}, timeout=60)
    assert st["state"] == "succeeded" and st["result"]["duration_s"] >= 5
    running = [s["progress"] for s in trail if s["state"] == "running"]
    assert len(running) >= 5, trail  # visible for the whole run, polled every 0.3 s
    assert running == sorted(running) and 0 < running[-1] < 1 and running[-1] > running[0]
    assert all(s["stage"] for s in trail if s["state"] == "running")


async def test_cancel_job_stops_a_running_job(
    redis_url: str, queue: str, docs_dir: Path, worker: WorkerProcess
) -> None:
    env = server_env(redis_url, queue, CALLCENTER_DOCS_JOB_MIN_DURATION_S="30")
    async with Client(stdio_params(docs_dir, env)) as c:
        job = await call(c, "analyze_document", name="policy.md")
        await wait_state(c, job["job_id"], {"running"})
        t0 = time.monotonic()
        r = await call(c, "cancel_job", job_id=job["job_id"])
        assert r["message"] == "cancellation requested"
        st, _ = await wait_state(c, job["job_id"], {"cancelled", "succeeded", "failed"}, timeout=10)
        assert st["state"] == "cancelled" and time.monotonic() - t0 < 5
        # The worker is free again at once (the task stopped rather than running out its 30 s).
        kwargs = {"a_name": "x", "a_text": "a\n", "b_name": "y", "b_text": "b\n", "use_llm": False}
        nxt = client_app(redis_url, queue).send_task("callcenter.compare_documents", kwargs=kwargs)
        assert (await asyncio.to_thread(nxt.get, timeout=10))["removed_lines"] == 1
        again = await call(c, "cancel_job", job_id=job["job_id"])
        assert again["state"] == "cancelled" and again["message"] == "already cancelled"


async def test_queued_job_without_worker_is_visible_and_cancellable(redis_url: str, docs_dir: Path) -> None:
    env = server_env(redis_url, f"nobody-{uuid.uuid4().hex[:6]}")
    async with Client(stdio_params(docs_dir, env)) as c:
        job = await call(c, "analyze_document", name="policy.md")
        st = await call(c, "job_status", job_id=job["job_id"])
        assert st["state"] == "queued" and st["message"] == "waiting for a worker"
        r = await call(c, "cancel_job", job_id=job["job_id"])
        assert r["state"] == "cancelled"


@pytest.mark.slow
def test_analyze_and_compare_with_the_llm(redis_url: str, queue: str, worker: WorkerProcess) -> None:
    """The default path: the worker's local LLM writes the prose (one run of each; slower)."""
    docs = REPO_ROOT / "documents"
    app = client_app(redis_url, queue)
    r = app.send_task(
        "callcenter.analyze_document", kwargs={"name": "policy.md", "text": (docs / "policy.md").read_text()}
    )
    kwargs = {
        "a_name": "prices-v1.md",
        "a_text": (docs / "prices-v1.md").read_text(),
        "b_name": "prices-v2.md",
        "b_text": (docs / "prices-v2.md").read_text(),
    }
    c = app.send_task("callcenter.compare_documents", kwargs=kwargs)
    res = r.get(timeout=600)  # generous: the 2 cores may be shared with other LLM work
    assert res["llm"] is True and res["parts"] == 1
    assert len(res["summary"]) > 20 and not res["summary"].startswith(
        "Returns and Refunds Policy:"
    )  # not extractive
    assert any("$9.95" in f for f in res["key_facts"])
    cmp = c.get(timeout=600)
    assert cmp["llm"] is True and len(cmp["differences"]) > 20 and "$949.00" in cmp["diff"]


async def test_redis_down_is_a_fast_clear_error_and_reads_still_work(docs_dir: Path) -> None:
    from tests.support.workers import free_port

    env = server_env(f"redis://127.0.0.1:{free_port()}/0", "nowhere")
    async with Client(stdio_params(docs_dir, env)) as c:
        t0 = time.monotonic()
        for tool, args in (("analyze_document", {"name": "policy.md"}), ("job_status", {"job_id": "x"})):
            with pytest.raises(ToolFailed, match="jobs_unavailable:"):
                await call(c, tool, **args)
        assert time.monotonic() - t0 < 10
        assert (await call(c, "read_document", name="policy.md", start_line=1, end_line=1))[
            "text"
        ].startswith("#")


async def test_versions_kept_per_setting_and_file_mode_kept_over_stdio(
    redis_url: str, queue: str, tmp_path: Path
) -> None:
    """10 edits keep CALLCENTER_DOCS_KEEP_VERSIONS backups (not 10 full copies); 0644 stays 0644."""
    docs = tmp_path / "docs"
    shutil.copytree(REPO_ROOT / "documents", docs)
    (docs / "policy.md").chmod(0o644)
    env = server_env(redis_url, queue, CALLCENTER_DOCS_KEEP_VERSIONS="3")
    async with Client(stdio_params(docs, env)) as c:
        made = []
        for i in range(10):
            r = await call(c, "edit_document", name="policy.md", find="business days", replace=f"days{i} x")
            made.append(r["backup_version"])
            r = await call(c, "edit_document", name="policy.md", find=f"days{i} x", replace="business days")
            made.append(r["backup_version"])
        versions = (await call(c, "list_versions", name="policy.md"))["versions"]
    assert versions == made[-3:]  # the newest survive
    assert len(list((docs / VERSIONS_DIR / "policy.md").glob("*.bak"))) == 3
    assert (docs / "policy.md").stat().st_mode & 0o777 == 0o644
