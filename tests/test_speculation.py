"""Preemptive generation (issue 23 item 1): the LLM answers each final transcript before the turn
is committed. When the caller goes on after a pause, that speculative reply is dropped: never
spoken, never stored in the cache, counted. The reply to the whole question is the one heard and
the one stored. Real session, real Redis Stack, the instant profile (its STT returns the words
said so far, its LLM answers at once, so the first reply is complete before the caller resumes).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from agent.call.assemble import CallServices, prewarm_cache
from agent.providers import build_providers
from agent.providers.instant import InstantSTT
from agent.sim.call import CallResult, SimulatedCall
from agent.sim.scenario import Scenario
from core.settings import get_settings
from core.tenants import load_tenant

# a pause after "on the, um,": the sentence is left open, so the session waits for more
FRAGMENT = "What are your opening hours on the, um,"
QUESTION = f"{FRAGMENT} weekend?"
# both grounded in acme's facts (eight to six, Monday to Saturday), so either could be stored
EARLY = "We are open from eight to six."
FULL = "We are open from eight to six on Saturdays."  # the whole question (the weekend)


def _reply(question: str) -> str:
    return FULL if "weekend" in question.lower() else EARLY


@pytest.fixture
def globex_like_acme(monkeypatch: pytest.MonkeyPatch) -> None:
    """acme, but serving call answers at once (as globex does), so a stored fragment would be live."""
    monkeypatch.setenv("CALLCENTER_SCOPE_CHECK", "false")  # the instant LLM's words are the answer
    get_settings.cache_clear()


async def _call(redis_url: str, out: Path, ns: str) -> CallResult:
    from cache.semantic import ResponseCache

    cache = ResponseCache(redis_url, namespace=ns, budget_ms=5000)
    prewarm_cache(cache)  # as the worker does: the model loaded before the call, not in its first turn
    providers = build_providers("instant", get_settings())
    providers.llm.reply_for = _reply  # type: ignore[attr-defined]
    # The instant STT times words by their share of characters, which can be a few words off;
    # told no duration, it returns each fragment whole at the first end of speech after it began.
    stt = providers.stt
    stt.expect = lambda text, _duration=None: InstantSTT.expect(stt, text, None)  # type: ignore[attr-defined]
    turns = [{"say": QUESTION, "hesitate_after": len(FRAGMENT.split()), "hesitate_s": 1.0}, {"pause": 1.0}]
    sim = SimulatedCall(
        Scenario(tenant="acme", turns=turns),
        load_tenant("acme"),
        providers,
        out,
        services=CallServices(cache=cache),
    )
    try:
        return await asyncio.wait_for(sim.run(), 120)  # a hang guard, not a latency limit
    finally:
        await cache.close()


async def test_a_reply_to_half_a_question_is_dropped_unheard_and_unstored(
    redis_url: str, tmp_path: Path, globex_like_acme: None
) -> None:
    from cache.admin import CacheAdmin

    ns = f"spec-{uuid.uuid4().hex[:8]}"
    result = await _call(redis_url, tmp_path / "call", ns)
    assert result.error is None, result.error
    items = result.transcript["items"]
    said = [i["text"].strip() for i in items if i["role"] == "assistant"]
    heard = [i["text"] for i in items if i["role"] == "user"]
    # the caller's question reached the agent whole, and its answer is what was spoken
    assert heard and "weekend" in heard[-1], heard
    assert FULL in said and EARLY not in said, said
    # the speculative reply to the fragment existed and was dropped, counted in the events
    dropped = [e for e in result.events if e["type"] == "speculation_dropped"]
    assert dropped and all("weekend" not in e["user_text"] for e in dropped), dropped
    # only the heard answer reached the cache (a pending candidate: acme reviews call answers)
    rows = CacheAdmin(redis_url, namespace=ns).list(tenant="acme", limit=0)
    answers = {r["answer"] for r in rows}
    assert EARLY not in answers, rows
    assert FULL in answers, rows
