"""What the context manager hands the LLM: system prompt, then the summary, then the kept turns.

A summary placed after the caller's question made the model read it last and changed the
prompt's tail every turn, so the prompt cache re-read the summary and the turns around it."""

from __future__ import annotations

import pytest
from livekit.agents import AgentSession, llm

from agent.call.agent import CallAgent
from agent.call.context import ContextManager
from agent.providers.local_llm import LocalLLM, chat_messages
from core.local_llm import LocalLLMEngine
from core.tenants import load_tenant


def _call(turns: int) -> llm.ChatContext:
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content="You are the Acme phone agent.")
    for n in range(turns):
        ctx.add_message(role="user", content=f"question {n}")
        ctx.add_message(role="assistant", content=f"answer {n}")
    ctx.add_message(role="user", content="the current question")
    return ctx


def test_summary_sits_between_system_prompt_and_conversation() -> None:
    cm = ContextManager(None, keep_recent=4, max_messages=6, batch=2)
    cm.summary = "Caller Maria Lopez, order A-483920."
    out = chat_messages(cm.prepare(_call(10)))
    assert out[0]["role"] == "system"
    assert out[0]["content"].startswith("You are the Acme phone agent.")
    assert "A-483920" in out[0]["content"]  # one system block: prompt + summary
    assert [m["role"] for m in out[1:]].count("system") == 0
    assert out[-1] == {"role": "user", "content": "the current question"}
    texts = [m["content"] for m in out[1:]]
    conversation = [f"{w} {n}" for n in range(10) for w in ("question", "answer")]
    conversation.append("the current question")
    assert texts == conversation[-len(texts) :]  # the newest messages, in conversation order


def test_prompt_only_grows_at_its_end_between_folds() -> None:
    cm = ContextManager(None, keep_recent=10, max_messages=30, batch=8)
    cm.summary = "Caller Maria Lopez."
    call = _call(3)
    first = chat_messages(cm.prepare(call))
    call.add_message(role="assistant", content="the answer")
    call.add_message(role="user", content="the next question")
    second = chat_messages(cm.prepare(call))
    assert second[: len(first)] == first  # same prefix: a prompt cache reuses all of it
    assert second[len(first) :] == [
        {"role": "assistant", "content": "the answer"},
        {"role": "user", "content": "the next question"},
    ]


SUMMARY = "Caller Maria Lopez, order A-483920, says the drill she bought last week is broken. " * 3


async def _turn(session: AgentSession, text: str) -> dict:
    await session.run(user_input=text)
    return dict(LocalLLMEngine.shared().last_timings)


@pytest.mark.slow
async def test_a_folded_summary_is_read_before_the_next_turn() -> None:
    """After a fold the prompt's start changes; the agent pre-reads it between turns so the
    caller's next turn only reads its own new words (llama.cpp's prompt cache)."""
    cm = ContextManager(None, keep_recent=10, max_messages=30, batch=8)
    agent = CallAgent(load_tenant("acme"), voice="none", context=cm)
    session = AgentSession(llm=LocalLLM(max_tokens=8))
    await session.start(agent, record=False)
    try:
        await _turn(session, "Are you open on Saturday?")  # in the facts: the LLM answers
        cm.summary = SUMMARY  # as if a summary just landed, without the agent being told
        cold = await _turn(session, "Is delivery free over 50 dollars?")
        cm.summary = SUMMARY + " She asked about delivery."
        assert cm.on_fold is not None
        cm.on_fold()  # what the context manager calls when a summary is folded in
        await agent.drain()
        warm = await _turn(session, "Can I return things within 30 days?")
    finally:
        await session.aclose()
    print("prompt tokens read: without prefill", cold, "with", warm)
    assert cold["prompt_n"] > 60  # the summary and everything after it re-read in the turn
    assert warm["prompt_n"] < 40  # only the last answer and the new question
    assert warm["cache_n"] > cold["cache_n"]


def test_prune_happens_after_a_reply_not_at_the_start_of_the_next_turn() -> None:
    cm = ContextManager(None, keep_recent=4, max_messages=10, batch=2)
    call = _call(4)  # 9 messages: the next turn (answer + question) makes 11 > 10
    assert cm.prune_ahead(call) is True
    pruned = cm.stats.pruned_messages
    assert pruned > 0
    before = chat_messages(cm.preview(call))  # what a prefill reads while the caller listens
    call.add_message(role="assistant", content="the answer")
    call.add_message(role="user", content="the next question")
    sent = chat_messages(cm.prepare(call))
    assert cm.stats.pruned_messages == pruned  # nothing more cut inside the turn
    assert sent[: len(before)] == before
    assert len([m for m in sent if m["role"] != "system"]) <= 10
    assert cm.prune_ahead(_call(1)) is False  # short calls: nothing to do
