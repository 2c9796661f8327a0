"""Scope-step benchmark (issue 22 item 6): does the agent refuse what the tenant's knowledge
does not cover, and still answer what it does?

    python -m agent.bench.scope --out bench-results/scope.json [--data tests/data/scope] [--llm 8] [--sweep]

For each tests/data/scope/<tenant>.yaml (``tenant``; ``tune`` / ``heldout`` splits, each with
``in`` and ``out`` questions) and each split: the share of out-of-scope questions the step
refuses (goal >= 95 %), the share of in-scope ones it passes on to be answered (goal >= 95 %),
and p50 / p99 of one decision (the tenant's anchors embedded before the clock starts, as a
call's first turn finds them). The step passes in-scope questions on to the LLM: these numbers
measure the step, not the LLM's answers.

Candidates compared on the same rows (thresholds of the first two tuned here on the tune split):
``embedder``: nearest FAQ question / fact sentence / FAQ answer above a similarity threshold;
``lexical``: every content word of the question occurs in the knowledge; ``shipped``: what
`agent.call.scope.decide` does (both, plus the generic topic anchors).

The answer side: `grounded` on every FAQ answer and each file's ``correct`` answers (should be
True, else they are never cached) and on its ``invented`` answers (must be False).

``--sweep``: every threshold combination of a grid on the tune split, and per threshold the
values that keep the tune split at its best (the shipped values sit inside those ranges).

``--llm N``: also ask the real local LLM (the agent's prompt, the tenant's facts) N held-out
out-of-scope and N in-scope questions per tenant, and count its answers that are not grounded
and not a refusal (invented) without the step, and with it (refused questions never reach the
LLM). CPU-heavy: keep N small.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agent.call.scope import (
    MIN_SIM,
    Decision,
    ScopeIndex,
    Thresholds,
    decide,
    grounded,
    judge,
    known_words,
    rule_decision,
    scope_index,
)
from core.errors import UserError
from core.settings import REPO_ROOT
from core.tenants import Tenant, load_tenant

DATA = REPO_ROOT / "tests" / "data" / "scope"
SPLITS = ("tune", "heldout")
GOAL = 0.95


Answers = dict[str, list[str]]


def load_set(path: Path) -> tuple[Tenant, dict[str, dict[str, list[str]]], Answers]:
    """One tenant's scope set: (tenant, {split: {"in": [...], "out": [...]}}, {"correct": [...],
    "invented": [...]} answers for `grounded`).

    Raises:
        UserError: unreadable file, invalid YAML, unknown tenant, or a missing / malformed split.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or type(e).__name__}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tenant"), str):
        raise UserError(f"{path}: expected a mapping with a 'tenant' name")
    tenant = load_tenant(data["tenant"])
    splits: dict[str, dict[str, list[str]]] = {}
    for split in SPLITS:
        part = data.get(split)
        if not isinstance(part, dict):
            raise UserError(f"{path}: '{split}' must be a mapping with 'in' and 'out' lists")
        splits[split] = {}
        for label in ("in", "out"):
            qs = part.get(label)
            if not isinstance(qs, list) or not qs or not all(isinstance(q, str) and q.strip() for q in qs):
                raise UserError(f"{path}: '{split}.{label}' must be a non-empty list of questions")
            splits[split][label] = qs
    answers: Answers = {}
    for key in ("correct", "invented"):
        got = data.get(key, [])
        if not isinstance(got, list) or not all(isinstance(a, str) for a in got):
            raise UserError(f"{path}: '{key}' must be a list of answers")
        answers[key] = got
    return tenant, splits, answers


def load_all(data: Path) -> list[tuple[Tenant, dict[str, dict[str, list[str]]], Answers]]:
    """Every <tenant>.yaml under `data` (or the one file `data` names)."""
    files = sorted(data.glob("*.yaml")) if data.is_dir() else [data]
    if not files or not all(f.is_file() for f in files):
        raise UserError(f"{data}: no scope set (*.yaml) found")
    return [load_set(f) for f in files]


def _embedder_only(idx: ScopeIndex, v: np.ndarray) -> float:
    """Similarity to the nearest of the tenant's own knowledge sentences (no topic anchors)."""
    mask = np.array([s == "knowledge" for s in idx.pos_src])
    return float((idx.pos[mask] @ v).max())


def _rate(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def score_tenant(
    tenant: Tenant, splits: dict[str, dict[str, list[str]]], embedder: Any, embed_threshold: float | None
) -> dict[str, Any]:
    """Per split: each candidate's refusal / answered rates, the shipped step's timings and errors."""
    idx = scope_index(tenant, embedder)
    out: dict[str, Any] = {}
    for split, labelled in splits.items():
        res: dict[str, Any] = {"n_in": len(labelled["in"]), "n_out": len(labelled["out"])}
        cand: dict[str, dict[str, list[bool]]] = {"shipped": {}, "embedder": {}, "lexical": {}}
        ms: list[float] = []
        warm: list[float] = []
        errors: list[dict[str, Any]] = []
        raw: list[dict[str, Any]] = []
        for label, qs in labelled.items():
            for k in cand:
                cand[k][label] = []
            for q in qs:
                embedder.__dict__.get("_lru", {}).clear()  # time an uncached embedding, as a new question is
                d = decide(q, tenant, embedder)
                ms.append(d.ms)
                # on the turn, the cache lookup has just embedded the same text (embedder LRU)
                warm.append(decide(q, tenant, embedder).ms)
                ok = d.in_scope == (label == "in")
                cand["shipped"][label].append(ok)
                rule = rule_decision(q, tenant)
                found, missing = known_words(q, tenant)
                lex_in = rule.in_scope if rule is not None else bool(found) and not missing
                cand["lexical"][label].append(lex_in == (label == "in"))
                sim = _embedder_only(idx, np.asarray(embedder.embed(q), dtype=np.float32))
                raw.append({"label": label, "sim": sim, "rule": rule is not None})
                if not ok:
                    errors.append(
                        {"question": q, "label": label, "why": d.why, "pos_sim": round(d.pos_sim, 3),
                         "neg_sim": round(d.neg_sim, 3), "nearest": d.nearest, "nearest_neg": d.nearest_neg}
                    )  # fmt: skip
        res["raw"] = raw
        for k, by_label in cand.items():
            if k == "embedder":
                continue
            res[k] = {"refused_out": _rate(by_label["out"]), "answered_in": _rate(by_label["in"])}
        res["p50_ms"] = round(float(np.percentile(ms, 50)), 2)
        res["p99_ms"] = round(float(np.percentile(ms, 99)), 2)
        res["after_cache_p50_ms"] = round(float(np.percentile(warm, 50)), 3)
        res["after_cache_p99_ms"] = round(float(np.percentile(warm, 99)), 3)
        res["errors"] = errors
        out[split] = res
    return out


def best_embed_threshold(raws: list[list[dict[str, Any]]]) -> float:
    """The knowledge-similarity threshold that maximises the worse of the two rates on tune rows."""
    rows = [r for raw in raws for r in raw]
    best, best_t = -1.0, MIN_SIM
    for t in np.arange(0.2, 0.9, 0.01):
        ins = [r["rule"] or r["sim"] >= t for r in rows if r["label"] == "in"]
        outs = [not r["rule"] and r["sim"] < t for r in rows if r["label"] == "out"]
        worst = min(_rate(ins), _rate(outs))
        if worst > best:
            best, best_t = worst, float(t)
    return round(best_t, 2)


def embed_rates(raw: list[dict[str, Any]], t: float) -> dict[str, float]:
    ins = [r["rule"] or r["sim"] >= t for r in raw if r["label"] == "in"]
    outs = [not r["rule"] and r["sim"] < t for r in raw if r["label"] == "out"]
    return {"refused_out": _rate(outs), "answered_in": _rate(ins)}


def answer_side(tenant: Tenant, answers: Answers) -> dict[str, Any]:
    """`grounded` on the tenant's FAQ answers and correct LLM answers (should pass: else they
    are never cached) and on invented answers (should not: else they are cached)."""
    correct = [f.answer for f in tenant.faq] + answers["correct"]
    invented = answers["invented"]
    return {
        "correct_grounded": _rate([grounded(a, tenant) for a in correct]),
        "n_correct": len(correct),
        "correct_refused": [a for a in correct if not grounded(a, tenant)],
        "invented_caught": _rate([not grounded(a, tenant) for a in invented]),
        "n_invented": len(invented),
        "invented_passed": [a for a in invented if grounded(a, tenant)],
    }


def llm_end_to_end(
    tenant: Tenant, splits: dict[str, dict[str, list[str]]], n: int, embedder: Any
) -> dict[str, Any]:
    """The real local LLM on n held-out out-of-scope and n in-scope questions, with the agent's
    prompt: its invented answers without the step and with it."""
    from agent.call.prompt import instructions_for
    from cache.policy import is_refusal_or_apology
    from core.local_llm import LocalLLMEngine

    eng = LocalLLMEngine.shared()
    rows: list[dict[str, Any]] = []
    for label in ("out", "in"):
        for q in splits["heldout"][label][:n]:
            t0 = time.perf_counter()
            msgs = [{"role": "system", "content": instructions_for(tenant)}, {"role": "user", "content": q}]
            answer = eng.chat(msgs, max_tokens=60, temperature=0.1)
            refused = is_refusal_or_apology(answer)
            ok_grounded = grounded(answer, tenant)
            step_in = decide(q, tenant, embedder).in_scope
            rows.append(
                {"question": q, "label": label, "answer": answer, "llm_s": round(time.perf_counter() - t0, 2),
                 "refusal": refused, "grounded": ok_grounded, "step_in_scope": step_in}
            )  # fmt: skip
    outs = [r for r in rows if r["label"] == "out"]
    return {
        "n_out": len(outs),
        "n_in": len(rows) - len(outs),
        # an out-of-scope answer that is neither a refusal nor supported by the facts
        "invented_without_step": sum(not r["refusal"] and not r["grounded"] for r in outs),
        "invented_with_step": sum(
            r["step_in_scope"] and not r["refusal"] and not r["grounded"] for r in outs
        ),
        "llm_refused_out_itself": sum(r["refusal"] for r in outs),
        "rows": rows,
    }


def _grid(lo: float, hi: float, step: float) -> list[float]:
    return [round(float(x), 2) for x in np.arange(lo, hi + 1e-9, step)]


GRID: dict[str, list[float]] = {
    "min_sim": _grid(0.30, 0.70, 0.02),
    "margin": _grid(-0.10, 0.14, 0.02),
    "sure_sim": [0.85, 0.90, 0.95, 1.01],
    "lex_sim": _grid(0.20, 0.60, 0.10),
    "known_sim": _grid(0.20, 0.60, 0.04),
}


def sweep(rows: list[tuple[str, Decision]]) -> dict[str, Any]:
    """Every threshold combination in `GRID` on the tune rows ((label, features) pairs): the
    best worse-of-the-rates and, per threshold, the values that reach it (the plateau: pick
    inside it, not on its edge)."""

    def rates(th: Thresholds) -> tuple[float, float]:
        got = {"in": [0, 0], "out": [0, 0]}
        for label, d in rows:
            ok = d.in_scope if d.why in ("social", "details", "identity", "empty") else None
            if ok is None:
                ok = judge(d.pos_sim, d.neg_sim, d.all_known, d.n_known, th)[0]
            got[label][0] += ok == (label == "in")
            got[label][1] += 1
        return got["in"][0] / got["in"][1], got["out"][0] / got["out"][1]

    import itertools

    scored: list[tuple[float, float, Thresholds]] = []
    for combo in itertools.product(*GRID.values()):
        th = Thresholds(*combo)
        r_in, r_out = rates(th)
        scored.append((min(r_in, r_out), r_in + r_out, th))
    top = max((w, t) for w, t, _ in scored)
    best = [th for w, t, th in scored if (w, t) == top]
    shipped = rates(Thresholds())
    return {
        "best_worse_rate": round(top[0], 4),
        "n_best": len(best),
        "plateau": {k: sorted({getattr(th, k) for th in best}) for k in GRID},
        "shipped": {"answered_in": round(shipped[0], 4), "refused_out": round(shipped[1], 4)},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table, write JSON."""
    ap = argparse.ArgumentParser(prog="python -m agent.bench.scope", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results" / "scope.json")
    ap.add_argument(
        "--llm", type=int, default=0, metavar="N", help="also run the local LLM on N+N held-out questions"
    )
    ap.add_argument("--sweep", action="store_true", help="grid-search the thresholds on the tune split")
    args = ap.parse_args(argv)
    try:
        sets = load_all(args.data)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.llm < 0:
        print("error: --llm must be >= 0", file=sys.stderr)
        return 2

    from cache.embedder import get_embedder

    embedder = get_embedder()
    results: dict[str, Any] = {}
    for tenant, splits, _ in sets:
        scope_index(tenant, embedder)  # anchors embedded before the clock starts
        results[tenant.name] = score_tenant(tenant, splits, embedder, None)
    t_embed = best_embed_threshold([r["tune"]["raw"] for r in results.values()])
    for (tenant, _, answers), r in zip(sets, results.values(), strict=True):
        for split in SPLITS:
            r[split]["embedder"] = embed_rates(r[split].pop("raw"), t_embed)
        r["answer_side"] = answer_side(tenant, answers)

    print("The scope step alone: in-scope questions pass on to the LLM; these rates measure the step.")
    print(f"goal: >= {GOAL:.0%} of out-of-scope refused, >= {GOAL:.0%} of in-scope answered")
    print(
        f"{'tenant':8} {'split':8} {'candidate':9} {'n in/out':>9} {'refused out':>11} {'answered in':>11} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for name, r in results.items():
        for split in SPLITS:
            s = r[split]
            for cand in ("shipped", "embedder", "lexical"):
                timing = f"{s['p50_ms']:7.2f} {s['p99_ms']:7.2f}" if cand == "shipped" else f"{'':7} {'':7}"
                print(
                    f"{name:8} {split:8} {cand:9} {s['n_in']:>4}/{s['n_out']:<4} {s[cand]['refused_out']:>11.1%} "
                    f"{s[cand]['answered_in']:>11.1%} {timing}"
                )
    print(f"(embedder alone: threshold {t_embed} tuned on the tune split; lexical alone: no threshold)")
    print(
        "decision times: a new question's embedding on one thread (embed_threads=1); after a cache "
        "miss the lookup has embedded the same text already: "
        + ", ".join(
            f"{n} {r[sp]['after_cache_p50_ms']:.2f}/{r[sp]['after_cache_p99_ms']:.2f} ms p50/p99"
            for n, r in results.items()
            for sp in ("heldout",)
        )
    )
    for name, r in results.items():
        a = r["answer_side"]
        print(
            f"{name}: grounded() keeps {a['correct_grounded']:.0%} of {a['n_correct']} correct answers "
            f"(FAQ + LLM), catches {a['invented_caught']:.0%} of {a['n_invented']} invented ones"
        )
        for split in SPLITS:
            for err in r[split]["errors"]:
                print(
                    f"  {split} {err['label']:3} wrong: {err['question']!r} ({err['why']}, "
                    f"pos {err['pos_sim']}, neg {err['neg_sim']})"
                )

    swept: dict[str, Any] = {}
    if args.sweep:
        no_th = Thresholds(min_sim=9, margin=9, sure_sim=9, lex_sim=9, known_sim=9)  # features only
        tune_rows = [
            (label, decide(q, tenant, embedder, no_th))
            for tenant, splits, _ in sets
            for label, qs in splits["tune"].items()
            for q in qs
        ]
        swept = sweep(tune_rows)
        print(
            f"sweep on {len(tune_rows)} tune questions: best worse-of-the-two-rates {swept['best_worse_rate']:.1%} "
            f"reached by {swept['n_best']} combinations; shipped {Thresholds()} gets "
            f"answered {swept['shipped']['answered_in']:.1%}, refused {swept['shipped']['refused_out']:.1%}"
        )
        for k, vals in swept["plateau"].items():
            print(f"  {k}: {', '.join(f'{v:g}' for v in vals)}")

    llm: dict[str, Any] = {}
    if args.llm:
        for tenant, splits, _ in sets:
            llm[tenant.name] = res = llm_end_to_end(tenant, splits, args.llm, embedder)
            print(
                f"{tenant.name} local LLM on {res['n_out']} out-of-scope + {res['n_in']} in-scope held-out questions: "
                f"invented answers {res['invented_without_step']}/{res['n_out']} without the step, "
                f"{res['invented_with_step']}/{res['n_out']} with it (LLM refused {res['llm_refused_out_itself']} itself)"
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "goal": GOAL,
                "thresholds": Thresholds().__dict__,
                "embedder_threshold": t_embed,
                "results": results,
                "sweep": swept,
                "llm": llm,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
