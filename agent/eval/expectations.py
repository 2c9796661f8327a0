"""The checks of `callcenter eval`: pure functions over a call's own report files.

A check reads only `transcript.json` and `metrics.json` (schema: `core/call_report.py`), so it
judges exactly what the report says. Scenario turns map onto report turns as the simulator
numbers them (`agent/sim/call.py`, `_turn_metrics`): one report row per spoken line (say / play),
in order; pause, dtmf and sound turns have no row. A keypad turn is found in the report through
its `dtmf` event (the k-th dtmf turn of the scenario is the k-th `dtmf` event).

Text checks are case-insensitive substring checks on the agent's reply to the turn, after both
sides are normalised (`normalize`): numbers match spelled out or as digits ("8" matches "eight"
and "8am", but not "18"), curly quotes and runs of spaces do not matter.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.sim.scenario import Scenario, Turn
from core.call_report import METRICS, TRANSCRIPT, read_json

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000}
_TOKEN = re.compile(r"[a-z]+|\s*-\s*|\s+|[^a-z\s-]+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-"})


def _number_at(tokens: list[str], i: int) -> tuple[int, int] | None:
    """The number spelled by the words starting at tokens[i]: (value, tokens consumed)."""

    def word(j: int) -> str | None:
        return tokens[j] if j < len(tokens) and tokens[j].isalpha() else None

    def sep(j: int) -> bool:  # a space or a hyphen between two number words
        return j < len(tokens) and not tokens[j].strip(" -")

    def small(j: int) -> tuple[int, int] | None:  # 0..99
        w = word(j)
        if w in _TENS:
            if sep(j + 1) and word(j + 2) in _UNITS and 0 < _UNITS[word(j + 2) or ""] < 10:
                return _TENS[w] + _UNITS[word(j + 2) or ""], 3
            return _TENS[w], 1
        if w in _UNITS:
            return _UNITS[w], 1
        return None

    first = small(i)
    if first is None:
        return None
    total, (cur, used) = 0, first
    while sep(i + used) and word(i + used + 1) in _SCALES:
        scale = _SCALES[word(i + used + 1) or ""]
        if scale == 100:
            cur *= 100
        else:
            total, cur = total + cur * scale, 0
        used += 2
        j = i + used
        if sep(j) and word(j + 1) == "and" and sep(j + 2):
            j += 2
        if sep(j) and (rest := small(j + 1)) is not None:
            cur += rest[0]
            used = j + 1 + rest[1] - i
    return total + cur, used


def normalize(text: str) -> str:
    """Lower-case `text`, spell numbers as digits ("twenty-four" -> "24", "one hundred and five"
    -> "105"), straighten quotes and collapse whitespace.

    Args:
        text: an agent reply or an expected phrase.

    Returns:
        The normalised text (both sides of a text check go through this).
    """
    tokens = _TOKEN.findall(" ".join(text.translate(_QUOTES).lower().split()))
    out: list[str] = []
    i = 0
    while i < len(tokens):
        n = _number_at(tokens, i) if tokens[i].isalpha() else None
        if n is None:
            out.append(tokens[i])
            i += 1
        else:
            out.append(str(n[0]))
            i += n[1]
    return "".join(out)


def phrase_in(phrase: str, text: str) -> bool:
    """Whether `phrase` occurs in `text`, case-insensitively, numbers spelled either way.

    A phrase that starts or ends with a digit only matches at a number's edge: "8" is found in
    "eight", "8am" and "8:00", not in "18" or "80".

    Args:
        phrase: what the scenario expects (e.g. "8", "Main Street").
        text: the agent's reply.

    Returns:
        True when the phrase is in the text.
    """
    p, t = normalize(phrase).strip(), normalize(text)
    if not p:
        return False
    pattern = ("(?<!\\d)" if p[0].isdigit() else "") + re.escape(p) + ("(?!\\d)" if p[-1].isdigit() else "")
    return re.search(pattern, t) is not None


# ---- the report ------------------------------------------------------------------------------
@dataclass
class CallReport:
    """A call's own report: `transcript.json` and `metrics.json` as written by the call."""

    transcript: dict[str, Any]
    metrics: dict[str, Any]

    @classmethod
    def read(cls, out_dir: Path) -> CallReport:
        """The report in `out_dir` (missing or broken files read as empty).

        Args:
            out_dir: the call's directory.

        Returns:
            The report.
        """
        return cls(read_json(out_dir / TRANSCRIPT), read_json(out_dir / METRICS))

    @property
    def turns(self) -> list[dict[str, Any]]:
        """Per-turn rows (metrics.json; the transcript's text-only rows if metrics are missing)."""
        rows = self.metrics.get("turns")
        if not isinstance(rows, list):
            rows = self.transcript.get("turns")
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    @property
    def events(self) -> list[dict[str, Any]]:
        ev = self.transcript.get("events")
        return (
            [e for e in ev if isinstance(e, dict) and isinstance(e.get("type"), str)]
            if isinstance(ev, list)
            else []
        )

    @property
    def error(self) -> str | None:
        """Why the call failed (the report's `error`), or why there is no usable report."""
        if not self.transcript and not self.metrics:
            return "no call report (transcript.json / metrics.json missing or unreadable)"
        err = self.transcript.get("error") or self.metrics.get("error")
        return str(err) if err else None

    def row(self, index: int) -> dict[str, Any] | None:
        """The report row of the `index`-th spoken line (None: that line was never spoken)."""
        for r in self.turns:
            if r.get("index") == index:
                return r
        return None


@dataclass
class CheckResult:
    """One expectation of one scenario, judged. `turn` is the scenario's turn index
    (`turns[i]`), None for a whole-call expectation."""

    scenario: str
    check: str
    turn: int | None
    expected: Any
    observed: Any
    passed: bool
    said: str | None = None  # the caller's line (or the keys pressed), for people reading

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- planning -------------------------------------------------------------------------------
def said(turn: Turn) -> str:
    """A short label of what the caller did on a turn."""
    if turn.say is not None:
        return turn.say
    if turn.play is not None:
        return turn.text or turn.play.name
    if turn.dtmf is not None:
        return f"(presses {turn.dtmf})"
    if turn.sound is not None:
        return f"({turn.sound})"
    return f"(silence {turn.pause} s)"


def planned_checks(scenario: Scenario) -> list[tuple[int | None, str, Any]]:
    """Every expectation of a scenario, in order: (scenario turn index or None, key, expected).

    Args:
        scenario: a loaded scenario.

    Returns:
        The expectations, turn by turn, then the whole call's.
    """
    out: list[tuple[int | None, str, Any]] = []
    for i, turn in enumerate(scenario.turns):
        if turn.expect is not None:
            out += [(i, k, getattr(turn.expect, k)) for k in turn.expect.keys()]
    if scenario.expect is not None:
        out += [(None, k, getattr(scenario.expect, k)) for k in scenario.expect.keys()]
    return out


def failed_checks(scenario: Scenario, name: str, why: str) -> list[CheckResult]:
    """Every expectation of a scenario counted as failed, `why` as the observed value (a call
    that errored or left no report).

    Args:
        scenario: the scenario.
        name: its name in the results.
        why: the error.

    Returns:
        One failed result per expectation.
    """
    return [
        CheckResult(name, key, i, exp, why, False, None if i is None else said(scenario.turns[i]))
        for i, key, exp in planned_checks(scenario)
    ]


# ---- judging --------------------------------------------------------------------------------
def _spoken_index(scenario: Scenario) -> dict[int, int]:
    """Scenario turn index -> report row index, for the spoken lines."""
    out, k = {}, 0
    for i, turn in enumerate(scenario.turns):
        if turn.spoken:
            out[i], k = k, k + 1
    return out


def _anchors(scenario: Scenario, report: CallReport) -> dict[int, float]:
    """Call-clock time (the events' `t`) of each scenario turn the report can place: keypad turns
    by their `dtmf` event; spoken lines when their report row carries a `start` time."""
    out: dict[int, float] = {}
    dtmf = [e for e in report.events if e["type"] == "dtmf"]
    k = 0
    spoken = _spoken_index(scenario)
    for i, turn in enumerate(scenario.turns):
        if turn.dtmf is not None:
            if k < len(dtmf) and isinstance(dtmf[k].get("t"), (int, float)):
                out[i] = float(dtmf[k]["t"])
            k += 1
        elif i in spoken and (row := report.row(spoken[i])) is not None:
            start = row.get("start")
            if isinstance(start, (int, float)) and not isinstance(start, bool):
                out[i] = float(start)
    return out


def events_after(scenario: Scenario, report: CallReport, i: int) -> list[dict[str, Any]]:
    """The events that follow scenario turn `i`: from the turn (or, when the report cannot place
    it, from the last turn before it that it can place) up to the next turn it can place.

    Args:
        scenario: the scenario.
        report: the call's report.
        i: the scenario turn index.

    Returns:
        The events in that window, in order.
    """
    anchors = _anchors(scenario, report)
    own = anchors.get(i)
    before = [t for j, t in anchors.items() if j < i]
    after = [t for j, t in anchors.items() if j > i]
    hi = min(after) if after else math.inf
    out = []
    for e in report.events:
        t = e.get("t")
        if not isinstance(t, (int, float)):
            continue
        if own is not None:
            ok = own <= t < hi
        else:
            ok = (t > max(before) if before else True) and t < hi
        if ok:
            out.append(e)
    return out


def _reply(row: dict[str, Any]) -> str:
    text = row.get("agent_text")
    return text if isinstance(text, str) else ""


def _judge_turn(scenario: Scenario, report: CallReport, i: int, key: str, expected: Any) -> tuple[Any, bool]:
    """(observed, passed) of one turn expectation."""
    turn = scenario.turns[i]
    spoken = _spoken_index(scenario)
    row = report.row(spoken[i]) if i in spoken else None
    if i in spoken and row is None:
        return "line never spoken (the call had ended)", False
    if key == "event":
        if turn.dtmf is not None and i not in _anchors(scenario, report):
            return "keypad press not in the report (the call had ended?)", False
        types = [e["type"] for e in events_after(scenario, report, i)]
        return types, expected in types
    assert row is not None  # only spoken lines take the other expectations (Turn.one_action)
    reply = _reply(row)
    if key == "contains":
        return reply, all(phrase_in(p, reply) for p in expected)
    if key == "not_contains":
        return reply, not any(phrase_in(p, reply) for p in expected)
    if key == "contains_any":
        return reply, any(phrase_in(p, reply) for p in expected)
    if key == "cache":
        outcome = row.get("cache_outcome") or ("hit" if row.get("cache_hit") else None)
        observed = outcome or "none"
        if expected == "hit":
            return observed, outcome == "hit"
        if expected == "miss":
            return observed, outcome == "miss"
        return observed, True
    if key == "interrupted":
        if turn.barge_in_after is not None:
            # the reply this line was spoken over: the previous spoken line's, or the greeting
            prev = [spoken[j] for j in spoken if j < i]
            if prev:
                prow = report.row(prev[-1])
                cut = bool(prow.get("interrupted")) if prow is not None else None
            else:
                items = report.transcript.get("items")
                first = next(
                    (m for m in items if isinstance(m, dict) and m.get("role") == "assistant"), None
                ) if isinstance(items, list) else None  # fmt: skip
                cut = bool(first.get("interrupted")) if first is not None else None
            if cut is None:
                return "no reply to speak over", False
            return cut, cut == expected
        cut = bool(row.get("interrupted"))
        return cut, cut == expected
    if key == "max_voice_to_voice":
        v = row.get("voice_to_voice")
        if not isinstance(v, (int, float)):
            return "no reply", False
        return round(float(v), 3), float(v) <= expected
    raise ValueError(f"unknown turn expectation {key}")


def _judge_call(report: CallReport, key: str, expected: Any) -> tuple[Any, bool]:
    """(observed, passed) of one whole-call expectation."""
    events = report.events
    types = list(dict.fromkeys(e["type"] for e in events))
    if key == "hangup":
        hangups = [e for e in events if e["type"] == "hangup"]
        if hangups:
            by = hangups[0].get("by")
            return by, by == expected
        transferred = any(e["type"] == "transfer" and e.get("ok") for e in events)
        return ("none (transferred)" if transferred else "none"), False
    if key == "events":
        return types, all(x in types for x in expected)
    if key == "events_absent":
        return types, not any(x in types for x in expected)
    if key == "max_turns_unanswered":
        n = sum(1 for r in report.turns if not _reply(r).strip())
        return n, n <= expected
    raise ValueError(f"unknown call expectation {key}")


def judge(scenario: Scenario, report: CallReport, name: str | None = None) -> list[CheckResult]:
    """Judge every expectation of `scenario` on the call's report.

    Args:
        scenario: the scenario the call ran.
        report: the call's own report (`CallReport.read(out_dir)`).
        name: the scenario's name in the results (default `scenario.name`).

    Returns:
        One result per expectation, in `planned_checks` order. A call that failed (the report's
        `error`) or left no report fails every check, the error as the observed value.
    """
    name = name or scenario.name
    if (err := report.error) is not None:
        return failed_checks(scenario, name, f"call failed: {err}")
    out = []
    for i, key, expected in planned_checks(scenario):
        if i is None:
            observed, passed = _judge_call(report, key, expected)
            out.append(CheckResult(name, key, None, expected, observed, passed))
        else:
            observed, passed = _judge_turn(scenario, report, i, key, expected)
            out.append(CheckResult(name, key, i, expected, observed, passed, said(scenario.turns[i])))
    return out
