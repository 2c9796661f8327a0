"""Cache administration: one synchronous service layer for the CLI (and the web dashboard later).

Every function takes plain arguments and returns plain data (dicts/lists); bad input raises
`UserError` with a one-line message. Writes go through the same `ResponseCache` code the agent
uses (same cacheability rules, same key layout), so what is warmed is what a call would store.
"""

from __future__ import annotations

import asyncio
import base64
import builtins  # CacheAdmin has a method named `list`
import csv
import io
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import redis
from redis.commands.search.query import Query

from cache import policy
from cache.embedder import DIM, MODEL_NAME
from cache.embedders import get_cache_embedder
from cache.semantic import (
    APPROVED,
    PENDING,
    TTL_MAX_S,
    TTL_MIN_S,
    USER_ID_CHARS,
    USER_ID_RE,
    Keys,
    ResponseCache,
    _s,
    ensure_index,
    entry_mapping,
    knn_query,
    related_keys,
    scoped_id,
    stable_id,
    tag,
    valid_entry_id,
    write_entry,
)
from core.call_report import caller_questions
from core.errors import UserError
from core.settings import get_settings

log = logging.getLogger("callcenter.cache")
MAX_FILE_BYTES = 5 * 1024 * 1024
EVAL_KVER = "eval"
Progress = Callable[[int, int], None] | None


# ---- input files -------------------------------------------------------------------------
def read_text_file(path: str | Path, what: str = "file") -> str:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} not found: {p}")
    if not p.is_file():
        raise UserError(f"{what} is not a regular file: {p}")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserError(f"{p}: file too large ({size / 1e6:.1f} MB > 5 MB)")
    data = p.read_bytes()
    if b"\x00" in data[:8192]:
        raise UserError(f"{p}: binary file, expected text (YAML, CSV or JSONL)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: not UTF-8 text (byte {e.start})") from None


def read_jsonl(path: str | Path, what: str = "file") -> list[dict[str, Any]]:
    text = read_text_file(path, what)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {n}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}: line {n}: expected a JSON object")
        obj["_line"] = n
        rows.append(obj)
    return rows


def read_faq(path: str | Path) -> list[dict[str, Any]]:
    """Rows {question, answer, paraphrases, tenant?} from YAML, CSV or JSONL."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in (".jsonl", ".ndjson", ".json"):
        rows = read_jsonl(p, "FAQ file")
    elif ext in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(read_text_file(p, "FAQ file"))
        except yaml.YAMLError as e:
            raise UserError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
        if isinstance(data, dict):
            data = data.get("faq", data.get("entries"))
        if not isinstance(data, list):
            raise UserError(f"{p}: expected a list of entries (or a mapping with 'faq')")
        rows = []
        for n, item in enumerate(data, 1):
            if not isinstance(item, dict):
                raise UserError(f"{p}: entry {n}: expected a mapping")
            rows.append({**item, "_line": n})
    elif ext in (".csv", ".tsv"):
        text = read_text_file(p, "FAQ file")
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if ext == ".tsv" else ",")
        rows = []
        for n, item in enumerate(reader, 2):
            para = item.get("paraphrases") or ""
            rows.append(
                {**item, "paraphrases": [x.strip() for x in para.split("|") if x.strip()], "_line": n}
            )
    else:
        raise UserError(f"{p}: unsupported format '{ext or 'none'}' (use .yaml, .csv or .jsonl)")
    out = []
    for row in rows:
        n = row["_line"]
        for f in ("question", "answer"):
            if not isinstance(row.get(f), str) or not row[f].strip():
                raise UserError(f"{p}: line {n}: missing or empty '{f}'")
        para = row.get("paraphrases") or []
        if isinstance(para, str):
            para = [para]
        if not isinstance(para, list) or not all(isinstance(x, str) for x in para):
            raise UserError(f"{p}: line {n}: 'paraphrases' must be a list of strings")
        uid = row.get("id")
        if uid is not None and uid != "":
            if isinstance(uid, bool) or not isinstance(uid, (str, int)) or not USER_ID_RE.fullmatch(str(uid)):
                raise UserError(f"{p}: line {n}: 'id' must use only {USER_ID_CHARS}")
        if row.get("tenant") is not None and not isinstance(row["tenant"], str):
            raise UserError(f"{p}: line {n}: 'tenant' must be a string")
        out.append(
            {
                "id": str(uid) if uid not in (None, "") else None,
                "question": row["question"].strip(),
                "answer": row["answer"].strip(),
                "paraphrases": para,
                "tenant": row.get("tenant") or None,
                "_line": n,
            }
        )
    if not out:
        raise UserError(f"{p}: no entries")
    return out


def tenant_scope(name: str | None) -> tuple[str, str, str]:
    """(tenant, language, knowledge_version) of a configured tenant; UserError if unknown."""
    from core.tenants import load_tenant

    t = load_tenant(name)
    return t.name, t.language, t.knowledge_version


def tenant_knowledge(name: str | None) -> str:
    """Everything a tenant publishes about itself (facts block and FAQ answers) as one text, the
    same text the agent passes as `facts`; "" for a tenant that is not configured here."""
    from core.tenants import load_tenant

    try:
        t = load_tenant(name)
    except UserError:
        return ""
    return " ".join([t.facts_block(), *(f.answer for f in t.faq)])


def check_ttl(ttl_s: Any, what: str = "--ttl") -> int | None:
    """None, or an integer TTL within [TTL_MIN_S, TTL_MAX_S].

    Raises:
        UserError: not an integer or out of range (0 or negative would expire entries at once).
    """
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not float(ttl_s).is_integer():
        raise UserError(f"{what} must be a whole number of seconds, got {ttl_s!r}")
    if not TTL_MIN_S <= ttl_s <= TTL_MAX_S:
        raise UserError(
            f"{what} must be between {TTL_MIN_S} s and {TTL_MAX_S} s (10 years), got {int(ttl_s)}"
        )
    return int(ttl_s)


def check_distance(value: float | None, what: str) -> float | None:
    """None, or a cosine distance in (0, 1] (1 already matches unrelated text).

    Raises:
        UserError: out of range or not a number.
    """
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1:
        raise UserError(f"{what} must be a cosine distance in (0, 1], got {value!r}")
    return float(value)


# ---- the service -------------------------------------------------------------------------
def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class CacheAdmin:
    def __init__(
        self, redis_url: str | None = None, namespace: str = "cc", *, check_model: bool = True
    ) -> None:
        """
        Args:
            redis_url: the cache's Redis (None: the embedded server).
            namespace: key namespace.
            check_model: refuse an index built with another embedding model than the configured
                one (False only for `reembed`, which fixes that).

        Raises:
            UserError: Redis unreachable; `IndexModelError` on a model mismatch.
        """
        if redis_url is None:
            from cache.redis_server import ensure_redis

            redis_url = ensure_redis()
        self.url = redis_url
        self.ns = namespace
        self.keys = Keys(namespace)
        self.r = redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=2)
        try:
            self.r.ping()
        except (redis.RedisError, OSError) as e:
            raise UserError(f"cannot reach Redis at {redis_url}: {e}") from None
        if check_model:
            ensure_index(self.r, self.keys)

    def cache(self, threshold: float | None = None, **kw: Any) -> ResponseCache:
        return ResponseCache(self.url, threshold=threshold, namespace=self.ns, **kw)

    # -- warm --
    def warm(
        self,
        path: str | Path | None = None,
        *,
        tenant: str | None = None,
        audio: bool = False,
        ttl_s: int | None = None,
        progress: Progress = None,
        synthesize: Callable[[str], tuple[bytes, int]] | None = None,
        voice: str | None = None,
        allow_overwrite: bool = True,
        only_new: bool = False,
    ) -> dict[str, Any]:
        """Store a FAQ file's entries, or (no path) the tenant's own `faq:` from its YAML.

        A person wrote these answers, so they serve at once (source "warm" for a file, "faq"
        for the tenant's own); they replace a pending candidate of the same question.

        Everything is checked before the first write: the TTL range, every row, explicit ids
        (scoped per tenant: `scoped_id`), and that the warm-up does not push a tenant over
        `cache_max_entries` (which would evict existing entries).

        Args:
            path: FAQ file (.yaml, .csv, .jsonl); None: the tenant's own `faq:`.
            tenant: default tenant of the rows.
            audio: pre-render each answer with `synthesize(text) -> (pcm16, sample_rate)` for
                `voice` (the agent's TTS voice id), so the first hit already plays cached audio.
            ttl_s: entry TTL in seconds (default `cache_ttl_s`), TTL_MIN_S..TTL_MAX_S.
            progress: callback (done, total).
            allow_overwrite: False refuses a warm-up that would replace existing entries with a
                different answer (the CLI passes False when an admin token is configured but
                was not presented).
            only_new: skip rows whose entry exists with another answer, unless it is a pending
                candidate (auto-warm: an entry an admin wrote or edited is never replaced).

        Returns:
            {"stored", "skipped" (reason -> count), "total", "ids", "audio", "replaced"}.

        Raises:
            UserError: bad file, row, id, TTL, unknown tenant, capacity or a refused overwrite.
        """
        ttl_s = check_ttl(ttl_s)
        if audio and (synthesize is None or not voice):
            raise UserError("audio warm-up needs a synthesizer and a voice")
        if path is not None:
            rows = read_faq(path)
        else:
            from core.tenants import load_tenant

            t = load_tenant(tenant)
            rows = [
                {"id": None, **f.model_dump(), "tenant": t.name, "_line": i} for i, f in enumerate(t.faq, 1)
            ]
            if not rows:
                raise UserError(f"tenant '{t.name}' has no faq entries")
        scopes: dict[str | None, tuple[str, str, str]] = {}
        for row in rows:
            name = row["tenant"] or tenant
            if name not in scopes:
                scopes[name] = tenant_scope(name)
        if only_new:
            rows = self._new_rows(rows, scopes, tenant)
        plan = self._plan_warm(rows, scopes, tenant, path)
        if not allow_overwrite and plan["replaces"]:
            ids = ", ".join(plan["replaces"][:3])
            raise UserError(
                f"warm would replace {len(plan['replaces'])} existing entries with a different answer "
                f"({ids}); that needs the admin token (--token-file, CALLCENTER_TOKEN or --token)"
            )
        audio_to = (synthesize, voice) if audio else None
        source = "faq" if path is None else "warm"
        res = asyncio.run(self._warm_rows(rows, scopes, tenant, ttl_s, progress, audio_to, source=source))
        res["replaced"] = len(plan["replaces"])
        return res

    def _new_rows(
        self, rows: builtins.list[dict[str, Any]], scopes: dict[str | None, tuple[str, str, str]],
        default_tenant: str | None,
    ) -> builtins.list[dict[str, Any]]:  # fmt: skip
        """The rows auto-warm may write: no entry yet, a pending candidate, or the same answer
        (re-stamped as the FAQ's; hits and audio kept). One pipelined read."""
        ids = []
        for row in rows:
            tname, lang, kver = scopes[row["tenant"] or default_tenant]
            ids.append(
                scoped_id(tname, row["id"]) if row["id"] else stable_id(tname, lang, kver, row["question"])
            )
        pipe = self.r.pipeline(transaction=False)
        for eid in ids:
            pipe.hmget(self.keys.entry(eid), "answer", "status")
        out = []
        for row, (answer, status) in zip(rows, pipe.execute(), strict=True):
            if answer is None or _s(status or b"") == PENDING or _s(answer) == row["answer"]:
                out.append(row)
        return out

    def faq_entries(self, tenant: str | None = None) -> int:
        """How many entries from the tenant's own FAQ the cache holds for its current
        (language, knowledge version): one FT.SEARCH, nothing read.

        Raises:
            UserError: unknown tenant.
        """
        return self._faq_count(*tenant_scope(tenant))

    def _faq_count(self, tname: str, lang: str, kver: str) -> int:
        q = (
            f"@kind:{{q}} @source:{{faq}} @tenant:{{{tag(tname)}}} @language:{{{tag(lang)}}} "
            f"@kver:{{{tag(kver)}}}"
        )
        return int(self.r.ft(self.keys.index).search(Query(q).no_content().paging(0, 0).dialect(2)).total)

    def auto_warm(
        self,
        tenant: str | None = None,
        *,
        synthesize: Callable[[str], tuple[bytes, int]] | None = None,
        voice: str | None = None,
    ) -> dict[str, Any]:
        """Load the tenant's FAQ when its knowledge version is new to the cache.

        "New" means the cache holds no entry from the tenant's FAQ for its (language, knowledge
        version): one FT.SEARCH, so a warm cache costs one query. Otherwise the FAQ is stored
        through `warm` (same rules, same code) with `only_new`: entries that exist with another
        answer (an admin's) are kept, and a pending candidate of a FAQ question is replaced.

        Args:
            tenant: tenant name (default: the default tenant).
            synthesize: `text -> (pcm16, sample_rate)` to pre-render each answer in `voice`, so
                the first hit already plays audio; None stores text only (audio is then kept
                from the first hit in a call).
            voice: the voice id the agent speaks with (`Providers.voice`).

        Returns:
            {"warmed": False} when already warm, else `warm`'s result with "warmed": True.

        Raises:
            UserError: unknown tenant, a FAQ over the entry cap, Redis errors.
        """
        from core.tenants import load_tenant

        t = load_tenant(tenant)
        if not t.faq or self._faq_count(t.name, t.language, t.knowledge_version) > 0:
            return {"warmed": False}
        audio = synthesize is not None and bool(voice)
        res = self.warm(tenant=t.name, audio=audio, synthesize=synthesize, voice=voice, only_new=True)
        return {**res, "warmed": True}

    def _plan_warm(
        self, rows: list[dict[str, Any]], scopes: dict[str | None, tuple[str, str, str]],
        default_tenant: str | None, path: str | Path | None,
    ) -> dict[str, Any]:  # fmt: skip
        """Entry id of every row; which existing entries change; refuse evicting existing ones."""
        where = f"{path}: " if path is not None else ""
        first_line: dict[str, int] = {}
        replaces: list[str] = []
        new_per_tenant: dict[str, set[str]] = {}
        knowns: dict[str, str] = {}
        for row in rows:
            tname, lang, kver = scopes[row["tenant"] or default_tenant]
            if row["id"]:
                try:
                    eid = scoped_id(tname, row["id"])
                except ValueError as e:
                    raise UserError(f"{where}line {row['_line']}: {e}") from None
                if eid in first_line:
                    raise UserError(
                        f"{where}line {row['_line']}: id '{row['id']}' repeats line {first_line[eid]}"
                    )
            else:
                eid = stable_id(tname, lang, kver, row["question"])
            first_line.setdefault(eid, row["_line"])
            row["_eid"] = eid
            if tname not in knowns:
                knowns[tname] = tenant_knowledge(tname)
            if not policy.is_cacheable(row["question"], row["answer"], known=knowns[tname])[0]:
                continue
            old_tenant, old_answer = self.r.hmget(self.keys.entry(eid), "tenant", "answer")
            if old_answer is None:
                new_per_tenant.setdefault(tname, set()).add(eid)
            elif _s(old_tenant or b"") != tname:
                raise UserError(f"{where}line {row['_line']}: id '{eid}' belongs to another tenant")
            elif _s(old_answer) != row["answer"]:
                replaces.append(eid)
        cap = get_settings().cache_max_entries
        for tname, new in new_per_tenant.items():
            have = len(self._entry_ids(tname))
            if have + len(new) > cap:
                lost = have + len(new) - cap
                raise UserError(
                    f"warm would evict {min(lost, have) if have else 0} existing entries of tenant '{tname}' "
                    f"({have} stored + {len(new)} new > CALLCENTER_CACHE_MAX_ENTRIES={cap}); raise the limit "
                    f"or invalidate first"
                    if have
                    else f"{len(new)} new entries for tenant '{tname}' exceed CALLCENTER_CACHE_MAX_ENTRIES={cap}"
                )
        return {"replaces": replaces}

    async def _warm_rows(
        self, rows, scopes, default_tenant, ttl_s, progress, audio_to=None, check_facts: bool = False,
        source: str = "warm",
    ) -> dict[str, Any]:  # fmt: skip
        """Store rows through `ResponseCache.store` (same rules as a call).

        Operator-written answers are not checked against the tenant's facts (they are tenant
        knowledge themselves) unless `check_facts` (answers a model wrote, e.g. from calls); the
        tenant's own details (its address) in an answer are never taken for caller PII.
        """
        c = self.cache(budget_ms=60_000)
        stored, skipped = 0, dict[str, int]()
        ids: list[str] = []
        knowns: dict[str, str] = {}
        try:
            for i, row in enumerate(rows, 1):
                tname, lang, kver = scopes[row["tenant"] or default_tenant]
                if tname not in knowns:
                    knowns[tname] = tenant_knowledge(tname)
                facts = knowns[tname] if check_facts else None
                eid = row.get("_eid") or (scoped_id(tname, row["id"]) if row.get("id") else None)
                ok, reason = policy.is_cacheable(
                    row["question"], row["answer"], facts=facts, known=knowns[tname]
                )
                if not ok:
                    skipped[reason] = skipped.get(reason, 0) + 1
                else:
                    eid = await c.store(
                        row["question"], row["answer"], tenant=tname, language=lang, knowledge_version=kver,
                        ttl_s=ttl_s, paraphrases=row["paraphrases"], entry_id=eid, facts=facts,
                        known=knowns[tname], source=source,
                    )  # fmt: skip
                    if eid is None:
                        skipped["redis_error"] = skipped.get("redis_error", 0) + 1
                    else:
                        stored += 1
                        ids.append(eid)
                        if row.get("id"):
                            self._drop_legacy_id(row["id"], tname)
                        if audio_to is not None:
                            fn, voice = audio_to
                            pcm, sr = await asyncio.to_thread(fn, row["answer"])
                            await c.attach_audio(eid, pcm, sr, voice)
                if progress:
                    progress(i, len(rows))
        finally:
            await c.close()
        return {"stored": stored, "skipped": skipped, "total": len(rows), "ids": ids, "audio": bool(audio_to)}

    def _drop_legacy_id(self, user_id: str, tenant: str) -> None:
        """Before ids were scoped, FAQ id "hours" was stored as entry "hours": once the tenant's
        "{tenant}~hours" is written, its own old copy would duplicate it; another tenant's stays."""
        if valid_entry_id(user_id):
            return
        old_tenant = self.r.hget(self.keys.entry(user_id), "tenant")
        if old_tenant is not None and _s(old_tenant) == tenant:
            self._delete([user_id])

    def mine_calls(self, calls_dir: str | Path, *, tenant: str | None = None, min_count: int = 2,
                   limit: int = 50, distance: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Frequent self-contained caller questions from `*/transcript.json` (clustered by meaning)."""
        d = Path(calls_dir)
        if not d.is_dir():
            raise UserError(f"calls directory not found: {d}")
        texts: list[str] = []
        for f in sorted(d.glob("*/transcript.json")):
            try:
                data = json.loads(read_text_file(f, "transcript"))
            except json.JSONDecodeError as e:
                raise UserError(f"{f}: invalid JSON ({e.msg})") from None
            if not isinstance(data, dict):
                continue
            if tenant and data.get("tenant") not in (None, tenant):
                continue  # another business's calls
            for q in caller_questions(data):  # the report schema (core/call_report.py)
                if policy.lookup_allowed(q)[0]:
                    texts.append(q)
        if not texts:
            return []
        vecs = get_cache_embedder().encode(texts)
        radius = distance if distance is not None else get_settings().cache_threshold
        clusters: list[list[int]] = []
        for i, v in enumerate(vecs):
            for cl in clusters:
                if 1 - float(v @ vecs[cl[0]]) <= radius:
                    cl.append(i)
                    break
            else:
                clusters.append([i])
        clusters.sort(key=len, reverse=True)
        out = []
        for cl in clusters:
            if len(cl) < min_count:
                break
            members = [texts[i] for i in cl]
            rep = max(set(members), key=members.count)
            out.append({"question": rep, "count": len(cl), "paraphrases": sorted(set(members) - {rep})[:10]})
            if len(out) >= limit:
                break
        return out

    def warm_from_calls(self, calls_dir: str | Path, *, tenant: str | None = None, min_count: int = 2,
                        limit: int = 50, progress: Progress = None) -> dict[str, Any]:  # fmt: skip
        from core.local_llm import complete_text
        from core.tenants import load_tenant

        t = load_tenant(tenant)
        found = self.mine_calls(calls_dir, tenant=t.name, min_count=min_count, limit=limit)
        system = (
            f"You answer phone callers for {t.business_name}. Reply in one or two short spoken sentences, "
            f"using only these facts: {t.facts_block()} If the facts do not cover it, say you don't know."
        )
        rows = []
        for i, q in enumerate(found, 1):
            ans = complete_text(
                [{"role": "system", "content": system}, {"role": "user", "content": q["question"]}], 80
            )
            rows.append({"id": None, "question": q["question"], "answer": ans, "paraphrases": q["paraphrases"],
                         "tenant": t.name, "_line": i})  # fmt: skip
            if progress:
                progress(i, len(found) * 2)
        scopes = {t.name: (t.name, t.language, t.knowledge_version)}
        # answers the local model wrote: stored only when consistent with the tenant's facts, and
        # as candidates for review (source "generated") unless the tenant auto-serves
        res = asyncio.run(
            self._warm_rows(rows, scopes, t.name, None, None, check_facts=True, source="generated")
        )
        res["mined"] = len(found)
        return res

    # -- read --
    def _entry_ids(self, tenant: str | None = None, kinds: str = "q|f") -> list[str]:
        # kinds: q (questions) and f (follow-ups keyed on a parent entry, cache/followups.py)
        q = f"@kind:{{{kinds}}}" + (f" @tenant:{{{tag(tenant)}}}" if tenant else "")
        ids: list[str] = []
        offset = 0
        while True:
            res = self.r.ft(self.keys.index).search(Query(q).no_content().paging(offset, 10_000).dialect(2))
            ids += [_s(d.id)[len(self.keys.prefix) :] for d in res.docs]
            offset += 10_000
            if offset >= res.total:
                break
        return ids

    def show(self, eid: str) -> dict[str, Any]:
        h = self.r.hgetall(self.keys.entry(eid))
        if not h:
            raise UserError(f"no cache entry '{eid}'")
        return self._row(eid, h)

    def _row(self, eid: str, h: Mapping[Any, Any], with_vec: bool = False) -> dict[str, Any]:
        now = time.time()
        g = {k.decode(): v for k, v in h.items()}
        ttl_left = self.r.ttl(self.keys.entry(eid))
        row = {
            "id": eid,
            "tenant": _s(g.get("tenant", b"")),
            "language": _s(g.get("language", b"")),
            "kver": _s(g.get("kver", b"")),
            "question": _s(g.get("question", b"")),
            "answer": _s(g.get("answer", b"")),
            "paraphrases": json.loads(_s(g.get("paraphrases", b"[]"))),
            "created": float(g.get("created", 0)),
            "ttl": int(float(g.get("ttl", 0))),
            "expiry": float(g.get("expiry", 0)),
            "hits": int(g.get("hits", 0)),
            "last_hit": float(g.get("last_hit", 0)),
            "source": _s(g.get("source", b"")),
            # entries from before review existed have no status: they were served, so approved
            "status": _s(g.get("status", b"")) or APPROVED,
            "reviewed": float(g.get("reviewed", 0) or 0),
            "voices": [v for v in _s(g.get("voices", b"")).split(",") if v],
            # provenance of extra phrasings (cache/paraphrase.py): generated by the LLM
            "generated_paraphrases": json.loads(_s(g.get("gen_paraphrases", b"[]"))),
            "negatives": json.loads(_s(g.get("negatives", b"[]"))),
            **({"parent": _s(g["parent"])} if g.get("parent") else {}),  # a follow-up's parent entry
            "age_s": round(now - float(g.get("created", now)), 1),
            "ttl_left_s": ttl_left if ttl_left and ttl_left > 0 else None,
        }
        if with_vec:
            row["vec"] = base64.b64encode(g.get("vec") or g["cvec"]).decode()  # cvec: a candidate
            row["model"] = self.index_model()[0]
            pv = []
            for n in range(len(row["paraphrases"])):
                v, cv = self.r.hmget(self.keys.para(eid, n), "vec", "cvec")
                v = v if v is not None else cv
                if v is not None:
                    pv.append(base64.b64encode(v).decode())  # type: ignore[arg-type]  # bytes: a binary client
            row["paraphrase_vecs"] = pv
            audio = {}
            for voice in row["voices"]:
                pcm, sr = self.r.hmget(self.keys.audio(eid, voice), "pcm", "sr")
                if pcm is not None and sr is not None:
                    audio[voice] = {"pcm": base64.b64encode(pcm).decode(), "sr": int(sr)}  # type: ignore[arg-type]
            row["audio"] = audio
        return row

    def list(self, tenant: str | None = None, limit: int = 100) -> builtins.list[dict[str, Any]]:
        rows = []
        for eid in self._entry_ids(tenant):
            h = self.r.hgetall(self.keys.entry(eid))
            if h:
                rows.append(self._row(eid, h))
        rows.sort(key=lambda r: (r["tenant"], -r["hits"], r["created"]))
        return rows[:limit] if limit else rows

    def search(self, text: str, *, tenant: str | None = None, k: int = 5,
               threshold: float | None = None) -> builtins.list[dict[str, Any]]:  # fmt: skip
        tname, lang, kver = tenant_scope(tenant)
        thr = get_settings().cache_threshold if threshold is None else threshold
        vec = get_cache_embedder().embed(text)
        res = self.r.ft(self.keys.index).search(
            knn_query(tname, lang, kver, k=k * 4), query_params={"v": np.asarray(vec, np.float32).tobytes()}
        )
        allowed, reason = policy.lookup_allowed(text)
        seen: dict[str, float] = {}
        for d in res.docs:
            eid = _s(d.entry)
            seen.setdefault(eid, float(d.dist))
        out = []
        for eid, dist in list(seen.items())[:k]:
            q = self.r.hget(self.keys.entry(eid), "question")
            out.append({"id": eid, "question": _s(q or b""), "distance": round(dist, 4),
                        "would_hit": allowed and dist <= thr and eid == next(iter(seen)),
                        "bypass": None if allowed else reason})  # fmt: skip
        return out

    def stats(self) -> dict[str, Any]:
        raw = {_text(k): float(v) for k, v in self.r.hgetall(self.keys.stats).items()}
        lat = [float(x) for x in self.r.lrange(self.keys.lat, 0, -1)]
        lookups = int(raw.get("lookups", 0))
        hits = int(raw.get("hits", 0))
        return {
            "entries": len(self._entry_ids()),
            "lookups": lookups,
            "hits": hits,
            "misses": int(raw.get("misses", 0)),
            "bypasses": int(raw.get("bypasses", 0)),
            "hit_rate": round(hits / lookups, 4) if lookups else 0.0,
            "lookup_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
            "lookup_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
            "seconds_saved": round(raw.get("saved_s", 0.0), 1),
            "tokens_saved": int(raw.get("saved_tokens", 0)),
            "stored": int(raw.get("stored", 0)),
            "evicted": int(raw.get("evicted", 0)),
            "pending_review": self.pending_count(),
            "pending_review_by_tenant": self.pending_by_tenant(),
            "embedding_model": "{} ({} dims)".format(*self.index_model()),
            "candidates": int(raw.get("candidates", 0)),
            "detail": {
                k: int(v)
                for k, v in sorted(raw.items())
                if k.startswith(("bypass_", "not_stored_", "review_"))
            },
        }

    def pending_by_tenant(self) -> dict[str, int]:
        """Pending candidates per tenant (one FT.AGGREGATE); tenants with none are absent."""
        from redis.commands.search import reducers
        from redis.commands.search.aggregation import AggregateRequest

        req = AggregateRequest("@kind:{q|f} @status:{pending}").group_by(
            "@tenant", reducers.count().alias("n")
        )
        out: dict[str, int] = {}
        for row in self.r.ft(self.keys.index).aggregate(req.dialect(2)).rows:
            d = {_s(row[i]): _s(row[i + 1]) for i in range(0, len(row) - 1, 2)}
            if d.get("tenant"):
                out[d["tenant"]] = int(d.get("n", 0))
        return dict(sorted(out.items()))

    # -- embedding model --
    def index_model(self) -> tuple[str, int]:
        """(model, dim) the index was built with (`{ns}:meta`); the configured model when unknown."""
        from cache.embedders import configured_name

        name, dim = self.r.hmget(self.keys.meta, "model", "dim")
        if name is None:
            return configured_name(), DIM
        return _s(name), int(dim or DIM)

    def reembed(self, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
        """Re-embed every entry with the configured embedder and rebuild the index (cache/reembed.py:
        safe to interrupt; entries, answers, audio and provenance are kept).

        Returns:
            {"entries", "vectors", "model", "dim", "previous", "seconds"}.

        Raises:
            UserError: the configured embedder cannot load or its endpoint fails (nothing changed).
        """
        from cache.reembed import reembed

        return reembed(self.r, self.keys, get_cache_embedder(), progress=progress)

    # -- generated phrasings --
    def paraphrase(self, ids: builtins.list[str], n: int, progress: Progress = None) -> dict[str, Any]:
        """Ask the configured (cloud) LLM for `n` paraphrases and a few near-misses of each entry's
        question; store them marked generated (cache/paraphrase.py).

        Args:
            ids: entry ids (e.g. those a warm-up just stored).
            n: paraphrases per entry, 1..MAX_N.
            progress: callback (done, total).

        Returns:
            {"entries", "added", "duplicate", "refused", "ambiguous", "negatives"}.

        Raises:
            UserError: the local profile (refused: its paraphrases were unusable), bad n, LLM errors.
        """
        from cache.paraphrase import MAX_N, add_generated, generate, llm_client

        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise UserError(f"--paraphrase must be between 1 and {MAX_N}, got {n!r}")
        client, model = llm_client()
        emb = get_cache_embedder()
        total = {"entries": 0, "added": 0, "duplicate": 0, "refused": 0, "ambiguous": 0, "negatives": 0}
        for i, eid in enumerate(ids, 1):
            q, a, kind = self.r.hmget(self.keys.entry(eid), "question", "answer", "kind")
            if q is None or a is None or _s(kind or b"q") != "q":
                continue  # a follow-up (kind f) gets no phrasings: their vectors would let KNN find it
            paras, negs = generate(client, model, _s(q), _s(a), n)
            for k, v in add_generated(self.r, self.keys, emb, eid, paras, negs).items():
                total[k] += v
            total["entries"] += 1
            if progress:
                progress(i, len(ids))
        return total

    def drop_generated(self, eid: str) -> int:
        """Drop an entry's generated paraphrases and near-misses; returns how many were dropped.

        Raises:
            UserError: no such entry.
        """
        from cache.paraphrase import drop_generated

        return drop_generated(self.r, self.keys, eid)

    # -- review --
    def pending_count(self, tenant: str | None = None) -> int:
        """Candidates waiting for review (answers the LLM wrote; never served until approved)."""
        q = "@kind:{q|f} @status:{pending}" + (f" @tenant:{{{tag(tenant)}}}" if tenant else "")
        return int(self.r.ft(self.keys.index).search(Query(q).no_content().paging(0, 0).dialect(2)).total)

    def pending(self, tenant: str | None = None, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Pending candidates, oldest first (at most `limit`; 0: all).

        Args:
            tenant: only this tenant's (None: every tenant's).
            limit: how many rows at most.

        Returns:
            Rows as `show` gives them.
        """
        q = "@kind:{q|f} @status:{pending}" + (f" @tenant:{{{tag(tenant)}}}" if tenant else "")
        res = self.r.ft(self.keys.index).search(
            Query(q).no_content().sort_by("created").paging(0, limit or 10_000).dialect(2)
        )
        rows = []
        for d in res.docs:
            eid = _s(d.id)[len(self.keys.prefix) :]
            h = self.r.hgetall(self.keys.entry(eid))
            if h:
                rows.append(self._row(eid, h))
        return rows

    def candidate(self, eid: str) -> dict[str, Any]:
        """A pending candidate as `show` gives it.

        Raises:
            UserError: a malformed id, no such entry, or an entry that is not pending.
        """
        if not isinstance(eid, str) or not valid_entry_id(eid):
            raise UserError(f"bad entry id {str(eid)[:70]!r}: expected an id from `cache review`")
        h = self.r.hgetall(self.keys.entry(eid))
        if not h:
            raise UserError(f"no cache entry '{eid}' (see `callcenter cache review` for pending ids)")
        row = self._row(eid, h)
        if row["status"] != PENDING:
            raise UserError(f"entry '{eid}' is not pending review (it is {row['status']})")
        return row

    def approve(self, eid: str, answer: str | None = None) -> dict[str, Any]:
        """Serve a pending candidate from now on, with its answer or an edited one.

        Its vectors move from `cvec` to `vec` (into the vector index) in one transaction; an
        edited answer drops audio rendered for the old text.

        Args:
            eid: the candidate's id.
            answer: the edited answer (None: approve as it is). It is checked like a warm-file
                answer (PII, refusals, injection: `policy.is_cacheable`).

        Returns:
            The entry as `show` gives it.

        Raises:
            UserError: unknown id, not pending, an edit the cache policy refuses, or the entry
                changed meanwhile.
        """
        row = self.candidate(eid)
        edited = answer is not None
        if edited:
            if not isinstance(answer, str) or not answer.strip():
                raise UserError("the edited answer is empty")
            answer = " ".join(answer.split())
            if len(answer) > 2000:
                raise UserError(f"the edited answer is too long ({len(answer)} > 2000 characters)")
            ok, reason = policy.is_cacheable(
                row["question"],
                answer,
                known=tenant_knowledge(row["tenant"]),
                followup=bool(row.get("parent")),
            )
            if not ok:
                raise UserError(f"the edited answer is refused by the cache policy ({reason})")
        ekey = self.keys.entry(eid)
        paras = [self.keys.para(eid, n) for n in range(len(row["paraphrases"]))]
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(ekey, *paras)  # a call storing the same question meanwhile: retry
                cvecs = [pipe.hget(k, "cvec") for k in (ekey, *paras)]
                vectorless = bool(row.get("parent"))  # a follow-up has no vector to move
                if (cvecs[0] is None and not vectorless) or _s(pipe.hget(ekey, "status") or b"") != PENDING:
                    raise UserError(f"entry '{eid}' changed while reviewing it: run the review again")
                pipe.multi()
                for k, cv in zip((ekey, *paras), cvecs, strict=True):
                    if cv is not None:
                        pipe.hset(k, "vec", cv)
                        pipe.hdel(k, "cvec")
                if edited:
                    pipe.hset(ekey, mapping={"answer": str(answer), "voices": ""})  # old audio: wrong text
                    if row["voices"]:
                        pipe.delete(*[self.keys.audio(eid, v) for v in row["voices"]])
                pipe.hset(ekey, mapping={"status": APPROVED, "reviewed": time.time()})
                pipe.hincrby(self.keys.stats, "review_edited" if edited else "review_approved", 1)
                pipe.execute()
            except redis.WatchError:
                raise UserError(f"entry '{eid}' changed while reviewing it: run the review again") from None
        return self.show(eid)

    def edit(self, eid: str, answer: str) -> dict[str, Any]:
        """Approve a pending candidate with a new answer text (see `approve`)."""
        return self.approve(eid, answer)

    def reject(self, eid: str) -> None:
        """Delete a pending candidate (its question goes to the LLM again next time).

        Raises:
            UserError: unknown id or not pending.
        """
        self.candidate(eid)
        self._delete([eid])
        self.r.hincrby(self.keys.stats, "review_rejected", 1)

    # -- write --
    def _delete(self, ids: builtins.list[str]) -> int:
        n = 0
        for eid in ids:
            tenant, para, voices = self.r.hmget(self.keys.entry(eid), "tenant", "paraphrases", "voices")
            extra = related_keys(self.keys, eid, para, voices)
            n += 1 if self.r.delete(self.keys.entry(eid), *extra) else 0
            if tenant:
                self.r.zrem(self.keys.tenant(_s(tenant)), eid)
        return n

    def invalidate(self, *, entry_id: str | None = None, tenant: str | None = None,
                   similar_to: str | None = None, max_distance: float | None = None,
                   stale: bool = False, everything: bool = False) -> int:  # fmt: skip
        """Delete entries by id, tenant, similarity to a text (within a tenant), stale kver, or all."""
        chosen = sum(
            x is not None and x is not False
            for x in (entry_id, similar_to, everything or None, stale or None)
        )
        if chosen == 0 and tenant is None:
            raise UserError("say what to invalidate: an id, --tenant, --similar-to, --stale or --all")
        max_distance = check_distance(max_distance, "--max-distance")
        if chosen > 1:
            raise UserError("choose one of: id, --similar-to, --stale, --all")
        if entry_id is not None:
            if not self.r.exists(self.keys.entry(entry_id)):
                raise UserError(f"no cache entry '{entry_id}'")
            return self._delete([entry_id])
        if everything:
            return self._delete(self._entry_ids())
        if stale:
            tname, _lang, kver = tenant_scope(tenant)
            ids = [
                e
                for e in self._entry_ids(tname)
                if _s(self.r.hget(self.keys.entry(e), "kver") or b"") != kver
            ]
            return self._delete(ids)
        if similar_to is not None:
            thr = get_settings().cache_threshold if max_distance is None else max_distance
            rows = self.search(similar_to, tenant=tenant, k=50, threshold=thr)
            return self._delete([r["id"] for r in rows if r["distance"] <= thr])
        tenant_scope(tenant)  # unknown tenant -> error
        return self._delete(self._entry_ids(tenant))

    def export(self, out: str | Path | None, tenant: str | None = None) -> int:
        rows = []
        # follow-ups are not exported: import would give them a vector and make them questions
        for eid in self._entry_ids(tenant, kinds="q"):
            h = self.r.hgetall(self.keys.entry(eid))
            if h:
                row = self._row(eid, h, with_vec=True)
                for k in ("age_s", "ttl_left_s", "voices"):
                    row.pop(k)
                rows.append(row)
        rows.sort(key=lambda r: (r["tenant"], r["created"], r["id"]))
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        if out is None or str(out) == "-":
            print(text, end="")
        else:
            Path(out).write_text(text)
        return len(rows)

    def import_(self, path: str | Path) -> dict[str, Any]:
        """Load a JSONL export: every row is validated before anything is written (all or nothing).

        Vectors are trusted only when the row names the index's model (`model`) and a vector has
        the index's dimension and finite values; otherwise the question and paraphrases are
        re-embedded. Rows the store policy refuses (PII, injection, refusals, …) are not imported
        and counted under `refused`; expired rows are skipped. Cached audio is restored.

        Args:
            path: JSONL file as written by `export`.

        Returns:
            {"imported", "expired", "refused" (reason -> count)}.

        Raises:
            UserError: a bad row (names the line and field), a duplicate id, or an id that belongs
                to another tenant; nothing is written then.
        """
        rows = read_jsonl(path, "import file")
        now = time.time()
        plan: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        refused: dict[str, int] = {}
        expired = 0
        knowns: dict[str, str] = {}
        for row in rows:
            v = _import_row(row, path, now, self.index_model())
            if v["id"] in seen:
                raise UserError(f"{path}: line {row['_line']}: id '{v['id']}' repeats line {seen[v['id']]}")
            seen[v["id"]] = row["_line"]
            old_tenant = self.r.hget(self.keys.entry(v["id"]), "tenant")
            if old_tenant is not None and _s(old_tenant) != v["tenant"]:
                raise UserError(f"{path}: line {row['_line']}: id '{v['id']}' belongs to another tenant")
            if v["left"] <= 0:
                expired += 1
                continue
            if v["tenant"] not in knowns:
                knowns[v["tenant"]] = tenant_knowledge(v["tenant"])
            ok, reason = policy.is_cacheable(v["question"], v["answer"], known=knowns[v["tenant"]])
            if not ok:
                refused[reason] = refused.get(reason, 0) + 1
                continue
            v["paraphrases"] = [p for p in v["paraphrases"] if policy.paraphrase_ok(p)]
            if len(v["paraphrases"]) != len(v["pvecs"] or []):
                v["pvecs"] = None  # some were dropped or missing: re-embed them all
            plan.append(v)
        need = [v for v in plan if v["vec"] is None or v["pvecs"] is None]
        if need:
            texts = [t for v in need for t in (v["question"], *v["paraphrases"])]
            vecs = list(get_cache_embedder().embed_many(texts))
            for v in need:
                v["vec"], v["pvecs"] = vecs[0], vecs[1 : 1 + len(v["paraphrases"])]
                vecs = vecs[1 + len(v["paraphrases"]) :]
        pipe = self.r.pipeline(transaction=True)
        for v in plan:
            eid = v["id"]
            para, voices = self.r.hmget(self.keys.entry(eid), "paraphrases", "voices")
            pipe.delete(self.keys.entry(eid), *related_keys(self.keys, eid, para, voices))
            m = entry_mapping(
                eid, v["question"], v["answer"], v["tenant"], v["language"], v["kver"], v["ttl"], v["vec"],
                v["paraphrases"], created=v["created"], hits=v["hits"], last_hit=v["last_hit"], source=v["source"],
                status=v["status"], reviewed=v["reviewed"],
            )  # fmt: skip
            m["expiry"] = v["expiry"]
            m["gen_paraphrases"] = json.dumps([p for p in v["gen"] if p in v["paraphrases"]])
            m["negatives"] = json.dumps(v["negatives"])
            if v["audio"]:
                m["voices"] = ",".join(sorted(v["audio"]))
            write_entry(pipe, self.keys, m, list(v["pvecs"]), v["left"])
            for voice, (pcm, sr) in v["audio"].items():
                pipe.hset(self.keys.audio(eid, voice), mapping={"pcm": pcm, "sr": sr})
                pipe.expire(self.keys.audio(eid, voice), v["left"])
        pipe.execute()
        return {"imported": len(plan), "expired": expired, "refused": refused}

    # -- eval --
    def eval(self, entries: str | Path, queries: str | Path, *, threshold: float | None = None,
             sweep: bool = False) -> dict[str, Any]:  # fmt: skip
        return run_eval(self.url, entries, queries, threshold=threshold, sweep=sweep)


def auto_warm_tenants(
    redis_url: str,
    *,
    namespace: str = "cc",
    synthesize: Callable[[str], tuple[bytes, int]] | None = None,
    voice: str | None = None,
) -> dict[str, dict[str, Any]]:
    """`CacheAdmin.auto_warm` for every configured tenant, before a process takes calls (worker
    prewarm, `callcenter call`). Never raises: a tenant that fails is logged and skipped, and
    calls go on without its FAQ in the cache.

    Args:
        redis_url: the cache's Redis.
        namespace: the cache's key namespace.
        synthesize, voice: pre-render answers in the agent's voice (see `auto_warm`).

    Returns:
        tenant -> `auto_warm`'s result, or {"error": message} for a tenant that failed.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _auto_warm_all(redis_url, namespace, synthesize, voice)
    # called on an event loop (CacheAdmin runs its own): do it on a thread, the caller waits
    out: dict[str, dict[str, Any]] = {}
    th = threading.Thread(
        target=lambda: out.update(_auto_warm_all(redis_url, namespace, synthesize, voice)),
        name="cache-auto-warm",
    )
    th.start()
    th.join()
    return out


def _auto_warm_all(
    url: str, ns: str, synthesize: Callable[[str], tuple[bytes, int]] | None, voice: str | None
) -> dict[str, dict[str, Any]]:
    from core.tenants import list_tenants

    out: dict[str, dict[str, Any]] = {}
    try:
        adm = CacheAdmin(url, namespace=ns)
    except Exception as e:  # noqa: BLE001 - calls run without the warm FAQ
        log.warning("cache auto-warm skipped: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return out
    try:
        for name in list_tenants():
            try:
                res = adm.auto_warm(name, synthesize=synthesize, voice=voice)
            except Exception as e:  # noqa: BLE001 - one tenant's bad FAQ must not stop the others
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                log.warning("cache auto-warm of tenant %s failed: %s", name, msg)
                out[name] = {"error": msg}
                continue
            out[name] = res
            if res["warmed"]:
                log.info(
                    "cache auto-warm: tenant %s, %d of %d FAQ entries stored%s", name, res["stored"],
                    res["total"], f" with audio ({voice})" if res.get("audio") else "",
                )  # fmt: skip
    finally:
        adm.r.close()
    return out


_NAME_RE = re.compile(r"^[^\s:~]{1,64}$")
_VOICE_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _num(row: dict[str, Any], f: str, where: str, default: float | None = None) -> float:
    v = row.get(f, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise UserError(f"{where}: '{f}' must be a number, got {str(v)[:40]!r}")
    return float(v)


def _vector(b64: Any, model_ok: bool, dim: int = DIM) -> np.ndarray | None:
    """A stored vector worth trusting (index model and dimension, finite), else None: re-embed."""
    if not model_ok or not isinstance(b64, str):
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        return None
    if len(raw) != dim * 4:
        return None
    vec = np.frombuffer(raw, dtype=np.float32)
    return vec if np.all(np.isfinite(vec)) and 0.9 < float(np.linalg.norm(vec)) < 1.1 else None


def _import_row(
    row: dict[str, Any], path: str | Path, now: float, model: tuple[str, int] = (MODEL_NAME, DIM)
) -> dict[str, Any]:
    """One export row checked and normalised; UserError naming the line and field otherwise."""
    where = f"{path}: line {row['_line']}"
    for f in ("id", "question", "answer", "tenant", "language", "kver", "created", "ttl"):
        if f not in row:
            raise UserError(f"{where}: missing '{f}'")
    for f in ("question", "answer", "tenant", "language", "kver"):
        if not isinstance(row[f], str) or not row[f].strip():
            raise UserError(f"{where}: '{f}' must be a non-empty string")
    tenant = row["tenant"]
    for f in ("tenant", "language", "kver"):
        if not _NAME_RE.fullmatch(row[f]):
            raise UserError(f"{where}: '{f}' must be at most 64 characters without spaces, ':' or '~'")
    eid = row["id"]
    if isinstance(eid, str) and USER_ID_RE.fullmatch(eid) and not valid_entry_id(eid):
        eid = scoped_id(tenant, eid)  # an export from before ids were scoped per tenant
    if (
        not isinstance(eid, str)
        or not valid_entry_id(eid)
        or ("~" in eid and not eid.startswith(tenant + "~"))
    ):
        raise UserError(f"{where}: 'id' must be a generated id or '{tenant}~<id>' (<id>: {USER_ID_CHARS})")
    created = _num(row, "created", where)
    ttl = _num(row, "ttl", where)
    if not ttl.is_integer() or not TTL_MIN_S <= ttl <= TTL_MAX_S:
        raise UserError(f"{where}: 'ttl' must be a whole number of seconds in [{TTL_MIN_S}, {TTL_MAX_S}]")
    expiry = _num(row, "expiry", where, created + ttl) if row.get("expiry") is not None else created + ttl
    if expiry - now > TTL_MAX_S:
        raise UserError(f"{where}: 'expiry' is more than 10 years away")
    hits = row.get("hits", 0)
    if isinstance(hits, bool) or not isinstance(hits, int) or hits < 0:
        raise UserError(f"{where}: 'hits' must be a non-negative integer")
    last_hit = _num(row, "last_hit", where, 0.0)
    source = row.get("source", "")
    if not isinstance(source, str):
        raise UserError(f"{where}: 'source' must be a string")
    # exports from before review existed have no status: those entries were served (approved)
    status = row.get("status") or APPROVED
    if status not in (APPROVED, PENDING):
        raise UserError(f"{where}: 'status' must be '{APPROVED}' or '{PENDING}'")
    reviewed = _num(row, "reviewed", where, 0.0)
    para = row.get("paraphrases") or []
    if isinstance(para, str):
        para = [para]  # one paraphrase, not its characters
    if not isinstance(para, list) or not all(isinstance(p, str) for p in para):
        raise UserError(f"{where}: 'paraphrases' must be a list of strings")
    para = [p for p in para if p.strip()]
    # provenance of extra phrasings (cache/paraphrase.py), kept through export/import
    gen = row.get("generated_paraphrases") or []
    negs = row.get("negatives") or []
    if not isinstance(gen, list) or not all(isinstance(p, str) for p in gen):
        raise UserError(f"{where}: 'generated_paraphrases' must be a list of strings")
    if not isinstance(negs, list) or not all(
        isinstance(n, dict) and isinstance(n.get("text"), str) and isinstance(n.get("source"), str)
        for n in negs
    ):
        raise UserError(f"{where}: 'negatives' must be a list of {{text, source}} objects")
    model_ok = row.get("model") == model[0]
    pv = row.get("paraphrase_vecs")
    if pv is not None and (not isinstance(pv, list) or not all(isinstance(x, str) for x in pv)):
        raise UserError(f"{where}: 'paraphrase_vecs' must be a list of base64 strings")
    pvecs = [_vector(x, model_ok, model[1]) for x in pv or []]
    audio_in = row.get("audio") or {}
    if not isinstance(audio_in, dict):
        raise UserError(f"{where}: 'audio' must be an object voice -> {{pcm, sr}}")
    audio: dict[str, tuple[bytes, int]] = {}
    for voice, a in audio_in.items():
        if not _VOICE_RE.fullmatch(voice) or not isinstance(a, dict):
            raise UserError(f"{where}: 'audio' voice {voice[:40]!r}: expected a voice id and {{pcm, sr}}")
        sr = a.get("sr")
        if isinstance(sr, bool) or not isinstance(sr, int) or not 8000 <= sr <= 192_000:
            raise UserError(f"{where}: 'audio.{voice}.sr' must be a sample rate 8000..192000")
        try:
            pcm = base64.b64decode(a.get("pcm") or "", validate=True)
        except (ValueError, TypeError):
            raise UserError(f"{where}: 'audio.{voice}.pcm' is not base64") from None
        if not pcm or len(pcm) % 2:
            raise UserError(f"{where}: 'audio.{voice}.pcm' must be 16-bit PCM")
        audio[voice] = (pcm, sr)
    return {
        "id": eid, "question": row["question"].strip(), "answer": row["answer"].strip(), "tenant": tenant,
        "language": row["language"], "kver": row["kver"], "created": created, "ttl": int(ttl),
        "expiry": expiry, "left": int(expiry - now), "hits": hits, "last_hit": last_hit, "source": source,
        "status": status, "reviewed": reviewed, "paraphrases": para, "vec": _vector(row.get("vec"), model_ok, model[1]),
        "pvecs": pvecs if pvecs and all(x is not None for x in pvecs) else ([] if not para else None),
        "audio": audio,
        "gen": gen,
        "negatives": [{"text": n["text"], "source": n["source"]} for n in negs],
    }  # fmt: skip


def load_eval_files(entries: str | Path, queries: str | Path) -> tuple[list[dict], list[dict]]:
    ents = read_jsonl(entries, "entries file")
    for e in ents:
        for f in ("id", "question", "answer"):
            if not isinstance(e.get(f), str) or not e[f].strip():
                raise UserError(f"{entries}: line {e['_line']}: missing or empty '{f}'")
    qs = read_jsonl(queries, "queries file")
    for q in qs:
        if not isinstance(q.get("query"), str) or not q["query"].strip():
            raise UserError(f"{queries}: line {q['_line']}: missing or empty 'query'")
        if "expect" not in q:
            raise UserError(f"{queries}: line {q['_line']}: missing 'expect' (an entry id or null)")
        ctx = q.get("context")
        if ctx is not None and not isinstance(ctx, list):
            raise UserError(f"{queries}: line {q['_line']}: 'context' must be a list of turns")
    if not ents or not qs:
        raise UserError("eval needs at least one entry and one query")
    return ents, qs


SWEEP = [round(float(x), 3) for x in np.arange(0.05, 0.501, 0.01)]


ACCEPT_SWEEP = [round(float(x), 3) for x in np.arange(0.05, 0.951, 0.025)]


def run_eval(redis_url: str, entries: str | Path, queries: str | Path, *, threshold: float | None = None,
             sweep: bool = False, verifier: bool | None = None, accept: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Load entries into a fresh namespace, run the agent's lookup on each query, report; clean up.

    With the verifier (setting `cache_verifier`, or `verifier=True`; cache/verifier.py), "threshold"
    in the result and the sweep's curve is the verifier's acceptance probability (higher is
    stricter); without it (`verifier=False`, or an explicit `threshold`), the cosine distance of
    the single-stage lookup, as before. Same output fields either way."""
    ents, qs = load_eval_files(entries, queries)
    s = get_settings()
    default_tenant = s.default_tenant
    use_verifier = (s.cache_verifier and threshold is None) if verifier is None else verifier
    ns = f"eval-{uuid.uuid4().hex[:10]}"
    outcomes = asyncio.run(_eval_async(redis_url, ns, ents, qs, default_tenant, use_verifier))
    if use_verifier:
        from cache.verifier import get_verifier

        acc = (
            (s.cache_verifier_accept if s.cache_verifier_accept is not None else get_verifier().accept)
            if accept is None
            else accept
        )
        result = score(outcomes, acc, key="p")
        if sweep:
            curve = [score(outcomes, t, latency=False, key="p") for t in ACCEPT_SWEEP]
            result["curve"] = curve
            result["recommended_threshold"] = recommend(curve, stricter_high=True)
        return result
    thr = s.cache_threshold if threshold is None else threshold
    result = score(outcomes, thr)
    if sweep:
        curve = [score(outcomes, t, latency=False) for t in SWEEP]
        result["curve"] = curve
        result["recommended_threshold"] = recommend(curve)
    return result


async def _eval_async(
    url: str, ns: str, ents: list[dict], qs: list[dict], default_tenant: str, use_verifier: bool = False
) -> list[dict]:
    # threshold 2.0 (max cosine distance) / acceptance 0: record the nearest entry's distance (or
    # the verifier's best candidate and its probability) for every query, then apply any
    # threshold afterwards; identical to running the lookup once per threshold.
    c = ResponseCache(url, threshold=2.0, namespace=ns, budget_ms=30_000, record_stats=False,
                      verifier=use_verifier, accept=0.0)  # fmt: skip
    label: dict[str, str] = {}  # entry id -> the file's id
    try:
        for e in ents:
            tenant = e.get("tenant") or default_tenant
            try:
                sid = scoped_id(tenant, e["id"])
            except ValueError as err:
                raise UserError(f"eval: line {e['_line']}: {err}") from None
            label[sid] = e["id"]
            eid = await c.store(
                e["question"], e["answer"], tenant=tenant, language="en",
                knowledge_version=EVAL_KVER, paraphrases=e.get("paraphrases") or [], entry_id=sid,
                source="warm",  # the eval's entries are authored, not the LLM's: served at once
            )  # fmt: skip
            if eid is None:
                ok, reason = policy.is_cacheable(e["question"], e["answer"])
                if ok:
                    raise UserError(f"eval: could not store entry '{e['id']}' (Redis error)")
        out = []
        for q in qs:
            t0 = time.perf_counter()
            hit, outcome = await c.lookup_detailed(
                q["query"], tenant=q.get("tenant") or default_tenant, language="en",
                knowledge_version=EVAL_KVER, context=q.get("context") or None,
            )  # fmt: skip
            ms = (time.perf_counter() - t0) * 1000
            best = (
                max(c.last_candidates, key=lambda x: x["p"], default=None) if use_verifier and hit else None
            )
            out.append({"query": q["query"], "expect": q["expect"], "got": label.get(hit.id, hit.id) if hit else None,
                        "distance": hit.distance if hit else None, "p": best["p"] if best else None,
                        "outcome": outcome, "ms": ms})  # fmt: skip
        return out
    finally:
        r = c._client()
        try:
            await r.ft(c.keys.index).dropindex(delete_documents=True)
        except Exception:  # noqa: BLE001
            pass
        keys = [k async for k in r.scan_iter(match=f"{ns}:*", count=1000)]
        if keys:
            await r.delete(*keys)
        await c.close()


def score(outcomes: list[dict], thr: float, latency: bool = True, key: str = "distance") -> dict[str, Any]:
    """Hit and false-hit rates at `thr`: a cosine distance (key "distance": served when <= thr)
    or the verifier's acceptance probability (key "p": served when >= thr)."""
    pos = [o for o in outcomes if o["expect"] is not None]
    hits = false = 0
    for o in outcomes:
        v = o.get(key)
        got = o["got"] if v is not None and (v <= thr if key == "distance" else v >= thr) else None
        if got is None:
            continue
        if got == o["expect"]:
            hits += 1
        else:
            false += 1
    n = len(outcomes)
    res: dict[str, Any] = {
        "threshold": float(thr),
        "n_queries": n,
        "n_positive": len(pos),
        "n_negative": n - len(pos),
        "hit_rate": round(hits / len(pos), 4) if pos else 0.0,
        "false_hit_rate": round(false / n, 4) if n else 0.0,
    }
    if latency:
        ms = [
            o["ms"]
            for o in outcomes
            if not o["outcome"].startswith("bypass:not") and "pii" not in o["outcome"]
        ]
        ms = ms or [o["ms"] for o in outcomes]
        res["lookup_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
        res["lookup_p99_ms"] = round(float(np.percentile(ms, 99)), 2)
    return res


def recommend(curve: list[dict], max_false: float = 0.01, stricter_high: bool = False) -> float:
    """Highest hit rate with false hits <= 1 %; ties -> the stricter threshold (the lower distance,
    or with `stricter_high` the higher acceptance probability)."""
    pick = max if stricter_high else min
    ok = [c for c in curve if c["false_hit_rate"] <= max_false]
    if not ok:
        return pick(c["threshold"] for c in curve)
    best = max(c["hit_rate"] for c in ok)
    return pick(c["threshold"] for c in ok if c["hit_rate"] == best)
