"""Issue 21 item 2: names, addresses, postcodes and spelled-out e-mails never enter the cache.

Rules, offline (cache/policy.py `contains_pii`): no model is downloaded or run.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from cache.admin import CacheAdmin
from cache.policy import contains_pii, is_cacheable, lookup_allowed

ROOT = Path(__file__).resolve().parent.parent

PII = [
    "Hi, I'm Jane Doe, what are your opening hours?",
    "My name is Jane Doe",
    "Do you deliver to 221B Baker Street?",
    "help [at] acme [dot] example",
    "jane dot doe at gmail dot com",
    "I live at 42 Elm Road, can you deliver there?",
    "Can you send it to 1600 Pennsylvania Avenue?",
    "Do you deliver to 10 Downing St?",
    "My postcode is SW1A 1AA, do you deliver?",
    "Do you deliver to NW1 6XE?",
    "Is zip code 90210 in your delivery area?",
    "This is Jane Doe calling about my order",
    "Hello, Jane speaking, are you open today?",
    "hi i'm jane doe what are your opening hours",
    "I am Robert, do you sell paint?",
    "It's Mr Smith here, is my order ready?",
    "Can Mrs Jones pick up the parcel?",
    "my email is jane (at) example (dot) org",
    "reach me at jane.doe at example dot com",
    "jane at gmail, can you write to me?",
    "My address is 5 Oak Lane, Springfield",
    "I'm in flat 3, do you deliver?",
    "Deliver to 77 Sunset Boulevard please",
    "I'm Jane, do you deliver on Sundays?",
    "Can you ship to 350 Fifth Ave, New York?",
    "My zip is 02139, do you ship there?",
    "Do you deliver to 12 rue de Rivoli?",
    "Jane Doe here, what time do you close?",
    "Hiya, this is Priya, can I return a drill?",
    "is my postcode LS6 2AB in range",
    "can you deliver to 4 Privet Drive",
    "the booking is under the name of Smith",
]


def _tenant_questions() -> list[str]:
    out = []
    for f in sorted((ROOT / "tenants").glob("*.yaml")):
        for item in yaml.safe_load(f.read_text()).get("faq", []):
            out += [item["question"], *item.get("paraphrases", [])]
    return out


CLEAN = _tenant_questions() + [
    "I'm looking for a cordless drill, do you have one?",
    "I'm interested in your garden tools",
    "Do you deliver to Springfield?",
    "Is there parking near the store?",
    "Do you have a store on Main Street?",
    "Can I pay with a gift card?",
    "Do you have an email address I can write to?",
    "Are you open on Christmas Day?",
    "How long does delivery take?",
    "Is delivery free over 50 dollars?",
    "Do you open at 8 am on Saturdays?",
    "Do you sell 2 inch screws?",
    "I'm a new customer, do you offer discounts?",
    "I am calling about your return policy",
    "Do you sell street lamps?",
    "Can I return an item after 30 days?",
    "Is the claims desk open 24 hours?",
    "I'm not sure what size I need, can someone help in store?",
    "Hello, is this Acme Hardware?",
    "Hi, this is my first time calling, how do I file a claim?",
    "I'm locked out of my account, what do I do?",
    "Good morning, are you open today?",
    "What's the postcode of the store?",
    "I'm over 65, is there a discount?",
    "Do you sell 4 inch drive socket sets?",
    "It's about my claim, how long does it take?",
    "We open at 9 am in 2026",
    "Standard shipping is 4.99, free on orders over 50.",
    "Yes, it is every day.",  # an answer's "it is ...": a quantity word, not a name
    "Yes, it's daily, and twice on Saturdays.",
    "It is both.",
]


def test_lists_are_big_enough() -> None:
    assert len(PII) >= 25 and len(CLEAN) >= 25


@pytest.mark.parametrize("text", PII)
def test_personal_data_is_detected(text: str) -> None:
    assert contains_pii(text)
    assert lookup_allowed(text) == (False, "pii_question")
    assert not is_cacheable(text, "We're open 8am to 6pm.")[0]


@pytest.mark.parametrize("text", CLEAN)
def test_faq_questions_still_pass(text: str) -> None:
    assert not contains_pii(text)


def test_the_business_own_address_is_not_caller_data() -> None:
    facts = "Business: Acme Hardware. Address: 12 Main Street, Springfield."
    answer = "We're at 12 Main Street in Springfield."
    assert contains_pii(answer)  # without knowing the business it looks like an address
    assert not contains_pii(answer, known=facts)
    assert contains_pii("We'll deliver to 221B Baker Street tomorrow.", known=facts)
    assert is_cacheable("Where is the store?", answer, facts=facts) == (True, "ok")
    assert (
        is_cacheable("Where is the store?", "I'll send it to jane@example.com", known=facts)[1]
        == "pii_answer"
    )


def test_warm_stores_the_tenant_faq_but_no_personal_data(redis_url: str, tmp_path: Path) -> None:
    adm = CacheAdmin(redis_url, namespace=f"pii-{uuid.uuid4().hex[:8]}")
    res = adm.warm(tenant="acme")
    assert res["stored"] == res["total"] == 4  # incl. "We're at 12 Main Street" (the store's own)
    faq = tmp_path / "faq.yaml"
    faq.write_text(yaml.safe_dump([{"question": q, "answer": "We're open 8am to 6pm."} for q in PII[:10]]))
    res = adm.warm(faq, tenant="acme")
    assert res["stored"] == 0 and sum(res["skipped"].values()) == 10
    # a paraphrase with personal data is not indexed either
    faq.write_text(yaml.safe_dump([{"question": "Do you sell paint?", "answer": "Yes, all colours.",
                                    "paraphrases": ["paint?", "I'm Jane Doe, do you sell paint?"]}]))  # fmt: skip
    adm.warm(faq, tenant="acme")
    row = next(r for r in adm.list("acme") if r["question"] == "Do you sell paint?")
    assert row["paraphrases"] == ["paint?"]
    assert all("Jane" not in r["question"] for r in adm.list("acme"))
