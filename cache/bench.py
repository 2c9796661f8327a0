"""Cache lookup benchmark: index KNN latency and memory per entry at growing sizes.

Synthetic entries (random unit vectors, realistic text sizes) are bulk-inserted with pipelines
into an isolated namespace of the same schema the agent uses; the filtered KNN-1 query is the
agent's own `knn_query`. Embedding time (one short sentence, the real model) is measured
separately and added: lookup = embed + KNN. With the verifier on (`CALLCENTER_CACHE_VERIFIER`,
the default), the timed query is the two-stage lookup's: the KNN over-fetches 3k phrasings, the
nearest k entries' texts are read in one pipeline and `cache/verifier.py` scores each pair
(`verify_p50_ms`, included in `knn_*`); lookup = embed + that. The namespace is dropped at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import redis

from cache.candidates import PHRASING_FIELDS, candidates, nearest_entries
from cache.embedder import DIM, MODEL_NAME
from cache.semantic import Keys, ensure_index, entry_mapping, knn_query, write_entry
from cache.verifier import get_verifier, score_candidates
from core.settings import get_settings

# what callers ask, scored against the synthetic entries' questions by the verifier
QUERIES = [
    "what time do you open on saturday",
    "Can I return a drill without a receipt?",
    "do you deliver to my area and how much is it",
    "Is the garden center open today?",
    "how do I move money from my savings to checking",
]


def _two_stage(r: redis.Redis, keys: Keys, q: Any, v: np.ndarray, text: str, k: int) -> float:
    """One verified lookup after the embedding, as `ResponseCache._verified` runs it; returns
    the verifier's own share in ms."""
    res = r.ft(keys.index).search(q, query_params={"v": v.tobytes()})
    near = nearest_entries(res.docs, k, 2.0)  # random vectors: every candidate scored
    pipe = r.pipeline(transaction=False)
    for eid in near:
        pipe.hmget(keys.entry(eid), *PHRASING_FIELDS)
    rows = pipe.execute()
    t0 = time.perf_counter()
    cands = candidates(near, rows)
    score_candidates(get_verifier(), text, cands, 2.0)
    return (time.perf_counter() - t0) * 1000


def _pct(xs: list[float], p: float) -> float:
    return round(float(np.percentile(xs, p)), 3)


def run_bench(
    redis_url: str,
    sizes: list[int],
    queries: int = 300,
    with_embedding: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    r = redis.Redis.from_url(redis_url, socket_timeout=120)
    keys = Keys(f"bench-{uuid.uuid4().hex[:8]}")
    rng = np.random.default_rng(7)
    tenant, lang, kver = "bench", "en", "v1"
    settings = get_settings()
    verify = settings.cache_verifier
    out: dict[str, Any] = {"sizes": [], "queries": queries, "verifier": verify}
    emb: dict[str, float] = {}
    if with_embedding:
        from cache.embedder import measure

        emb = measure(queries)
        out.update(emb)
    try:
        mem0 = int(r.info("memory")["used_memory"])
        # synthetic MiniLM-sized vectors, whatever CALLCENTER_CACHE_EMBEDDER is (the index records it)
        ensure_index(r, keys, SimpleNamespace(name=MODEL_NAME, dim=DIM))
        n = 0
        answer = "We're open Monday to Friday from 8 am to 8 pm, and on Saturdays from 9 to 5."
        for size in sorted(sizes):
            t0 = time.perf_counter()
            while n < size:
                batch = min(1000, size - n)
                vecs = rng.standard_normal((batch, DIM)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                pipe = r.pipeline(transaction=False)
                for j in range(batch):
                    eid = f"b{n + j:07d}"
                    m = entry_mapping(eid, f"synthetic question number {n + j} about opening hours?", answer,
                                      tenant, lang, kver, 86400, vecs[j], [], source="bench")  # fmt: skip
                    write_entry(pipe, keys, m, [], 86400)
                pipe.execute()
                n += batch
            # wait for background indexing to finish
            while True:
                info = r.ft(keys.index).info()
                if int(info.get("indexing", 0)) == 0 and int(info.get("num_docs", 0)) >= size:
                    break
                time.sleep(0.2)
            insert_s = time.perf_counter() - t0
            k = settings.cache_verifier_k
            q = knn_query(tenant, lang, kver, k=3 * k if verify else 1)
            lat, ver = [], []
            for i in range(queries):
                v = rng.standard_normal(DIM).astype(np.float32)
                v /= np.linalg.norm(v)
                t1 = time.perf_counter()
                if verify:
                    ver.append(_two_stage(r, keys, q, v, QUERIES[i % len(QUERIES)], k))
                else:
                    r.ft(keys.index).search(q, query_params={"v": v.tobytes()})
                lat.append((time.perf_counter() - t1) * 1000)
            mem = int(r.info("memory")["used_memory"]) - mem0
            row = {
                "entries": size,
                "insert_s": round(insert_s, 2),
                "knn_p50_ms": _pct(lat, 50),
                "knn_p99_ms": _pct(lat, 99),
                "bytes_per_entry": int(mem / size),
            }
            if verify:
                row["verify_p50_ms"] = _pct(ver, 50)
            if emb:
                row["lookup_p50_ms"] = round(row["knn_p50_ms"] + emb["embed_p50_ms"], 2)
                row["lookup_p99_ms"] = round(row["knn_p99_ms"] + emb["embed_p99_ms"], 2)
            out["sizes"].append(row)
            if progress:
                progress(f"{size} entries done")
    finally:
        try:
            r.ft(keys.index).dropindex(delete_documents=True)
        except redis.RedisError:
            pass
        for k in r.scan_iter(match=f"{keys.ns}:*", count=5000):
            r.delete(k)
        try:  # compact the AOF now: otherwise every later start replays and re-indexes the bench
            r.bgrewriteaof()
        except redis.RedisError:
            pass
        r.close()
    return out
