"""Admin service layer and the `callcenter cache` CLI against the real embedded Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cache.admin import CacheAdmin, run_eval

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "callcenter")
TOKEN_S = "s3cret-0123456789abcdef"


@pytest.fixture
def adm(redis_url: str) -> CacheAdmin:
    return CacheAdmin(redis_url, namespace=f"a-{uuid.uuid4().hex[:8]}")


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


FAQ = [
    {"question": "What are your opening hours?", "answer": "Nine to five, Monday to Friday.",
     "paraphrases": ["when are you open", "what time do you open"]},
    {"question": "Do you sell gift cards?", "answer": "Yes, from 10 to 200.", "tenant": "acme"},
    {"question": "My email is a@b.com, can you write me?", "answer": "Sure."},
]  # fmt: skip


def test_warm_list_search_invalidate(adm: CacheAdmin, tmp_path: Path) -> None:
    res = adm.warm(write(tmp_path / "faq.jsonl", FAQ), tenant="acme")
    assert res["stored"] == 2 and res["skipped"] == {"pii_question": 1}
    adm.search("gift cards", tenant="acme")
    again = adm.warm(write(tmp_path / "faq.jsonl", FAQ), tenant="acme")
    assert again["ids"] == res["ids"] and len(adm.list("acme")) == 2  # re-warming replaces, no duplicates
    rows = adm.list("acme")
    assert {r["question"] for r in rows} == {FAQ[0]["question"], FAQ[1]["question"]}
    found = adm.search("what time do you open", tenant="acme", threshold=0.25)
    assert found[0]["question"] == FAQ[0]["question"] and found[0]["would_hit"]
    assert found[0]["distance"] < 0.05  # matched the paraphrase vector
    assert adm.invalidate(similar_to="when do you open?", tenant="acme", max_distance=0.3) == 1
    assert [r["question"] for r in adm.list()] == [FAQ[1]["question"]]
    assert adm.invalidate(everything=True) == 1
    assert adm.list() == []


def test_export_import_round_trip(adm: CacheAdmin, tmp_path: Path) -> None:
    adm.warm(write(tmp_path / "faq.jsonl", FAQ[:2]), tenant="acme", ttl_s=3600)
    adm.search("gift cards", tenant="acme")
    first = tmp_path / "one.jsonl"
    assert adm.export(first) == 2
    adm.invalidate(everything=True)
    assert adm.import_(first) == {"imported": 2, "expired": 0, "refused": {}}
    second = tmp_path / "two.jsonl"
    adm.export(second)
    assert first.read_text() == second.read_text()
    row = json.loads(first.read_text().splitlines()[0])
    assert row["ttl"] == 3600 and row["id"] and row["paraphrase_vecs"]
    assert 3500 < adm.show(row["id"])["ttl_left_s"] <= 3600


def test_eval_numbers_on_tiny_set(redis_url: str, tmp_path: Path) -> None:
    entries = write(tmp_path / "e.jsonl", [
        {"id": "hours", "question": "What are your opening hours?", "answer": "Nine to five."},
        {"id": "gift", "question": "Do you sell gift cards?", "answer": "Yes.", "tenant": "acme"},
        {"id": "pw", "question": "How do I reset my password?", "answer": "Use the link."},
    ])  # fmt: skip
    queries = write(tmp_path / "q.jsonl", [
        {"query": "what are your opening hours", "expect": "hours"},           # hit
        {"query": "Do you sell gift cards?", "expect": "gift"},                # hit
        {"query": "What's the weather like on Mars?", "expect": None},         # miss: correct
        {"query": "Do you sell gift cards?", "expect": None, "tenant": "globex"},  # isolation
        {"query": "and how much is that one?", "expect": None,
         "context": [{"role": "user", "text": "Do you sell gift cards?"}]},    # context rule
        {"query": "How do I reset my password?", "expect": "hours"},           # false hit
    ])  # fmt: skip
    res = run_eval(redis_url, entries, queries, threshold=0.2)
    assert set(res) == {"threshold", "n_queries", "n_positive", "n_negative", "hit_rate", "false_hit_rate",
                        "lookup_p50_ms", "lookup_p99_ms"}  # fmt: skip
    assert (res["n_queries"], res["n_positive"], res["n_negative"]) == (6, 3, 3)
    assert res["hit_rate"] == round(2 / 3, 4)
    assert res["false_hit_rate"] == round(1 / 6, 4)
    assert res["threshold"] == 0.2
    sweep = run_eval(redis_url, entries, queries, sweep=True, verifier=False)
    assert sweep["curve"] and 0.05 <= sweep["recommended_threshold"] <= 0.5
    # with the verifier (cache/verifier.py) the sweep is over its acceptance probability
    sweep = run_eval(redis_url, entries, queries, sweep=True, verifier=True)
    assert set(sweep) - {"curve", "recommended_threshold"} == set(res)
    assert sweep["curve"] and 0.05 <= sweep["recommended_threshold"] <= 0.95
    # isolated: nothing left behind in Redis
    import redis

    assert not list(redis.Redis.from_url(redis_url).scan_iter(match="eval-*"))


# ---- CLI (subprocess, the installed entry point) ------------------------------------------
def cli(*args: str, redis_url: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([CLI, "cache", *args], capture_output=True, text=True, env=e, cwd=ROOT, timeout=120)


def assert_one_line_error(p: subprocess.CompletedProcess[str], needle: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_cli_bad_input(redis_url: str, tmp_path: Path) -> None:
    assert_one_line_error(cli("warm", str(tmp_path / "nope.yaml"), redis_url=redis_url), "not found")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{oops\n')
    assert_one_line_error(cli("warm", str(bad), redis_url=redis_url), "line 2")
    binary = tmp_path / "faq.csv"
    binary.write_bytes(b"question,answer\n\x00\x01\x02")
    assert_one_line_error(cli("warm", str(binary), redis_url=redis_url), "binary")
    giant = tmp_path / "giant.jsonl"
    giant.write_text(("x" * 1023 + "\n") * 5200)
    assert_one_line_error(cli("warm", str(giant), redis_url=redis_url), "too large")
    assert_one_line_error(cli("warm", "--tenant", "nobody", redis_url=redis_url), "unknown tenant")
    assert_one_line_error(
        cli("eval", "--entries", str(bad), "--queries", str(bad), redis_url=redis_url), "line 2"
    )
    assert_one_line_error(
        cli("invalidate", "--all", "--yes", redis_url=redis_url, env={"CALLCENTER_ADMIN_TOKEN": TOKEN_S}),
        "--token",
    )


def test_cli_eval_json(redis_url: str, tmp_path: Path) -> None:
    entries = write(
        tmp_path / "e.jsonl", [{"id": "hours", "question": "What are your opening hours?", "answer": "9-5"}]
    )
    queries = write(tmp_path / "q.jsonl", [{"query": "What are your opening hours?", "expect": "hours"},
                                           {"query": "Do you sell bikes?", "expect": None}])  # fmt: skip
    p = cli("eval", "--entries", str(entries), "--queries", str(queries), "--threshold", "0.2", "--json",
            redis_url=redis_url)  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["hit_rate"] == 1.0 and res["false_hit_rate"] == 0.0 and res["n_queries"] == 2


def test_faq_formats_and_mining_calls(adm: CacheAdmin, tmp_path: Path) -> None:
    from cache.admin import read_faq

    y = tmp_path / "faq.yaml"
    y.write_text(
        "faq:\n  - question: Do you sell gift cards?\n    answer: Yes.\n    paraphrases: ['gift vouchers?']\n"
    )
    c = tmp_path / "faq.csv"
    c.write_text('question,answer,paraphrases\n"Do you sell gift cards?","Yes.","gift vouchers?|giftcards"\n')
    assert read_faq(y)[0]["paraphrases"] == ["gift vouchers?"]
    assert read_faq(c)[0]["paraphrases"] == ["gift vouchers?", "giftcards"]
    for i, texts in enumerate([["What are your opening hours?", "and on Sundays?"],
                               ["what are your opening hours", "My number is 415 555 0134"],
                               ["What are your opening hours?", "Do you sell gift cards?"]]):  # fmt: skip
        d = tmp_path / "calls" / f"call{i}"
        d.mkdir(parents=True)
        turns = [{"user_text": t, "agent_text": "..."} for t in texts]
        (d / "transcript.json").write_text(json.dumps({"turns": turns}))
    other = tmp_path / "calls" / "other"
    other.mkdir()
    (other / "transcript.json").write_text(
        json.dumps({"tenant": "globex", "turns": [{"user_text": "What are your opening hours?"}]})
    )
    mined = adm.mine_calls(tmp_path / "calls", tenant="acme", min_count=2)
    assert len(mined) == 1 and mined[0]["count"] == 3
    assert mined[0]["question"].lower().startswith("what are your opening hours")


def test_invalidate_stale_knowledge_version(adm: CacheAdmin) -> None:
    import asyncio

    from cache.admin import tenant_scope

    name, lang, kver = tenant_scope("acme")

    async def fill() -> None:
        c = adm.cache()
        await c.store("Do you sell gift cards?", "Yes.", tenant=name, language=lang, knowledge_version="old")
        await c.store("Do you ship abroad?", "To the EU.", tenant=name, language=lang, knowledge_version=kver)
        await c.close()

    asyncio.run(fill())
    assert adm.invalidate(tenant="acme", stale=True) == 1
    assert [r["kver"] for r in adm.list("acme")] == [kver]
