"""Task "callcenter.summarize": fold old conversation messages into one short running summary.

Runs on a Celery worker so a turn never waits on it. The prose comes from the configured LLM
(`core.local_llm.complete_text`); the hard facts come from regexes (`tasks/facts.py`) and are
appended verbatim, so an order number survives even when the small model drops it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from tasks.celery_app import SUMMARIZE_TIME_LIMIT_S, TASK_SUMMARIZE, app
from tasks.facts import dedupe, extract_facts, join_summary, message_text, split_summary

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You keep a running summary of a phone call between a caller and a support agent. "
    "Reply with at most three short sentences. Keep the caller's name, order or account numbers, "
    "the problem, and anything the agent promised. No preamble."
)
MAX_TRANSCRIPT_CHARS = 2400  # bounds the prompt (and the worker's time) whatever the agent sends
_SPEAKER = {"user": "Caller", "assistant": "Agent", "system": "Note", "tool": "Tool result"}


def use_llm_default() -> bool:
    """CALLCENTER_TASKS_LLM=0 switches summaries and document jobs to the extractive path (tests)."""
    from core.settings import get_settings

    return get_settings().tasks_llm is not False


def transcript(messages: list[Mapping[str, Any]]) -> str:
    lines = []
    for m in messages:
        text = " ".join(message_text(m).split())
        if text:
            limit = 200 if m.get("role") == "tool" else 300
            lines.append(f"{_SPEAKER.get(str(m.get('role')), 'Note')}: {text[:limit]}")
    out = "\n".join(lines)
    if len(out) <= MAX_TRANSCRIPT_CHARS:
        return out
    # Keep the start (where callers give names and numbers) and the end (the current topic).
    half = MAX_TRANSCRIPT_CHARS // 2
    return out[:half].rsplit("\n", 1)[0] + "\n[...]\n" + out[-half:].split("\n", 1)[-1]


def llm_prose(previous_prose: str, messages: list[Mapping[str, Any]]) -> str:
    from core.local_llm import complete_text  # heavy (loads the model): only on the worker

    earlier = f"Earlier in the call: {previous_prose}\n\n" if previous_prose else ""
    user = (
        f"{earlier}Call transcript:\n{transcript(messages)}\n\nWrite the updated summary of the whole call."
    )
    out = complete_text([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}], 90)
    return " ".join(out.split())[:600]


def extractive_prose(previous_prose: str, messages: list[Mapping[str, Any]]) -> str:
    """No-LLM fallback: the old prose plus the topics the caller raised, clipped.

    Worded as past topics, never as a pending request: a small model that reads "the caller
    said X" in its context tends to answer X again instead of the current question."""
    asked = [" ".join(message_text(m).split())[:60] for m in messages if m.get("role") == "user"]
    topics = "; ".join(dict.fromkeys(a.rstrip("?.!") for a in asked if a))[:240]
    parts = [previous_prose[:400], f"Topics already covered: {topics}." if topics else ""]
    return " ".join(p for p in parts if p.strip())


def summarize_messages(
    previous_summary: str = "", messages: list[Mapping[str, Any]] | None = None, use_llm: bool | None = None
) -> dict[str, Any]:
    """The task body, callable without Celery."""
    t0 = time.monotonic()
    messages = list(messages or [])
    prev_prose, prev_facts = split_summary(previous_summary)
    facts = dedupe(prev_facts + extract_facts(messages))
    llm = use_llm_default() if use_llm is None else use_llm
    prose = ""
    if llm:
        try:
            prose = llm_prose(prev_prose, messages)
        except Exception as e:  # the facts still make a usable summary; the agent must not lose them
            log.warning("summarize: LLM failed (%s); using the extractive summary", e)
            llm = False
    if not prose:
        prose = extractive_prose(prev_prose, messages)
    return {
        "summary": join_summary(prose, facts),
        "facts": facts,
        "llm": llm,
        "messages": len(messages),
        "duration_s": round(time.monotonic() - t0, 3),
    }


@app.task(
    name=TASK_SUMMARIZE,
    soft_time_limit=SUMMARIZE_TIME_LIMIT_S - 15,
    time_limit=SUMMARIZE_TIME_LIMIT_S,
)
def summarize(
    payload: Mapping[str, Any] | None = None,
    previous_summary: str = "",
    messages: list[Mapping[str, Any]] | None = None,
    use_llm: bool | None = None,
) -> dict[str, Any]:
    """Accepts either kwargs or one positional payload {previous_summary, messages}."""
    if payload:
        previous_summary = payload.get("previous_summary") or previous_summary
        messages = payload.get("messages") or messages
        use_llm = payload.get("use_llm", use_llm)
    return summarize_messages(previous_summary, messages, use_llm)
