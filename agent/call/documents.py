"""Documents by voice: one MCP client session per call, long jobs watched in the background.

`DocumentDesk` keeps livekit-agents' MCP client (`MCPServerStdio` / `MCPServerHTTP`) open for the
whole call and calls the server's tools directly (the function tools `list_tools()` returns are
plain async callables). `handle(text)` is the deterministic router the local profile needs (its
0.5B model cannot call tools); the cloud profile also hands the tools to the LLM with
`desk.function_tools()` (livekit's MCP function tools + job tools that go through the desk).

Never blocking the call: every MCP call is async with a timeout; analyze/compare return a job
id at once and a watcher task polls `job_status`, speaking the result with `session.say` only
when neither the caller nor the agent is talking. A dead MCP server or worker becomes one short
sentence to the caller; the call goes on. `aclose()` (hang-up) cancels the call's running jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit.agents import AgentSession, llm
from livekit.agents.llm import function_tool
from livekit.agents.llm.mcp import MCPServer, MCPServerHTTP, MCPServerStdio, MCPToolResultContext

from agent.call.doc_intents import DocRef, Intent, parse
from core.settings import REPO_ROOT

log = logging.getLogger("callcenter.documents")
UNREACHABLE = "Sorry, I can't reach the documents right now. Is there anything else I can help with?"
_FINAL = {"succeeded", "failed", "cancelled"}
RECONNECT_BACKOFF_S = 3.0
FAST_TOOLS = {"list_documents", "read_document", "search_documents", "edit_document", "list_versions"}
_KIND_WORD = {"analysis": "analysis", "comparison": "comparison"}


@dataclass
class DeskReply:
    text: str
    used_tool: bool = True  # a tool result: never written into the response cache
    job_id: str | None = None


@dataclass
class Job:
    id: str
    kind: str
    label: str  # what the caller hears: "the analysis of the returns policy"
    started: float
    estimate_s: float
    state: str = "queued"
    progress: float = 0.0
    told_lost: bool = False


class Unreachable(Exception):
    """The MCP server (or the connection to it) is gone."""


class ToolRefused(Exception):
    """The server answered with a tool error (`code: message`)."""

    def __init__(self, text: str) -> None:
        # The server prefixes "Error executing tool <name>: "; our code follows it.
        text = re.sub(r"^Error executing tool \w+:\s*", "", text)
        super().__init__(text)
        self.code = text.split(":", 1)[0].strip()


def _structured(ctx: MCPToolResultContext) -> Any:
    # The server returns dicts; keep them as dicts instead of livekit's JSON-of-content default.
    return ctx.result.structured_content


def _spoken(text: str, limit: int = 220) -> str:
    """Markdown table rows and headings read badly aloud; keep one short plain sentence."""
    s = " ".join(text.replace("|", " ").replace("#", " ").replace("**", "").split())
    return s if len(s) <= limit else s[:limit].rsplit(" ", 1)[0] + "…"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]  # str.capitalize() would lowercase the document titles


def _duration_words(seconds: float) -> str:
    if seconds < 20:
        return "a few seconds"
    if seconds < 45:
        return "about half a minute"
    if seconds < 90:
        return "about a minute"
    return f"about {round(seconds / 60)} minutes"


class DocumentDesk:
    def __init__(
        self,
        server: MCPServer,
        *,
        owner: str | None = None,
        poll_s: float = 1.0,
        call_timeout_s: float = 6.0,
        quiet_s: float = 0.5,
        job_estimate_s: float = 30.0,
    ) -> None:
        self.server = server
        # Jobs belong to the call that started them: the server answers job_status / cancel_job
        # only for this owner (the room of a phone call, the id of a simulated one).
        self.owner = re.sub(r"[^\w.:@+-]", "_", owner)[:200] if owner else f"desk-{uuid.uuid4().hex}"
        self.poll_s, self.call_timeout_s, self.quiet_s = poll_s, call_timeout_s, quiet_s
        self.job_estimate_s = job_estimate_s  # first guess; refined from progress while running
        self.session: AgentSession | None = None
        self.jobs: dict[str, Job] = {}
        self.spoken: list[str] = []  # what the watchers said (tests and transcripts)
        self._tools: dict[str, Any] = {}
        self._docs: list[DocRef] = []
        self._watchers: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._closed = False
        self._retry_at = 0.0

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def stdio(cls, docs_dir: Path | str, env: dict[str, str] | None = None, **kw: Any) -> DocumentDesk:
        """The server as a child process of the call (what the simulator uses)."""
        server = MCPServerStdio(
            sys.executable,
            ["-m", "tasks", "mcp", "serve", "--docs", str(docs_dir), "--transport", "stdio"],
            env=env,
            cwd=str(REPO_ROOT),
            client_session_timeout_seconds=kw.get("call_timeout_s", 6.0),
            tool_result_resolver=_structured,
        )
        return cls(server, **kw)

    @classmethod
    def http(cls, url: str, *, token: str | None = None, **kw: Any) -> DocumentDesk:
        """A shared server (`callcenter mcp serve --transport streamable-http`), e.g. in production;
        `token` (default `CALLCENTER_MCP_TOKEN`) goes as a bearer token with every request."""
        from core.settings import get_settings

        token = token or get_settings().mcp_token
        server = MCPServerHTTP(
            url,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            transport_type="streamable_http",
            client_session_timeout_seconds=kw.get("call_timeout_s", 6.0),
            tool_result_resolver=_structured,
        )
        return cls(server, **kw)

    def function_tools(self) -> list[llm.Tool]:
        """Cloud profile: the documents as LLM tools (call after `start()`).

        Fast tools are livekit's own MCP function tools on this desk's connection (they follow a
        reconnect: they call through the same `MCPServer`). Long jobs go through the desk instead
        of the raw MCP tools, so the watcher speaks the result and hang-up cancels them. Tool-call
        turns are marked `used_tool` by `CallAgent.llm_node`, so they are never cached.
        """
        fast = [t for n, t in self._tools.items() if n in FAST_TOOLS]

        @function_tool
        async def analyze_document(name: str) -> str:
            """Start a background analysis (summary, key facts, action items) of a document by file
            name. Returns at once; the result is read to the caller automatically when ready."""
            return (await self.run(Intent("analyze", docs=[name]))).text

        @function_tool
        async def compare_documents(a: str, b: str) -> str:
            """Start a background comparison of two documents by file name. Returns at once; the
            result is read to the caller automatically when ready."""
            return (await self.run(Intent("compare", docs=[a, b]))).text

        @function_tool
        async def document_job_progress() -> str:
            """Progress of the caller's running document analyses or comparisons."""
            if not self.jobs:
                return "No document job was started in this call."
            return (await self.run(Intent("status"))).text

        return [*fast, analyze_document, compare_documents, document_job_progress]

    def attach(self, session: AgentSession) -> None:
        self.session = session

    async def start(self) -> bool:
        """Connect and learn the tools and document names; False (not an exception) if unreachable."""
        try:
            await self._connect()
            return True
        except Unreachable as e:
            log.warning("documents unavailable at call start: %s", e)
            return False

    async def _connect(self) -> None:
        try:
            if not self.server.initialized:
                await asyncio.wait_for(self.server.initialize(), self.call_timeout_s)
            self.server.invalidate_cache()
            tools = await asyncio.wait_for(self.server.list_tools(), self.call_timeout_s)
        except Exception as e:  # noqa: BLE001 - any failure to connect = unreachable
            await self._drop_connection()
            raise Unreachable(f"{type(e).__name__}: {e}") from e
        self._tools = {t.info.name: t for t in tools}
        listing = await self._call("list_documents")
        self._docs = [DocRef(d["name"], d.get("title") or "") for d in listing["documents"]]

    async def _drop_connection(self) -> None:
        self._tools = {}
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.server.aclose(), 3)

    async def _call(self, tool: str, **args: Any) -> dict[str, Any]:
        """One tool call, bounded; reconnects once if the last attempt found the server gone."""
        from livekit.agents.llm import ToolError

        if not self._tools:
            if time.monotonic() < self._retry_at:  # just failed: answer at once, don't stall the turn
                raise Unreachable("documents server down (retrying shortly)")
            async with self._lock:
                if not self._tools:
                    try:
                        await self._connect()
                    except Unreachable:
                        self._retry_at = time.monotonic() + RECONNECT_BACKOFF_S
                        raise
        try:
            out = await asyncio.wait_for(self._tools[tool](args), self.call_timeout_s)
        except ToolError as e:
            if str(e).startswith("Tool invocation failed"):  # livekit: the client is gone
                await self._drop_connection()
                raise Unreachable(str(e)) from e
            raise ToolRefused(str(e)) from e
        except Exception as e:  # noqa: BLE001 - timeouts, closed streams, HTTP errors
            await self._drop_connection()
            raise Unreachable(f"{type(e).__name__}: {e}") from e
        if not isinstance(out, dict):
            raise Unreachable(f"unexpected result from {tool}: {out!r}")
        return out

    # ---- the router ------------------------------------------------------------------------
    async def handle(self, text: str) -> DeskReply | None:
        """A spoken reply if `text` is a document request, else None (the LLM answers)."""
        if self._closed:
            return None
        docs = self._docs or [DocRef(n) for n in ("policy.md", "contract.md", "prices-v1.md", "prices-v2.md")]
        intent = parse(text, docs)
        if intent is None:
            return None
        if (intent.kind == "cancel" and not self._active()) or (intent.kind == "status" and not self.jobs):
            return None  # "how is it going?" without a job is small talk for the LLM
        return await self.run(intent)

    async def run(self, intent: Intent) -> DeskReply:
        """Carry out one intent; failures become a short sentence, never an exception."""
        try:
            return await self._dispatch(intent)
        except Unreachable as e:
            log.warning("documents unreachable: %s", e)
            return DeskReply(UNREACHABLE)
        except ToolRefused as e:
            return DeskReply(self._refusal(e, intent))

    def _active(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state not in _FINAL]

    async def _dispatch(self, it: Intent) -> DeskReply:
        if it.kind == "search":
            hits = (await self._call("search_documents", query=it.query, limit=3))["hits"]
            if not hits and it.query.endswith("s"):  # full-text search: "pallets" misses "pallet"
                hits = (await self._call("search_documents", query=it.query[:-1], limit=3))["hits"]
            if not hits:
                return DeskReply(f"I found nothing about {it.query} in the documents.")
            h = hits[0]
            more = f" It also appears in {len(hits) - 1} other places." if len(hits) > 1 else ""
            return DeskReply(
                f"In {self._title(h['name'])}, section {h['section']}: {_spoken(h['snippet'])}.{more}"
            )
        if it.kind == "read":
            args: dict[str, Any] = {"name": it.docs[0]}
            if it.query:
                args["section"] = it.query
            try:
                r = await self._call("read_document", **args)
            except ToolRefused as e:
                if e.code != "section_not_found":
                    raise
                return await self._dispatch(Intent("search", query=it.query))
            return DeskReply(_spoken(r["text"], 400))
        if it.kind == "edit":
            r = await self._call("edit_document", name=it.docs[0], find=it.find, replace=it.replace)
            n = r.get("replacements", 1)
            return DeskReply(
                f"Done: I changed {it.find} to {it.replace} in {self._title(it.docs[0])}"
                f"{'' if n == 1 else f', {n} places'}. The old version is kept."
            )
        if it.kind in ("analyze", "compare"):
            return await self._start_job(it)
        if it.kind == "status":
            return DeskReply(" ".join(await self._progress_sentences()))
        # cancel
        names = []
        for j in self._active():
            await self._call("cancel_job", job_id=j.id, owner=self.owner)
            j.state = "cancelled"
            names.append(j.label)
        return DeskReply(f"OK, I stopped {' and '.join(names)}.")

    async def _start_job(self, it: Intent) -> DeskReply:
        if it.kind == "analyze":
            if not it.docs:
                return DeskReply(f"Which document should I analyze? I have {self._doc_list()}.")
            r = await self._call("analyze_document", name=it.docs[0], owner=self.owner)
            label = f"the analysis of {self._title(it.docs[0])}"
        else:
            if len(it.docs) < 2:
                return DeskReply(f"Which two documents should I compare? I have {self._doc_list()}.")
            a, b = sorted(it.docs[:2])
            r = await self._call("compare_documents", a=a, b=b, owner=self.owner)
            label = f"the comparison of {self._title(a)} and {self._title(b)}"
        job = Job(r["job_id"], r["kind"], label, time.monotonic(), self.job_estimate_s)
        self.jobs[job.id] = job
        task = asyncio.create_task(self._watch(job), name=f"doc-job-{job.id}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return DeskReply(
            f"I've started {label}. It takes {_duration_words(job.estimate_s)}; "
            "I'll tell you the result as soon as it's ready. Anything else meanwhile?",
            job_id=job.id,
        )

    async def _progress_sentences(self) -> list[str]:
        out = []
        for j in self._active():
            st = await self._call("job_status", job_id=j.id, owner=self.owner)
            self._update(j, st)
            if j.state == "queued":
                out.append(f"{_cap(j.label)} is waiting for a free worker.")
            elif j.state == "worker_lost":
                out.append(f"{_cap(j.label)} was interrupted; it will restart when the service is back.")
            elif j.state in _FINAL:
                out.append(f"{_cap(j.label)} just finished; I'll read it out now.")
            else:
                left = max(2.0, (time.monotonic() - j.started) * (1 - j.progress) / max(j.progress, 0.05))
                out.append(
                    f"{_cap(j.label)} is {round(j.progress * 100)} percent done, {_duration_words(left)} left."
                )
        if not out:  # asked after the result was spoken
            last = list(self.jobs.values())[-1]
            out.append(f"{_cap(last.label)} has {'finished' if last.state == 'succeeded' else last.state}.")
        return out

    def _update(self, job: Job, st: dict[str, Any]) -> None:
        job.state, job.progress = st["state"], float(st.get("progress") or 0.0)

    # ---- background watcher ----------------------------------------------------------------
    async def _watch(self, job: Job) -> None:
        failures = 0
        while not self._closed:
            await asyncio.sleep(self.poll_s)
            try:
                st = await self._call("job_status", job_id=job.id, owner=self.owner)
                failures = 0
            except Unreachable:
                failures += 1
                if failures == 2:  # one blip is not worth a sentence; two in a row are
                    await self._say_when_quiet(
                        f"I've lost contact with the documents; {job.label} may be delayed."
                    )
                await asyncio.sleep(min(10.0, self.poll_s * 2**failures))
                continue
            except ToolRefused as e:
                await self._say_when_quiet(f"Sorry, {job.label} could not be completed ({e.code}).")
                return
            self._update(job, st)
            if job.state == "worker_lost" and not job.told_lost:
                job.told_lost = True
                await self._say_when_quiet(
                    f"Sorry, the document service stopped while working on {job.label}. "
                    "It will pick it up again when it's back; the rest of the call isn't affected."
                )
            elif job.state == "running" and job.told_lost:
                job.told_lost = False  # redelivered: a later loss is news again
            elif job.state == "succeeded":
                await self._say_when_quiet(self._result_sentence(job, st["result"] or {}))
                return
            elif job.state == "failed":
                await self._say_when_quiet(f"Sorry, {job.label} failed. I can try again if you like.")
                return
            elif job.state == "cancelled":
                return

    def _result_sentence(self, job: Job, res: dict[str, Any]) -> str:
        if job.kind == "analysis":
            facts = "; ".join(_spoken(f, 90).rstrip(".") for f in (res.get("key_facts") or [])[:2])
            return f"{_cap(job.label)} is ready. {_spoken(res.get('summary', ''), 240)}" + (
                f" Key facts: {facts}." if facts else ""
            )
        if res.get("identical"):
            return f"{_cap(job.label)} is ready: the two are identical."
        return f"{_cap(job.label)} is ready. {_spoken(res.get('differences', ''), 300)}"

    async def _say_when_quiet(self, text: str) -> None:
        """Speak only after the caller and the agent have both been quiet for `quiet_s`."""
        session = self.session
        if session is None or self._closed:
            return
        quiet_since: float | None = None
        while not self._closed:
            busy = session.user_state == "speaking" or session.agent_state in ("thinking", "speaking")
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= self.quiet_s:
                break
            await asyncio.sleep(0.05)
        if self._closed:
            return
        self.spoken.append(text)
        try:
            session.say(text)
        except RuntimeError as e:  # the session is closing (hang-up raced us)
            log.info("result not spoken: %s", e)

    # ---- helpers ---------------------------------------------------------------------------
    def _title(self, name: str) -> str:
        short = [d.title.split(" — ")[0] for d in self._docs]
        for d, sh in zip(self._docs, short, strict=True):
            if d.name == name and d.title:
                # two price lists share "Price List": keep the part that tells them apart
                return f"the {sh if short.count(sh) == 1 else d.title.replace(' — ', ', ')}"
        return name

    def _doc_list(self) -> str:
        return ", ".join(self._title(d.name) for d in self._docs) or "no documents"

    def _refusal(self, e: ToolRefused, it: Intent) -> str:
        what = {
            "no_match": f"I couldn't find {it.find} in that document, so I changed nothing.",
            "not_found": "I couldn't find that document.",
            "bad_query": "Could you say what I should search for?",
            "jobs_unavailable": "The document analysis service is down right now; I can still search and read.",
        }
        return what.get(e.code, "Sorry, I couldn't do that with the documents.")

    async def aclose(self) -> None:
        """Hang-up: revoke this call's running jobs, stop the watchers, close the MCP session."""
        self._closed = True
        for t in list(self._watchers):
            t.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        for j in self._active():
            try:
                await self._call("cancel_job", job_id=j.id, owner=self.owner)
                j.state = "cancelled"
            except (Unreachable, ToolRefused) as e:
                log.warning("could not cancel job %s: %s", j.id, e)
        await self._drop_connection()


def sandbox_docs(out_dir: Path, source: Path | None = None) -> Path:
    """A per-call copy of the documents, so a simulated call's edits never touch the originals."""
    import shutil

    dest = out_dir / "documents"
    if not dest.exists():
        shutil.copytree(source or REPO_ROOT / "documents", dest)
    return dest


@dataclass
class DeskConfig:
    """How a call gets its desk (runner/SimulatedCall): a docs dir (stdio child) or a server URL."""

    docs_dir: Path | None = None
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def build(self, owner: str | None = None, **kw: Any) -> DocumentDesk:
        """A desk for one call; `owner` (the call's id) owns the jobs it starts."""
        if self.url:
            return DocumentDesk.http(self.url, owner=owner, **kw)
        import os

        return DocumentDesk.stdio(
            self.docs_dir or REPO_ROOT / "documents", {**os.environ, **self.env}, owner=owner, **kw
        )
