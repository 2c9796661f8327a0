"""Follow-up entries: a dependent question cached under the entry that answered the turn before.

"And on Sundays?" means nothing alone, so it is never stored or looked up as a question of its
own (cache/context_rules.py). But when the agent's previous turn was itself a cache hit on entry
E, the context is known exactly: the caller just heard E's answer. So the follow-up is stored
and found under the key (E, E's answer, normalized follow-up): it can only be served when the
previous turn was E again, with the same answer. Exact key, no vector: a follow-up entry has no
`vec`/`cvec`, so no KNN (a standalone lookup) can ever return it, and a follow-up lookup is one
HMGET, no embedding.

Schema (on top of cache/semantic.py's entry hash at `{ns}:e:{id}`): kind = KIND ("f"),
`parent` = E's id, `parent_answer` = PARENT_ANSWER_CHARS hex of sha1(E's answer). The id is
`followup_id(...)` (12 hex digits like any generated id). Provenance and review as for any
answer the LLM wrote (source "call"): a pending candidate unless the tenant auto-serves; an
admin approves it with `callcenter cache review` (no vectors to move).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from cache import policy
from cache.deferred import mark_served

if TYPE_CHECKING:
    from cache.semantic import CacheHit, ResponseCache

KIND = "f"
FIELD_PARENT = "parent"
FIELD_PARENT_ANSWER = "parent_answer"
PARENT_ANSWER_CHARS = 16
_FILLER = re.compile(r"^((um|uh|er|erm|hmm|oh|ok|okay|alright|right|well|yeah|yes|so)\s+)+")


def normalize(question: str) -> str:
    """The key form of a follow-up: lower case, words only, leading fillers and a trailing
    "please" dropped ("Um, and on Sundays?" -> "and on sundays")."""
    t = " ".join(re.findall(r"[a-z0-9']+", question.lower().replace("’", "'")))
    t = _FILLER.sub("", t)
    return re.sub(r"\s+please$", "", t).strip()


def answer_digest(answer: str) -> str:
    """What the caller heard in the parent turn (whitespace-insensitive)."""
    return hashlib.sha1(" ".join(answer.split()).encode()).hexdigest()[:PARENT_ANSWER_CHARS]


def followup_id(tenant: str, language: str, kver: str, parent: CacheHit, question: str) -> str:
    """The entry id of `question` asked right after `parent` was served (12 hex digits)."""
    key = "\x1f".join(
        (KIND, tenant, language, kver, parent.id, answer_digest(parent.answer), normalize(question))
    )
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def is_followup(question: str, parent: CacheHit | None) -> bool:
    """Is this turn a follow-up that may use the parent-keyed path? A dependent question with a
    parent; a standalone question takes the normal path, whatever came before."""
    return parent is not None and bool(normalize(question)) and not policy.is_self_contained(question)


async def lookup(
    cache: ResponseCache,
    text: str,
    parent: CacheHit,
    tenant: str,
    language: str,
    kver: str,
    voice: str | None,
) -> CacheHit | None:
    """The follow-up entry for (parent, text), if one is stored and approved (else None)."""
    from cache.schema import PENDING, CacheHit, _s

    r = await cache._ready()
    eid = followup_id(tenant, language, kver, parent, text)
    ekey = cache.keys.entry(eid)
    fields = ("kind", FIELD_PARENT, FIELD_PARENT_ANSWER, "tenant", "kver", "status", "question", "answer")
    row = dict(zip(fields, await r.hmget(ekey, *fields), strict=True))
    if row["answer"] is None or _s(row["kind"] or b"") != KIND or _s(row["status"] or b"") == PENDING:
        return None
    # the id encodes all of these; checked again so a hash collision can never cross a parent
    if (
        _s(row[FIELD_PARENT] or b"") != parent.id
        or _s(row[FIELD_PARENT_ANSWER] or b"") != answer_digest(parent.answer)
        or _s(row["tenant"] or b"") != tenant
        or _s(row["kver"] or b"") != kver
    ):
        return None
    pipe = r.pipeline(transaction=False)
    if voice:
        pipe.hmget(cache.keys.audio(eid, voice), "pcm", "sr")
    served = mark_served(r, ekey, pipe)
    out = await pipe.execute()
    await served()
    audio = sr = None
    if voice and out[0][0] is not None:
        audio, sr = out[0][0], int(out[0][1])
    return CacheHit(
        id=eid, question=_s(row["question"]), answer=_s(row["answer"]), distance=0.0, audio=audio,
        audio_sample_rate=sr,
    )  # fmt: skip


async def store(
    cache: ResponseCache, question: str, answer: str, parent: CacheHit, *, tenant: str, language: str,
    kver: str, ttl: int, **checks: Any,
) -> tuple[str | None, str]:  # fmt: skip
    """Store a follow-up answer under its parent: (id, "ok") or (None, the refusing rule).

    Args:
        cache: the ResponseCache (its Redis, keys and review setting).
        question, answer: the caller's follow-up and the agent's answer.
        parent: the cache hit that answered the previous turn.
        tenant, language, kver: the entry's scope.
        ttl: entry TTL in seconds.
        checks: `policy.is_cacheable`'s keywords (context, used_tool, call_error, facts, steered,
            known): every rule but the self-contained one applies.
    """
    from cache.schema import APPROVED, PENDING, _s, entry_mapping, replaceable_by_llm, tenant_auto_serve

    ok, reason = policy.is_cacheable(
        question, answer, checks.pop("context", None), checks.pop("used_tool", False),
        checks.pop("call_error", False), followup=True, **checks,
    )  # fmt: skip
    if not ok:
        return None, reason
    r = await cache._ready()
    eid = followup_id(tenant, language, kver, parent, question)
    ekey = cache.keys.entry(eid)
    old = await r.hmget(ekey, "answer", "status", "source", "reviewed", "hits", "last_hit", "voices")
    if old[0] is not None and not replaceable_by_llm(old[1], old[2], old[3]):
        return None, "reviewed"  # an admin approved or edited it: a call does not overwrite it
    serve = (
        cache.auto_serve
        if cache.auto_serve is not None
        else await asyncio.to_thread(tenant_auto_serve, tenant)
    )
    status = APPROVED if serve else PENDING
    m = entry_mapping(
        eid, question.strip(), answer.strip(), tenant, language, kver, ttl, np.zeros(1, np.float32), [],
        source="call", status=status,
    )  # fmt: skip
    m.pop("vec", None)  # no vector at all (neither vec nor cvec): never in the KNN index
    m.pop("cvec", None)
    m.update({"kind": KIND, FIELD_PARENT: parent.id, FIELD_PARENT_ANSWER: answer_digest(parent.answer)})
    pipe: Any = r.pipeline(transaction=False)
    if old[0] is not None:  # asked again: replace, keep its usefulness record (and audio if same text)
        m["hits"], m["last_hit"] = int(old[4] or 0), float(old[5] or 0)
        voices = [v for v in _s(old[6] or b"").split(",") if v]
        if _s(old[0]) == m["answer"]:
            m["voices"] = ",".join(voices)
            voices = []
        pipe.delete(ekey, *[cache.keys.audio(eid, v) for v in voices])
    pipe.hset(ekey, mapping=m)
    pipe.expire(ekey, ttl)
    pipe.zadd(cache.keys.tenant(tenant), {eid: m["created"]})
    pipe.hincrby(cache.keys.stats, "stored", 1)
    pipe.hincrby(cache.keys.stats, "stored_followup", 1)
    if status == PENDING:
        pipe.hincrby(cache.keys.stats, "candidates", 1)
    await pipe.execute()
    return eid, "ok"
