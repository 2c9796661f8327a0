"""Fault injection: Redis dies mid-call and comes back. The call completes; nothing stored is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis

from agent.call.assemble import CallServices, prewarm_cache
from agent.providers import build_providers
from agent.sim.call import SimulatedCall
from agent.sim.scenario import Scenario
from cache.redis_server import EmbeddedRedis
from cache.semantic import ResponseCache
from core.settings import get_settings
from core.tenants import load_tenant

QUESTIONS = [
    "What are your opening hours?",
    "Where is the store?",
    "Do you deliver?",
    "What is your return policy?",
]


async def test_redis_killed_mid_call_then_restarted(tmp_path: Path):
    server = EmbeddedRedis(tmp_path / "data").start()
    port = server.port
    tenant = load_tenant("acme")
    # stored answers serve at once, as for a tenant with `cache: {auto_serve: true}` (issue 20)
    cache = ResponseCache(server.url, namespace="fault", auto_serve=True)
    prewarm_cache(cache)
    # one entry stored before the crash: it must survive (AOF, everysec)
    stored = await cache.store(
        "Do you sell gift cards?", "Yes, gift cards are sold at the till.", tenant="acme", language="en",
        knowledge_version=tenant.knowledge_version,
    )  # fmt: skip
    assert stored
    await asyncio.sleep(1.5)  # > appendfsync everysec

    sc = Scenario(turns=[{"say": q} for q in QUESTIONS], tenant="acme")
    call = SimulatedCall(
        sc, tenant, build_providers("instant", get_settings()), tmp_path / "call",
        services=CallServices(cache=cache),
    )  # fmt: skip
    run = asyncio.create_task(call.run())
    restarted = None
    try:
        while not run.done():
            await asyncio.sleep(0.2)
            n = len(call.caller.utterances) if hasattr(call, "caller") else 0
            if n == 2 and server.proc is not None:
                server.kill()  # crash, no shutdown
            if n == 3 and restarted is None:
                restarted = EmbeddedRedis(tmp_path / "data", port=port).start()
        result = await run
    except BaseException:
        for s in (server, restarted):
            if s is not None:
                s.stop()
        raise
    assert result.error is None
    assert len(result.turns) == 4 and all(t.agent_text for t in result.turns)
    outcomes = [t.cache_outcome for t in result.turns]
    print("cache outcomes per turn:", outcomes)
    assert outcomes[0] in ("hit", "miss") and outcomes[2] is not None
    assert restarted is not None
    # once Redis is back, the same cache object reconnects (after its backoff) and still has
    # the entry stored before the crash
    hit = None
    for _ in range(80):
        hit = await cache.lookup(
            "Do you sell gift cards?",
            tenant="acme",
            language="en",
            knowledge_version=tenant.knowledge_version,
        )
        if hit is not None:
            break
        await asyncio.sleep(0.5)
    assert hit is not None and hit.id == stored
    restarted.stop()


async def test_entries_survive_a_crash(tmp_path: Path):
    server = EmbeddedRedis(tmp_path / "data").start()
    cache = ResponseCache(server.url, namespace="aof", auto_serve=True)  # served at once (issue 20)
    tenant = load_tenant("acme")
    eid = await cache.store(
        "Do you sell gift cards?", "Yes, at the till.", tenant="acme", language="en",
        knowledge_version=tenant.knowledge_version,
    )  # fmt: skip
    await cache.close()
    await asyncio.sleep(1.5)
    server.kill()
    again = EmbeddedRedis(tmp_path / "data", port=server.port).start()
    try:
        r = redis.Redis.from_url(again.url)
        assert r.exists(f"aof:e:{eid}") == 1
        hit = await ResponseCache(again.url, namespace="aof").lookup(
            "Do you sell gift cards?",
            tenant="acme",
            language="en",
            knowledge_version=tenant.knowledge_version,
        )
        assert hit is not None and hit.id == eid
    finally:
        again.stop()


def test_start_waits_for_a_long_load_instead_of_killing_it(tmp_path) -> None:
    """A big cache re-indexes for minutes at start; only this start's part of the log counts."""
    from cache.redis_server import _loading

    log = tmp_path / "redis.log"
    log.write_text("1:M * Loading RDB\n1:M * Ready to accept connections tcp\n")
    offset = log.stat().st_size
    assert not _loading(log, 0)  # the previous start finished loading
    with log.open("a") as f:
        f.write("2:M * <search> Loading event starts\n2:M * Loading RDB produced by version 7.4.1\n")
    assert _loading(log, offset)  # this start is still loading
    with log.open("a") as f:
        f.write("2:M * Ready to accept connections tcp\n")
    assert not _loading(log, offset)
    assert not _loading(tmp_path / "missing.log", 0)
