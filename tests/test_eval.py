"""`callcenter eval`: scenario expectations, the checks on a call's own report, the command.

Most checks are judged on report files written here (transcript.json / metrics.json with the
schema of `core/call_report.py`), so each expectation kind is shown passing and failing on a
known report. One end-to-end run places real simulated calls (instant profile) through the CLI
and checks that eval.json and the printed table agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.eval.expectations import CallReport, judge, normalize, phrase_in
from agent.sim.scenario import load_scenario
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from agent.cli import main; main()"]


# ---- the number normaliser ------------------------------------------------------------------
@pytest.mark.parametrize(
    "phrase, text, found",
    [
        ("8", "We open at eight", True),
        ("8", "open 8am to 6pm", True),
        ("eight", "from 8:00", True),
        ("8", "we have 18 stores", False),
        ("8", "eighty years", False),
        ("24", "twenty-four hours a day", True),
        ("7 days", "Seven days a week", True),
        ("50 dollars", "over fifty dollars", True),
        ("105", "one hundred and five", True),
        ("Main Street", "12 MAIN   street", True),
        ("we're", "We\u2019re at 12 Main Street", True),
        ("30", "three days", False),
    ],
)
def test_phrase_matches_numbers_spelled_or_as_digits(phrase: str, text: str, found: bool) -> None:
    assert phrase_in(phrase, text) is found


def test_normalize_spells_numbers_as_digits() -> None:
    assert normalize("Open Twenty-Four hours, three thousand two hundred") == "open 24 hours, 3200"
    assert normalize("someone, anyone") == "someone, anyone"  # only whole words


# ---- synthetic reports ------------------------------------------------------------------------
def _row(index: int, agent_text: str = "", **kw: Any) -> dict[str, Any]:
    row = {"index": index, "user_text": f"line {index}", "agent_text": agent_text, "voice_to_voice": None,
           "cache_hit": False, "cache_outcome": None, "interrupted": False, "bargein_reaction": None}  # fmt: skip
    row.update(kw)
    return row


def _judge(
    tmp_path: Path,
    scenario_yaml: str,
    rows: list[dict[str, Any]],
    events: list[dict[str, Any]] | None = None,
    *,
    error: str | None = None,
    items: list[dict[str, Any]] | None = None,
) -> list[tuple[str, int | None, Any, bool]]:
    """Write a scenario and its call's report files, judge them: (check, turn, observed, passed)."""
    sc_path = tmp_path / "sc.yaml"
    sc_path.write_text(scenario_yaml)
    scenario = load_scenario(sc_path)
    out = tmp_path / "call"
    out.mkdir(exist_ok=True)
    transcript = {"schema_version": 2, "items": items or [], "events": events or [], "error": error,
                  "turns": [{k: r[k] for k in ("index", "user_text", "agent_text")} for r in rows]}  # fmt: skip
    (out / "transcript.json").write_text(json.dumps(transcript))
    (out / "metrics.json").write_text(json.dumps({"schema_version": 2, "turns": rows, "error": error}))
    return [(r.check, r.turn, r.observed, r.passed) for r in judge(scenario, CallReport.read(out))]


HOURS = "We're open Monday to Saturday, eight to six, closed on Sundays."


@pytest.mark.parametrize(
    "expect, passed",
    [
        ('{contains: ["8", "6"]}', True),
        ('{contains: ["8", "9"]}', False),  # all must hold
        ("{not_contains: [Friday, '7']}", True),
        ("{not_contains: [friday, sundays]}", False),
        ("{contains_any: [Friday, '6']}", True),
        ("{contains_any: [Friday, '5']}", False),
    ],
)
def test_text_expectations(tmp_path: Path, expect: str, passed: bool) -> None:
    res = _judge(tmp_path, f"turns:\n  - say: hours?\n    expect: {expect}\n", [_row(0, HOURS)])
    assert len(res) == 1
    assert res[0][1] == 0 and res[0][2] == HOURS and res[0][3] is passed


@pytest.mark.parametrize(
    "expected, outcome, passed",
    [("hit", "hit", True), ("hit", "miss", False), ("miss", "miss", True), ("miss", "hit", False),
     ("miss", None, False), ("any", None, True), ("any", "bypass", True)],
)  # fmt: skip
def test_cache_expectation(tmp_path: Path, expected: str, outcome: str | None, passed: bool) -> None:
    row = _row(0, HOURS, cache_outcome=outcome, cache_hit=outcome == "hit")
    res = _judge(tmp_path, f"turns:\n  - say: hours?\n    expect: {{cache: {expected}}}\n", [row])
    assert res == [("cache", 0, outcome or "none", passed)]


@pytest.mark.parametrize("v2v, passed", [(0.8, True), (1.2, False), (None, False)])
def test_max_voice_to_voice(tmp_path: Path, v2v: float | None, passed: bool) -> None:
    res = _judge(
        tmp_path,
        "turns:\n  - say: hours?\n    expect: {max_voice_to_voice: 1.0}\n",
        [_row(0, HOURS, voice_to_voice=v2v)],
    )
    assert res[0][0] == "max_voice_to_voice" and res[0][3] is passed


BARGE = """
turns:
  - say: tell me about delivery
    expect: {interrupted: false}
  - say: what time do you close?
    barge_in_after: 0.8
    expect: {interrupted: true}
"""


@pytest.mark.parametrize("first_cut, passed", [(True, [False, True]), (False, [True, False])])
def test_interrupted_reads_the_overlapped_reply_on_a_barge_in_line(
    tmp_path: Path, first_cut: bool, passed: list[bool]
) -> None:
    # the barge-in line (turn 1) is judged on the reply it was spoken over: turn 0's
    rows = [
        _row(0, "Delivery is free over", interrupted=first_cut),
        _row(1, "We close at 6.", interrupted=False),
    ]
    res = _judge(tmp_path, BARGE, rows)
    assert [(c, t, p) for c, t, _, p in res] == [("interrupted", 0, passed[0]), ("interrupted", 1, passed[1])]


def test_interrupted_on_the_first_line_reads_the_greeting(tmp_path: Path) -> None:
    sc = "turns:\n  - say: hello?\n    barge_in_after: 0.5\n    expect: {interrupted: true}\n"
    greeting = [{"role": "assistant", "text": "Thanks for calling", "interrupted": True}]
    assert _judge(tmp_path, sc, [_row(0, "Hi")], items=greeting)[0][3] is True
    greeting[0]["interrupted"] = False
    assert _judge(tmp_path, sc, [_row(0, "Hi")], items=greeting)[0][3] is False


KEYPAD = """
turns:
  - say: question about an invoice
  - dtmf: "0"
    expect: {event: transfer}
  - say: okay thanks
    expect: {event: hangup}
"""


def test_event_follows_a_keypad_turn(tmp_path: Path) -> None:
    events = [{"type": "dtmf", "t": 5.0, "digits": "0"}, {"type": "transfer", "t": 5.6, "ok": True}]
    res = _judge(tmp_path, KEYPAD, [_row(0, "Sure"), _row(1, "Transferring you")], events)
    assert res[0] == ("event", 1, ["dtmf", "transfer"], True)
    # a spoken line the report cannot place in time follows the last turn it can place (the press)
    assert res[1] == ("event", 2, ["transfer"], False)


def test_event_must_follow_the_turn_not_precede_it(tmp_path: Path) -> None:
    # the transfer happened before the keypad press: it does not follow the dtmf turn
    events = [{"type": "transfer", "t": 2.0, "ok": True}, {"type": "dtmf", "t": 5.0, "digits": "0"}]
    res = _judge(tmp_path, KEYPAD, [_row(0, "Sure"), _row(1, "Okay")], events)
    assert res[0] == ("event", 1, ["dtmf"], False)


def test_event_on_a_keypad_turn_that_never_happened(tmp_path: Path) -> None:
    res = _judge(tmp_path, KEYPAD, [_row(0, "Sure")], [{"type": "hangup", "t": 3.0, "by": "caller"}])
    assert res[0][0] == "event" and res[0][3] is False and "keypad" in res[0][2]
    assert res[1][3] is False and "never spoken" in res[1][2]  # the call ended before line 2


def test_event_on_a_spoken_turn(tmp_path: Path) -> None:
    sc = "turns:\n  - say: can I talk to a person?\n    expect: {event: transfer}\n"
    ok = _judge(tmp_path, sc, [_row(0, "Transferring")], [{"type": "transfer", "t": 4.0, "ok": True}])
    assert ok == [("event", 0, ["transfer"], True)]
    bad = _judge(tmp_path, sc, [_row(0, "I can help")], [{"type": "hangup", "t": 9.0, "by": "caller"}])
    assert bad == [("event", 0, ["hangup"], False)]


@pytest.mark.parametrize(
    "events, observed, passed",
    [
        ([{"type": "hangup", "t": 9, "by": "agent", "reason": "caller_goodbye"}], "agent", True),
        ([{"type": "hangup", "t": 9, "by": "caller"}], "caller", False),
        ([{"type": "transfer", "t": 9, "ok": True}], "none (transferred)", False),
    ],
)
def test_hangup_expectation(
    tmp_path: Path, events: list[dict[str, Any]], observed: str, passed: bool
) -> None:
    res = _judge(tmp_path, "turns: [{say: bye}]\nexpect: {hangup: agent}\n", [_row(0, "Goodbye")], events)
    assert res == [("hangup", None, observed, passed)]


def test_events_and_events_absent(tmp_path: Path) -> None:
    sc = "turns: [{say: hi}]\nexpect: {events: [dtmf, transfer], events_absent: [idle_prompt]}\n"
    events = [{"type": "dtmf", "t": 1, "digits": "0"}, {"type": "transfer", "t": 2, "ok": True}]
    assert [p for *_, p in _judge(tmp_path, sc, [_row(0, "ok")], events)] == [True, True]
    events = [{"type": "dtmf", "t": 1, "digits": "5"}, {"type": "idle_prompt", "t": 16, "n": 1}]
    res = _judge(tmp_path, sc, [_row(0, "ok")], events)
    assert res == [
        ("events", None, ["dtmf", "idle_prompt"], False),
        ("events_absent", None, ["dtmf", "idle_prompt"], False),
    ]


def test_max_turns_unanswered(tmp_path: Path) -> None:
    sc = "turns: [{say: a}, {say: b}, {say: c}]\nexpect: {max_turns_unanswered: 1}\n"
    assert _judge(tmp_path, sc, [_row(0, "x"), _row(1, ""), _row(2, "z")]) == [
        ("max_turns_unanswered", None, 1, True)
    ]
    assert _judge(tmp_path, sc, [_row(0, ""), _row(1, " "), _row(2, "z")]) == [
        ("max_turns_unanswered", None, 2, False)
    ]


def test_report_turns_skip_pause_dtmf_and_sound_turns(tmp_path: Path) -> None:
    sc = """
turns:
  - sound: cough
  - pause: 1
  - say: where is the store?
  - dtmf: "5"
  - say: do you deliver?
    expect: {contains: ["50"]}
"""
    res = _judge(tmp_path, sc, [_row(0, "12 Main Street"), _row(1, "Free over fifty dollars")])
    assert res == [("contains", 4, "Free over fifty dollars", True)]


def test_a_failed_call_fails_every_check_with_the_error(tmp_path: Path) -> None:
    sc = "turns:\n  - say: hours?\n    expect: {contains: ['8']}\nexpect: {hangup: caller}\n"
    res = _judge(
        tmp_path,
        sc,
        [_row(0, HOURS)],
        [{"type": "hangup", "t": 9, "by": "caller"}],
        error="RuntimeError: boom",
    )
    assert [(c, p) for c, _, _, p in res] == [("contains", False), ("hangup", False)]
    assert all(o == "call failed: RuntimeError: boom" for _, _, o, _ in res)


def test_no_report_fails_every_check(tmp_path: Path) -> None:
    (tmp_path / "sc.yaml").write_text("turns:\n  - say: hours?\n    expect: {contains: ['8']}\n")
    res = judge(load_scenario(tmp_path / "sc.yaml"), CallReport.read(tmp_path / "nothing-here"))
    assert len(res) == 1 and not res[0].passed and "no call report" in res[0].observed


# ---- the format -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, needle",
    [
        ("turns: [{say: hi, expect: {contanis: ['8']}}]\n", "turns[0].expect.contanis"),
        ("turns: [{say: hi, expect: {cache: maybe}}]\n", "turns[0].expect.cache"),
        ("turns: [{say: hi, expect: {max_voice_to_voice: fast}}]\n", "turns[0].expect.max_voice_to_voice"),
        ("turns: [{say: hi, expect: {contains: {a: 1}}}]\n", "turns[0].expect.contains"),
        ("turns: [{pause: 2, expect: {event: hangup}}]\n", "expect only applies to a say, play or dtmf turn"),
        ("turns: [{sound: cough, expect: {interrupted: false}}]\n", "expect only applies"),
        ("turns: [{dtmf: '0', expect: {contains: [hi]}}]\n", "expect.contains does not apply to a dtmf turn"),
        ("turns: [{say: hi}]\nexpect: {hangup: nobody}\n", "expect.hangup"),
        ("turns: [{say: hi}]\nexpect: {max_turns_unanswered: -1}\n", "expect.max_turns_unanswered"),
        ("turns: [{say: hi}]\nexpect: {events: [Transfer!]}\n", "expect.events"),
        ("turns: [{say: hi}]\nexpect: {hanngup: agent}\n", "expect.hanngup"),
    ],
)
def test_bad_expectations_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(UserError) as e:
        load_scenario(p)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_expectations_load_and_old_scenarios_still_do(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text("turns:\n  - say: hi\n    expect: {contains: 8, not_contains: [nine]}\n  - dtmf: '0'\n"
                 "    expect: {event: transfer}\nexpect: {events: transfer}\nquick: true\ncache: cold\n")  # fmt: skip
    sc = load_scenario(p)
    assert sc.turns[0].expect is not None and sc.turns[0].expect.contains == ["8"]
    assert sc.expect is not None and sc.expect.events == ["transfer"] and sc.quick and sc.cache == "cold"
    for shipped in sorted((ROOT / "scenarios").glob("*.yaml")):
        assert load_scenario(shipped).expect is None


def test_shipped_suite_loads_and_covers_both_tenants() -> None:
    from agent.eval.run import load_suite

    suite = load_suite([ROOT / "scenarios" / "eval"])
    assert len(suite) >= 30
    assert {i.scenario.tenant for i in suite} == {"acme", "globex"}
    assert all(i.scenario.expect is not None or any(t.expect for t in i.scenario.turns) for i in suite)
    assert 3 <= len(load_suite([ROOT / "scenarios" / "eval"], quick=True)) <= 6


# ---- the command ----------------------------------------------------------------------------
def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "250", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [*CLI, "eval", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "scenario not found"),
        ("turns: [{say: hi, expect: {contain: [x]}}]\n", "turns[0].expect.contain"),
        ("turns: [{say: hi, expect: {max_voice_to_voice: soon}}]\n", "max_voice_to_voice"),
        ("turns: [{say: hi}\n", "invalid YAML"),
        ("tenant: nope\nturns: [{say: hi}]\n", "tenant"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    if content is not None:
        path.write_text(content)
    r = _cli(str(path), "--profile", "instant", "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "out" / "eval.json").exists()


def _table_rows(stdout: str) -> list[tuple[str, str, str, str]]:
    """(scenario, turn, check, PASS/FAIL) of every row of the printed table."""
    rows = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 8 and cells[4] in ("PASS", "FAIL"):
            rows.append((cells[1], cells[2], cells[3], cells[4]))
    return rows


@pytest.mark.slow
def test_eval_end_to_end_table_matches_eval_json(tmp_path: Path, redis_url: str) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "faq.yaml").write_text(
        "tenant: acme\nquick: true\nturns:\n"
        "  - say: Where is the store?\n"
        "    expect: {contains: [Main Street], not_contains: [Sunday], cache: hit}\n"
        "  - dtmf: '5'\n    expect: {event: dtmf}\n"
        "expect: {hangup: agent, events: [dtmf], max_turns_unanswered: 0}\n"  # the caller hangs up: fails
    )
    (suite / "cold.yaml").write_text(
        "tenant: globex\nquick: true\ncache: cold\nturns:\n"
        "  - say: How do I file a claim?\n    expect: {cache: hit, contains: [policy]}\n"  # cold: a miss
    )
    (suite / "not-quick.yaml").write_text("turns: [{say: hi, expect: {contains: [x]}}]\n")
    out = tmp_path / "out"
    r = _cli(
        str(suite),
        "--quick",
        "--profile",
        "instant",
        "--out",
        str(out),
        "--concurrency",
        "1",  # one at a time: intents.py builds its index racily when two calls start together
        env={"REDIS_URL": redis_url},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "eval.json").read_text())
    assert doc["scenarios"] == 2 and doc["profile"] == "instant"
    assert doc["checks"] == len(doc["results"]) == 9
    assert doc["passed"] + doc["failed"] == doc["checks"]
    got = {(x["scenario"], x["check"], x["turn"]): x["passed"] for x in doc["results"]}
    assert got == {
        ("cold", "cache", 0): False,
        ("cold", "contains", 0): False,  # the instant LLM's one fixed reply is about opening hours
        ("faq", "contains", 0): True,
        ("faq", "not_contains", 0): True,
        ("faq", "cache", 0): True,
        ("faq", "event", 1): True,
        ("faq", "hangup", None): False,
        ("faq", "events", None): True,
        ("faq", "max_turns_unanswered", None): True,
    }
    # the printed table has the same rows, in the same order, with the same verdicts
    table = _table_rows(r.stdout)
    expected_rows = [
        (
            x["scenario"],
            "call" if x["turn"] is None else str(x["turn"]),
            x["check"],
            "PASS" if x["passed"] else "FAIL",
        )
        for x in doc["results"]
    ]
    assert table == expected_rows
    assert f"2 scenarios, 9 checks: {doc['passed']} passed, {doc['failed']} failed" in r.stdout
    for name in ("faq", "cold"):  # each call's own report is kept
        assert (out / name / "transcript.json").is_file() and (out / name / "metrics.json").is_file()
    assert not (out / "not-quick").exists()
