"""The scope step (agent/call/scope.py): questions the tenant's facts / FAQ do not cover get
"I don't have that information" and an offer of a person; answers not grounded in the facts
are not kept. On the real sentence embedder and the shipped tenants, with the authored set in
tests/data/scope/ (the benchmark is `python -m agent.bench.scope`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.bench.scope import DATA, GOAL, load_all, load_set
from agent.call.scope import (
    REFUSAL,
    REFUSAL_NO_TRANSFER,
    accepts_offer,
    covered_topics,
    decide,
    declines_offer,
    grounded,
    prewarm,
    ready,
    scope_index,
    scope_reply,
    scope_reply_async,
)
from cache.embedder import Embedder, get_embedder
from cache.policy import is_cacheable
from core.errors import UserError
from core.settings import REPO_ROOT
from core.tenants import Tenant, load_tenant


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


SETS = load_all(DATA)


@pytest.mark.parametrize("split", ["heldout", "tune"])
@pytest.mark.parametrize("tenant_set", SETS, ids=[t.name for t, _, _ in SETS])
def test_goal_rates_on_the_authored_set(
    tenant_set: tuple[Tenant, dict[str, dict[str, list[str]]], list[str]], split: str, embedder: Embedder
) -> None:
    tenant, splits, _ = tenant_set
    refused = [decide(q, tenant, embedder).in_scope is False for q in splits[split]["out"]]
    answered = [decide(q, tenant, embedder).in_scope for q in splits[split]["in"]]
    assert sum(refused) / len(refused) >= GOAL, [
        q for q, r in zip(splits[split]["out"], refused, strict=True) if not r
    ]
    assert sum(answered) / len(answered) >= GOAL, [
        q for q, a in zip(splits[split]["in"], answered, strict=True) if not a
    ]


def test_every_shipped_tenant_has_a_set_of_at_least_100() -> None:
    shipped = {p.stem for p in (REPO_ROOT / "tenants").glob("*.yaml")}
    have = {t.name: sum(len(qs) for part in s.values() for qs in part.values()) for t, s, _ in SETS}
    assert shipped <= have.keys()
    assert all(n >= 100 for n in have.values()), have


def test_the_issue_s_invented_answers(embedder: Embedder) -> None:
    acme = load_tenant("acme")
    # the questions behind "Acme Hardware offers paint brushes" / "offers key cutting services"
    assert scope_reply("Do you sell paint brushes?", acme, embedder) == REFUSAL
    assert scope_reply("uh do you guys do key cutting", acme, embedder) == REFUSAL
    assert scope_reply("What time do you close on Saturday?", acme, embedder) is None
    # and the answers themselves are never kept for other callers
    assert not grounded("Acme Hardware offers paint brushes.", acme)
    assert not grounded("Yes, Acme Hardware offers key cutting services.", acme)


def test_social_turns_and_caller_details_are_never_refused(embedder: Embedder) -> None:
    globex = load_tenant("globex")
    for text in (
        "thanks",
        "Okay, great.",
        "hello",
        "My policy number is 4471.",
        "it happened last tuesday",
        "",
    ):
        assert scope_reply(text, globex, embedder) is None, text


def test_no_transfer_number_no_offer(embedder: Embedder) -> None:
    t = load_tenant("acme").model_copy(update={"transfer_number": None, "name": "acme-no-transfer"})
    assert scope_reply("do you sell propane", t, embedder) == REFUSAL_NO_TRANSFER
    assert "person" not in REFUSAL_NO_TRANSFER


def test_topics_follow_the_tenant_s_knowledge(embedder: Embedder) -> None:
    acme = load_tenant("acme")
    assert "holidays" not in covered_topics(acme)
    assert scope_reply("are you open on easter monday", acme, embedder) == REFUSAL
    # the same shop, once its facts name its holiday hours: the question is in scope
    told = acme.model_copy(
        update={
            "facts": [*acme.facts, "Closed on public holidays and Easter Monday."],
            "name": "acme-holidays",
        }
    )
    assert "holidays" in covered_topics(told)
    assert scope_reply("are you open on easter monday", told, embedder) is None


def test_index_is_rebuilt_when_the_knowledge_changes(embedder: Embedder) -> None:
    acme = load_tenant("acme")
    a = scope_index(acme, embedder)
    assert scope_index(acme, embedder) is a
    changed = acme.model_copy(update={"facts": [*acme.facts, "Key cutting while you wait."]})
    assert changed.knowledge_version != acme.knowledge_version
    assert scope_index(changed, embedder) is not a
    assert scope_reply("do you cut keys", changed, embedder) is None


def test_grounded_answers() -> None:
    acme, globex = load_tenant("acme"), load_tenant("globex")
    for t in (acme, globex):
        for f in t.faq:
            assert grounded(f.answer, t), f.answer
    assert grounded("We're open Monday to Saturday from 8am to 6pm, closed on Sunday.", acme)
    assert grounded("You can return items within 30 days, with your receipt.", acme)
    # numbers in words are the facts' numbers ("eight to six" is 8am to 6pm): the instant LLM's reply
    assert grounded("Sure, we are open Monday to Saturday, eight to six.", acme)
    assert not grounded("Sure, we are open Monday to Saturday, nine to five.", acme)
    assert not grounded("We're open Monday to Saturday until 9pm.", acme)  # a number the facts do not give
    assert not grounded("We also have free parking behind the store.", acme)
    assert not grounded("Your claim will be processed within 5 working days.", globex)
    assert not grounded("", acme)


def test_an_ungrounded_answer_would_still_pass_the_cache_s_own_policy() -> None:
    """Why `_store` needs `grounded`: the cache's fact check only looks at numbers and closures."""
    acme = load_tenant("acme")
    facts = " ".join([acme.facts_block(), *(f.answer for f in acme.faq)])
    ok, _ = is_cacheable(
        "Do you sell paint brushes?", "Yes, Acme Hardware offers paint brushes.", facts=facts
    )
    assert ok
    assert not grounded("Yes, Acme Hardware offers paint brushes.", acme)


def test_the_refusal_is_never_cached() -> None:
    ok, why = is_cacheable("do you sell propane", REFUSAL, facts="")
    assert (ok, why) == (False, "refusal_or_apology")


@pytest.mark.parametrize(
    ("text", "yes"),
    [
        ("Yes please.", True),
        ("yeah", True),
        ("uh yes I would", True),
        ("sure, thanks", True),
        ("go ahead", True),
        ("no thanks", False),
        ("no", False),
        ("yes, do you sell paint?", False),
        ("what are your hours", False),
    ],
)
def test_accepts_offer(text: str, yes: bool) -> None:
    assert accepts_offer(text) is yes


def test_decision_time_sanity(embedder: Embedder) -> None:
    acme = load_tenant("acme")
    scope_index(acme, embedder)
    times = [decide(f"do you sell item number {i} today", acme, embedder).ms for i in range(20)]
    assert float(np.median(times)) < 150  # target 15 ms on one core; generous for a shared CI box


def _bad(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("tenant: acme\ntune: [unclosed\n", "invalid YAML"),
        ("- just a list\n", "expected a mapping with a 'tenant' name"),
        ("tenant: nobody\ntune: {in: [a], out: [b]}\nheldout: {in: [a], out: [b]}\n", "unknown tenant"),
        ("tenant: acme\ntune: {in: [a], out: [b]}\n", "'heldout' must be a mapping"),
        (
            "tenant: acme\ntune: {in: [a], out: []}\nheldout: {in: [a], out: [b]}\n",
            "'tune.out' must be a non-empty",
        ),
    ],
)
def test_bad_data_file_is_a_one_line_error(tmp_path: Path, text: str, msg: str) -> None:
    with pytest.raises(UserError, match=msg):
        load_set(_bad(tmp_path, "x.yaml", text))


def test_bench_cli_bad_data_exits_2_with_one_line(tmp_path: Path) -> None:
    path = _bad(tmp_path, "x.yaml", "tenant: acme\ntune: {in: [a], out: [b]}\n")
    r = subprocess.run(
        [sys.executable, "-m", "agent.bench.scope", "--data", str(path), "--out", str(tmp_path / "o.json")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "'heldout' must be a mapping" in lines[0], (
        r.stderr
    )
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("text", ["no thanks", "nope", "no that's fine", "I'm good, thanks"])
def test_declines_offer(text: str) -> None:
    assert declines_offer(text) and not accepts_offer(text)
    assert not declines_offer("no, I wanted to ask about delivery")


async def test_async_step_is_bounded_and_fails_open(embedder: Embedder) -> None:
    acme = load_tenant("acme")
    cold = acme.model_copy(update={"name": "acme-cold"})  # an index nobody built yet
    assert not ready(cold)
    # a cold start past the turn's budget: the question goes on to the LLM
    assert await scope_reply_async("do you sell propane", cold, embedder, timeout_s=0.0) is None
    prewarm(cold, embedder)
    assert ready(cold)
    assert await scope_reply_async("do you sell propane", cold, embedder) == REFUSAL
    assert await scope_reply_async("when do you open on saturday", cold, embedder) is None
