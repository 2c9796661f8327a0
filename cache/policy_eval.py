"""Measure the self-contained rule (`policy.is_self_contained`) on the authored utterance set.

    .venv/bin/python -m cache.policy_eval [--data tests/data/self_contained.yaml] [--out FILE.json]

Prints, per split (tune / heldout) and overall, the share of standalone utterances allowed
(goal >= 95 %) and the number of dependent ones allowed (goal 0), with the misjudged utterances;
writes the same as JSON with `--out`. Exit 0 whatever the numbers (a measurement, not a gate:
tests/test_cache_followups.py asserts the goal on the held-out split).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from cache.policy import is_self_contained

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "self_contained.yaml"
GOAL_STANDALONE = 0.95
GOAL_DEPENDENT = 0


def load_set(path: str | Path = DEFAULT_DATA) -> dict[str, Any]:
    """The labelled set: {"splits": {name: [domain]}, "domains": {domain: {standalone, dependent}}}.

    Raises:
        ValueError: the file is not in that shape.
    """
    data = yaml.safe_load(Path(path).read_text())
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("splits"), dict)
        or not isinstance(data.get("domains"), dict)
    ):
        raise ValueError(f"{path}: expected 'splits' and 'domains' mappings")
    for split, domains in data["splits"].items():
        for d in domains:
            entry = data["domains"].get(d)
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), list) for k in ("standalone", "dependent")
            ):
                raise ValueError(f"{path}: split {split}: domain {d!r} needs standalone and dependent lists")
    return data


def measure(data: dict[str, Any], domains: list[str]) -> dict[str, Any]:
    """Standalone-allowed rate and dependent-allowed count over `domains`."""
    standalone = [u for d in domains for u in data["domains"][d]["standalone"]]
    dependent = [u for d in domains for u in data["domains"][d]["dependent"]]
    t0 = time.perf_counter()
    blocked = [u for u in standalone if not is_self_contained(u)]
    leaked = [u for u in dependent if is_self_contained(u)]
    us = (time.perf_counter() - t0) * 1e6 / max(1, len(standalone) + len(dependent))
    rate = (len(standalone) - len(blocked)) / len(standalone) if standalone else 0.0
    return {
        "domains": domains,
        "standalone": len(standalone),
        "dependent": len(dependent),
        "standalone_allowed_rate": round(rate, 4),
        "dependent_allowed": len(leaked),
        "meets_goal": rate >= GOAL_STANDALONE and len(leaked) <= GOAL_DEPENDENT,
        "standalone_blocked": blocked,
        "dependent_allowed_list": leaked,
        "us_per_utterance": round(us, 1),
    }


def evaluate(path: str | Path = DEFAULT_DATA) -> dict[str, Any]:
    """Every split of the set plus all of it together."""
    data = load_set(path)
    out: dict[str, Any] = {"data": str(path), "goal": {"standalone_allowed_rate": GOAL_STANDALONE,
                                                      "dependent_allowed": GOAL_DEPENDENT}}  # fmt: skip
    for split, domains in data["splits"].items():
        out[split] = measure(data, list(domains))
    out["all"] = measure(data, [d for ds in data["splits"].values() for d in ds])
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m cache.policy_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = ap.parse_args(argv)
    try:
        res = evaluate(a.data)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for split in [k for k in res if k not in ("data", "goal")]:
        m = res[split]
        print(
            f"{split:8s} standalone allowed {m['standalone_allowed_rate'] * 100:5.1f}% "
            f"({m['standalone'] - len(m['standalone_blocked'])}/{m['standalone']})  "
            f"dependent allowed {m['dependent_allowed']}/{m['dependent']}  "
            f"goal {'met' if m['meets_goal'] else 'NOT met'}  {m['us_per_utterance']} us/utterance"
        )
        if split != "all":
            for u in m["standalone_blocked"]:
                print(f"    blocked standalone: {u}")
            for u in m["dependent_allowed_list"]:
                print(f"    ALLOWED dependent:  {u}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
