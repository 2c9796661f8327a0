"""`callcenter cache warm --paraphrase N`: more phrasings per FAQ entry, written by the cloud LLM.

For each entry the configured LLM (cloud: gpt-4o-mini through the `openai` client) is asked for N
ways a caller would ask the same question and a few near-miss questions that need another answer.

- Paraphrases are indexed like the FAQ's own (they route to the curated answer; the LLM never
  writes an answer here) and recorded in the entry's `gen_paraphrases` field (provenance
  `generated`). One whose nearest indexed entry is *another* entry is dropped: it would take that
  entry's callers. `drop_generated` removes them again.
- Near-misses go to the entry's `negatives` field ({"text", "source": "generated"}). The cache has
  no "not this entry" matching yet: they are stored for a verifier to use (issue 20 item 1) and
  shown by `cache show`; lookups do not read them.

The local 0.5B model's paraphrases were unusable (they changed the meaning or repeated the
question), so the local profile is refused instead of storing junk.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import numpy as np
import redis

from cache import policy
from cache.embedders import TextEmbedder
from cache.semantic import Keys, _s, knn_query, vec_field
from core.errors import UserError
from core.settings import Settings, get_settings

GENERATED = "generated"
MAX_N = 20
NEGATIVES = 3
LOCAL_REFUSAL = (
    "warm --paraphrase needs the cloud LLM (CALLCENTER_PROFILE=cloud or CALLCENTER_LLM_PROVIDER=openai): "
    "the local 0.5B model's paraphrases were unusable, so nothing is generated on the local profile"
)
SYSTEM = "You write test phrasings for a business's phone FAQ. Reply with one JSON object only."


def llm_client(settings: Settings | None = None) -> tuple[Any, str]:
    """(openai.OpenAI client, model) of the configured LLM when it is an OpenAI-compatible one.

    Raises:
        UserError: the local profile (LOCAL_REFUSAL) or no API key.
    """
    s = settings or get_settings()
    provider = s.llm_provider or ("openai" if s.profile == "cloud" else "local")
    if provider != "openai":
        raise UserError(LOCAL_REFUSAL)
    base_url, key, key_setting = s.stage_endpoint("llm")
    if not key:
        raise UserError(f"warm --paraphrase needs {key_setting} for the cloud LLM")
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=key, timeout=30.0, max_retries=2), s.llm_model


def prompt(question: str, answer: str, n: int, negatives: int = NEGATIVES) -> str:
    return (
        f"FAQ question: {question}\nIts answer: {answer}\n"
        f"Write {n} different ways a caller could ask this same question on the phone (colloquial, "
        f"indirect, short and long; each must be answered by exactly this answer), and {negatives} "
        "near-miss questions that use similar words but need a different answer (another day, product "
        'or direction, or a negation). JSON: {"paraphrases": [...], "negatives": [...]}'
    )


def _strings(v: Any) -> list[str]:
    return [" ".join(x.split()) for x in v if isinstance(x, str) and x.strip()] if isinstance(v, list) else []


def generate(client: Any, model: str, question: str, answer: str, n: int) -> tuple[list[str], list[str]]:
    """(paraphrases, negatives) the LLM wrote for one FAQ entry; at most n paraphrases.

    Raises:
        UserError: the request failed or the reply holds no JSON object.
    """
    import openai

    try:
        resp = client.chat.completions.create(
            model=model, temperature=0.7, response_format={"type": "json_object"},
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt(question, answer, n)}],
        )  # fmt: skip
    except openai.APIError as e:
        raise UserError(f"the LLM failed to paraphrase '{question[:60]}': {type(e).__name__}") from None
    text = resp.choices[0].message.content or ""
    m = re.search(r"\{.*\}", text, re.S)
    try:
        data = json.loads(m.group(0)) if m else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise UserError(f"the LLM's paraphrases of '{question[:60]}' are not a JSON object")
    return _strings(data.get("paraphrases"))[:n], _strings(data.get("negatives"))[:NEGATIVES]


def _entry(r: redis.Redis, keys: Keys, eid: str) -> tuple[str, dict[str, Any]]:
    """The entry's key and fields; UserError if there is no such entry."""
    ekey = keys.entry(eid)
    h = {_s(k): v for k, v in r.hgetall(ekey).items()}
    if not h:
        raise UserError(f"no cache entry '{eid}'")
    return ekey, h


def _norm(t: str) -> str:
    return " ".join(t.lower().split()).strip(" ?.!")


def add_generated(
    r: redis.Redis, keys: Keys, embedder: TextEmbedder, eid: str, paraphrases: list[str], negatives: list[str]
) -> dict[str, int]:
    """Index `paraphrases` for entry `eid` (marked generated) and record `negatives` on it.

    Returns:
        {"added", "duplicate", "refused" (policy), "ambiguous" (nearest entry is another one),
        "negatives"}.

    Raises:
        UserError: no such entry.
    """
    ekey, h = _entry(r, keys, eid)
    have = json.loads(_s(h.get("paraphrases", b"[]")))
    gen = json.loads(_s(h.get("gen_paraphrases", b"[]")))
    seen = {_norm(x) for x in [_s(h["question"]), *have]}
    out = {"added": 0, "duplicate": 0, "refused": 0, "ambiguous": 0, "negatives": 0}
    fresh: list[str] = []
    for p in paraphrases:
        if _norm(p) in seen:
            out["duplicate"] += 1
        elif not policy.paraphrase_ok(p) or not policy.lookup_allowed(p)[0]:
            out["refused"] += 1  # a lookup would bypass it anyway
        else:
            seen.add(_norm(p))
            fresh.append(p)
    vecs = np.asarray(embedder.embed_many(fresh), dtype=np.float32) if fresh else np.zeros((0, 1), np.float32)
    scope = (_s(h["tenant"]), _s(h["language"]), _s(h["kver"]))
    keep: list[tuple[str, np.ndarray]] = []
    for p, v in zip(fresh, vecs, strict=True):
        res = r.ft(keys.index).search(knn_query(*scope), query_params={"v": v.tobytes()})
        if res.docs and _s(res.docs[0].entry) != eid:
            out["ambiguous"] += 1
        else:
            keep.append((p, v))
    status = _s(h.get("status", b"")) or "approved"
    ttl = r.ttl(ekey)
    negs = json.loads(_s(h.get("negatives", b"[]")))
    known = {_norm(x["text"]) for x in negs if isinstance(x, dict)} | seen
    new_negs = [{"text": t, "source": GENERATED} for t in negatives if _norm(t) not in known]
    out["negatives"] = len(new_negs)
    pipe = r.pipeline(transaction=True)
    for n, (_p, v) in enumerate(keep, len(have)):
        pk = keys.para(eid, n)
        pipe.hset(pk, mapping={
            "kind": "p", "entry": eid, "tenant": scope[0], "language": scope[1], "kver": scope[2],
            "expiry": _s(h.get("expiry", b"0")), "created": time.time(), vec_field(status): v.tobytes(),
        })  # fmt: skip
        if ttl and ttl > 0:
            pipe.expire(pk, ttl)
    pipe.hset(ekey, mapping={
        "paraphrases": json.dumps([*have, *(p for p, _ in keep)]),
        "gen_paraphrases": json.dumps([*gen, *(p for p, _ in keep)]),
        "negatives": json.dumps([*negs, *new_negs]),
    })  # fmt: skip
    pipe.execute()
    out["added"] = len(keep)
    return out


def drop_generated(r: redis.Redis, keys: Keys, eid: str) -> int:
    """Remove an entry's generated paraphrases and negatives (its FAQ paraphrases stay).

    Paraphrase documents are numbered by position, so the kept ones are rewritten at 0..m-1 with
    their own vectors, in one transaction.

    Returns:
        How many paraphrases and negatives were dropped.

    Raises:
        UserError: no such entry.
    """
    ekey, h = _entry(r, keys, eid)
    have = json.loads(_s(h.get("paraphrases", b"[]")))
    gen = set(json.loads(_s(h.get("gen_paraphrases", b"[]"))))
    negs = json.loads(_s(h.get("negatives", b"[]")))
    ttl = r.ttl(ekey)
    docs: list[dict[Any, Any]] = [r.hgetall(keys.para(eid, n)) for n in range(len(have))]
    kept = [(p, d) for p, d in zip(have, docs, strict=True) if p not in gen]
    pipe = r.pipeline(transaction=True)
    if have:
        pipe.delete(*[keys.para(eid, n) for n in range(len(have))])
    for n, (_p, d) in enumerate(kept):
        if d:
            pipe.hset(keys.para(eid, n), mapping=d)
            if ttl and ttl > 0:
                pipe.expire(keys.para(eid, n), ttl)
    own_negs = [x for x in negs if not (isinstance(x, dict) and x.get("source") == GENERATED)]
    pipe.hset(ekey, mapping={
        "paraphrases": json.dumps([p for p, _ in kept]), "gen_paraphrases": "[]", "negatives": json.dumps(own_negs),
    })  # fmt: skip
    pipe.execute()
    return len(have) - len(kept) + len(negs) - len(own_negs)
