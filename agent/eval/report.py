"""What `callcenter eval` prints and writes: the table, the summary line, `eval.json`.

`eval.json`: `{"scenarios", "checks", "passed", "failed", "pass_rate", "profile", "concurrency",
"started_at", "seconds", "out", "calls": [{"scenario", "path", "tenant", "report", "checks",
"passed", "error", "seconds", "cache"}...], "results": [{"scenario", "check", "turn", "said",
"expected", "observed", "passed"}...]}`. The table has one row per result, in the same order.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from agent.eval.run import EvalRun

OBSERVED_WIDTH = 60


def to_doc(run: EvalRun) -> dict[str, Any]:
    """The run as the `eval.json` document.

    Args:
        run: a finished eval run.

    Returns:
        The document (JSON-serialisable).
    """
    results = [r.to_dict() for o in run.outcomes for r in o.results]
    passed = sum(r["passed"] for r in results)
    calls = [
        {
            "scenario": o.item.name,
            "path": str(o.item.path),
            "tenant": o.item.scenario.tenant,
            "report": str(o.out_dir),
            "checks": len(o.results),
            "passed": sum(r.passed for r in o.results),
            "error": o.error,
            "seconds": round(o.seconds, 2),
            "cache": o.cache,
        }
        for o in run.outcomes
    ]
    return {
        "scenarios": len(run.outcomes),
        "checks": len(results),
        "passed": passed,
        "failed": len(results) - passed,
        "pass_rate": round(passed / len(results), 4) if results else None,
        "calls_failed": sum(o.error is not None for o in run.outcomes),
        "profile": run.profile,
        "concurrency": run.concurrency,
        "started_at": datetime.fromtimestamp(run.started_at, UTC).isoformat(timespec="seconds"),
        "seconds": round(run.seconds, 1),
        "out": str(run.out_dir),
        "calls": calls,
        "results": results,
    }


def _show(value: Any, width: int = OBSERVED_WIDTH) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def results_table(doc: dict[str, Any]) -> Table:
    """One row per check: scenario, turn, check, PASS/FAIL, expected, observed.

    Args:
        doc: the `eval.json` document (`to_doc`).

    Returns:
        The table (rows in `doc["results"]` order).
    """
    table = Table(title=f"eval ({doc['profile']} profile)")
    for col in ("scenario", "turn", "check", "result", "expected", "observed"):
        table.add_column(col, overflow="fold" if col == "observed" else "ellipsis")
    for r in doc["results"]:
        table.add_row(
            escape(r["scenario"]),
            "call" if r["turn"] is None else str(r["turn"]),
            r["check"],
            "[green]PASS[/]" if r["passed"] else "[red]FAIL[/]",
            escape(_show(r["expected"], 40)),
            escape(_show(r["observed"])),
        )
    return table


def summary_line(doc: dict[str, Any]) -> str:
    """`N scenarios, M checks: P passed, F failed (x %)` plus failed calls, plain text.

    Args:
        doc: the `eval.json` document.

    Returns:
        The line.
    """
    rate = "—" if doc["pass_rate"] is None else f"{100 * doc['pass_rate']:.1f} %"
    line = (
        f"{doc['scenarios']} scenarios, {doc['checks']} checks: {doc['passed']} passed, "
        f"{doc['failed']} failed ({rate}) on the {doc['profile']} profile in {doc['seconds']:.0f} s"
    )
    if doc["calls_failed"]:
        line += f"; {doc['calls_failed']} calls failed"
    return line


def write_doc(doc: dict[str, Any], path: Path) -> None:
    """Write `eval.json` (owner-only: it quotes the agent's replies to the calls).

    Args:
        doc: the document.
        path: where to write it.
    """
    from agent.call.report import write_private

    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(doc, indent=2, default=str) + "\n")
