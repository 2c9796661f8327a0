"""Deterministic extraction of hard facts from a conversation.

A 0.5B summarizer drops or garbles numbers; these regexes make sure the caller's name, order and
account numbers, contact details and the agent's promises survive every fold verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

FACTS_PREFIX = "Facts:"
MAX_FACTS = 14

_NAME = re.compile(r"\b(?:my name is|my name's|this is|name is)\s+([A-Z][a-z'\-]+(?:\s+[A-Z][a-z'\-]+)?)")
_LABELLED_ID = re.compile(
    r"\b(order|account|ticket|case|invoice|policy|claim|reference|confirmation|tracking|member|customer|rma)"
    r"(?:\s+(?:number|no\.?|id|#))?\s*(?:is|:|#|was)?\s*#?\s*([A-Z]{0,4}-?\d[\dA-Z\-]{2,})",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_PHONE = re.compile(r"(?<!\w)(?:\+?\d[\d\s().-]{8,}\d)(?!\w)")
_PROMISE = re.compile(
    r"\b(?:I'll|I will|we'll|we will|I've|I have|I can)\s+(?:send|refund|issue|call|email|ship|"
    r"escalate|schedule|credit|cancel|replace|arrange|process|follow up|waive)[^.!?]*",
    re.IGNORECASE,
)
_PROBLEM = re.compile(
    r"[^.!?]*\b(?:problem|issue|broken|damaged|missing|not working|doesn't work|never arrived|"
    r"hasn't arrived|wrong|charged twice|overcharged|late|refund)\b[^.!?]*",
    re.IGNORECASE,
)


def message_text(msg: Mapping[str, Any]) -> str:
    c = msg.get("content")
    if isinstance(c, list):  # multi-part content: keep the text parts
        return " ".join(p if isinstance(p, str) else str(p.get("text", "")) for p in c)
    return c if isinstance(c, str) else ""


def extract_facts(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Facts as short 'label: value' strings, in order of first mention, without duplicates."""
    facts: list[str] = []
    problem_seen = False
    for msg in messages:
        role, text = msg.get("role"), message_text(msg)
        if not text:
            continue
        if role == "user":
            facts += [f"caller name: {m.group(1)}" for m in _NAME.finditer(text)]
            facts += [
                f"{m.group(1).lower()} number: {m.group(2).upper()}" for m in _LABELLED_ID.finditer(text)
            ]
            facts += [f"email: {m.group(0)}" for m in _EMAIL.finditer(text)]
            facts += [f"phone: {m.group(0).strip()}" for m in _PHONE.finditer(text)]
            if not problem_seen and (m := _PROBLEM.search(text)):
                facts.append(f"problem: {m.group(0).strip()[:120]}")
                problem_seen = True
        elif role == "assistant":
            facts += [f"promised: {m.group(0).strip()[:120]}" for m in _PROMISE.finditer(text)]
    return dedupe(facts)


def dedupe(facts: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for f in facts:
        key = f.lower()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def split_summary(summary: str) -> tuple[str, list[str]]:
    """Split a running summary into its prose and its 'Facts:' line (written by `join_summary`)."""
    prose, facts = [], []
    for line in (summary or "").splitlines():
        if line.startswith(FACTS_PREFIX):
            facts += [f.strip() for f in line[len(FACTS_PREFIX) :].split(";") if f.strip()]
        elif line.strip():
            prose.append(line.strip())
    return " ".join(prose), facts


def join_summary(prose: str, facts: list[str]) -> str:
    # Keep the earliest facts (name, order number) and the latest promises when over the cap.
    if len(facts) > MAX_FACTS:
        facts = facts[: MAX_FACTS // 2] + facts[-(MAX_FACTS - MAX_FACTS // 2) :]
    line = f"{FACTS_PREFIX} " + "; ".join(facts) if facts else ""
    return "\n".join(p for p in (prose.strip(), line) if p)
