"""What a document job computes: chunked analysis and version comparison.

Each function is pure apart from the optional `llm` callable (messages, max_tokens) -> text, so the
Celery tasks only add progress, pacing and cancellation around them. Deterministic extraction
always runs; the LLM adds prose on top (and is skipped when CALLCENTER_TASKS_LLM=0).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from tasks.docs_store import sections

LLM = Callable[[list[dict[str, str]], int], str]
CHUNK_CHARS = 1800
_FACT = re.compile(
    r"(\$\s?\d[\d,.]*|\d+(?:\.\d+)?\s?%|\b\d+\s+(?:business\s+)?(?:days?|hours?|months?|nights?)\b|"
    r"\b\d{1,2}\s+(?:January|February|March|April|May|June|July|August|September|October|"
    r"November|December)\s+\d{4}\b|\b[A-Z]{1,4}-\d[\d-]*\b)"
)
_ACTION = re.compile(
    r"\b(must|shall|required|needs? to|should|deadline|escalate|call .* back|report|contact)\b", re.I
)
_SENT = re.compile(r"(?<=[.!?])\s+")


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Split on paragraph boundaries into chunks of about `size` characters (never empty)."""
    out: list[str] = []
    cur = ""
    for para in re.split(r"\n\s*\n", text):
        if cur and len(cur) + len(para) > size:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
        while len(cur) > size * 2:  # one giant paragraph: hard split
            out.append(cur[:size])
            cur = cur[size:]
    if cur.strip():
        out.append(cur)
    return out or [""]


def _sentences(text: str) -> list[str]:
    """Prose sentences (headings and table rows left out), joined across hard line wraps."""
    keep = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("|", "#"))]
    return [s.strip() for s in _SENT.split(" ".join(keep)) if len(s.strip()) > 3]


def _table_rows(text: str) -> list[str]:
    rows = []
    for ln in text.splitlines():
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if ln.lstrip().startswith("|") and not all(set(c) <= set("-: ") for c in cells):
            rows.append(" — ".join(c for c in cells if c))
    return rows


def key_facts(text: str, limit: int = 12) -> list[str]:
    """Sentences and table rows that carry amounts, percentages, durations, dates or ids."""
    out: list[str] = []
    for s in _sentences(text) + _table_rows(text):
        if _FACT.search(s) and s not in out:
            out.append(s)
    return out[:limit]


def action_items(text: str, limit: int = 8) -> list[str]:
    return [s for s in _sentences(text) if _ACTION.search(s)][:limit]


def extractive_summary(text: str, max_sentences: int = 4) -> str:
    """Title plus the first sentence of the first few sections: good enough to say what a doc is."""
    lines = text.splitlines()
    secs = sections(lines)
    title = secs[0].title if secs else ""
    firsts: list[str] = []
    for s in secs or []:
        body = "\n".join(lines[s.start + 1 : s.end])
        sent = _sentences(body)
        if sent and sent[0] not in firsts:
            firsts.append(sent[0])
        if len(firsts) >= max_sentences:
            break
    if not firsts:
        firsts = _sentences(text)[:max_sentences]
    return (f"{title}: " if title else "") + " ".join(firsts)


def llm_chunk_summary(llm: LLM, chunk: str, name: str) -> str:
    messages = [
        {"role": "system", "content": "You summarize business documents in two short, factual sentences."},
        {"role": "user", "content": f"Document {name} (part):\n{chunk}\n\nSummary:"},
    ]
    return " ".join(llm(messages, 100).split())


def llm_merge(llm: LLM, parts: list[str], name: str) -> str:
    if len(parts) == 1:
        return parts[0]
    joined = "\n".join(f"- {p}" for p in parts)[:3000]
    messages = [
        {"role": "system", "content": "Combine these partial summaries into three short sentences."},
        {"role": "user", "content": f"Document {name}:\n{joined}\n\nSummary:"},
    ]
    return " ".join(llm(messages, 120).split())


def unified_diff(
    a_text: str, b_text: str, a_name: str, b_name: str, max_lines: int = 200
) -> tuple[str, dict[str, int]]:
    diff = list(
        difflib.unified_diff(a_text.splitlines(), b_text.splitlines(), a_name, b_name, lineterm="", n=1)
    )
    added = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
    removed = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
    stats = {"added_lines": added, "removed_lines": removed, "diff_lines": len(diff)}
    text = "\n".join(diff[:max_lines]) + ("\n… (diff truncated)" if len(diff) > max_lines else "")
    return text, stats


def changed_pairs(a_text: str, b_text: str, limit: int = 12) -> list[dict[str, Any]]:
    """Line-level changes as {before, after} (either may be None), for a spoken summary."""
    a, b = a_text.splitlines(), b_text.splitlines()
    out: list[dict[str, Any]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        olds, news = a[i1:i2], b[j1:j2]
        for k in range(max(len(olds), len(news))):
            before = olds[k].strip() if k < len(olds) and olds[k].strip() else None
            after = news[k].strip() if k < len(news) and news[k].strip() else None
            if before or after:
                out.append({"before": before, "after": after})
    return out[:limit]


def extractive_differences(pairs: list[dict[str, Any]]) -> str:
    if not pairs:
        return "The documents are identical."
    phrases = []
    for p in pairs[:6]:
        if p["before"] and p["after"]:
            phrases.append(f"'{p['before']}' became '{p['after']}'")
        elif p["after"]:
            phrases.append(f"added '{p['after']}'")
        else:
            phrases.append(f"removed '{p['before']}'")
    more = f" and {len(pairs) - 6} more changes" if len(pairs) > 6 else ""
    return f"{len(pairs)} changed lines: " + "; ".join(phrases) + more + "."


def llm_differences(llm: LLM, diff_text: str, a_name: str, b_name: str) -> str:
    messages = [
        {
            "role": "system",
            "content": "You explain document changes to a phone agent in at most three sentences.",
        },
        {
            "role": "user",
            "content": f"Unified diff from {a_name} to {b_name}:\n{diff_text[:2500]}\n\nWhat changed?",
        },
    ]
    return " ".join(llm(messages, 120).split())
