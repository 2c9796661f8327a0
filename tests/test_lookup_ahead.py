"""The cache looked up on an early transcript, during the VAD's end-of-speech wait (issue #23
item 1): the turn uses that lookup when its words are the same, and a lookup the turn does not
use never happened for the admin (no statistics, no entry hit count). Real Redis Stack, the
real AgentSession and CallAgent, the instant LLM for the misses."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from livekit.agents import AgentSession

from agent.call.agent import CallAgent
from agent.call.assemble import prewarm_cache
from agent.providers import build_providers
from core.settings import get_settings
from core.tenants import load_tenant

HIT = "What are your opening hours?"  # acme's FAQ, word for word


@pytest.fixture
def cache_ns(redis_url: str) -> tuple[str, str]:
    from cache.admin import CacheAdmin

    ns = f"ahead-{uuid.uuid4().hex[:8]}"
    CacheAdmin(redis_url, namespace=ns).warm(tenant="acme")
    return redis_url, ns


def _state(redis_url: str, ns: str) -> tuple[dict[str, Any], dict[str, int]]:
    from cache.admin import CacheAdmin

    admin = CacheAdmin(redis_url, namespace=ns)
    stats = admin.stats()
    hits = {}
    for eid in admin._entry_ids():
        row = admin.r.hgetall(admin.keys.entry(eid))
        hits[eid] = int(row.get(b"hits", 0))
    return {k: stats[k] for k in ("lookups", "hits", "misses", "bypasses")}, hits


async def _settled(agent: CallAgent) -> None:
    """The agent's background work (the lookup's deferred writes, the warm-up) has finished."""
    await asyncio.wait_for(asyncio.gather(*agent._background, return_exceptions=True), 30)  # hang guard


async def test_lookup_ahead_writes_nothing_until_the_turn_uses_it(cache_ns: tuple[str, str]) -> None:
    from cache.semantic import ResponseCache

    redis_url, ns = cache_ns
    cache = ResponseCache(redis_url, namespace=ns, budget_ms=5000)
    prewarm_cache(cache)
    where = {"tenant": "acme", "language": "en", "knowledge_version": load_tenant("acme").knowledge_version}
    try:
        before = _state(redis_url, ns)
        hit = await cache.lookup_ahead(HIT, **where)
        miss = await cache.lookup_ahead("Can I bring my parrot to the store's birthday party?", **where)
        assert hit.hit is not None and hit.outcome == "hit", hit
        assert miss.hit is None and miss.outcome == "miss", miss
        assert _state(redis_url, ns) == before  # nothing written yet
        await hit.commit()
        await miss.commit()
        stats, entry_hits = _state(redis_url, ns)
        assert stats["lookups"] == before[0]["lookups"] + 2
        assert stats["hits"] == before[0]["hits"] + 1 and stats["misses"] == before[0]["misses"] + 1
        assert entry_hits[hit.hit.id] == before[1][hit.hit.id] + 1
        # what a lookup of the turn itself writes, for comparison: the same counts
        await cache.lookup(HIT, **where)
        again, entry_again = _state(redis_url, ns)
        assert again["lookups"] == stats["lookups"] + 1 and again["hits"] == stats["hits"] + 1
        assert entry_again[hit.hit.id] == entry_hits[hit.hit.id] + 1
    finally:
        await cache.close()


async def test_the_turn_uses_the_lookup_made_ahead_only_for_the_same_words(
    cache_ns: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cache.semantic import ResponseCache

    monkeypatch.setenv("CALLCENTER_SCOPE_CHECK", "false")  # the instant LLM's words are the answer
    get_settings.cache_clear()
    redis_url, ns = cache_ns
    cache = ResponseCache(redis_url, namespace=ns, budget_ms=5000)
    prewarm_cache(cache)
    turn_lookups: list[str] = []
    real_lookup = cache.lookup

    async def lookup(text: str, **kw: Any) -> Any:
        turn_lookups.append(text)
        return await real_lookup(text, **kw)

    monkeypatch.setattr(cache, "lookup", lookup)
    agent = CallAgent(load_tenant("acme"), voice="none", cache=cache)
    session = AgentSession(llm=build_providers("instant", get_settings()).llm)
    await session.start(agent, record=False)
    try:
        before = _state(redis_url, ns)[0]
        agent.on_early_text(HIT)  # the early STT pass has the words; the VAD still waits
        await session.run(user_input=HIT)  # the turn commits on the same words
        assert turn_lookups == []  # answered from the lookup made ahead
        assert agent.turn_log.generations[-1].cache_hit
        await _settled(agent)
        after = _state(redis_url, ns)[0]
        assert after["lookups"] == before["lookups"] + 1 and after["hits"] == before["hits"] + 1

        agent.on_early_text("Do you deliver to")  # the caller went on after this fragment ...
        await session.run(user_input="Do you deliver to Springfield?")  # ... to other words
        assert turn_lookups == ["Do you deliver to Springfield?"]  # looked up again
        await _settled(agent)
        final = _state(redis_url, ns)[0]
        assert final["lookups"] == after["lookups"] + 1  # the fragment's lookup was never counted
    finally:
        await session.aclose()
        await cache.close()
        get_settings.cache_clear()
