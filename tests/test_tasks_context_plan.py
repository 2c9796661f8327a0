"""plan_fold: bounded window, unit-granular pruning, never an orphaned tool result."""

from __future__ import annotations

from typing import Any

from tasks.context_plan import plan_fold


def _chat(n: int) -> list[dict[str, Any]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(n)]


def _assert_no_orphans(messages: list[dict[str, Any]], kept: list[int]) -> None:
    calls = {messages[i].get("call_id") for i in kept if messages[i].get("role") == "assistant"}
    for i in kept:
        if messages[i].get("role") == "tool":
            assert messages[i]["call_id"] in calls, f"orphaned tool result at {i}"


def test_short_chat_keeps_everything() -> None:
    plan = plan_fold(_chat(8))
    assert plan.keep == list(range(8)) and plan.summarize == [] and plan.prune == []


def test_window_summarize_and_prune_bounds() -> None:
    msgs = [{"role": "system", "content": "sys"}] + _chat(40)
    plan = plan_fold(msgs, keep_recent=10, max_messages=30)
    assert plan.recent == list(range(31, 41))
    assert plan.summarize == list(range(1, 31))  # everything older than the window, system excluded
    assert plan.prune == list(range(1, 11))  # 40 -> 30 conversation messages
    assert 0 in plan.keep and len(plan.keep) == 31
    assert set(plan.prune) <= set(plan.summarize)


def test_tool_pair_straddling_window_is_kept_whole() -> None:
    msgs = (
        _chat(10)
        + [
            {"role": "assistant", "content": "", "call_id": "c1"},
            {"role": "tool", "content": "result", "call_id": "c1"},
        ]
        + _chat(9)
    )
    plan = plan_fold(msgs, keep_recent=10, max_messages=30)
    # 9 chat + tool result = 10 would split the pair; the call comes along instead.
    assert {10, 11} <= set(plan.recent)
    _assert_no_orphans(msgs, plan.keep)
    _assert_no_orphans(msgs, plan.recent)


def test_prune_takes_call_and_result_together() -> None:
    msgs = [
        {"role": "user", "content": "look up my order"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "a"}, {"id": "b"}]},
        {"role": "tool", "content": "r1", "call_id": "a"},
        {"role": "tool", "content": "r2", "call_id": "b"},
    ] + _chat(30)
    plan = plan_fold(msgs, keep_recent=10, max_messages=30)
    assert 1 in plan.prune and 2 in plan.prune and 3 in plan.prune
    for i in plan.keep:
        if msgs[i].get("role") == "tool":
            raise AssertionError("a tool result survived without its call")


def test_orphan_result_is_pruned_and_summarized() -> None:
    msgs = [{"role": "tool", "content": "stale", "call_id": "gone"}] + _chat(5)
    plan = plan_fold(msgs)
    assert plan.prune == [0] and 0 in plan.summarize and 0 not in plan.keep


def test_in_flight_call_in_window_is_kept() -> None:
    msgs = _chat(12) + [{"role": "assistant", "content": "", "call_id": "c9"}]
    plan = plan_fold(msgs, keep_recent=4)
    assert 12 in plan.recent and 12 in plan.keep


def test_slack_prunes_a_batch_at_once() -> None:
    msgs = _chat(31)
    plan = plan_fold(msgs, keep_recent=10, max_messages=30, slack=8)
    assert len(plan.prune) == 9 and len(plan.keep) == 22  # down to 30 - 8, not to 30
    assert plan_fold(_chat(30), keep_recent=10, max_messages=30, slack=8).prune == []  # bound not hit


BATCH = 8


def test_context_prefix_changes_once_per_batch_without_a_summarizer() -> None:
    """What the LLM is sent only grows at its end between prunes (prompt caching)."""
    from livekit.agents import llm

    from agent.call.context import ContextManager

    cm = ContextManager(None, keep_recent=10, max_messages=30, batch=BATCH)
    chat = llm.ChatContext()
    chat.add_message(role="system", content="sys")
    prefix_changes, previous = 0, None
    for turn in range(60):
        chat.add_message(role="user", content=f"question {turn}")
        sent = [m.text_content for m in cm.prepare(chat).items if isinstance(m, llm.ChatMessage)]
        assert len(sent) <= 31  # system + at most max_messages
        if previous is not None and sent[: len(previous)] != previous:
            prefix_changes += 1
        previous = sent
        chat.add_message(role="assistant", content=f"answer {turn}")
    # 120 messages through a 30-message bound, 8 pruned per prune: ~12 prunes, not ~45
    assert 5 <= prefix_changes <= 15, prefix_changes
