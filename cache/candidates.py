"""Stage 1 of the two-stage match: the KNN's phrasings to one candidate per cache entry.

`ResponseCache._verified` and `cache bench` both run it, so the benchmark times the lookup the
agent makes. Pure functions over what Redis returned; the verifier (cache/verifier.py) scores
the candidates.
"""

from __future__ import annotations

import json
from typing import Any

from cache.schema import _s

PHRASING_FIELDS = ("question", "paraphrases", "negatives")  # read per candidate entry


def nearest_entries(docs: list[Any], k: int, max_distance: float) -> dict[str, tuple[float, int]]:
    """The nearest `k` entries among KNN result docs, each by its nearest phrasing.

    Args:
        docs: RediSearch result docs (fields `entry`, `dist`, `kind`; `id` ends in `:p<n>` for
            the n-th paraphrase), nearest first.
        k: entries to keep.
        max_distance: entries farther than this are dropped.

    Returns:
        entry id -> (distance, phrasing: -1 for the question, n for paraphrase n), nearest first.
    """
    near: dict[str, tuple[float, int]] = {}
    for doc in docs:
        eid = _s(doc.entry)
        if eid in near:
            continue
        n = -1
        if _s(getattr(doc, "kind", "q")) == "p":
            tail = _s(doc.id).rsplit(":p", 1)[-1]
            n = int(tail) if tail.isdigit() else -1
        near[eid] = (float(doc.dist), n)
        if len(near) == k:
            break
    return {e: v for e, v in near.items() if v[0] <= max_distance}


def candidates(near: dict[str, tuple[float, int]], rows: list[list[Any]]) -> list[dict[str, Any]]:
    """The verifier's candidates: each entry's matched phrasing and its negatives.

    Args:
        near: `nearest_entries`' result.
        rows: per entry of `near`, in order, the hash fields PHRASING_FIELDS (None: entry gone).

    Returns:
        dicts with `entry`, `dist`, `text` (the phrasing the query came nearest) and `negatives`.
    """
    out = []
    for (eid, (dist, n)), (question, para, negs) in zip(near.items(), rows, strict=True):
        if question is None:
            continue
        phr = json_list(para)
        phrasing = phr[n] if 0 <= n < len(phr) else _s(question)
        negatives = [x["text"] if isinstance(x, dict) else str(x) for x in json_list(negs)]
        out.append({"entry": eid, "dist": dist, "text": phrasing, "negatives": negatives})
    return out


def json_list(v: Any) -> list[Any]:
    """A stored JSON list field; anything else (missing, corrupt, not a list) reads as []."""
    try:
        out = json.loads(_s(v)) if v else []
    except ValueError:
        return []
    return out if isinstance(out, list) else []
