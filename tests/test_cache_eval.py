"""Handmade eval cases (a second domain, written here, not the shared dev set) at the default threshold.

Guards the chosen default (0.25): hard negatives must never hit; paraphrases close in wording do.
"""

from __future__ import annotations

import json
from pathlib import Path

from cache.admin import run_eval

THRESHOLD = 0.25  # the recommended default (see cache/README.md)

ENTRIES = [
    {
        "id": "appt",
        "question": "How do I book an appointment?",
        "answer": "Online or by phone, Monday to Friday.",
    },
    {
        "id": "cancel_appt",
        "question": "How do I cancel an appointment?",
        "answer": "At least 24 hours ahead, by phone.",
    },
    {"id": "insurance", "question": "Which insurance plans do you accept?", "answer": "Most major plans."},
    {
        "id": "parking",
        "question": "Is there parking at the clinic?",
        "answer": "Yes, free parking behind the building.",
    },
    {"id": "hours", "question": "What are your opening hours?", "answer": "8 am to 6 pm on weekdays."},
    {
        "id": "emergency",
        "question": "What should I do in a dental emergency?",
        "answer": "Call our emergency line.",
    },
    {"id": "kids", "question": "Do you treat children?", "answer": "Yes, from age three."},
]
QUERIES = [
    {"query": "how can I book an appointment", "expect": "appt"},
    {"query": "I'd like to make an appointment", "expect": "appt"},
    {"query": "how do I cancel my appointment?", "expect": "cancel_appt"},
    {"query": "what insurance do you accept", "expect": "insurance"},
    {"query": "Is there parking at your clinic?", "expect": "parking"},
    {"query": "what are your hours", "expect": "hours"},
    {"query": "When are you open?", "expect": "hours"},
    {"query": "Do you see kids?", "expect": "kids"},
    # hard negatives: same words, different question
    {"query": "How do I cancel my insurance?", "expect": None},
    {"query": "Are you open on New Year's Day?", "expect": None},
    {"query": "Is there a pharmacy at the clinic?", "expect": None},
    {"query": "Do you treat pets?", "expect": None},
    {"query": "Can I reschedule my appointment?", "expect": None},
    {"query": "What does a cleaning cost?", "expect": None},
    # follow-ups and personal data: never served from the cache
    {
        "query": "and on Saturdays?",
        "expect": None,
        "context": [{"role": "user", "text": "What are your opening hours?"}],
    },
    {
        "query": "what about the other one?",
        "expect": None,
        "context": [{"role": "user", "text": "Which plans?"}],
    },
    {"query": "My name is Ana Lopez, how do I book an appointment?", "expect": None},
    {"query": "How do I book an appointment?", "expect": None, "tenant": "globex"},
]


def test_handmade_eval_at_default_threshold(redis_url: str, tmp_path: Path) -> None:
    e, q = tmp_path / "e.jsonl", tmp_path / "q.jsonl"
    e.write_text("".join(json.dumps(x) + "\n" for x in ENTRIES))
    q.write_text("".join(json.dumps(x) + "\n" for x in QUERIES))
    res = run_eval(redis_url, e, q, threshold=THRESHOLD)
    print(res)
    assert res["n_positive"] == 8 and res["n_negative"] == 10
    assert res["false_hit_rate"] == 0.0
    assert res["hit_rate"] >= 0.5
