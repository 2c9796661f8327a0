"""Issue 21 items 4 and 5 on the real embedded Redis: FAQ ids are scoped per tenant and can
never collide with internal keys; import checks every row first, applies the store policy,
re-embeds untrusted vectors and round-trips cached audio."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from cache.admin import CacheAdmin
from cache.semantic import ResponseCache
from core.errors import UserError


@pytest.fixture
def adm(redis_url: str) -> CacheAdmin:
    return CacheAdmin(redis_url, namespace=f"ids-{uuid.uuid4().hex[:8]}")


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


HOURS = {"id": "hours", "question": "What are your opening hours?", "answer": "Eight to six."}


# ---- item 4: ids ------------------------------------------------------------------------
def test_same_id_for_two_tenants_gives_two_entries(adm: CacheAdmin, tmp_path: Path) -> None:
    f = jsonl(tmp_path / "faq.jsonl", [HOURS])
    a = adm.warm(f, tenant="acme")["ids"]
    g = adm.warm(jsonl(tmp_path / "g.jsonl", [{**HOURS, "answer": "Around the clock."}]), tenant="globex")[
        "ids"
    ]
    assert a == ["acme~hours"] and g == ["globex~hours"]
    assert adm.show("acme~hours")["answer"] == "Eight to six."
    assert adm.show("globex~hours")["answer"] == "Around the clock."
    assert adm.invalidate(entry_id="acme~hours") == 1
    assert adm.show("globex~hours")["answer"] == "Around the clock."  # the other tenant's survives
    assert [r["id"] for r in adm.list(limit=0)] == ["globex~hours"]


@pytest.mark.parametrize("bad", ["x:p0", "abc:p1", "a b", "a~b", "", "x" * 65, "../../etc", "hours\n"])
def test_user_ids_cannot_reach_internal_keys(adm: CacheAdmin, tmp_path: Path, bad: str) -> None:
    rows = [HOURS, {"id": bad, "question": "Do you deliver?", "answer": "Yes."}] if bad else [HOURS]
    if not bad:  # an empty id just means "generate one"
        assert adm.warm(jsonl(tmp_path / "f.jsonl", [{**HOURS, "id": ""}]), tenant="acme")["stored"] == 1
        return
    with pytest.raises(UserError, match="line 2: 'id' must use only"):
        adm.warm(jsonl(tmp_path / "f.jsonl", rows), tenant="acme")
    assert adm.list(limit=0) == []  # checked before the first write


def test_colliding_paraphrase_key_reproduction(adm: CacheAdmin, tmp_path: Path) -> None:
    """The issue: an id '<other-id>:p0' overwrote another entry's paraphrase vector."""
    first = adm.warm(jsonl(tmp_path / "a.jsonl", [{**HOURS, "paraphrases": ["when are you open"]}]),
                     tenant="globex")["ids"][0]  # fmt: skip
    with pytest.raises(UserError, match="'id' must use only"):
        adm.warm(jsonl(tmp_path / "b.jsonl", [{"id": f"{first}:p0", "question": "Do you deliver?",
                                                 "answer": "Yes."}]), tenant="acme")  # fmt: skip

    async def direct() -> list[str | None]:
        c = adm.cache()
        kw = {"tenant": "acme", "language": "en", "knowledge_version": "v1"}
        out = [await c.store("Do you deliver?", "Yes.", **kw, entry_id=f"{first}:p0")]
        out.append(await c.store("Do you deliver?", "Yes.", **kw, entry_id=first))  # globex's entry
        await c.close()
        return out

    assert asyncio.run(direct()) == [None, None]
    r = redis.Redis.from_url(adm.url)
    assert r.hget(adm.keys.para(first, 0), "entry").decode() == first
    assert adm.show(first)["tenant"] == "globex" and adm.show(first)["answer"] == "Eight to six."


def test_duplicate_ids_in_one_file_are_refused(adm: CacheAdmin, tmp_path: Path) -> None:
    rows = [HOURS, {**HOURS, "question": "When do you open?"}]
    with pytest.raises(UserError, match="line 2: id 'hours' repeats line 1"):
        adm.warm(jsonl(tmp_path / "f.jsonl", rows), tenant="acme")


# ---- item 5: import -----------------------------------------------------------------------
def exported(adm: CacheAdmin, tmp_path: Path) -> list[dict]:
    f = jsonl(tmp_path / "faq.jsonl", [{**HOURS, "paraphrases": ["when are you open"]},
                                       {"question": "Do you deliver?", "answer": "Yes, Monday to Saturday."}])  # fmt: skip
    adm.warm(f, tenant="acme", ttl_s=3600)
    out = tmp_path / "export.jsonl"
    adm.export(out)
    return [json.loads(x) for x in out.read_text().splitlines()]


def import_rows(adm: CacheAdmin, tmp_path: Path, rows: list[dict]) -> dict:
    return adm.import_(jsonl(tmp_path / "import.jsonl", rows))


def test_import_applies_the_store_policy(adm: CacheAdmin, tmp_path: Path) -> None:
    rows = exported(adm, tmp_path)
    adm.invalidate(everything=True)
    bad = [
        {**rows[0], "id": "acme~a", "answer": "Call Jane on 415 555 0134."},
        {**rows[0], "id": "acme~b", "answer": "Write to jane.doe@example.com."},
        {**rows[0], "id": "acme~c", "answer": "Card 4111 1111 1111 1111 is on file."},
        {**rows[0], "id": "acme~d", "question": "Hi, I'm Jane Doe, when do you open?"},
    ]
    res = import_rows(adm, tmp_path, [*bad, rows[1]])
    assert res["imported"] == 1 and res["refused"] == {"pii_answer": 3, "pii_question": 1}
    assert [r["question"] for r in adm.list(limit=0)] == [rows[1]["question"]]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"ttl": 1e17}, "line 2: 'ttl' must be a whole number of seconds"),
        ({"ttl": -5}, "line 2: 'ttl'"),
        ({"ttl": "3600"}, "line 2: 'ttl' must be a number"),
        ({"created": None}, "line 2: 'created' must be a number"),
        ({"hits": "many"}, "line 2: 'hits'"),
        ({"question": 42}, "line 2: 'question' must be a non-empty string"),
        ({"tenant": ["acme"]}, "line 2: 'tenant'"),
        ({"paraphrases": {"a": 1}}, "line 2: 'paraphrases' must be a list of strings"),
        ({"id": "x:p0"}, "line 2: 'id'"),
        ({"id": "globex~hours"}, "line 2: 'id'"),
        ({"expiry": 1e17}, "line 2: 'expiry'"),
        ({"audio": {"af_heart": {"pcm": "!!!", "sr": 24000}}}, "line 2: 'audio.af_heart.pcm'"),
    ],
)
def test_import_checks_every_row_before_writing(adm: CacheAdmin, tmp_path: Path, change: dict,
                                                needle: str) -> None:  # fmt: skip
    rows = exported(adm, tmp_path)
    adm.invalidate(everything=True)
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        import_rows(adm, tmp_path, [rows[0], {**rows[1], **change}])
    assert adm.list(limit=0) == []  # row 1 was not written either
    assert not list(redis.Redis.from_url(adm.url).scan_iter(match=f"{adm.ns}:*:*"))


def test_import_re_embeds_untrusted_vectors(adm: CacheAdmin, tmp_path: Path) -> None:
    rows = exported(adm, tmp_path)
    adm.invalidate(everything=True)
    short = base64.b64encode(np.ones(8, np.float32).tobytes()).decode()
    rows[0] = {**rows[0], "vec": short, "paraphrase_vecs": ["garbage"]}
    rows[1] = {**rows[1], "vec": rows[1]["vec"], "model": "some-other-model"}
    assert import_rows(adm, tmp_path, rows)["imported"] == 2
    assert {r["id"] for r in adm.list(limit=0)} == {rows[0]["id"], rows[1]["id"]}  # indexed: visible
    hit = adm.search("when are you open", tenant="acme")[0]
    assert hit["id"] == rows[0]["id"] and hit["distance"] < 0.05  # the paraphrase vector works
    assert adm.search("Do you deliver?", tenant="acme")[0]["distance"] < 0.01
    assert adm.invalidate(entry_id=rows[0]["id"]) == 1


def test_import_paraphrases_as_a_string(adm: CacheAdmin, tmp_path: Path) -> None:
    rows = exported(adm, tmp_path)
    adm.invalidate(everything=True)
    rows[1] = {**rows[1], "paraphrases": "When?", "paraphrase_vecs": []}
    import_rows(adm, tmp_path, rows)
    assert adm.show(rows[1]["id"])["paraphrases"] == ["When?"]
    assert adm.search("When?", tenant="acme")[0]["id"] == rows[1]["id"]


def test_export_import_round_trips_audio(adm: CacheAdmin, tmp_path: Path) -> None:
    rows = exported(adm, tmp_path)
    pcm = (np.arange(2400, dtype=np.int16) * 7).tobytes()

    async def attach() -> None:
        c = ResponseCache(adm.url, namespace=adm.ns, preload=False)
        await c.attach_audio(rows[0]["id"], pcm, 24000, "af_heart")
        await c.close()

    asyncio.run(attach())
    first, second = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    adm.export(first)
    adm.invalidate(everything=True)
    assert adm.import_(first)["imported"] == 2
    adm.export(second)
    assert first.read_text() == second.read_text()  # exactly, audio included
    r = redis.Redis.from_url(adm.url)
    assert r.hget(adm.keys.audio(rows[0]["id"], "af_heart"), "pcm") == pcm
    assert 0 < r.ttl(adm.keys.audio(rows[0]["id"], "af_heart")) <= 3600
    assert adm.show(rows[0]["id"])["voices"] == ["af_heart"]


def test_import_replaces_without_leaving_old_paraphrase_vectors(adm: CacheAdmin, tmp_path: Path) -> None:
    rows = exported(adm, tmp_path)
    eid = rows[0]["id"]
    assert redis.Redis.from_url(adm.url).exists(adm.keys.para(eid, 0))
    import_rows(adm, tmp_path, [{**rows[0], "paraphrases": [], "paraphrase_vecs": []}])
    assert not redis.Redis.from_url(adm.url).exists(adm.keys.para(eid, 0))
    assert adm.show(eid)["paraphrases"] == []


def test_import_skips_expired_rows(adm: CacheAdmin, tmp_path: Path) -> None:
    rows = exported(adm, tmp_path)
    adm.invalidate(everything=True)
    old = {**rows[0], "created": time.time() - 7200, "expiry": time.time() - 3600}
    assert import_rows(adm, tmp_path, [old, rows[1]]) == {"imported": 1, "expired": 1, "refused": {}}


def test_entries_from_before_scoped_ids(adm: CacheAdmin, tmp_path: Path) -> None:
    """An old export's id "hours" imports as "acme~hours"; re-warming drops the tenant's own old
    unscoped copy (no duplicate) but never another tenant's."""
    from cache.embedder import get_embedder
    from cache.semantic import entry_mapping, write_entry

    vec = get_embedder().embed(HOURS["question"])
    pipe = adm.r.pipeline()
    for tenant in ("acme", "globex"):
        m = entry_mapping(f"legacy-{tenant}" if tenant == "globex" else "hours", HOURS["question"], "Old.",
                          tenant, "en", "v0", 3600, vec, [])  # fmt: skip
        write_entry(pipe, adm.keys, m, [], 3600)
    pipe.execute()
    adm.warm(jsonl(tmp_path / "f.jsonl", [HOURS]), tenant="acme")
    assert {r["id"] for r in adm.list(limit=0)} == {"acme~hours", "legacy-globex"}
    rows = exported(adm, tmp_path)
    adm.invalidate(everything=True)
    old_style = {**next(r for r in rows if r["id"] == "acme~hours"), "id": "hours"}
    assert import_rows(adm, tmp_path, [old_style])["imported"] == 1
    assert [r["id"] for r in adm.list(limit=0)] == ["acme~hours"]
