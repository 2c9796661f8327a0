"""The deterministic, seeded corpus of caller behaviours (scenario files under scenarios/turns/).

Each case is one call with four ground-truth-labelled caller events, so every call scores all
metrics at once:
  1. a first question, complete or with a mid-sentence hesitation (400-1200 ms)   -> EOU, cut-in
  2. during the agent's reply: a backchannel, a cough/click/noise burst, or nothing
     (the line's echo and noise alone)                                             -> false interruption
  3. a second complete question once the reply is over                              -> EOU, cut-in
  4. a real barge-in 0.8-1.6 s into the reply: "stop", "no, that's wrong", a new question
                                                                                    -> missed barge-in, reaction
Conditions vary the line: noise none/20/10/5 dB (white, babble, street), G.711 mu-law, 0/2 % loss,
agent echo on every line (-26..-16 dB, 50-250 ms).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from agent.sim.scenario import Scenario
from core.settings import REPO_ROOT

CORPUS_DIR = REPO_ROOT / "scenarios" / "turns"
HARDEST = "babble-10"  # the goals' condition: 10 dB babble, G.711, echo

# name -> (noise, snr_db, packet_loss, cases in the full run)
CONDITIONS: dict[str, tuple[str, float | None, float, int]] = {
    "clean": ("none", None, 0.0, 4),
    "white-20": ("white", 20.0, 0.0, 4),
    "street-10-loss2": ("street", 10.0, 0.02, 4),
    "babble-10": ("babble", 10.0, 0.0, 32),
    "babble-5-loss2": ("babble", 5.0, 0.02, 4),
}

QUESTIONS = [
    "What are your opening hours?",
    "Do you deliver on Sundays?",
    "How much is a replacement key?",
    "Can I return a drill without the receipt?",
    "Where is your nearest store?",
    "Is the garden center open today?",
    "Do you sell paint by the liter?",
    "Can I pick up my order tonight?",
]
# (sentence, words before the hesitation): the first fragment dangles on a filler or a function word
HESITATIONS = [
    ("I'd like to, um, change my delivery address.", 4),
    ("Can you tell me, uh, when my order arrives?", 5),
    ("I want to ask about the, er, warranty on my drill.", 7),
    ("My question is about my, um, last invoice.", 6),
    ("I need a key cut for my, uh, front door.", 8),
    ("Could you check whether, um, my parcel has shipped?", 5),
]
BACKCHANNELS = ["uh-huh", "okay", "right", "mm-hmm", "yeah"]
DISTRACTORS = ["backchannel", "cough", "click", "burst", "none"]
BARGE_INS = ["Stop.", "No, that's wrong.", "Wait, do you have a store in Springfield?"]


def make_case(condition: str, i: int) -> dict[str, Any]:
    noise, snr, loss, _ = CONDITIONS[condition]
    rng = random.Random(f"{condition}/{i}")  # string seeds are stable across runs and platforms
    line: dict[str, Any] = {
        "codec": "pcmu",
        "noise": noise,
        "packet_loss": loss,
        "seed": rng.randrange(1, 10_000),
        "echo_db": round(rng.uniform(-26, -16), 1),
        "echo_delay_ms": float(rng.randrange(50, 251, 10)),
    }
    if snr is not None:
        line["snr_db"] = snr
    turns: list[dict[str, Any]] = []
    if i % 2:
        text, after = HESITATIONS[rng.randrange(len(HESITATIONS))]
        turns.append(
            {
                "say": text,
                "hesitate_after": after,
                "hesitate_s": round(rng.uniform(0.4, 1.2), 2),
                "label": "hesitation",
            }
        )
    else:
        turns.append({"say": rng.choice(QUESTIONS), "label": "question"})
    kind = DISTRACTORS[i % len(DISTRACTORS)]
    at = round(rng.uniform(0.6, 2.0), 2)
    if kind == "backchannel":
        turns.append({"say": rng.choice(BACKCHANNELS), "barge_in_after": at, "label": "backchannel"})
    elif kind != "none":
        turns.append({"sound": kind, "barge_in_after": at, "label": kind})
    turns.append({"say": rng.choice(QUESTIONS), "label": "question"})
    turns.append(
        {
            "say": BARGE_INS[i % len(BARGE_INS)],
            "barge_in_after": round(rng.uniform(0.8, 1.6), 2),
            "label": "bargein",
        }
    )
    return {"name": f"{condition}-{i:02d}", "tenant": "acme", "line": line, "turns": turns}


def generate(out_dir: Path = CORPUS_DIR) -> list[Path]:
    """(Re)write every case file; the content depends only on the code above."""
    paths = []
    for cond, (*_, n) in CONDITIONS.items():
        d = out_dir / cond
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            case = make_case(cond, i)
            p = d / f"{case['name']}.yaml"
            p.write_text(yaml.safe_dump(case, sort_keys=False, width=120))
            paths.append(p)
    return paths


def load_cases(condition: str, n: int | None = None, first: int = 0) -> list[Scenario]:
    """Scenarios of one condition from the shipped files (generated on the fly if missing).

    `n` above the shipped count extends the corpus with more cases from the same generator, made
    in memory: never used for tuning, so they are a held-out check of the shipped values, and
    enough events to tell a 2 % rate from a 4 % one (32 cases cannot). `first` skips that many
    cases: a later stretch of the generator, held out from a sweep tuned on the earlier one.
    """
    total = CONDITIONS[condition][3]
    out = []
    for i in range(first, first + (total if n is None else n)):
        p = CORPUS_DIR / condition / f"{condition}-{i:02d}.yaml"
        data = yaml.safe_load(p.read_text()) if p.is_file() else make_case(condition, i)
        out.append(Scenario.model_validate(data))
    return out


if __name__ == "__main__":
    print(f"wrote {len(generate())} case files under {CORPUS_DIR}")
