"""Issue 20 items 3 and 4 (counter): `cache warm --paraphrase N` against the fake OpenAI server,
the local-profile refusal, and the pending-candidates gauge, on the real Redis Stack.

The fake's chat endpoint answers cache/paraphrase.py's JSON request with authored phrasings of
acme's FAQ questions (tests/support/fake_openai.py `PARAPHRASES`), as gpt-4o-mini would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from agent.dashboard.app import Dashboard
from agent.dashboard.auth import Access
from cache.admin import CacheAdmin
from cache.semantic import ResponseCache
from core.settings import get_settings
from core.tenants import load_tenant
from tests.support.fake_openai import FakeOpenAI
from tests.test_cache_cli_safety import cli, one_line_error

NEW_WAY = "Till when can I come by today?"  # only a generated paraphrase of the hours question


@pytest.fixture
def ns() -> str:
    return f"para-{uuid.uuid4().hex[:8]}"


def cloud(openai_fake: FakeOpenAI) -> dict[str, str]:
    return {"CALLCENTER_PROFILE": "cloud", "OPENAI_BASE_URL": openai_fake.base_url, "OPENAI_API_KEY": "dummy",
            "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip


def scope() -> dict[str, str]:
    t = load_tenant("acme")
    return {"tenant": t.name, "language": t.language, "knowledge_version": t.knowledge_version}


def look(url: str, ns: str, q: str, verifier: bool | None = None) -> str | None:
    async def go() -> str | None:
        c = ResponseCache(
            url, namespace=ns, budget_ms=10_000, preload=False, record_stats=False, verifier=verifier
        )
        try:
            hit = await c.lookup(q, **scope())
            return hit.id if hit else None
        finally:
            await c.close()

    return asyncio.run(go())


def test_warm_paraphrase_stores_generated_phrasings_that_hit_and_can_be_dropped(
    redis_url: str, ns: str, openai_fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p = cli("warm", "--tenant", "acme", "--namespace", ns, redis_url=redis_url)
    assert p.exit_code == 0, p.stderr
    adm = CacheAdmin(redis_url, namespace=ns)
    hours = next(r["id"] for r in adm.list("acme") if r["question"] == "What are your opening hours?")
    assert look(redis_url, ns, NEW_WAY) is None  # the FAQ's own phrasings do not cover it
    faq_paras = adm.show(hours)["paraphrases"]

    n_chat = len(openai_fake.chat_requests())
    p = cli(
        "warm",
        "--tenant",
        "acme",
        "--paraphrase",
        "3",
        "--namespace",
        ns,
        redis_url=redis_url,
        env=cloud(openai_fake),
    )
    assert p.exit_code == 0, p.stderr
    assert "generated for 4 entries" in p.stdout, p.stdout
    asks = openai_fake.chat_requests()[n_chat:]
    assert len(asks) == 4 and all(r.body.get("response_format") == {"type": "json_object"} for r in asks)
    assert {r.model for r in asks} == {"gpt-4o-mini"}

    row = adm.show(hours)
    gen = row["generated_paraphrases"]
    assert NEW_WAY in gen and 1 <= len(gen) <= 3
    assert row["paraphrases"] == faq_paras + gen  # the FAQ's own first, then the generated ones
    assert {n["source"] for n in row["negatives"]} == {"generated"}
    assert "Are you open on Christmas Day?" in [n["text"] for n in row["negatives"]]
    assert row["answer"].startswith("We're open Monday to Saturday")  # the curated answer, untouched
    assert look(redis_url, ns, NEW_WAY) == hours
    assert look(redis_url, ns, "till when can i come by today") == hours

    shown = cli("show", hours, "--namespace", ns, redis_url=redis_url).stdout
    flat = " ".join(shown.replace("│", " ").split())  # the table wraps long cells
    assert f"{NEW_WAY} [generated]" in flat and "Christmas Day? [generated]" in flat, shown

    # a re-warm of the same FAQ keeps them; asking again adds no duplicates
    assert cli("warm", "--tenant", "acme", "--namespace", ns, redis_url=redis_url).exit_code == 0
    assert adm.show(hours)["generated_paraphrases"] == gen and look(redis_url, ns, NEW_WAY) == hours
    for k, v in cloud(openai_fake).items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    again = adm.paraphrase([hours], 3)
    get_settings.cache_clear()
    # the ones stored are not stored twice (one refused before as nearer another entry may now
    # pass: the entry's new phrasings are nearer to it)
    assert again["duplicate"] == len(gen) and again["added"] == 3 - len(gen) - again["ambiguous"]
    paras = adm.show(hours)["paraphrases"]
    assert len(paras) == len(set(paras))
    gen = adm.show(hours)["generated_paraphrases"]

    # export / import keeps which phrasings were generated
    adm.export(tmp_path / "x.jsonl", tenant="acme")
    other = CacheAdmin(redis_url, namespace=ns + "-copy")
    other.import_(tmp_path / "x.jsonl")
    copy = other.show(hours)
    assert (copy["generated_paraphrases"], copy["negatives"]) == (gen, adm.show(hours)["negatives"])
    other.invalidate(everything=True)

    p = cli("drop-generated", hours, "--namespace", ns, redis_url=redis_url)
    assert p.exit_code == 0 and f"dropped {len(gen) + 2} generated" in p.stdout, p.stdout
    row = adm.show(hours)
    assert row["paraphrases"] == faq_paras and row["generated_paraphrases"] == [] and row["negatives"] == []
    assert look(redis_url, ns, NEW_WAY) is None
    assert look(redis_url, ns, faq_paras[0]) == hours  # the FAQ's own paraphrases still serve


def test_a_paraphrase_nearer_another_entry_is_not_stored(
    redis_url: str, ns: str, openai_fake: FakeOpenAI
) -> None:
    from cache.embedders import get_cache_embedder
    from cache.paraphrase import add_generated

    adm = CacheAdmin(redis_url, namespace=ns)
    ids = adm.warm(tenant="acme")["ids"]
    hours, store = ids[0], ids[1]
    res = add_generated(
        adm.r, adm.keys, get_cache_embedder(), hours, ["What's the address of the store?"], []
    )
    assert res["ambiguous"] == 1 and res["added"] == 0
    # never the hours entry's; the nearest entry is the store's (the verifier, on by default, finds
    # this rewording too far from "Where is the store?" and leaves it to the LLM)
    assert look(redis_url, ns, "What's the address of the store?") in (store, None)
    assert look(redis_url, ns, "What's the address of the store?", verifier=False) == store


def test_local_profile_refuses_paraphrases_and_stores_nothing(redis_url: str, ns: str) -> None:
    p = cli("warm", "--tenant", "acme", "--paraphrase", "3", "--namespace", ns, redis_url=redis_url,
            env={"CALLCENTER_PROFILE": "local"})  # fmt: skip
    one_line_error(p, "paraphrases were unusable")
    assert CacheAdmin(redis_url, namespace=ns).list() == []
    p = cli("warm", "--tenant", "acme", "--paraphrase", "0", "--namespace", ns, redis_url=redis_url,
            env={"CALLCENTER_PROFILE": "cloud", "OPENAI_API_KEY": "dummy"})  # fmt: skip
    one_line_error(p, "--paraphrase must be between 1 and 20")
    assert CacheAdmin(redis_url, namespace=ns).list() == []  # refused before the warm-up stored


def test_pending_candidates_gauge_and_stats(redis_url: str, ns: str, tmp_path: Path) -> None:
    async def store(*pairs: tuple[str, str]) -> list[str | None]:
        c = ResponseCache(redis_url, namespace=ns, budget_ms=10_000, preload=False)
        try:
            return [await c.store(q, a, **scope()) for q, a in pairs]  # source "call": pending
        finally:
            await c.close()

    ids = asyncio.run(store(("Do you sell garden hoses?", "Yes, garden hoses are in aisle four."),
                            ("Do you cut keys?", "Yes, we cut keys at the front counter.")))  # fmt: skip
    assert all(ids)
    dash = Dashboard(tmp_path, redis_url, Access.build(None, None, True), namespace=ns)

    def gauge() -> float | None:
        return dash.metrics.registry.get_sample_value(
            "callcenter_cache_pending_candidates", {"tenant": "acme"}
        )

    dash.sync_metrics()
    assert gauge() == 2
    s = cli("stats", "--json", "--namespace", ns, redis_url=redis_url)
    assert json.loads(s.stdout)["pending_review_by_tenant"] == {"acme": 2}
    assert "pending_review[acme]" in cli("stats", "--namespace", ns, redis_url=redis_url).stdout
    dash.admin().reject(ids[0])
    dash.sync_metrics()
    assert gauge() == 1
    dash.admin().approve(ids[1])
    dash.sync_metrics()
    assert gauge() == 0  # emptied: 0, not the last value
