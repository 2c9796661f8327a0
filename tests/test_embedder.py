"""The cache's embedder: the traced (TorchScript) path gives the eager model's vectors."""

from __future__ import annotations

import numpy as np

from cache.embedder import get_embedder


def test_traced_vectors_match_the_eager_model() -> None:
    e = get_embedder()
    assert e.traced  # the fast path is in use on this torch build
    texts = ["hi", "What are your opening hours on weekdays and at the weekend?", "where's my package"]
    fast = e.encode(texts)  # one padded batch through the traced module
    eager = np.stack([e._forward_eager(t) for t in texts])
    assert fast.shape == (3, 384)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(fast * eager, axis=1))) > 0.9999
    # one at a time (another sequence length than the trace's sample) gives the same vectors
    for t, v in zip(texts, fast, strict=True):
        assert float(e.encode_one(t) @ v) > 0.9999


def test_warm_embeds_a_turns_texts_in_one_pass_and_serves_them_from_the_lru() -> None:
    e = get_embedder()
    texts = ["Do you cut keys while I wait?", "do you cut keys while i wait"]
    calls: list[list[str]] = []
    real = e.encode

    def counting(batch: list[str]) -> np.ndarray:
        calls.append(list(batch))
        return real(batch)

    e.encode = counting  # type: ignore[method-assign]
    try:
        e.warm(texts)
        assert calls == [texts]  # one forward pass for both
        got = [e.embed(t) for t in texts]
        assert calls == [texts]  # ... and served from the LRU after it
        e.warm(texts[:1])
        assert len(calls) == 1  # nothing left to embed
    finally:
        del e.encode
    for t, v in zip(texts, got, strict=True):
        assert np.abs(v - real([t])[0]).max() < 1e-5  # padding in the batch changes nothing
