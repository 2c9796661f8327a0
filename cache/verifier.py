"""Acceptance step of the cache lookup (issue 20 item 1): is this KNN candidate the caller's question?

The KNN returns the nearest few entries; a distance threshold alone cannot tell a paraphrase
("any chance I can bring a drill back, I kept the receipt") from a near-miss with the same
words and another meaning ("... without a receipt", "move money *to* savings" vs "*from*"):
near-misses sit closer than many paraphrases. This module scores each (query, candidate
phrasing) pair with a tiny logistic regression (numpy only) over features that do not depend on
the business:

* the cosine distance, and its margin to the next other entry;
* lexical contrast: an opposed pair split across the two sides (with/without, to/from, in/out,
  add/remove, cancel/change, before/after, ...), a negation on one side only, numbers or
  weekdays/months that differ, two different action verbs;
* word coverage: the share of the candidate's content words missing from the query (and the
  query's missing from the candidate), with a fuzzy match for misheard words.

An entry's `negatives` (known near-misses, cache/paraphrase.py) veto it: a query lexically closer
to one of them than to the entry's own phrasing is rejected.

Weights: `verifier_weights.json` next to this file, written by
`python -m cache.verifier train` from the authored pair set `eval/cache/pairs/` (business domains
that are not in the eval set; deterministic: fixed data order, full-batch gradient descent).
Cost: ~20-50 µs per candidate (pure Python over a few words).
"""

from __future__ import annotations

import json
import math
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = Path(__file__).with_name("verifier_weights.json")

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
NEGATION = {"not", "no", "without", "never", "nothing", "none", "cannot", "cant", "dont", "doesnt", "isnt",
            "wont", "didnt", "arent", "havent", "hasnt", "non", "neither", "nor", "lost", "missing"}  # fmt: skip
# opposed pairs: one on each side (and not the other) means another question
OPPOSED = [
    ("with", "without"), ("to", "from"), ("into", "from"), ("in", "out"), ("on", "off"), ("up", "down"),
    ("before", "after"), ("add", "remove"), ("add", "cancel"), ("cancel", "change"), ("cancel", "book"),
    ("cancel", "renew"), ("cancel", "pause"), ("increase", "decrease"), ("upgrade", "downgrade"),
    ("raise", "lower"), ("open", "close"), ("deposit", "withdraw"), ("early", "late"),
    ("arrive", "leave"), ("arrival", "departure"), ("pickup", "dropoff"), ("pick", "drop"), ("start", "stop"),
    ("start", "end"), ("join", "leave"), ("join", "cancel"), ("send", "receive"), ("more", "less"),  # not buy/sell, lend/borrow: "can I buy X" = "do you sell X"
    ("new", "old"), ("domestic", "international"), ("refund", "exchange"), ("return", "exchange"),
    ("inside", "outside"), ("first", "last"), ("weekday", "weekend"), ("morning", "evening"),
    ("adult", "child"), ("single", "double"), ("lose", "find"), ("pay", "refund"),
    ("online", "store"), ("extend", "shorten"), ("rent", "buy"), ("upstairs", "downstairs"),
    ("higher", "lower"), ("high", "low"), ("maximum", "minimum"), ("max", "min"), ("full", "empty"),
    ("present", "absent"), ("cheap", "expensive"), ("include", "exclude"), ("free", "paid"),
]  # fmt: skip
ACTIONS = {"cancel", "change", "book", "add", "remove", "renew", "pause", "return", "exchange", "refund",
           "open", "close", "transfer", "upgrade", "downgrade", "extend", "reschedule", "order", "buy",
           "sell", "rent", "pay", "report", "replace", "repair", "fix", "track", "reset", "update",
           "deliver", "ship", "collect", "reserve", "join", "apply", "freeze", "unlock", "lock",
           "activate", "deactivate", "withdraw", "deposit", "print", "send", "refill",
           "schedule", "delay", "drop", "pick", "switch", "install", "move", "start", "stop", "claim", "check", "dispute", "split", "hire", "borrow", "lend", "wash", "clean"}  # fmt: skip
_TIME = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "weekend", "weekends",
         "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
         "november", "december", "christmas", "easter", "today", "tomorrow", "tonight", "yesterday",
         "holiday", "holidays", "morning", "evening", "night", "noon", "midnight", "week", "month", "year",
         "hour", "minute", "day"}  # fmt: skip
_NUMW = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "twenty", "thirty", "hundred", "half", "first", "second", "third"}  # fmt: skip
STOP = {"a", "an", "the", "i", "me", "my", "mine", "you", "your", "yours", "we", "us", "our", "it", "its",
        "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "can", "could", "would",
        "will", "should", "shall", "may", "might", "must", "have", "has", "had", "get", "got", "getting",
        "to", "of", "for", "on", "in", "at", "by", "and", "or", "if", "so", "that", "this", "there",
        "what", "whats", "when", "where", "which", "who", "how", "why", "any", "some", "just", "like",
        "um", "uh", "er", "hi", "hello", "hey", "ok", "okay", "yeah", "please", "thanks", "thank", "know",
        "want", "wanted", "wondering", "need", "tell", "say", "about", "way", "possible",
        "able", "im", "ive", "id", "youre", "also", "still", "then", "than", "too", "very", "really",
        "with", "from", "up", "out", "off", "down", "into", "as", "all", "one", "thing", "something",
        "anything", "someone", "go", "going", "let", "lets", "make", "much", "many", "well", "right",
        "now", "here", "them", "they", "their", "he", "she", "his", "her", "chance", "mean",
        "guys", "folks", "actually", "maybe", "quick", "question", "again", "back", "ever", "else"}  # fmt: skip

FEATURES = [
    "dist", "dist2", "margin", "opposed", "direction", "negation", "numbers", "actions", "cand_missing",
    "query_extra", "n_missing", "n_extra", "swap",
]  # fmt: skip
# weights that may only lower the probability (a contrast never makes a pair more alike)
NONPOSITIVE = ("opposed", "direction", "negation", "numbers", "actions", "n_extra", "swap")
# contrasts that reject a candidate outright, whatever the distance: the authored pairs have too few
# of them for the regression to weigh them (an object swap "from checking to savings" / "from
# savings to checking" never occurs there), and a miss costs the caller only the LLM's latency
VETO = ("opposed", "direction", "negation")
_DIRECTION = ("from", "to", "into", "onto", "for")


def _objects(toks: tuple[str, ...]) -> dict[str, str]:
    """The content word after each direction word: "from checking to savings" -> {from: check, to: saving}."""
    out: dict[str, str] = {}
    for i, w in enumerate(toks):
        if w in _DIRECTION:
            for o in toks[i + 1 : i + 4]:
                if o not in STOP and len(o) > 2:
                    out.setdefault(w, _stem(o))
                    break
    return out


def _stem(w: str) -> str:
    for suf in ("ing", "ed", "es", "s"):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            return w[: -len(suf)]
    return w


@lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[str, ...]:
    t = text.lower().replace("n't", " not").replace("’", "'").replace("pick-up", "pickup")
    t = t.replace("drop-off", "dropoff").replace("can not", "cannot")
    return tuple(w.split("'")[0] for w in _WORD.findall(t))


def _content(toks: tuple[str, ...]) -> set[str]:
    return {_stem(w) for w in toks if w not in STOP and len(w) > 2 and not w.isdigit()}


def _near(w: str, others: set[str]) -> bool:
    """w or a misheard/inflected spelling of it is among others (shared 4-letter prefix, or one edit)."""
    if w in others:
        return True
    for o in others:
        if len(w) >= 4 and len(o) >= 4 and w[:4] == o[:4]:
            return True
        if abs(len(w) - len(o)) <= 1 and len(w) >= 4 and _one_edit(w, o):
            return True
    return False


def _one_edit(a: str, b: str) -> bool:
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)) :] == b[i + 1 :]


def _marks(toks: tuple[str, ...]) -> tuple[set[str], set[str]]:
    nums = {
        w
        for w in toks
        if w.isdigit() or w in _NUMW or w in _TIME or re.fullmatch(r"\d+(st|nd|rd|th|am|pm)", w)
    }
    return {_stem(w) for w in toks} | set(toks), nums


def features(query: str, cand: str, dist: float, margin: float) -> list[float]:
    """The verifier's inputs for one (query, candidate phrasing) pair, in FEATURES order."""
    qt, ct = tokens(query), tokens(cand)
    qs, qn = _marks(qt)
    cs, cn = _marks(ct)
    opposed = 0.0
    for a, b in OPPOSED:
        if (a in qs and b not in qs and b in cs and a not in cs) or (
            b in qs and a not in qs and a in cs and b not in cs
        ):
            opposed = 1.0
            break
    qo, co = _objects(qt), _objects(ct)
    direction = float(
        any(w in co and not _near(o, {co[w]}) and _near(o, set(co.values())) for w, o in qo.items())
    )
    negation = float(bool(NEGATION & set(qt)) != bool(NEGATION & set(ct)))
    numbers = float(bool(qn or cn) and qn != cn)
    qa, ca = {_stem(w) for w in qt} & ACTIONS, {_stem(w) for w in ct} & ACTIONS
    actions = float(bool(qa) and bool(ca) and not (qa & ca))
    qc, cc = _content(qt), _content(ct)
    n_missing = sum(1 for w in cc if not _near(w, qc))
    n_extra = sum(1 for w in qc if not _near(w, cc))
    missing = n_missing / len(cc) if cc else 0.0
    extra = n_extra / len(qc) if qc else 0.0
    # one or two words swapped for others ("lower" for "higher", "van" for "car"): the same
    # sentence about another thing; a paraphrase rewords more, a shortening only drops words
    swap = float(n_missing >= 1 and n_extra >= 1 and n_missing + n_extra <= 3)
    return [dist, dist * dist, min(margin, 0.3), opposed, direction, negation, numbers, actions, missing, extra,
            float(min(n_missing, 3)), float(min(n_extra, 3)), swap]  # fmt: skip


def _overlap(a: str, b: str) -> float:
    sa, sb = set(tokens(a)), set(tokens(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def negative_veto(query: str, phrasing: str, negatives: list[str]) -> bool:
    """The query is (lexically) closer to one of the entry's known near-misses than to its phrasing."""
    own = _overlap(query, phrasing)
    return any(_overlap(query, n) > own and _overlap(query, n) >= 0.5 for n in negatives)


class Verifier:
    """Logistic regression over `features`; `prob` is the probability that the candidate is right."""

    def __init__(self, path: Path = WEIGHTS) -> None:
        d = json.loads(path.read_text())
        if d["features"] != FEATURES:
            raise ValueError(f"{path}: weights are for features {d['features']}, not {FEATURES}")
        self.mean = np.asarray(d["mean"], dtype=np.float64)
        self.std = np.asarray(d["std"], dtype=np.float64)
        self.w = np.asarray(d["w"], dtype=np.float64)
        self.b = float(d["b"])
        self.accept = float(d["accept"])
        self.max_distance = float(d["max_distance"])

    def prob_x(self, x: list[float]) -> float:
        z = float(((np.asarray(x) - self.mean) / self.std) @ self.w + self.b)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def prob(self, query: str, cand: str, dist: float, margin: float) -> float:
        x = features(query, cand, dist, margin)
        if any(x[FEATURES.index(f)] for f in VETO):
            return 0.0
        return self.prob_x(x)


@lru_cache(maxsize=1)
def get_verifier() -> Verifier:
    return Verifier()


def score_candidates(
    verifier: Verifier, query: str, cands: list[dict[str, Any]], max_distance: float
) -> list[dict[str, Any]]:
    """Probability per candidate entry (`{"entry", "dist", "text", "negatives"}`, nearest first, one
    per entry); a candidate beyond max_distance or vetoed by its negatives gets 0."""
    out = []
    for i, c in enumerate(cands):
        others = [o["dist"] for j, o in enumerate(cands) if j != i]
        margin = (min(others) - c["dist"]) if others else 0.3
        if c["dist"] > max_distance or negative_veto(query, c["text"], c.get("negatives") or []):
            p = 0.0
        else:
            p = verifier.prob(query, c["text"], c["dist"], margin)
        out.append({**c, "p": p})
    return out


# ---- training ------------------------------------------------------------------------------
PAIRS = Path(__file__).resolve().parent.parent / "eval" / "cache" / "pairs"
TOP_K = 4


def training_rows(
    entries: list[dict], queries: list[dict], embed: Any, k: int = TOP_K
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the lookup on the pair set (KNN over each tenant's phrasings, top-k entries) and
    label each (query, candidate) by whether the candidate is the query's entry."""
    phr: list[tuple[str, str, str]] = []  # (tenant, entry id, text)
    for e in entries:
        for t in [e["question"], *(e.get("paraphrases") or [])]:
            phr.append((e.get("tenant", ""), e["id"], t))
    pv = embed([p[2] for p in phr])
    qv = embed([q["query"] for q in queries])
    xs, ys = [], []
    for qi, q in enumerate(queries):
        sims = pv @ qv[qi]
        best: dict[str, tuple[float, str]] = {}
        for j in np.argsort(-sims):
            t, eid, text = phr[j]
            if t != q.get("tenant", "") or eid in best:
                continue
            best[eid] = (1.0 - float(sims[j]), text)
            if len(best) == k:
                break
        cands = sorted(best.items(), key=lambda kv: kv[1][0])
        for i, (eid, (d, text)) in enumerate(cands):
            others = [c[1][0] for j2, c in enumerate(cands) if j2 != i]
            margin = (min(others) - d) if others else 0.3
            xs.append(features(q["query"], text, d, margin))
            ys.append(1.0 if eid == q["expect"] else 0.0)
    return np.asarray(xs), np.asarray(ys)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 0.01, steps: int = 4000, lr: float = 0.5,
        neg_weight: float = 2.0, unused: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    nonpos = [FEATURES.index(f) for f in NONPOSITIVE]
    drop = [FEATURES.index(f) for f in unused]
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    w, b = np.zeros(z.shape[1]), 0.0
    # false hits cost more than misses: weight negatives up
    sw = np.where(y > 0, 1.0, neg_weight)
    sw = sw / sw.mean()
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = (p - y) * sw
        w -= lr * (z.T @ g / len(y) + l2 * w)
        b -= lr * float(g.mean())
        for i in nonpos:
            w[i] = min(w[i], 0.0)
        for i in drop:
            w[i] = 0.0
    return {"features": FEATURES, "mean": mean.round(6).tolist(), "std": std.round(6).tolist(),
            "w": w.round(6).tolist(), "b": round(b, 6)}  # fmt: skip


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# chosen on eval/cache/tune_* (hardware, bank, clinic): the margin feature lowered the hit rate at
# <= 1 % false hits there (0.356 with it, 0.376 without), false hits weighted 4x; acceptance 0.425
UNUSED = ("margin",)
NEG_WEIGHT = 4.0


def train(out: Path = WEIGHTS, accept: float = 0.425, max_distance: float = 0.6) -> dict[str, Any]:
    from cache.embedder import get_embedder

    emb = get_embedder()
    entries = _read(PAIRS / "entries.jsonl")
    queries = _read(PAIRS / "queries.jsonl")
    x, y = training_rows(entries, queries, emb.encode)
    model = fit(x, y, neg_weight=NEG_WEIGHT, unused=UNUSED)
    model.update(
        accept=accept,
        max_distance=max_distance,
        trained_on=f"{PAIRS.name}: {len(queries)} queries, {len(y)} pairs",
    )
    out.write_text(json.dumps(model, indent=1) + "\n")
    v = Verifier(out)
    p = np.asarray([v.prob_x(list(r)) for r in x])
    acc = float(((p >= accept) == (y > 0)).mean())
    return {
        "pairs": len(y),
        "positive": int(y.sum()),
        "train_accuracy": round(acc, 4),
        "weights": dict(zip(FEATURES, model["w"], strict=True)),
    }


if __name__ == "__main__":  # python -m cache.verifier train [--accept P] [--max-distance D]
    args = sys.argv[1:]
    if not args or args[0] != "train":
        raise SystemExit("usage: python -m cache.verifier train [--accept P] [--max-distance D]")
    kw: dict[str, float] = {}
    if "--accept" in args:
        kw["accept"] = float(args[args.index("--accept") + 1])
    if "--max-distance" in args:
        kw["max_distance"] = float(args[args.index("--max-distance") + 1])
    print(json.dumps(train(**kw), indent=1))  # type: ignore[arg-type]
