"""What a cache entry is: provenance and review names, the hit returned to a call, the hash
fields of an entry, and the rules on them that every module writing entries shares
(`cache/semantic.py` keys and index, `cache/followups.py`, `cache/admin.py`).

Kept apart from `cache/semantic.py` so modules that `semantic` itself uses (follow-ups) can use
them without an import cycle.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from pydantic import BaseModel

# Provenance (`source`) and review state (`status`) of an entry.
SOURCES = ("faq", "warm", "call", "generated")
LLM_SOURCES = ("call", "generated")  # text no person wrote: reviewed before it is served
PENDING, APPROVED = "pending", "approved"


def vec_field(status: str) -> str:
    """Where an entry's vectors live: `vec` (indexed, served) or `cvec` (a pending candidate)."""
    return "cvec" if status == PENDING else "vec"


class CacheHit(BaseModel):
    id: str
    question: str
    answer: str
    distance: float
    audio: bytes | None = None
    audio_sample_rate: int | None = None


_TAG_SPECIAL = set(",.<>{}[]\"':;!@#$%^&*()-+=~|/\\ ")


def tag(value: str) -> str:
    return "".join("\\" + c if c in _TAG_SPECIAL else c for c in value)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def entry_mapping(
    eid: str, question: str, answer: str, tenant: str, language: str, kver: str, ttl: int,
    vec: np.ndarray, paraphrases: list[str], created: float | None = None, hits: int = 0,
    last_hit: float = 0.0, source: str = "", status: str = APPROVED, reviewed: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    created = time.time() if created is None else created
    return {
        "kind": "q", "entry": eid, "question": question, "answer": answer, "tenant": tenant,
        "language": language, "kver": kver, "created": created, "ttl": ttl, "expiry": created + ttl,
        "hits": hits, "last_hit": last_hit, "paraphrases": json.dumps(paraphrases), "source": source,
        "status": status, "reviewed": reviewed, vec_field(status): np.asarray(vec, dtype=np.float32).tobytes(),
    }  # fmt: skip


def replaceable_by_llm(status: Any, source: Any, reviewed: Any) -> bool:
    """May an answer the LLM wrote replace this existing entry? Only one no person chose: a
    pending candidate, an auto-served LLM answer, or an entry from before review existed. A FAQ
    or warm-file entry, and anything an admin approved or edited, is kept."""
    st, src = _s(status or b""), _s(source or b"")
    if st in ("", PENDING):
        return True
    return src in (*LLM_SOURCES, "") and not float(reviewed or 0)


_AUTO_SERVE: dict[str, tuple[float, bool]] = {}


def tenant_auto_serve(tenant: str) -> bool:
    """The tenant's `cache.auto_serve` (tenants/<name>.yaml); False for a tenant not configured
    here or a file that does not load (the safe side: its call answers wait for review).
    Re-read when the file changes."""
    from core.errors import UserError
    from core.tenants import load_tenant, tenant_path

    try:
        path = tenant_path(tenant)
        mtime = path.stat().st_mtime
    except (UserError, OSError):
        return False
    key = str(path)
    cached = _AUTO_SERVE.get(key)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        value = load_tenant(tenant).cache.auto_serve
    except UserError:
        value = False
    _AUTO_SERVE[key] = (mtime, value)
    return value
