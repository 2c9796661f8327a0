"""Bounded chat context: recent messages verbatim, the middle as one running summary, the
rest pruned. Summaries are made by a Celery worker; no turn ever waits for one.

Per turn (`prepare`): plan with `tasks.context_plan.plan_fold` over the messages the summary
does not cover yet, send the LLM `system + summary + kept messages`, and when `batch` messages
older than the recent window have piled up, enqueue a summary job. A finished job is folded in
on a later turn. If the worker is missing or slow, the window alone still bounds the context.

Why batches: between folds the prompt only grows at its end, so llama.cpp / OpenAI prompt
caching reuse everything before it; a window sliding by one message each turn would make the
model re-read the whole conversation every turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import llm

from agent.call.jobs import TASK_SUMMARIZE, JobClient
from tasks.context_plan import FoldPlan, plan_fold

log = logging.getLogger("callcenter.context")


@dataclass
class ContextStats:
    summaries: int = 0
    summary_failures: int = 0
    pruned_messages: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def _as_dict(item: llm.ChatItem) -> dict[str, Any]:
    if isinstance(item, llm.ChatMessage):
        return {"role": item.role, "content": item.text_content or "", "id": item.id}
    if isinstance(item, llm.FunctionCall):
        return {"role": "assistant", "call_id": item.call_id, "content": f"[tool {item.name}]", "id": item.id}
    if isinstance(item, llm.FunctionCallOutput):
        return {"role": "tool", "call_id": item.call_id, "content": item.output[:200], "id": item.id}
    return {"role": "system", "content": "", "id": getattr(item, "id", "")}


class ContextManager:
    def __init__(
        self,
        jobs: JobClient | None,
        *,
        keep_recent: int = 10,
        max_messages: int = 30,
        batch: int = 8,
        job_timeout_s: float = 120.0,
        summary_llm: bool | None = None,
    ) -> None:
        self.jobs = jobs
        self.keep_recent, self.max_messages, self.batch = keep_recent, max_messages, batch
        self.job_timeout_s = job_timeout_s
        self.summary_llm = summary_llm  # None: the worker's default (the configured LLM)
        self.summary = ""
        self._summary_item: llm.ChatMessage | None = None
        # Called when a summary is folded in (between turns): the agent pre-reads the new prompt
        # so the next turn does not pay for re-reading it (agent/call/agent.py `_prefill`).
        self.on_fold: Callable[[], None] | None = None
        self._covered: set[str] = set()  # ids of messages the summary already covers
        self._job: tuple[str, list[str], float] | None = None  # (job id, message ids, submitted at)
        self._backoff_until = 0.0
        self.stats = ContextStats()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _event(self, kind: str, **kw: Any) -> None:
        ev = {"type": kind, "t": time.time(), **kw}
        self.stats.events.append(ev)
        log.info("context %s %s", kind, kw)

    def _plan(
        self, chat_ctx: llm.ChatContext, coming: int = 0
    ) -> tuple[list[llm.ChatItem], list[llm.ChatItem], FoldPlan]:
        items = list(chat_ctx.items)
        system: list[llm.ChatItem] = [
            i for i in items if isinstance(i, llm.ChatMessage) and i.role in ("system", "developer")
        ]
        convo = [i for i in items if i not in system and i.id not in self._covered]
        convo = [
            i for i in convo if isinstance(i, (llm.ChatMessage, llm.FunctionCall, llm.FunctionCallOutput))
        ]
        # slack=batch: with the summarizer behind, prune a batch at once rather than sliding
        # the window one turn at a time (which made the model re-read it all every turn)
        bound = self.max_messages - coming
        plan = plan_fold([_as_dict(i) for i in convo], self.keep_recent, bound, slack=self.batch)
        return system, convo, plan

    def prepare(self, chat_ctx: llm.ChatContext) -> llm.ChatContext:
        """What the LLM receives this turn. Never blocks."""
        system, convo, plan = self._plan(chat_ctx)
        self._fold_and_prune(convo, plan)
        return self._compose(system, [convo[i] for i in plan.keep])

    def prune_ahead(self, chat_ctx: llm.ChatContext, coming: int = 2) -> bool:
        """After a reply: if the next turn (`coming` more messages) would prune, prune now, so the
        model re-reads the shortened prompt while the caller listens, not while they wait.
        True when the prompt changed (the caller should prefill it)."""
        _, convo, plan = self._plan(chat_ctx, coming)
        if not plan.prune:
            return False
        self._fold_and_prune(convo, plan)
        return True

    def _fold_and_prune(self, convo: list[llm.ChatItem], plan: FoldPlan) -> None:
        # Enqueue first: the job takes its own copy, so pruned messages still reach the summary.
        to_summarize = [convo[i] for i in plan.summarize]
        if self.jobs is not None and self._job is None and len(to_summarize) >= self.batch:
            if time.monotonic() >= self._backoff_until:
                self._spawn(self._submit(to_summarize))
        if plan.prune:
            self.stats.pruned_messages += len(plan.prune)
            self._covered.update(convo[i].id for i in plan.prune)  # gone from the context for good
            self._event("prune", before=len(convo), after=len(plan.keep))

    def preview(self, chat_ctx: llm.ChatContext) -> llm.ChatContext:
        """What `prepare` would send now, without pruning or enqueuing anything (prompt prefill)."""
        system, convo, plan = self._plan(chat_ctx)
        return self._compose(system, [convo[i] for i in plan.keep])

    def _compose(self, system: list[llm.ChatItem], keep: list[llm.ChatItem]) -> llm.ChatContext:
        # Order matters twice: the model reads the summary before the conversation it precedes,
        # and the prompt's prefix (system + summary) stays identical from one fold to the next,
        # so llama.cpp / OpenAI prompt caching only evaluate the newest messages. (ChatContext.insert
        # orders by creation time, which put a freshly built summary after the caller's question.)
        head = list(system)
        if self.summary:
            head.append(self._summary_message())
        return llm.ChatContext(head + keep)

    def _summary_message(self) -> llm.ChatMessage:
        if self._summary_item is None or self._summary_item.text_content != self._summary_text():
            self._summary_item = llm.ChatMessage(role="system", content=[self._summary_text()])
        return self._summary_item

    def _summary_text(self) -> str:
        return f"Earlier in this call (use it to answer): {self.summary}"

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _submit(self, msgs: list[llm.ChatItem]) -> None:
        assert self.jobs is not None
        ids = [m.id for m in msgs]
        self._job = ("", ids, time.monotonic())  # reserve: one job at a time
        try:
            payload = [{k: v for k, v in _as_dict(m).items() if k != "id"} for m in msgs]
            job_id = await self.jobs.submit(
                TASK_SUMMARIZE,
                expires_s=self.job_timeout_s,
                previous_summary=self.summary,
                messages=payload,
                use_llm=self.summary_llm,
            )
        except Exception as e:  # broker down: carry on with the window alone
            self._fail(f"enqueue failed: {e}")
            return
        self._job = (job_id, ids, time.monotonic())
        self._event("summary_enqueued", job=job_id, messages=len(ids))
        self._spawn(self._watch(job_id, ids))

    async def _watch(self, job_id: str, ids: list[str]) -> None:
        assert self.jobs is not None
        started = time.monotonic()
        while time.monotonic() - started < self.job_timeout_s:
            await asyncio.sleep(0.5)
            try:
                st = await self.jobs.poll(job_id)
            except Exception as e:  # noqa: BLE001
                self._fail(f"poll failed: {e}")
                return
            if st.state == "SUCCESS" and isinstance(st.result, dict):
                before = len(self.summary)
                self.summary = str(st.result.get("summary", ""))
                self._covered.update(ids)
                self._job = None
                self.stats.summaries += 1
                self._event(
                    "summary_folded", job=job_id, messages=len(ids), summary_chars=(before, len(self.summary))
                )
                if self.on_fold is not None:
                    self.on_fold()
                return
            if st.state in ("FAILURE", "REVOKED"):
                self._fail(f"job {st.state.lower()}: {st.result}")
                return
        try:
            await self.jobs.revoke(job_id)
        except Exception:  # noqa: BLE001
            pass
        self._fail(f"job {job_id} timed out after {self.job_timeout_s:.0f}s (no worker?)")

    def _fail(self, why: str) -> None:
        self._job = None
        self.stats.summary_failures += 1
        self._backoff_until = time.monotonic() + 10.0
        self._event("summary_failed", reason=why)
        log.warning("context summary unavailable: %s", why)

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._job and self._job[0] and self.jobs is not None:
            try:
                await self.jobs.revoke(self._job[0])
            except Exception:  # noqa: BLE001
                pass
