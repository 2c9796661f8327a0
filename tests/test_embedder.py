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
