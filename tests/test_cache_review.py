"""Issue 20 item 4: provenance and review, on the real Redis Stack (no mocks).

Answers the LLM wrote in calls are pending candidates that no lookup serves until an admin
approves them (`CacheAdmin.approve` / `edit` / `reject`, `callcenter cache review`, the
dashboard's cache page); a tenant with `cache: {auto_serve: true}` serves them at once. FAQ and
warm-file entries serve at once, and a call never replaces them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from agent.call.assemble import CallServices
from agent.dashboard.app import create_app
from agent.providers import build_providers
from agent.providers.instant import InstantLLM
from agent.sim.call import SimulatedCall
from agent.sim.scenario import Scenario
from cache.admin import CacheAdmin, tenant_knowledge
from cache.semantic import ResponseCache
from core.errors import UserError
from core.settings import REPO_ROOT, get_settings
from core.tenants import load_tenant
from tests.test_cache_cli_safety import cli, one_line_error
from tests.test_dashboard_security import bearer, serve

Q = "Where is the store?"
A = "We're at 12 Main Street in Springfield."
EDITED = "Our shop is at 12 Main Street, Springfield, next to the post office."
ADMIN, READ = "review-admin-token-0123456789", "review-read-token-0123456789"


@pytest.fixture
def ns() -> str:
    return f"rv-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tenants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shipped tenants plus `selfserve`: acme's business with `cache: {auto_serve: true}`."""
    d = tmp_path / "tenants"
    shutil.copytree(REPO_ROOT / "tenants", d)
    data = yaml.safe_load((d / "acme.yaml").read_text())
    (d / "selfserve.yaml").write_text(yaml.safe_dump({**data, "numbers": [], "cache": {"auto_serve": True}}))
    monkeypatch.setenv("CALLCENTER_TENANTS_DIR", str(d))
    get_settings.cache_clear()
    yield d
    get_settings.cache_clear()


def scope(name: str) -> dict[str, str]:
    t = load_tenant(name)
    return {"tenant": t.name, "language": t.language, "knowledge_version": t.knowledge_version}


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _store_and_look(url: str, ns: str, *lines: tuple[str, str], tenant: str = "acme") -> list:
    c = ResponseCache(url, namespace=ns, budget_ms=5000, preload=False)
    try:
        # as `CallAgent._store` does: source "call" (the default), checked against the facts
        facts = tenant_knowledge(tenant)
        ids = [await c.store(q, a, **scope(tenant), facts=facts) for q, a in lines]
        hits = [await c.lookup(q, **scope(tenant), voice="v") for q, _ in lines]
        return [ids, hits]
    finally:
        await c.close()


async def _look(url: str, ns: str, text: str, tenant: str = "acme", voice: str | None = "v"):  # type: ignore[no-untyped-def]
    c = ResponseCache(url, namespace=ns, budget_ms=5000, preload=False)
    try:
        return await c.lookup(text, **scope(tenant), voice=voice)
    finally:
        await c.close()


def test_pending_is_never_served_and_approved_is(redis_url: str, ns: str) -> None:
    adm = CacheAdmin(redis_url, namespace=ns)
    (eid,), (hit,) = run(_store_and_look(redis_url, ns, (Q, A)))
    assert eid is not None and hit is None  # stored, but not served: not even the exact question
    assert adm.show(eid)["status"] == "pending" and adm.show(eid)["source"] == "call"
    assert adm.search(Q, tenant="acme") == []  # not in the vector index at all
    assert [r["id"] for r in adm.pending("acme")] == [eid]
    s = adm.stats()
    assert s["pending_review"] == 1 and s["candidates"] == 1

    row = adm.approve(eid)
    assert row["status"] == "approved" and row["reviewed"] > 0 and row["answer"] == A
    hit = run(_look(redis_url, ns, "where is the store"))
    assert hit is not None and hit.id == eid and hit.answer == A
    s = adm.stats()
    assert s["pending_review"] == 0 and s["detail"]["review_approved"] == 1
    with pytest.raises(UserError, match="not pending review"):
        adm.approve(eid)


def test_paraphrases_of_a_candidate_are_not_served_either(redis_url: str, ns: str) -> None:
    async def go() -> tuple[object, object]:
        c = ResponseCache(redis_url, namespace=ns, budget_ms=5000, preload=False)
        eid = await c.store(
            Q,
            A,
            **scope("acme"),
            paraphrases=["What is your street address?"],
            facts=tenant_knowledge("acme"),
        )
        before = await c.lookup("What is your street address?", **scope("acme"))
        CacheAdmin(redis_url, namespace=ns).approve(eid)  # type: ignore[arg-type]
        after = await c.lookup("What is your street address?", **scope("acme"))
        await c.close()
        return before, after

    before, after = run(go())
    assert before is None and after is not None and after.answer == A


def test_edit_serves_the_edited_answer_and_drops_old_audio(redis_url: str, ns: str) -> None:
    adm = CacheAdmin(redis_url, namespace=ns)
    (eid,), _ = run(_store_and_look(redis_url, ns, (Q, A)))

    async def audio() -> None:
        c = ResponseCache(redis_url, namespace=ns, preload=False)
        await c.attach_audio(eid, b"\x01\x00" * 800, 16000, "v")
        await c.close()

    run(audio())
    assert adm.show(eid)["voices"] == ["v"]
    with pytest.raises(UserError, match="refused by the cache policy"):
        adm.edit(eid, "Sure, I'll text it to you at 555-123-4567.")  # caller PII: never stored
    assert adm.show(eid)["status"] == "pending" and adm.show(eid)["answer"] == A
    with pytest.raises(UserError, match="empty"):
        adm.edit(eid, "   ")
    adm.edit(eid, EDITED)
    hit = run(_look(redis_url, ns, Q))
    assert hit is not None and hit.answer == EDITED and hit.audio is None  # old audio: wrong text
    assert adm.show(eid)["voices"] == [] and adm.stats()["detail"]["review_edited"] == 1


def test_reject_deletes_the_candidate(redis_url: str, ns: str) -> None:
    adm = CacheAdmin(redis_url, namespace=ns)
    (eid,), _ = run(_store_and_look(redis_url, ns, (Q, A)))
    adm.reject(eid)
    with pytest.raises(UserError, match="no cache entry"):
        adm.show(eid)
    assert adm.pending() == [] and run(_look(redis_url, ns, Q)) is None
    assert adm.stats()["detail"]["review_rejected"] == 1
    with pytest.raises(UserError, match="no cache entry"):
        adm.approve(eid)
    with pytest.raises(UserError, match="bad entry id"):
        adm.reject("x:y")


def test_a_call_never_replaces_a_faq_or_reviewed_answer(redis_url: str, ns: str) -> None:
    adm = CacheAdmin(redis_url, namespace=ns)
    adm.warm(tenant="acme")  # the tenant's FAQ: served at once
    faq = next(r for r in adm.list("acme") if r["question"] == Q)
    assert faq["source"] == "faq" and faq["status"] == "approved"
    (eid,), (hit,) = run(_store_and_look(redis_url, ns, (Q, "We moved, call us for the address.")))
    assert eid is None and hit is not None and hit.answer == A  # the FAQ answer stays
    assert adm.stats()["detail"]["not_stored_reviewed"] == 1
    # an approved candidate is an admin's answer now: a later call does not replace it either
    q2 = "Do you cut keys?"
    (c1,), _ = run(_store_and_look(redis_url, ns, (q2, "Yes, we cut keys while you wait.")))
    adm.approve(c1)
    (c2,), (hit,) = run(_store_and_look(redis_url, ns, (q2, "No, we don't cut keys.")))
    assert c2 is None and hit is not None and hit.answer == "Yes, we cut keys while you wait."


def test_warm_file_entries_serve_at_once_and_generated_wait(redis_url: str, ns: str, tmp_path: Path) -> None:
    faq = tmp_path / "faq.jsonl"
    faq.write_text(json.dumps({"question": "Do you sell gift cards?", "answer": "Yes, at the till."}) + "\n")
    adm = CacheAdmin(redis_url, namespace=ns)
    adm.warm(faq, tenant="acme")
    row = adm.list("acme")[0]
    assert row["source"] == "warm" and row["status"] == "approved"
    assert run(_look(redis_url, ns, "do you guys sell gift cards")) is not None


def test_auto_serve_tenant_serves_call_answers_at_once(redis_url: str, ns: str, tenants: Path) -> None:
    """Through real simulated calls (instant STT/LLM, real session and cache): acme's call answer
    waits for review, `selfserve` (auto_serve: true) serves its own at once."""

    async def one_call(tenant: str, cache: ResponseCache, out: Path) -> None:
        t = load_tenant(tenant)
        providers = dataclasses.replace(
            build_providers("instant", get_settings()), llm=InstantLLM(lambda _t: A)
        )
        call = SimulatedCall(Scenario(tenant=tenant, turns=[{"say": Q}]), t, providers, out,
                             services=CallServices(cache=cache))  # fmt: skip
        result = await call.run()
        assert result.error is None and result.turns[0].cache_outcome == "miss"

    async def go() -> tuple[object, object]:
        cache = ResponseCache(redis_url, namespace=ns, budget_ms=5000)
        await one_call("acme", cache, tenants.parent / "acme-call")
        await one_call("selfserve", cache, tenants.parent / "self-call")
        out = await cache.lookup(Q, **scope("acme")), await cache.lookup(Q, **scope("selfserve"))
        await cache.close()
        return out

    acme, selfserve = run(go())
    assert acme is None
    assert selfserve is not None and selfserve.answer == A
    adm = CacheAdmin(redis_url, namespace=ns)
    pending = adm.pending()
    assert [(r["tenant"], r["answer"]) for r in pending] == [("acme", A)]
    assert adm.show(selfserve.id)["source"] == "call" and adm.show(selfserve.id)["status"] == "approved"


def test_tenant_cache_block_is_validated(tenants: Path) -> None:
    base = yaml.safe_load((tenants / "acme.yaml").read_text())
    for cache, needle in (
        ({"auto_srve": True}, "cache.auto_srve"),
        ({"auto_serve": "yes"}, "cache.auto_serve"),
    ):
        (tenants / "odd.yaml").write_text(yaml.safe_dump({**base, "numbers": [], "cache": cache}))
        with pytest.raises(UserError) as e:
            load_tenant("odd")
        assert needle in str(e.value) and "\n" not in str(e.value)
    # auto_serve is how answers are served, not what is said: the knowledge version stays
    (tenants / "odd.yaml").write_text(yaml.safe_dump({**base, "cache": {"auto_serve": True}}))
    serving = load_tenant("odd")
    (tenants / "odd.yaml").write_text(yaml.safe_dump(base))
    assert serving.cache.auto_serve and not load_tenant("odd").cache.auto_serve
    assert serving.knowledge_version == load_tenant("odd").knowledge_version


def test_export_import_keeps_review_state_and_old_exports_are_approved(
    redis_url: str, ns: str, tmp_path: Path
) -> None:
    adm = CacheAdmin(redis_url, namespace=ns)
    (eid,), _ = run(_store_and_look(redis_url, ns, (Q, A)))
    out = tmp_path / "x.jsonl"
    adm.export(out)
    row = json.loads(out.read_text())
    assert row["status"] == "pending" and row["vec"]
    other = f"{ns}-b"
    b = CacheAdmin(redis_url, namespace=other)
    b.import_(out)
    assert b.show(eid)["status"] == "pending" and run(_look(redis_url, other, Q)) is None
    old = {k: v for k, v in row.items() if k not in ("status", "reviewed")}  # before review existed
    old_file = tmp_path / "old.jsonl"
    old_file.write_text(json.dumps(old) + "\n")
    c = CacheAdmin(redis_url, namespace=f"{ns}-c")
    assert c.import_(old_file)["imported"] == 1
    assert c.show(eid)["status"] == "approved"
    hit = run(_look(redis_url, f"{ns}-c", Q))
    assert hit is not None and hit.answer == A
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**row, "status": "maybe"}) + "\n")
    with pytest.raises(UserError, match="line 1: 'status'"):
        c.import_(bad)


def test_review_cli(redis_url: str, ns: str) -> None:
    (eid, eid2), _ = run(
        _store_and_look(redis_url, ns, (Q, A), ("Do you cut keys?", "Yes, we cut keys while you wait."))
    )
    p = cli("review", "--json", "--namespace", ns, redis_url=redis_url)
    assert p.exit_code == 0, p.stderr
    assert {r["id"] for r in json.loads(p.stdout)} == {eid, eid2}
    p = cli("stats", "--json", "--namespace", ns, redis_url=redis_url)
    assert json.loads(p.stdout)["pending_review"] == 2
    # a bad id: one line, non-zero, nothing changed (all or nothing)
    one_line_error(
        cli("review", "approve", eid, "nope", "--namespace", ns, redis_url=redis_url), "bad entry id"
    )
    one_line_error(
        cli("review", "reject", "0123456789ab", "--namespace", ns, redis_url=redis_url), "no cache entry"
    )
    assert CacheAdmin(redis_url, namespace=ns).pending_count() == 2
    # with an admin token configured, decisions need it
    env = {"CALLCENTER_ADMIN_TOKEN": ADMIN}
    one_line_error(
        cli("review", "approve", eid, "--namespace", ns, redis_url=redis_url, env=env), "admin token"
    )
    p = cli(
        "review",
        "approve",
        eid,
        "--namespace",
        ns,
        redis_url=redis_url,
        env={**env, "CALLCENTER_TOKEN": ADMIN},
    )
    assert p.exit_code == 0 and f"approved 1: {eid}" in p.stdout, p.stderr
    p = cli("review", "edit", eid2, EDITED, "--json", "--namespace", ns, redis_url=redis_url)
    assert p.exit_code == 0 and json.loads(p.stdout)["answer"] == EDITED, p.stderr
    one_line_error(
        cli("review", "edit", eid2, "x", "--namespace", ns, redis_url=redis_url), "not pending review"
    )
    p = cli("review", "--namespace", ns, redis_url=redis_url)
    assert p.exit_code == 0 and "0 pending review" in p.stdout
    hit = run(_look(redis_url, ns, "do you cut keys"))
    assert hit is not None and hit.answer == EDITED


def test_dashboard_review(redis_url: str, ns: str, tmp_path: Path) -> None:
    (eid, eid2, eid3), _ = run(
        _store_and_look(redis_url, ns, (Q, A), ("Do you cut keys?", "Yes, we cut keys while you wait."),
                        ("Do you sell paint?", "Yes, indoor and outdoor paint."))
    )  # fmt: skip
    calls = tmp_path / "calls"
    calls.mkdir()
    app = create_app(calls, redis_url, cache_namespace=ns, admin_token=ADMIN, read_token=READ)
    with serve(app) as base, httpx.Client(base_url=base) as c:
        assert c.get("/api/cache/review").status_code == 401  # caller data: a token, even on loopback
        rows = c.get("/api/cache/review", headers=bearer(READ)).json()
        assert {r["id"] for r in rows} == {eid, eid2, eid3}
        page = c.get("/cache", headers=bearer(READ)).text
        assert 'id="pending-count">3<' in page and f'class="review-approve" data-id="{eid}"' in page
        assert "/static/cache_review.js" in page and c.get("/static/cache_review.js").status_code == 200
        assert c.get("/api/cache/stats").json()["pending_review"] == 3
        post = f"/api/cache/review/{eid}"
        assert c.post(post, json={"action": "approve"}).status_code == 401
        assert c.post(post, json={"action": "approve"}, headers=bearer(READ)).status_code == 403
        assert c.post(post, json={"action": "bless"}, headers=bearer(ADMIN)).status_code == 400
        assert c.post(post, json={"action": "edit"}, headers=bearer(ADMIN)).status_code == 400
        assert c.post("/api/cache/review/0123456789ab", json={"action": "approve"},
                      headers=bearer(ADMIN)).status_code == 404  # fmt: skip
        assert c.post(post, json={"action": "approve"}, headers=bearer(ADMIN)).json()["approved"] == eid
        assert (
            c.post(post, json={"action": "approve"}, headers=bearer(ADMIN)).status_code == 404
        )  # not pending
        r = c.post(
            f"/api/cache/review/{eid2}", json={"action": "edit", "answer": EDITED}, headers=bearer(ADMIN)
        )
        assert r.status_code == 200 and r.json()["answer"] == EDITED
        r = c.post(f"/api/cache/review/{eid3}", json={"action": "reject"}, headers=bearer(ADMIN))
        assert r.status_code == 200 and r.json() == {"rejected": eid3}
        assert c.get("/api/cache/review", headers=bearer(READ)).json() == []
    assert run(_look(redis_url, ns, Q)) is not None
    hit = run(_look(redis_url, ns, "Do you cut keys?"))
    assert hit is not None and hit.answer == EDITED
    assert run(_look(redis_url, ns, "Do you sell paint?")) is None


def test_an_index_from_before_review_gains_the_new_fields(redis_url: str, ns: str) -> None:
    """A live index created before `status`/`source` existed is altered in place (FT.ALTER):
    its old entries keep serving and new candidates are found by the review queue."""
    import redis as redis_lib
    from redis.commands.search.index_definition import IndexDefinition, IndexType

    from cache.embedder import get_embedder
    from cache.semantic import Keys, entry_mapping, index_schema, write_entry

    keys = Keys(ns)
    r = redis_lib.Redis.from_url(redis_url)
    old_schema = [f for f in index_schema() if f.name not in ("status", "source")]
    r.ft(keys.index).create_index(
        old_schema, definition=IndexDefinition(prefix=[keys.prefix], index_type=IndexType.HASH)
    )
    sc = scope("acme")
    question = "Do you sell gift cards?"
    m = entry_mapping("0123456789ab", question, "Yes, at the till.", "acme", sc["language"],
                      sc["knowledge_version"], 3600, get_embedder().embed(question), [])  # fmt: skip
    for f in ("status", "source", "reviewed"):
        m.pop(f)  # an entry as stored before review existed
    pipe = r.pipeline()
    write_entry(pipe, keys, m, [], 3600)
    pipe.execute()
    adm = CacheAdmin(redis_url, namespace=ns)  # ensure_index adds the fields
    attrs = {str(a[1]) for a in r.ft(keys.index).info()["attributes"]}
    assert {"status", "source"} <= attrs
    assert adm.show("0123456789ab")["status"] == "approved"
    assert run(_look(redis_url, ns, "do you guys sell gift cards")) is not None
    (eid,), _ = run(_store_and_look(redis_url, ns, (Q, A)))
    assert adm.pending_count() == 1 and [x["id"] for x in adm.pending()] == [eid]


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no /usr/bin/chromium")
def test_dashboard_review_buttons_in_a_browser(redis_url: str, ns: str, tmp_path: Path) -> None:
    """The cache page's review queue in headless chromium: the buttons send the admin token
    typed in the header field; edit the text and approve, approve as is, reject."""
    from playwright.sync_api import sync_playwright

    from tests.test_dashboard_browser import ARGS, CHROMIUM

    keys = "Do you cut keys?"
    paint = "Do you sell paint?"
    (eid, eid2, eid3), _ = run(
        _store_and_look(redis_url, ns, (Q, A), (keys, "Yes, we cut keys while you wait."),
                        (paint, "Yes, indoor and outdoor paint."))
    )  # fmt: skip
    calls = tmp_path / "calls"
    calls.mkdir()
    app = create_app(calls, redis_url, ADMIN, cache_namespace=ns)
    with serve(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/login?next=/cache")
        page.fill("#login-token", ADMIN)
        with page.expect_navigation():
            page.click("#login-form button")
        assert page.locator("#pending tr[data-id]").count() == 3
        assert page.locator("#pending-count").inner_text() == "3"
        page.click(f'button.review-approve[data-id="{eid}"]')  # no admin token typed: refused
        page.wait_for_selector("#toast.bad")
        assert "401" in page.locator("#toast").inner_text()
        assert page.locator(f'#pending tr[data-id="{eid}"]').count() == 1
        page.fill("#admin-token", ADMIN)
        page.fill(f'textarea.review-answer[data-id="{eid2}"]', EDITED)
        page.click(f'button.review-approve[data-id="{eid2}"]')
        page.wait_for_selector(f'#pending tr[data-id="{eid2}"]', state="detached")
        page.click(f'button.review-approve[data-id="{eid}"]')
        page.wait_for_selector(f'#pending tr[data-id="{eid}"]', state="detached")
        page.click(f'button.review-reject[data-id="{eid3}"]')
        page.wait_for_selector(f'#pending tr[data-id="{eid3}"]', state="detached")
        assert page.locator("#pending-count").inner_text() == "0"
        page.reload()
        assert page.locator("#pending tr[data-id]").count() == 0
        assert page.locator(f'#entries tr[data-id="{eid}"]').count() == 1  # served entries now
        browser.close()
    assert errors == []
    adm = CacheAdmin(redis_url, namespace=ns)
    assert adm.show(eid2)["answer"] == EDITED and adm.show(eid)["answer"] == A
    with pytest.raises(UserError, match="no cache entry"):
        adm.show(eid3)
    hit = run(_look(redis_url, ns, keys))
    assert hit is not None and hit.answer == EDITED
    assert run(_look(redis_url, ns, paint)) is None
