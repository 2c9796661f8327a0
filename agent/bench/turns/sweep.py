"""Tuning sweeps: the shipped config with some `TurnTuning` values overridden, one condition.

python -m agent.bench.turns.sweep '{"min_interruption": 0.25}' --cases 6 [--first 32] [--out sweep.json]

More cases than the corpus ships (32 at babble-10) are generated on the fly: a held-out check.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
from pathlib import Path

from rich.console import Console

from agent.bench.turns import check_out
from agent.bench.turns.bench import bench_turns
from agent.bench.turns.corpus import HARDEST
from agent.call.session import TurnTuning

KEYS = (
    "false_interruption_rate",
    "pause_resume_rate",
    "premature_cutin_rate",
    "missed_bargein_rate",
    "bargein_reaction_p50",
    "eou_delay_p50",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("overrides", help='JSON object of TurnTuning fields, e.g. {"min_delay": 0.3}')
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--first", type=int, default=0, help="skip this many cases (a held-out stretch)")
    ap.add_argument("--condition", default=HARDEST)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--stt", choices=("whisper", "oracle"), default="whisper", help="oracle: framework only")
    ap.add_argument("--out", type=Path, help="also write the whole result (per-case notes included) as JSON")
    a = ap.parse_args()
    check_out(ap, a.out)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("livekit").setLevel(logging.ERROR)
    try:
        kw = json.loads(a.overrides)
        tuning = dataclasses.replace(TurnTuning(), **kw)
    except (json.JSONDecodeError, TypeError) as e:  # not JSON, not an object, or not a field
        fields = ", ".join(f.name for f in dataclasses.fields(TurnTuning))
        ap.error(f"overrides {a.overrides!r}: {e}; fields: {fields}")
    if a.cases < 1 or a.concurrency < 1 or a.first < 0:
        ap.error("--cases and --concurrency must be at least 1, --first at least 0")
    doc = asyncio.run(
        bench_turns(
            Console(stderr=True, quiet=True),
            cases=a.cases,
            configs=["shipped"],
            conditions=[a.condition],
            concurrency=a.concurrency,
            tuning=tuning,
            stt=a.stt,
            first=a.first,
        )
    )
    if a.out:
        a.out.write_text(json.dumps({"overrides": kw, **doc}, indent=1))
    m = doc["configs"]["shipped"]
    print(
        json.dumps(
            {
                "overrides": kw,
                "cases": f"{a.condition} {a.first}-{a.first + a.cases - 1}",
                **{k: m[k] for k in KEYS},
                "stt": a.stt,
                "lag_p95_ms": doc["meta"]["loop_lag_p95_ms"],
            }
        )
    )


if __name__ == "__main__":
    main()
