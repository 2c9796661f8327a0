"""Semantic response cache on Redis Stack (RediSearch vector index), used on the call path.

Why redis-py FT commands and not RedisVL `SemanticCache`: we need several vectors per entry
(question + FAQ paraphrases, all pointing at one answer), per-entry hit counters and last-hit
times, per-tenant eviction of the least useful entries, audio per voice, Redis-side stats, and
a hard latency budget on an async client. SemanticCache fixes its schema and its own hit
bookkeeping and adds a layer per call; the FT commands are ~10 calls we fully control.

Key layout (namespace `ns`, default "cc"):
  {ns}:e:{id}          entry hash, kind=q: question, answer, tenant, language, kver, created,
                       ttl, expiry, hits, last_hit, paraphrases (JSON), vec (question vector),
                       source (provenance: faq / warm / call / generated; "" before it existed),
                       status (approved / pending; none before review existed = approved),
                       reviewed (when an admin approved or edited it, 0 if never)
  {ns}:e:{id}          kind=f: a follow-up keyed on its parent entry (cache/followups.py: parent,
                       parent_answer; no vector, so no KNN returns it)
  {ns}:e:{id}:p{n}     extra vector doc, kind=p (a paraphrase), same tags, entry={id}
  {ns}:a:{id}:{voice}  cached audio: pcm (16-bit mono), sr
  {ns}:t:{tenant}      ZSET of entry ids of a tenant (eviction, listing)
  {ns}:stats           HASH counters; {ns}:lat LIST of recent lookup ms
Index {ns}:idx over prefix {ns}:e: — HNSW cosine on vec; TAG tenant/language/kver/kind/entry/
status/source; NUMERIC expiry/hits/last_hit/created. Every key of an entry carries the same EXPIRE.

Review: an answer the LLM wrote (source call / generated) is stored as a *candidate* (status
pending) unless its tenant sets `cache: {auto_serve: true}`. A candidate keeps its vectors under
`cvec`, not `vec`, so it is not in the vector index at all: no lookup can return it, whatever the
query. Approving it (cache/admin.py `CacheAdmin.approve`) moves `cvec` to `vec`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import redis
import redis.asyncio as aredis
from redis.commands.search.field import NumericField, TagField, TextField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from cache import followups, policy
from cache.candidates import PHRASING_FIELDS, candidates, nearest_entries
from cache.deferred import DEFERRED, AheadLookup, mark_served
from cache.embedder import DIM
from cache.embedder import MODEL_NAME as MINILM_NAME
from cache.embedders import TextEmbedder, get_cache_embedder
from cache.schema import (  # noqa: F401 - re-exported: the names callers know from here
    APPROVED,
    LLM_SOURCES,
    PENDING,
    SOURCES,
    CacheHit,
    _s,
    entry_mapping,
    replaceable_by_llm,
    tag,
    tenant_auto_serve,
    vec_field,
)
from cache.verifier import get_verifier, score_candidates
from core.errors import UserError
from core.settings import get_settings

log = logging.getLogger("callcenter.cache")

# Rough costs a hit saves (local profile): LLM TTFT + generation at ~30 tok/s, prompt tokens.
SAVED_BASE_S = 0.4
TOKENS_PER_S = 30.0
PROMPT_TOKENS_EST = 250
LAT_KEEP = 10_000
STATS_TIMEOUT_S = 0.2  # stats are best effort and must not slow a turn
MODEL_RECHECK_S = 60.0  # how often a serving process re-reads which model built the index


def answer_tokens(answer: str) -> int:
    return max(1, math.ceil(len(answer.split()) * 1.3))


class Keys:
    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.index = f"{ns}:idx"
        self.prefix = f"{ns}:e:"
        self.stats = f"{ns}:stats"
        self.lat = f"{ns}:lat"
        self.meta = f"{ns}:meta"  # HASH: model, dim, state of the vector index (ensure_index)

    def entry(self, eid: str) -> str:
        return f"{self.ns}:e:{eid}"

    def para(self, eid: str, n: int) -> str:
        return f"{self.ns}:e:{eid}:p{n}"

    def audio(self, eid: str, voice: str) -> str:
        return f"{self.ns}:a:{eid}:{voice}"

    def tenant(self, tenant: str) -> str:
        return f"{self.ns}:t:{tenant}"


def index_schema(dim: int = DIM) -> list[Any]:
    return [
        TagField("tenant"),
        TagField("language"),
        TagField("kver"),
        TagField("kind"),
        TagField("entry"),
        TagField("status"),
        TagField("source"),
        NumericField("expiry"),
        NumericField("hits"),
        NumericField("last_hit"),
        NumericField("created"),
        TextField("question", no_stem=True),
        VectorField(
            "vec", "HNSW", {"TYPE": "FLOAT32", "DIM": dim, "DISTANCE_METRIC": "COSINE", "M": 16,
                            "EF_CONSTRUCTION": 200, "EF_RUNTIME": 64},
        ),
    ]  # fmt: skip


# Fields added to the schema after indexes were first created: `ensure_index` adds them to an
# existing index (FT.ALTER re-indexes the entries already stored).
LATER_FIELDS = ("status", "source")


class IndexModelError(UserError):
    """The index was built with another embedding model than the configured one (or a re-embed
    did not finish): vectors of two models must never be compared, so the cache is not used."""


def create_index(r: redis.Redis, keys: Keys, name: str, dim: int) -> None:
    """FT.CREATE with `dim`-dimensional vectors and record the model in `{ns}:meta`."""
    try:
        r.ft(keys.index).create_index(
            index_schema(dim), definition=IndexDefinition(prefix=[keys.prefix], index_type=IndexType.HASH)
        )
    except redis.ResponseError as e:
        if "already exists" not in str(e).lower():
            raise
        return  # another process created it (and records its model)
    r.hset(keys.meta, mapping={"model": name, "dim": dim, "state": "ok", "built": time.time()})


def index_dim(info: dict[str, Any]) -> int | None:
    """The vector field's dimension from FT.INFO."""
    for a in info.get("attributes", []):
        flat = [_s(x) for x in a]
        if "vec" in flat[:2]:
            low = [x.lower() for x in flat]
            if "dim" in low and low.index("dim") + 1 < len(flat):
                return int(flat[low.index("dim") + 1])
    return None


def ensure_index(r: redis.Redis, keys: Keys, embedder: Any = None) -> None:
    """Create the index for the configured embedder, or check that it was built with it.

    Args:
        r: a sync client.
        keys: the namespace.
        embedder: the model vectors come from (`name`, `dim`), or a callable returning it, or
            None: the configured one (cache/embedders.py), loaded only if the index is created.

    Raises:
        IndexModelError: the index holds another model's vectors, or a re-embed did not finish
            (`callcenter cache reembed` fixes both; nothing is lost meanwhile).
    """
    from cache.embedders import configured_dim, configured_name

    def model() -> Any:
        if embedder is None:
            if (dim := configured_dim()) is not None:  # a local model: no need to load it here
                return SimpleNamespace(name=configured_name(), dim=dim)
            return get_cache_embedder()
        return embedder() if callable(embedder) and not hasattr(embedder, "dim") else embedder

    want = _s(model().name) if embedder is not None else configured_name()
    meta = {_s(k): _s(v) for k, v in r.hgetall(keys.meta).items()}
    if meta.get("state") == "reembedding":
        raise IndexModelError(
            f"a re-embed of cache namespace '{keys.ns}' to {meta.get('target', '?')} did not finish: "
            "run `callcenter cache reembed` (entries are intact)"
        )
    try:
        info = r.ft(keys.index).info()
    except redis.ResponseError:
        m = model()
        create_index(r, keys, m.name, int(m.dim))
        return
    dim = index_dim(info)
    # an index from before models were recorded was built by MiniLM, the only model then
    built_with = meta.get("model") or (MINILM_NAME if dim == DIM else f"an unknown model ({dim} dims)")
    if built_with != want:
        empty = (
            int(info.get("num_docs", 0) or 0) == 0
            and next(r.scan_iter(match=f"{keys.prefix}*", count=1000), None) is None
        )
        if not empty:
            raise IndexModelError(
                f"the cache index of namespace '{keys.ns}' was built with {built_with} ({dim} dims), the configured "
                f"embedder is {want}: run `callcenter cache reembed` to re-embed its entries (nothing is lost)"
            )
        r.ft(keys.index).dropindex(delete_documents=False)  # nothing stored: rebuild for the new model
        m = model()
        create_index(r, keys, m.name, int(m.dim))
        return
    if not meta.get("model"):
        r.hset(keys.meta, mapping={"model": built_with, "dim": dim or DIM, "state": "ok"})
    have = {_s(a[1]) for a in info.get("attributes", []) if len(a) > 1}
    for name in LATER_FIELDS:
        if name not in have:
            try:
                r.ft(keys.index).alter_schema_add([TagField(name)])
            except redis.ResponseError as e:  # another process added it first
                if "duplicate" not in str(e).lower():
                    raise


def knn_query(tenant: str, language: str, kver: str, k: int = 1) -> Query:
    flt = f"(@tenant:{{{tag(tenant)}}} @language:{{{tag(language)}}} @kver:{{{tag(kver)}}})"
    return (
        Query(f"{flt}=>[KNN {k} @vec $v AS dist]")
        .sort_by("dist")
        .return_fields("entry", "dist", "kind")
        .paging(0, k)
        .dialect(2)
    )


# Entry ids. Generated ids are 12 hex digits (`stable_id`); an explicit FAQ `id` is scoped to its
# tenant as "{tenant}~{id}" (`scoped_id`), so the same FAQ id warmed for two tenants gives two
# entries. User ids may only use USER_ID_CHARS: never ':' (a key separator: "<id>:p0" would be
# another entry's paraphrase key) nor '~'. Every id written is checked by `valid_entry_id`.
USER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
USER_ID_CHARS = "letters, digits, '_', '.', '-' (at most 64)"
_ENTRY_ID_RE = re.compile(r"^[0-9a-f]{12}$|^[^\s:~]{1,64}~[A-Za-z0-9_.-]{1,64}$")
# Entry TTL bounds for anything an operator sets (settings, `warm --ttl`, import).
TTL_MIN_S = 60
TTL_MAX_S = 10 * 365 * 24 * 3600


def scoped_id(tenant: str, user_id: str) -> str:
    """The entry id of an explicit FAQ id within a tenant.

    Args:
        tenant: tenant name.
        user_id: the FAQ file's `id`.

    Returns:
        "{tenant}~{user_id}".

    Raises:
        ValueError: `user_id` is empty or uses characters outside USER_ID_CHARS.
    """
    if not USER_ID_RE.fullmatch(user_id):
        raise ValueError(f"id '{user_id[:70]}' must use only {USER_ID_CHARS}")
    return f"{tenant}~{user_id}"


def valid_entry_id(eid: str) -> bool:
    """A generated id (12 hex digits) or a tenant-scoped FAQ id; never one with ':' in it."""
    return bool(_ENTRY_ID_RE.fullmatch(eid))


def stable_id(tenant: str, language: str, kver: str, question: str) -> str:
    """Same question in the same scope -> same entry (re-warming or a second caller replaces it)."""
    norm = " ".join(question.lower().split()).strip(" ?.!")
    return hashlib.sha1(f"{tenant}\x1f{language}\x1f{kver}\x1f{norm}".encode()).hexdigest()[:12]


def related_keys(keys: Keys, eid: str, paraphrases: Any, voices: Any) -> list[str]:
    """Paraphrase-vector and audio keys of an entry, from its own fields (no SCAN)."""
    try:
        n = len(json.loads(_s(paraphrases))) if paraphrases else 0
    except ValueError:
        n = 0
    out = [keys.para(eid, i) for i in range(n)]
    out += [keys.audio(eid, v) for v in _s(voices or b"").split(",") if v]
    return out


def write_entry(pipe: Any, keys: Keys, m: dict[str, Any], para_vecs: list[np.ndarray], ttl_left: int) -> None:
    """Queue the commands storing one entry (works on sync and async pipelines)."""
    eid = m["entry"]
    pipe.hset(keys.entry(eid), mapping=m)
    pipe.expire(keys.entry(eid), ttl_left)
    for n, pv in enumerate(para_vecs):
        pk = keys.para(eid, n)
        pipe.hset(
            pk,
            mapping={
                "kind": "p", "entry": eid, "tenant": m["tenant"], "language": m["language"],
                "kver": m["kver"], "expiry": m["expiry"], "created": m["created"],
                vec_field(m.get("status", APPROVED)): np.asarray(pv, dtype=np.float32).tobytes(),
            },
        )  # fmt: skip
        pipe.expire(pk, ttl_left)
    pipe.zadd(keys.tenant(m["tenant"]), {eid: m["created"]})


class ResponseCache:
    """Async cache for the agent. Every public method swallows Redis errors (never raises)."""

    def __init__(
        self,
        redis_url: str,
        *,
        threshold: float | None = None,
        namespace: str = "cc",
        embedder: TextEmbedder | None = None,
        budget_ms: float | None = None,
        ttl_s: int | None = None,
        max_entries: int | None = None,
        auto_serve: bool | None = None,
        **kw: Any,
    ) -> None:
        """
        Args:
            redis_url: the Redis Stack server.
            threshold: cosine distance a hit must be within (default: settings).
            namespace: key namespace.
            embedder: the embedding model (default: the configured one, cache/embedders.py,
                loaded in the background).
            budget_ms: lookup budget; over it the lookup is a bypass.
            ttl_s: default entry TTL.
            max_entries: per-tenant cap (eviction).
            auto_serve: serve answers the LLM wrote at once (True) or store them as pending
                candidates (False); None (default) follows each tenant's `cache.auto_serve`.
        """
        s = get_settings()
        self.url = redis_url
        self.threshold = s.cache_threshold if threshold is None else threshold
        self.keys = Keys(namespace)
        self.namespace = namespace
        self._embedder = embedder
        self.budget_ms = s.cache_lookup_budget_ms if budget_ms is None else budget_ms
        self.ttl_s = ttl_s or s.cache_ttl_s
        self.max_entries = max_entries or s.cache_max_entries
        self.auto_serve = auto_serve
        # two-stage matching (cache/verifier.py); `verifier=False` or the setting off: top-1 within
        # `threshold` as before
        self.use_verifier = s.cache_verifier if kw.get("verifier") is None else bool(kw["verifier"])
        self.verifier_k = s.cache_verifier_k
        self.verifier_max_distance = s.cache_verifier_max_distance
        self._accept = kw.get("accept", s.cache_verifier_accept)
        self.last_candidates: list[dict[str, Any]] = []  # the last lookup's scored candidates (eval)
        self.record_stats = kw.get("record_stats", True)
        self._r: aredis.Redis | None = None
        self._index_ready = False
        self._down_until = 0.0  # backoff: skip Redis entirely until then
        self._failures = 0
        if self._embedder is None and kw.get("preload", True):
            # Load the model off the event loop now, so the first caller turn does not pay ~1-2 s
            # (a lookup before it is ready times out against the budget and bypasses).
            threading.Thread(target=_preload_embedder, name="cache-embedder-load", daemon=True).start()

    # ---- plumbing --------------------------------------------------------------------------
    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = get_cache_embedder()
        return self._embedder

    def _client(self) -> aredis.Redis:
        if self._r is None:
            self._r = aredis.Redis.from_url(
                self.url, socket_timeout=1.0, socket_connect_timeout=0.5, health_check_interval=10
            )
        return self._r

    async def _ready(self) -> aredis.Redis:
        r = self._client()
        if not self._index_ready:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(2),
                wait=wait_exponential(multiplier=0.05, max=0.2),
                retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError, OSError)),
                reraise=True,
            ):
                with attempt:
                    await asyncio.to_thread(self._ensure_index_sync)
            self._index_ready = True
            self._model_checked = time.monotonic()
        elif time.monotonic() - getattr(self, "_model_checked", 0.0) > MODEL_RECHECK_S:
            # a `reembed` in another process may have changed the index's model meanwhile: check
            # off the lookup path (two models' vectors of the same size would compare silently)
            self._model_checked = time.monotonic()
            self._recheck = asyncio.get_running_loop().create_task(self._recheck_model())
        return r

    async def _recheck_model(self) -> None:
        try:
            await asyncio.to_thread(self._ensure_index_sync)
        except UserError as e:
            self._unusable(e)
        except Exception:  # noqa: BLE001 - Redis trouble shows on the next lookup
            pass

    def _ensure_index_sync(self) -> None:
        r = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=0.5)
        try:
            ensure_index(r, self.keys, lambda: self.embedder)
            self._index_ready = True  # also when called directly to prewarm (agent/sim/run.py)
        finally:
            r.close()

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        """Exponential backoff (0.5 s .. 30 s) before touching Redis again; drop the pool."""
        self._failures += 1
        delay = min(30.0, 0.5 * 2 ** (self._failures - 1))
        self._down_until = time.monotonic() + delay
        self._index_ready = False
        r, self._r = self._r, None
        if r is not None:
            asyncio.get_running_loop().create_task(_close_quietly(r))
        log.warning("cache: redis unavailable (%s); bypassing for %.1fs", exc.__class__.__name__, delay)

    def _ok(self) -> None:
        self._failures = 0

    def _unusable(self, e: UserError) -> str:
        """The configured embedder or the index's model cannot serve (not installed, endpoint
        down, index built with another model): one clear log line per message, then bypass.
        Checked again after a while (an admin may re-embed meanwhile)."""
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if msg != getattr(self, "_unusable_logged", None):
            log.error("cache not used: %s", msg)
            self._unusable_logged = msg
        self._index_ready = False
        self._unusable_reason = "index_model" if isinstance(e, IndexModelError) else "embedder"
        self._unusable_until = time.monotonic() + 30.0
        return self._unusable_reason

    async def close(self) -> None:
        recheck = getattr(self, "_recheck", None)
        if recheck is not None and not recheck.done():
            recheck.cancel()  # not left pending on a loop that is about to close
        if self._r is not None:
            await _close_quietly(self._r)
            self._r = None

    async def _count(self, **fields: float) -> None:
        if not self.record_stats:
            return
        if (deferred := DEFERRED.get()) is not None:
            deferred.append(lambda: self._count(**fields))
            return
        if not self._available():  # Redis down: keep the call path free of connect attempts
            if fields.get("bypasses"):
                self._bump_local_bypass()
            return
        try:
            r = self._client()
            pipe = r.pipeline(transaction=False)
            for f, v in fields.items():
                if isinstance(v, float) and not v.is_integer():
                    pipe.hincrbyfloat(self.keys.stats, f, v)
                else:
                    pipe.hincrby(self.keys.stats, f, int(v))
            await asyncio.wait_for(pipe.execute(), timeout=STATS_TIMEOUT_S)
        except Exception:  # noqa: BLE001 — stats are best effort
            pass

    # ---- lookup ----------------------------------------------------------------------------
    async def lookup(
        self,
        text: str,
        *,
        tenant: str,
        language: str,
        knowledge_version: str,
        context: list[dict] | None = None,
        voice: str | None = None,
        parent: CacheHit | None = None,
    ) -> CacheHit | None:
        hit, _reason = await self.lookup_detailed(
            text, tenant=tenant, language=language, knowledge_version=knowledge_version,
            context=context, voice=voice, parent=parent,
        )  # fmt: skip
        return hit

    async def lookup_ahead(
        self,
        text: str,
        *,
        tenant: str,
        language: str,
        knowledge_version: str,
        context: list[dict] | None = None,
        voice: str | None = None,
        parent: CacheHit | None = None,
    ) -> AheadLookup:
        """`lookup_detailed` on a transcript the turn may still change (the early STT pass,
        during the VAD's end-of-speech wait): nothing is written until the turn uses it.

        Args:
            text, tenant, language, knowledge_version, context, voice, parent: as `lookup`.

        Returns:
            The hit (or None) and outcome; `commit()` writes the statistics and the entry's hit
            count when the turn serves this result. Never raises.
        """
        writes: list[Callable[[], Awaitable[None]]] = []
        token = DEFERRED.set(writes)
        try:
            hit, outcome = await self.lookup_detailed(
                text, tenant=tenant, language=language, knowledge_version=knowledge_version,
                context=context, voice=voice, parent=parent,
            )  # fmt: skip
        finally:
            DEFERRED.reset(token)
        return AheadLookup(hit, outcome, writes)

    async def lookup_detailed(
        self,
        text: str,
        *,
        tenant: str,
        language: str,
        knowledge_version: str,
        context: list[dict] | None = None,
        voice: str | None = None,
        parent: CacheHit | None = None,
    ) -> tuple[CacheHit | None, str]:
        """(hit, outcome) where outcome is hit / miss / bypass:<reason>. Never raises.

        `parent`: the hit that answered the call's previous turn. A dependent question ("and on
        Sundays?") is then looked up among that entry's follow-ups only (cache/followups.py);
        without a parent it is a bypass."""
        t0 = time.perf_counter()
        ok, reason = policy.lookup_allowed(text, context)
        followup = not ok and reason == "not_self_contained" and parent is not None
        if followup:
            ok = True
        if not ok:
            await self._count(lookups=1, bypasses=1, **{f"bypass_{reason}": 1})
            return None, f"bypass:{reason}"
        if time.monotonic() < getattr(self, "_unusable_until", 0.0):  # not Redis: the model
            return None, f"bypass:{self._unusable_reason}"
        if not self._available():
            self._bump_local_bypass()
            return None, "bypass:redis_down"
        try:
            if followup and parent is not None:
                coro = followups.lookup(self, text, parent, tenant, language, knowledge_version, voice)
            else:
                coro = self._lookup(text, tenant, language, knowledge_version, voice)
            hit = await asyncio.wait_for(coro, timeout=self.budget_ms / 1000)
        except TimeoutError:
            await self._count(lookups=1, bypasses=1, bypass_budget=1)
            return None, "bypass:budget"
        except UserError as e:  # another model's index, mpnet not installed, endpoint down
            return None, f"bypass:{self._unusable(e)}"
        except (redis.RedisError, OSError) as e:
            self._failed(e)
            self._bump_local_bypass()
            return None, "bypass:redis_down"
        except Exception as e:  # noqa: BLE001 — the call must go on
            log.exception("cache lookup failed")
            return None, f"bypass:error:{e.__class__.__name__}"
        self._ok()
        ms = (time.perf_counter() - t0) * 1000
        if hit is None:
            await self._record(ms, misses=1, **({"followup_misses": 1} if followup else {}))
            return None, "miss"
        if followup:
            await self._count(followup_hits=1)
        saved_tokens = PROMPT_TOKENS_EST + answer_tokens(hit.answer)
        saved_s = SAVED_BASE_S + answer_tokens(hit.answer) / TOKENS_PER_S
        await self._record(ms, hits=1, saved_tokens=saved_tokens, saved_s=round(saved_s, 3) + 1e-9)
        return hit, "hit"

    def _bump_local_bypass(self) -> None:
        """Redis is down: count the bypass locally and flush it when Redis is back."""
        self.pending_bypasses = getattr(self, "pending_bypasses", 0) + 1

    async def _record(self, ms: float, **fields: float) -> None:
        if not self.record_stats:
            return
        if (deferred := DEFERRED.get()) is not None:
            deferred.append(lambda: self._record(ms, **fields))
            return
        pending = getattr(self, "pending_bypasses", 0)
        if pending:
            fields = {
                **fields,
                "bypasses": pending,
                "lookups_redis_down": pending,
                "bypass_redis_down": pending,
            }
            fields["lookups"] = fields.get("lookups", 0) + pending
            self.pending_bypasses = 0
        fields["lookups"] = fields.get("lookups", 0) + 1
        try:
            r = self._client()
            pipe = r.pipeline(transaction=False)
            for f, v in fields.items():
                if isinstance(v, float) and not float(v).is_integer():
                    pipe.hincrbyfloat(self.keys.stats, f, v)
                else:
                    pipe.hincrby(self.keys.stats, f, int(v))
            pipe.lpush(self.keys.lat, round(ms, 3))
            pipe.ltrim(self.keys.lat, 0, LAT_KEEP - 1)
            await asyncio.wait_for(pipe.execute(), timeout=STATS_TIMEOUT_S)
        except Exception:  # noqa: BLE001
            pass

    async def _lookup(
        self, text: str, tenant: str, language: str, kver: str, voice: str | None
    ) -> CacheHit | None:
        r = await self._ready()
        vec = await asyncio.to_thread(self.embedder.embed, text)
        if self.use_verifier:
            picked = await self._verified(r, text, vec, tenant, language, kver)
            if picked is None:
                return None
            eid, dist = picked
        else:
            res = await r.ft(self.keys.index).search(
                knn_query(tenant, language, kver),
                query_params={"v": np.asarray(vec, dtype=np.float32).tobytes()},
            )
            if not res.docs:
                return None
            doc = res.docs[0]
            dist = float(doc.dist)
            if dist > self.threshold:
                return None
            eid = _s(doc.entry)
        ekey = self.keys.entry(eid)
        pipe = r.pipeline(transaction=False)
        pipe.hmget(ekey, "question", "answer", "status")
        if voice:
            pipe.hmget(self.keys.audio(eid, voice), "pcm", "sr")
        served = mark_served(r, ekey, pipe)
        out = await pipe.execute()
        question, answer, status = out[0]
        if answer is None:  # expired between search and read
            return None
        if _s(status or b"") == PENDING:
            # A candidate has no indexed vector, so KNN cannot return it; belt and braces for an
            # entry rewritten between the search and the read: never served.
            return None
        await served()
        audio = sr = None
        if voice and out[1][0] is not None:
            audio, sr = out[1][0], int(out[1][1])
        return CacheHit(
            id=eid, question=_s(question), answer=_s(answer), distance=dist, audio=audio, audio_sample_rate=sr
        )

    @property
    def accept(self) -> float:
        """The verifier's acceptance probability (setting, else the one trained with the weights)."""
        return get_verifier().accept if self._accept is None else float(self._accept)

    async def _verified(
        self, r: aredis.Redis, text: str, vec: np.ndarray, tenant: str, language: str, kver: str
    ) -> tuple[str, float] | None:
        """Two-stage match: the nearest `verifier_k` entries (each by its nearest phrasing), then
        cache/verifier.py scores each pair; the most probable candidate at or above `accept` wins."""
        k = self.verifier_k
        res = await r.ft(self.keys.index).search(
            knn_query(tenant, language, kver, k=3 * k),  # an entry has several phrasings: over-fetch
            query_params={"v": np.asarray(vec, dtype=np.float32).tobytes()},
        )
        self.last_candidates = []
        near = nearest_entries(res.docs, k, self.verifier_max_distance)
        if not near:
            return None
        pipe = r.pipeline(transaction=False)
        for eid in near:
            pipe.hmget(self.keys.entry(eid), *PHRASING_FIELDS)
        cands = candidates(near, await pipe.execute())
        scored = score_candidates(get_verifier(), text, cands, self.verifier_max_distance)
        self.last_candidates = scored
        best = max(scored, key=lambda c: c["p"], default=None)
        if best is None or best["p"] < self.accept:
            return None
        return best["entry"], best["dist"]

    # ---- store -----------------------------------------------------------------------------
    async def store(
        self,
        question: str,
        answer: str,
        *,
        tenant: str,
        language: str,
        knowledge_version: str,
        context: list[dict] | None = None,
        used_tool: bool = False,
        call_error: bool = False,
        ttl_s: int | None = None,
        paraphrases: list[str] | None = None,
        entry_id: str | None = None,
        facts: str | None = None,
        steered: bool = False,
        known: str | None = None,
        source: str = "call",
        parent: CacheHit | None = None,
    ) -> str | None:
        """Store a question/answer pair for other callers if `policy.is_cacheable` allows it.

        Args:
            question, answer: the caller's question and the agent's answer.
            tenant, language, knowledge_version: the scope the entry is found in.
            context: earlier turns of the call ({"role", "text"} dicts).
            used_tool, call_error: call-specific answer / failed call: never stored.
            ttl_s: entry TTL (default: the cache's); must be a positive integer.
            paraphrases: extra phrasings indexed for the same answer.
            entry_id: explicit id (a `scoped_id` or generated id); default `stable_id`.
            facts: the tenant's knowledge text: the answer must be consistent with it.
            steered: the caller tried to steer the agent earlier in this call.
            known: the business's own text for the PII rule (default: `facts`).
            source: provenance, one of SOURCES. "call" (the default: what `CallAgent` stores)
                and "generated" are answers the LLM wrote: stored as pending candidates an
                admin reviews, unless the tenant auto-serves; and they never replace an entry a
                person wrote or reviewed (`replaceable_by_llm`).
            parent: the hit that answered the previous turn: a dependent question is then
                stored as that entry's follow-up (cache/followups.py), never as a question.

        Returns:
            The entry id, or None when not stored (policy, bad argument, Redis down). Never raises.
        """
        if followups.is_followup(question, parent) and parent is not None and source == "call":
            return await self._store_followup(
                question, answer, parent, tenant=tenant, language=language, kver=knowledge_version,
                ttl=self.ttl_s if ttl_s is None else ttl_s, context=context, used_tool=used_tool,
                call_error=call_error, facts=facts, steered=steered, known=known,
            )  # fmt: skip
        ok, reason = policy.is_cacheable(
            question, answer, context, used_tool, call_error, facts=facts, steered=steered, known=known
        )
        ttl = self.ttl_s if ttl_s is None else ttl_s
        if ok and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1):
            ok, reason = False, "bad_ttl"  # 0 or negative would delete the old entry and write nothing
        if ok and entry_id is not None and not valid_entry_id(entry_id):
            ok, reason = False, "bad_id"
        if ok and source not in SOURCES:
            ok, reason = False, "bad_source"
        if not ok:
            await self._count(**{f"not_stored_{reason}": 1})
            return None
        if not self._available() or time.monotonic() < getattr(self, "_unusable_until", 0.0):
            return None
        if isinstance(paraphrases, str):
            paraphrases = [paraphrases]  # one phrasing, not its characters
        paraphrases = [
            p for p in (paraphrases or []) if p.strip() != question.strip() and policy.paraphrase_ok(p)
        ]
        llm_written = source in LLM_SOURCES
        try:
            r = await self._ready()
            eid = entry_id or stable_id(tenant, language, knowledge_version, question)
            old = await r.hmget(
                self.keys.entry(eid), "paraphrases", "voices", "hits", "last_hit", "answer", "tenant",
                "status", "source", "reviewed", "gen_paraphrases", "negatives", "question",
            )  # fmt: skip
            if old[5] is not None and _s(old[5]) != tenant:  # never replace another tenant's entry
                await self._count(not_stored_id_conflict=1)
                return None
            if llm_written and old[4] is not None and not replaceable_by_llm(old[6], old[7], old[8]):
                await self._count(not_stored_reviewed=1)  # the FAQ's / the admin's answer stays
                return None
            serve = not llm_written or (
                self.auto_serve
                if self.auto_serve is not None
                else await asyncio.to_thread(tenant_auto_serve, tenant)
            )
            status = APPROVED if serve else PENDING
            # the same question stored again (a re-warm) keeps its generated phrasings
            # (cache/paraphrase.py); a changed question drops them, they were about the old one
            keep_gen = old[9] is not None and old[11] is not None and _s(old[11]) == question.strip()
            gen = [p for p in json.loads(_s(old[9])) if p not in paraphrases] if keep_gen else []
            paraphrases = [*paraphrases, *gen]
            vecs = await asyncio.to_thread(self.embedder.embed_many, [question, *paraphrases])
            m = entry_mapping(eid, question.strip(), answer.strip(), tenant, language, knowledge_version, ttl,
                              vecs[0], paraphrases, source=source, status=status)  # fmt: skip
            if keep_gen:
                m["gen_paraphrases"], m["negatives"] = json.dumps(gen), _s(old[10] or b"[]")
            pipe = r.pipeline(transaction=False)
            if old[0] is not None:  # same question again: replace, keep its usefulness record
                stale = related_keys(self.keys, eid, old[0], old[1])
                if _s(old[4] or b"") == m["answer"]:
                    stale = [k for k in stale if ":a:" not in k]  # same answer: audio still valid
                    m["voices"] = _s(old[1] or b"")
                pipe.delete(self.keys.entry(eid), *stale)
                m["hits"], m["last_hit"] = int(old[2] or 0), float(old[3] or 0)
            write_entry(pipe, self.keys, m, list(vecs[1:]), ttl)
            pipe.hincrby(self.keys.stats, "stored", 1)
            if status == PENDING:
                pipe.hincrby(self.keys.stats, "candidates", 1)
            await pipe.execute()
            await self._evict(r, tenant, keep=eid)
            self._ok()
            return eid
        except (redis.RedisError, OSError) as e:
            self._failed(e)
            return None
        except UserError as e:
            self._unusable(e)
            return None
        except Exception:  # noqa: BLE001
            log.exception("cache store failed")
            return None

    async def _store_followup(self, question: str, answer: str, parent: CacheHit, **kw: Any) -> str | None:
        """`store` for a dependent question after a hit (cache/followups.py). Never raises."""
        ttl = kw["ttl"]
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            await self._count(not_stored_bad_ttl=1)
            return None
        if not self._available() or time.monotonic() < getattr(self, "_unusable_until", 0.0):
            return None
        try:
            eid, reason = await followups.store(self, question, answer, parent, **kw)
            if eid is None:
                await self._count(**{f"not_stored_{reason}": 1})
                return None
            r = await self._ready()
            await self._evict(r, kw["tenant"], keep=eid)
            self._ok()
            return eid
        except (redis.RedisError, OSError) as e:
            self._failed(e)
            return None
        except Exception:  # noqa: BLE001
            log.exception("cache follow-up store failed")
            return None

    async def _evict(self, r: aredis.Redis, tenant: str, keep: str | None = None) -> int:
        """Over the per-tenant cap: drop expired ids, then the least useful (fewest hits, oldest hit)."""
        zkey = self.keys.tenant(tenant)
        n = await r.zcard(zkey)
        if n <= self.max_entries:
            return 0
        ids = [_s(i) for i in await r.zrange(zkey, 0, -1)]
        pipe = r.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(self.keys.entry(i), "hits", "last_hit", "created")
        rows = await pipe.execute()
        alive: list[tuple[int, float, float, str]] = []
        dead: list[str] = []
        for i, row in zip(ids, rows, strict=True):
            if row[0] is None:
                dead.append(i)
            elif i != keep:
                alive.append(
                    (int(row[0]), max(float(row[1] or 0), float(row[2] or 0)), float(row[2] or 0), i)
                )
        if dead:
            await r.zrem(zkey, *dead)
        over = len(alive) + (1 if keep else 0) - self.max_entries
        if over <= 0:
            return 0
        alive.sort()
        victims = [a[3] for a in alive[:over]]
        await delete_entries_async(r, self.keys, victims, tenant)
        await r.hincrby(self.keys.stats, "evicted", len(victims))
        return len(victims)

    # ---- audio -----------------------------------------------------------------------------
    async def attach_audio(self, entry_id: str, audio: bytes, sample_rate: int, voice: str) -> None:
        if not self._available() or not audio:
            return
        try:
            r = self._client()
            ttl = await r.ttl(self.keys.entry(entry_id))
            if ttl is None or ttl == -2:
                return  # entry gone
            akey = self.keys.audio(entry_id, voice)
            pipe = r.pipeline(transaction=False)
            pipe.hset(akey, mapping={"pcm": audio, "sr": int(sample_rate)})
            if ttl > 0:
                pipe.expire(akey, ttl)
            have = _s(await r.hget(self.keys.entry(entry_id), "voices") or b"")
            voices = sorted({v for v in have.split(",") if v} | {voice})
            pipe.hset(self.keys.entry(entry_id), "voices", ",".join(voices))
            await pipe.execute()
        except (redis.RedisError, OSError) as e:
            self._failed(e)
        except Exception:  # noqa: BLE001
            log.exception("cache attach_audio failed")


def _preload_embedder() -> None:
    try:
        get_cache_embedder()
    except Exception as e:  # noqa: BLE001 - the first lookup reports it (ResponseCache._unusable)
        log.warning("cache embedder not loaded: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)


async def _close_quietly(r: aredis.Redis) -> None:
    try:
        await r.aclose()
    except Exception:  # noqa: BLE001
        pass


async def delete_entries_async(
    r: aredis.Redis, keys: Keys, ids: list[str], tenant: str | None = None
) -> None:
    for eid in ids:
        para, voices = await r.hmget(keys.entry(eid), "paraphrases", "voices")
        await r.delete(keys.entry(eid), *related_keys(keys, eid, para, voices))
        if tenant:
            await r.zrem(keys.tenant(tenant), eid)
