"""What the STT gate does to a caller's own words heard over the agent's reply (issue 19).

    python -m agent.bench.gate [--out bench-results/gate.json] [--conditions clean_g711,babble_10db]

While the agent speaks, the gate (agent/call/turn_detector.py `blank_reason`) blanks
transcripts that are not the caller taking the turn: backchannels, the agent's own echo, and
words whisper made up from a noise (low `transcript_confidence`). Each blank is a reply not cut;
a real caller's words blanked would be a barge-in missed. The turn benchmark measures the first;
its barge-ins are three fixed phrases, so this measures the second on the intent set
(tests/data/intents.jsonl: several hundred authored caller utterances, none of them tuned on
for the gate). Each is spoken by the simulated caller's voice through the line model
(agent/bench/intents.py's conditions) and transcribed by the local profile's whisper, then put
to the gate as if heard over the bench's reply. Reported per condition: of the utterances meant
as a turn (all but the set's backchannels: `during_agent` rows labelled none), the share blanked
and why; of the backchannels, the share blanked; and the confidence the STT gave each.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from agent.bench.intents import CONDITIONS, PAD_S, load_rows
from agent.bench.turns.voice import LONG_REPLY
from agent.call.echo import AgentWords
from agent.call.session import TurnTuning
from agent.call.turn_detector import blank_reason
from core.settings import REPO_ROOT, get_settings


def transcribe_scored(rows: list[dict[str, Any]], condition: dict[str, Any]) -> list[tuple[str, float]]:
    """Each row's text through the line (seeded as agent/bench/intents.py does): (text, confidence)."""
    import soxr

    from agent.providers.profiles import local_stt
    from agent.providers.whisper_stt import RATE, WhisperSTT
    from agent.sim.caller_voice import synthesize_caller
    from agent.sim.line import LineModel
    from agent.sim.scenario import LineConfig

    stt = local_stt(get_settings())
    assert isinstance(stt, WhisperSTT)
    out = []
    for i, r in enumerate(rows):
        pad = np.zeros(int(PAD_S * 8000), np.float32)
        line = LineModel(LineConfig(**{**condition, "seed": condition["seed"] + i}))
        heard = line.process_all(np.concatenate([pad, synthesize_caller(r["text"]), pad]))
        out.append(stt._transcribe_scored(soxr.resample(heard, 8000, RATE).astype(np.float32)))
    return out


def is_backchannel_row(r: dict[str, Any]) -> bool:
    """The set's backchannels: said over the agent ("during_agent") and meant as no intent."""
    return bool(r.get("during_agent")) and r["label"] == "none"


def score(
    rows: list[dict[str, Any]], heard: list[tuple[str, float]], min_confidence: float | None
) -> dict[str, Any]:
    """The gate's verdicts on one condition's transcripts."""
    words = AgentWords()
    words.add(LONG_REPLY)
    turns: Counter[str] = Counter()
    backchannels: Counter[str] = Counter()
    blanked_turns = []
    for r, (text, conf) in zip(rows, heard, strict=True):
        if not text.strip():
            why = "empty"
        else:
            why = blank_reason(text, conf, words.recent(), min_confidence=min_confidence) or "passed"
        if is_backchannel_row(r):
            backchannels[why] += 1
        else:
            turns[why] += 1
            if why not in ("passed", "empty"):
                blanked_turns.append(
                    {"spoken": r["text"], "heard": text, "confidence": round(conf, 2), "why": why}
                )
    n_turns, n_bc = sum(turns.values()), sum(backchannels.values())
    return {
        "turns": n_turns,
        "turns_blanked_rate": round(
            sum(v for k, v in turns.items() if k not in ("passed", "empty")) / max(1, n_turns), 4
        ),
        "turns_by_reason": dict(turns),
        "backchannels": n_bc,
        "backchannels_blanked_rate": round(
            sum(v for k, v in backchannels.items() if k != "passed") / max(1, n_bc), 4
        ),
        "blanked_turns": blanked_turns,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agent.bench.gate", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results" / "gate.json")
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    args = ap.parse_args(argv)
    names = [c for c in args.conditions.split(",") if c]
    if unknown := [c for c in names if c not in CONDITIONS]:
        print(
            f"error: unknown condition {', '.join(unknown)} (known: {', '.join(CONDITIONS)})", file=sys.stderr
        )
        return 2
    rows = load_rows()
    shipped = TurnTuning().gate_min_confidence
    results: dict[str, Any] = {}
    confidences: dict[str, list[float]] = {}
    print(f"{len(rows)} caller utterances heard over the agent's reply; shipped min confidence {shipped}")
    print(
        f"{'condition':12} {'min conf':>8} {'turns blanked':>13} {'by reason':30} {'backchannels blanked':>20}"
    )
    for name in names:
        heard = transcribe_scored(rows, CONDITIONS[name])
        confidences[name] = [round(c, 3) for _, c in heard]
        results[name] = {}
        for label, mc in (("shipped", shipped), ("no confidence check", None)):
            s = results[name][label] = score(rows, heard, mc)
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["turns_by_reason"].items()) if k != "passed")
            print(
                f"{name:12} {mc if mc is not None else '-':>8} {s['turns_blanked_rate']:>12.1%} "
                f"{reasons:30} {s['backchannels_blanked_rate']:>19.1%}"
            )
        for b in results[name]["shipped"]["blanked_turns"]:
            print(f"    blanked: {b['spoken']!r} heard {b['heard']!r} ({b['confidence']}, {b['why']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "stt": "faster-whisper tiny.en through the line model (the local profile's)",
                "reply": LONG_REPLY,
                "min_confidence": shipped,
                "conditions": {k: CONDITIONS[k] for k in names},
                "results": results,
                "confidences": confidences,
                "rows": [{"text": r["text"], "label": r["label"]} for r in rows],
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
