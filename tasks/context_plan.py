"""Pure planning of a context fold: which messages to summarize, which to prune, which to keep.

The agent's context manager calls `plan_fold` every turn. Messages are dicts with a `role`
(user/assistant/system/tool). A tool call is an assistant item with a `call_id` (or `tool_calls`
entries with `id`/`call_id`); its result is a `tool` item with the same `call_id`. A call and its
results form one unit that is kept, summarized or pruned together: LLM APIs reject a tool result
whose call is missing, so the plan never orphans one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FoldPlan:
    keep: list[int] = field(default_factory=list)  # stay in the context this turn, verbatim
    summarize: list[int] = field(default_factory=list)  # older than the window: send to the summarizer
    prune: list[int] = field(default_factory=list)  # drop now (a subset of summarize, or orphans)
    recent: list[int] = field(default_factory=list)  # the verbatim window itself

    def to_dict(self) -> dict[str, list[int]]:
        return asdict(self)


def _call_ids(msg: Mapping[str, Any]) -> list[str]:
    ids = [str(msg["call_id"])] if msg.get("call_id") else []
    for tc in msg.get("tool_calls") or []:
        cid = tc.get("call_id") or tc.get("id") if isinstance(tc, Mapping) else None
        if cid:
            ids.append(str(cid))
    return ids


def _is_result(msg: Mapping[str, Any]) -> bool:
    return msg.get("role") == "tool" or msg.get("type") == "function_call_output"


def _units(messages: Sequence[Mapping[str, Any]]) -> tuple[list[list[int]], list[int]]:
    """Group non-system message indices into atomic units, oldest first; also return orphan results."""
    owner: dict[str, int] = {}  # call_id -> index of the unit that issued it
    units: list[list[int]] = []
    orphans: list[int] = []
    for i, msg in enumerate(messages):
        if msg.get("role") == "system":
            continue
        if _is_result(msg):
            cid = str(msg.get("call_id") or "")
            if cid in owner:
                units[owner[cid]].append(i)
            else:
                orphans.append(i)
            continue
        units.append([i])
        for cid in _call_ids(msg):
            owner[cid] = len(units) - 1
    return units, orphans


def plan_fold(
    messages: Sequence[Mapping[str, Any]], keep_recent: int = 10, max_messages: int = 30, slack: int = 0
) -> FoldPlan:
    """Keep the newest `keep_recent` messages verbatim (a unit straddling the edge is kept whole);
    everything older is to be summarized; if more than `max_messages` non-system messages remain,
    the oldest units are pruned now so the context stays bounded even without a summary, down to
    `max_messages - slack`: pruning `slack` extra at once lets the next turns only append, so a
    prompt cache keeps its prefix instead of re-reading the whole window every turn.
    System messages are always kept and never counted."""
    units, orphans = _units(messages)
    recent_units: list[list[int]] = []
    n_recent = 0
    for unit in reversed(units):
        if n_recent >= keep_recent:
            break
        recent_units.insert(0, unit)
        n_recent += len(unit)
    older = units[: len(units) - len(recent_units)]

    total = sum(len(u) for u in units)
    target = max_messages - slack if total > max_messages else max_messages
    prune: list[int] = list(orphans)
    for unit in older:
        if total <= target:
            break
        prune += unit
        total -= len(unit)

    summarize = sorted([i for u in older for i in u] + orphans)
    pruned = set(prune)
    recent = sorted(i for u in recent_units for i in u)
    keep = [i for i in range(len(messages)) if i not in pruned]
    return FoldPlan(keep=keep, summarize=summarize, prune=sorted(pruned), recent=recent)
