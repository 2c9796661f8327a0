"""Two-stage matching (cache/verifier.py) through a real `ResponseCache` lookup on Redis Stack."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis

from cache import verifier as V
from cache.semantic import ResponseCache

SCOPE = {"tenant": "acme", "language": "en", "knowledge_version": "v1"}
TO_SAVINGS = "How do I move money from checking to savings?"
WITH_RECEIPT = "Can I return an item with a receipt?"
HOURS = "What are your opening hours?"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.fixture
def ns() -> str:
    return f"tv-{uuid.uuid4().hex[:8]}"


def make(redis_url: str, ns: str, **kw) -> ResponseCache:  # type: ignore[no-untyped-def]
    kw.setdefault("budget_ms", 5000)
    kw.setdefault("verifier", True)
    return ResponseCache(redis_url, namespace=ns, threshold=0.25, auto_serve=True, record_stats=False, **kw)


async def _drop(c: ResponseCache) -> None:
    r = c._client()
    try:
        await r.ft(c.keys.index).dropindex(delete_documents=True)
    except Exception:  # noqa: BLE001
        pass
    await c.close()


async def _hits(c: ResponseCache, queries: list[str]) -> list[str | None]:
    out = []
    for q in queries:
        hit = await c.lookup(q, **SCOPE)
        out.append(hit.id if hit else None)
    return out


def test_near_misses_rejected_paraphrases_accepted(redis_url: str, ns: str) -> None:
    async def go():  # type: ignore[no-untyped-def]
        c = make(redis_url, ns)
        try:
            a = await c.store(TO_SAVINGS, "Use Transfers in the app.", **SCOPE, source="warm")
            b = await c.store(WITH_RECEIPT, "Within 30 days for a refund.", **SCOPE, source="warm")
            h = await c.store(HOURS, "Nine to five, Monday to Friday.", **SCOPE, source="warm")
            assert a and b and h
            got = await _hits(
                c,
                [
                    "How do I move money from savings to checking?",  # direction swapped
                    "Can I return an item without a receipt?",  # negation
                    "um what are your opening hours please",  # transcript-style paraphrase
                    "how do i move money from checking to savings",
                ],
            )
            assert got == [None, None, h, a]
            # the near-miss is the KNN's nearest candidate: the acceptance step rejected it
            await c.lookup("How do I move money from savings to checking?", **SCOPE)
            assert c.last_candidates[0]["entry"] == a and c.last_candidates[0]["dist"] < 0.1
            assert c.last_candidates[0]["p"] == 0.0
        finally:
            await _drop(c)

    run(go())


def test_single_stage_lookup_serves_the_near_misses(redis_url: str, ns: str) -> None:
    """What the verifier fixes: with it off, the distance threshold serves both near-misses."""

    async def go():  # type: ignore[no-untyped-def]
        c = make(redis_url, ns, verifier=False)
        try:
            a = await c.store(TO_SAVINGS, "Use Transfers in the app.", **SCOPE, source="warm")
            b = await c.store(WITH_RECEIPT, "Within 30 days for a refund.", **SCOPE, source="warm")
            got = await _hits(
                c,
                ["How do I move money from savings to checking?", "Can I return an item without a receipt?"],
            )
            assert got == [a, b]  # wrong answers: this is the bug the verifier removes
        finally:
            await _drop(c)

    run(go())


def test_negative_exemplars_reject(redis_url: str, ns: str) -> None:
    q, near = "Can I pay by card?", "can i pay by credit card"

    async def go():  # type: ignore[no-untyped-def]
        c = make(redis_url, ns)
        try:
            eid = await c.store(q, "We take debit cards only.", **SCOPE, source="warm")
            assert eid
            assert await _hits(c, [near]) == [eid]  # the verifier alone accepts it
            r = redis.Redis.from_url(redis_url)
            try:  # what `cache warm --paraphrase` records (cache/paraphrase.py)
                negs = [{"text": "Can I pay by credit card?", "source": "generated"}]
                r.hset(c.keys.entry(eid), "negatives", json.dumps(negs))
            finally:
                r.close()
            assert await _hits(c, [near, "can I pay by card"]) == [None, eid]
        finally:
            await _drop(c)

    run(go())


def test_features_and_weights() -> None:
    f = dict(
        zip(V.FEATURES, V.features("move money from savings to checking", TO_SAVINGS, 0.05, 0.3), strict=True)
    )
    assert f["direction"] == 1.0
    f = dict(
        zip(V.FEATURES, V.features("can I return it without a receipt", WITH_RECEIPT, 0.05, 0.3), strict=True)
    )
    assert f["opposed"] == 1.0 and f["negation"] == 1.0
    f = dict(zip(V.FEATURES, V.features("what are your opening hours", HOURS, 0.03, 0.3), strict=True))
    assert not any(f[k] for k in V.VETO)
    v = V.get_verifier()
    assert 0 < v.accept < 1
    assert v.prob("what are your opening hours", HOURS, 0.03, 0.3) >= v.accept
    assert v.prob("are you open on christmas day", HOURS, 0.3, 0.3) < v.accept
    for name in V.NONPOSITIVE:  # a contrast never raises the probability
        assert v.w[V.FEATURES.index(name)] <= 0
    assert V.negative_veto("can i pay by credit card", "Can I pay by card?", ["Can I pay by credit card?"])
    assert not V.negative_veto("can I pay by card", "Can I pay by card?", ["Can I pay by credit card?"])


def test_the_cache_bench_times_the_two_stage_lookup(redis_url: str) -> None:
    from cache.bench import run_bench

    res = run_bench(redis_url, [300], queries=30, with_embedding=False)
    row = res["sizes"][0]
    assert res["verifier"] is True and row["entries"] == 300
    assert 0 < row["verify_p50_ms"] < row["knn_p50_ms"]  # the verifier's share is inside the lookup's time
