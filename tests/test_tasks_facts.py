"""Deterministic fact extraction that backs every summary."""

from __future__ import annotations

from tasks.facts import extract_facts, join_summary, split_summary
from tasks.summarize import summarize_messages, transcript


def test_extracts_names_ids_contacts_problem_and_promises() -> None:
    facts = extract_facts(
        [
            {
                "role": "user",
                "content": "Hello, my name is John Carter. My order number is a-99812 and it never arrived.",
            },
            {"role": "assistant", "content": "Thanks John. I'll issue a refund of $40 today."},
            {
                "role": "user",
                "content": "Reach me at john.carter@example.com or +1 415 555 0199. Ticket #77123.",
            },
            {"role": "tool", "content": "order A-99812: in transit", "call_id": "c1"},
        ]
    )
    assert facts[:2] == ["caller name: John Carter", "order number: A-99812"]
    assert "problem: My order number is a-99812 and it never arrived" in facts
    assert "promised: I'll issue a refund of $40 today" in facts
    assert "email: john.carter@example.com" in facts and "ticket number: 77123" in facts
    assert any(f.startswith("phone: +1 415 555 0199") for f in facts)


def test_summary_round_trip_and_cap() -> None:
    facts = [f"order number: A-{i:05d}" for i in range(30)]
    prose, back = split_summary(join_summary("Caller wants a refund.", facts))
    assert prose == "Caller wants a refund." and back[0] == "order number: A-00000" and back[-1] == facts[-1]
    assert len(back) <= 14


def test_extractive_summary_keeps_old_facts_and_bounds_transcript() -> None:
    first = summarize_messages(
        "", [{"role": "user", "content": "my name is Ana Ruiz, account 55-1234"}], use_llm=False
    )
    msgs = [{"role": "user", "content": f"question {i} " + "x" * 250} for i in range(40)]
    res = summarize_messages(first["summary"], msgs, use_llm=False)
    assert "Ana Ruiz" in res["summary"] and "55-1234" in res["summary"]
    assert len(transcript(msgs)) < 2600 and "[...]" in transcript(msgs)
