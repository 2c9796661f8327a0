"""`callcenter cache reembed`: re-embed every stored entry with the configured model, keep everything.

Entries (question, answer, paraphrases, audio, provenance, hits, TTLs) are never deleted or
rewritten; only their vector fields change. Two phases make it safe to die anywhere:

1. *Stage*: every question and paraphrase is embedded with the new model and written to a field
   `nvec` the index does not know. The old index keeps serving with the old vectors meanwhile; a
   failure here (endpoint down, Ctrl-C) changes nothing anyone reads (re-running overwrites `nvec`).
2. *Swap*: `{ns}:meta` is marked `reembedding` (every process then bypasses the cache instead of
   comparing two models' vectors), the index is dropped without its documents and created with the
   new dimension, and a Lua script moves `nvec` into `vec` (or `cvec` for a pending candidate) batch
   by batch. Then the meta records the new model. If it dies here, entries are intact and every
   opener says to run `reembed` again, which redoes both phases from the stored text.

Entries stored while phase 1 runs (a live call) get no `nvec`: phase 2 embeds them then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import redis

from cache.embedders import TextEmbedder
from cache.semantic import PENDING, Keys, _s, create_index, index_dim

BATCH = 128
STAGE = "nvec"
# Move each key's staged vector into its field (vec or cvec, whichever the doc uses now; for a
# doc with neither, ARGV's default). Atomic per batch; a doc gone meanwhile (expired) is skipped.
_SWAP = """
local moved = 0
for i, k in ipairs(KEYS) do
  local v = redis.call('HGET', k, 'nvec')
  if v then
    local f = ARGV[i]
    if redis.call('HEXISTS', k, 'cvec') == 1 then f = 'cvec' elseif redis.call('HEXISTS', k, 'vec') == 1 then f = 'vec' end
    redis.call('HSET', k, f, v)
    redis.call('HDEL', k, 'nvec')
    moved = moved + 1
  end
end
return moved
"""


def _docs(r: redis.Redis, keys: Keys) -> list[tuple[str, str, str]]:
    """(key, text, vector field) of every question and paraphrase document, from the entries'
    own text (a paraphrase doc `<id>:p<n>` is the n-th of its entry's `paraphrases`)."""
    out: list[tuple[str, str, str]] = []
    entries = [
        _s(k)
        for k in r.scan_iter(match=f"{keys.prefix}*", count=1000)
        if ":p" not in _s(k)[len(keys.prefix) :]
    ]
    pipe = r.pipeline(transaction=False)
    for k in entries:
        pipe.hmget(k, "kind", "question", "paraphrases", "status")
    for k, (kind, q, para, status) in zip(entries, pipe.execute(), strict=True):
        if _s(kind or b"") != "q" or q is None:
            continue
        field = "cvec" if _s(status or b"") == PENDING else "vec"
        out.append((k, _s(q), field))
        try:
            paras = json.loads(_s(para or b"[]"))
        except json.JSONDecodeError:
            paras = []
        for n, p in enumerate(paras if isinstance(paras, list) else []):
            if isinstance(p, str) and p.strip():
                out.append((f"{k}:p{n}", p, field))
    return out


def _wait_indexed(
    r: redis.Redis, keys: Keys, progress: Callable[[str, int, int], None] | None, timeout_s: float = 600.0
) -> None:
    """FT.CREATE scans existing documents in the background: return when the index serves them
    all (lookups right after the command would otherwise miss), or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    shown = -1
    while time.monotonic() < deadline:
        info = r.ft(keys.index).info()
        done = float(info.get("percent_indexed", 1) or 0)
        if not int(info.get("indexing", 0) or 0) and done >= 1.0:
            return
        if progress and int(done * 100) != shown:
            shown = int(done * 100)
            progress("indexing", shown, 100)
        time.sleep(0.2)


def reembed(
    r: redis.Redis, keys: Keys, embedder: TextEmbedder, progress: Callable[[str, int, int], None] | None = None,
    fail_after: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Re-embed every entry of a namespace with `embedder` and rebuild the index for it.

    Args:
        r: a sync client.
        keys: the namespace.
        embedder: the model to embed with (`name`, `dim`, `embed_many`).
        progress: callback (phase, done, total).
        fail_after: tests only: raise after staging this many documents (a crash midway).

    Returns:
        {"entries", "vectors", "model", "dim", "previous", "seconds"}.

    Raises:
        EmbedderError / UserError: from the embedder (phase 1: nothing changed).
    """
    t0 = time.perf_counter()
    meta = {_s(k): _s(v) for k, v in r.hgetall(keys.meta).items()}
    try:
        old_dim = index_dim(r.ft(keys.index).info())
    except redis.ResponseError:
        old_dim = None
    previous = meta.get("model") or ("all-MiniLM-L6-v2" if old_dim == 384 else None)
    docs = _docs(r, keys)
    # phase 1: stage the new vectors next to the old ones
    for i in range(0, len(docs), BATCH):
        part = docs[i : i + BATCH]
        vecs = np.asarray(embedder.embed_many([t for _, t, _ in part]), dtype=np.float32)
        pipe = r.pipeline(transaction=False)
        for (k, _t, _f), v in zip(part, vecs, strict=True):
            pipe.hset(k, STAGE, v.tobytes())
        pipe.execute()
        if progress:
            progress("embedding", min(i + BATCH, len(docs)), len(docs))
        if fail_after is not None and i + len(part) >= fail_after:
            raise RuntimeError("simulated failure while staging")
    # phase 2: swap (marked, so no process compares two models' vectors meanwhile)
    r.hset(keys.meta, mapping={"state": "reembedding", "target": embedder.name})
    try:
        r.ft(keys.index).dropindex(delete_documents=False)
    except redis.ResponseError:
        pass  # no index yet
    swap = r.register_script(_SWAP)
    staged = {k for k, _t, _f in docs}
    late = [(k, t, f) for k, t, f in _docs(r, keys) if k not in staged]  # stored during phase 1
    if late:
        vecs = np.asarray(embedder.embed_many([t for _, t, _ in late]), dtype=np.float32)
        pipe = r.pipeline(transaction=False)
        for (k, _t, _f), v in zip(late, vecs, strict=True):
            pipe.hset(k, STAGE, v.tobytes())
        pipe.execute()
    everything = docs + late
    moved = 0
    for i in range(0, len(everything), BATCH):
        part = everything[i : i + BATCH]
        moved += int(swap(keys=[k for k, _, _ in part], args=[f for _, _, f in part]))
        if progress:
            progress("swapping", min(i + BATCH, len(everything)), len(everything))
    # the index is created only now: FT.CREATE indexes every document that already has a vector
    # of the new dimension in one scan (created before the swap, each HSET would re-index)
    create_index(r, keys, embedder.name, int(embedder.dim))
    _wait_indexed(r, keys, progress)
    r.hset(
        keys.meta,
        mapping={"model": embedder.name, "dim": int(embedder.dim), "state": "ok", "built": time.time()},
    )
    r.hdel(keys.meta, "target")
    return {
        "entries": sum(1 for k, _, _ in everything if ":p" not in k[len(keys.prefix) :]),
        "vectors": moved,
        "model": embedder.name,
        "dim": int(embedder.dim),
        "previous": previous,
        "seconds": round(time.perf_counter() - t0, 2),
    }
