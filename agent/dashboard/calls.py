"""Reading call reports from the calls directory: safe ids, safe files, validated reports,
summaries, time series.

Every file of a call is opened without following symlinks (the call directory with
O_DIRECTORY|O_NOFOLLOW, the file relative to it with O_NOFOLLOW) and must be a regular file; a
symlinked call directory is skipped. A report that does not have the expected shape (turns not a
list, a NaN, a stage that is not a number, …) is skipped and counted (`CallStore.bad`), so one bad
file never takes a page down. The dashboard parses the files itself instead of calling
`agent.observability.load_report`, which follows symlinks and trusts the shape.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.observability import STAGES, CallReport
from core.call_report import GAP_LABELS, TIMELINE, TurnTimeline, percentile

log = logging.getLogger("callcenter.dashboard")
CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ACTIVE_WINDOW_S = 15 * 60  # a call directory without metrics.json, touched this recently, is live
MAX_REPORT_BYTES = 32 * 1024 * 1024
NUMERIC = (*STAGES, "cache_lookup_ms", "bargein_reaction")
GAPS = tuple(GAP_LABELS.items())  # (stage a gap ends at, what the turn waited for), in order
TEXT = ("user_text", "agent_text", "cache_outcome")
HEAD = ("tenant", "profile", "scenario", "error")


class BadReport(ValueError):
    """A report file that is present but not what the dashboard can show (the reason only,
    never the file's content)."""


def call_dir(calls_dir: Path, call_id: str) -> Path | None:
    """The directory of a call, or None for an unsafe or unknown id (no traversal, no symlinks)."""
    if not CALL_ID.fullmatch(call_id) or ".." in call_id:
        return None
    d = calls_dir.resolve() / call_id
    try:
        st = d.lstat()
    except OSError:
        return None
    return d if stat.S_ISDIR(st.st_mode) else None


def open_file(d: Path, name: str) -> int | None:
    """A read-only fd on the regular file `d/name`, or None. Neither `d` nor `name` may be a
    symlink (O_NOFOLLOW on both), and a FIFO, device or directory is refused without blocking."""
    try:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def has_file(d: Path, name: str) -> bool:
    fd = open_file(d, name)
    if fd is None:
        return False
    os.close(fd)
    return True


def _no_constants(name: str) -> Any:
    raise BadReport(f"{name} is not a number JSON allows")


def read_report_file(d: Path, name: str) -> dict[str, Any] | None:
    """The JSON object in `d/name`; None when absent; `BadReport` when it is there but unusable
    (a symlink, not a regular file, too big, not JSON, NaN/Infinity, not an object)."""
    try:
        os.lstat(d / name)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BadReport(f"{name}: {e.strerror}") from None
    fd = open_file(d, name)
    if fd is None:
        raise BadReport(f"{name} is not a regular file (symlinks are not followed)")
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_REPORT_BYTES + 1)
    if len(raw) > MAX_REPORT_BYTES:
        raise BadReport(f"{name} is larger than {MAX_REPORT_BYTES // 2**20} MB")
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise BadReport(f"{name} is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadReport(f"{name} is not a JSON object")
    return data


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _list_of_objects(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    v = data.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise BadReport(f"{where}: '{key}' is not a list of objects")
    return v


def _turn(i: int, t: dict[str, Any]) -> dict[str, Any]:
    out = dict(t)
    for k in NUMERIC:
        v = t.get(k)
        if v is not None and not _number(v):
            raise BadReport(f"metrics.json: turn {i}: '{k}' is not a number")
        out[k] = v  # a stage that was not measured (a cache hit has no llm_ttft) is None
    for k in TEXT:
        v = t.get(k)
        if v is not None and not isinstance(v, str):
            raise BadReport(f"metrics.json: turn {i}: '{k}' is not text")
    out["user_text"], out["agent_text"] = t.get("user_text") or "", t.get("agent_text") or ""
    idx, tok = t.get("index", i), t.get("context_tokens")
    if not isinstance(idx, int) or isinstance(idx, bool):
        raise BadReport(f"metrics.json: turn {i}: 'index' is not an integer")
    if tok is not None and (not isinstance(tok, int) or isinstance(tok, bool)):
        raise BadReport(f"metrics.json: turn {i}: 'context_tokens' is not an integer")
    out["index"] = idx
    out["cache_hit"], out["interrupted"] = bool(t.get("cache_hit")), bool(t.get("interrupted"))
    out["timeline"], out["gaps"] = _timeline(i, t.get("timeline"))
    return out


def _timeline(i: int, raw: object) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """A turn's timeline (None in reports written before it existed) and its gaps in seconds,
    keyed by the stage each gap ends at (`GAP_LABELS`)."""
    if raw is None:
        return None, {}
    if not isinstance(raw, dict) or not all(raw.get(k) is None or _number(raw.get(k)) for k in TIMELINE):
        raise BadReport(f"metrics.json: turn {i}: 'timeline' is not an object of times")
    tl = TurnTimeline(
        **{k: raw.get(k) for k in TIMELINE}, clock="agent" if raw.get("clock") == "agent" else "line"
    )
    return tl.model_dump(), {g.end: g.seconds for g in tl.gaps()}


def validate_transcript(tr: dict[str, Any]) -> dict[str, Any]:
    """The transcript with the shapes the call page reads checked (items, events, turns)."""
    items = _list_of_objects(tr, "items", "transcript.json")
    for it in items:
        for k in ("role", "text"):
            if it.get(k) is not None and not isinstance(it.get(k), str):
                raise BadReport(f"transcript.json: an item's '{k}' is not text")
    events = _list_of_objects(tr, "events", "transcript.json")
    for ev in events:
        if ev.get("type") is not None and not isinstance(ev.get("type"), str):
            raise BadReport("transcript.json: an event's 'type' is not text")
        if ev.get("t") is not None and not _number(ev.get("t")):
            raise BadReport("transcript.json: an event's 't' is not a number")
    _list_of_objects(tr, "turns", "transcript.json")
    for k in HEAD:
        if tr.get(k) is not None and not isinstance(tr.get(k), str):
            raise BadReport(f"transcript.json: '{k}' is not text")
    return {**tr, "items": items, "events": events}


def parse_report(d: Path) -> CallReport:
    """The call's report from its two files, validated; `BadReport` when either is unusable."""
    m = read_report_file(d, "metrics.json") or {}
    tr = validate_transcript(read_report_file(d, "transcript.json") or {})
    for k in HEAD:
        if m.get(k) is not None and not isinstance(m.get(k), str):
            raise BadReport(f"metrics.json: '{k}' is not text")
    turns = [_turn(i, t) for i, t in enumerate(_list_of_objects(m, "turns", "metrics.json"))]
    return CallReport(d.name, turns, tr["events"], tr.get("tenant") or m.get("tenant"),
                      m.get("profile") or tr.get("profile"), m.get("scenario") or tr.get("scenario"),
                      m.get("error") or tr.get("error"))  # fmt: skip


@dataclass
class CallSummary:
    id: str
    ts: float
    report: CallReport
    finished: bool

    def values(self, stage: str) -> list[float]:
        return [float(v) for t in self.report.turns if _number(v := t.get(stage)) and v is not None]

    @property
    def cache_hits(self) -> int:
        return sum(bool(t.get("cache_hit")) for t in self.report.turns)


@dataclass
class ReportSource:
    """A validated report in the shape `Metrics.record_call` takes for a finished call object
    (so the metrics never re-read the files through a path that follows symlinks)."""

    out_dir: Path
    turns: list[dict[str, Any]]
    events: list[dict[str, Any]]
    transcript: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def of(cls, d: Path, rep: CallReport) -> ReportSource:
        head = {"tenant": rep.tenant, "profile": rep.profile, "scenario": rep.scenario}
        return cls(d, rep.turns, rep.events, head, rep.error)


def _stamp(d: Path) -> tuple[float, ...] | None:
    """What changes when a report is rewritten: (mtime_ns, size, inode) of both files."""
    out: list[float] = []
    for name in ("metrics.json", "transcript.json"):
        try:
            st = os.lstat(d / name)
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
        except FileNotFoundError:
            if name == "metrics.json":
                return None
            out += [0, 0, 0]
    return tuple(out)


class CallStore:
    """Scans `calls_dir`; parsed reports are kept until their files change. `bad` holds the ids
    of finished calls whose report could not be used (with the reason), as of the last scan."""

    def __init__(self, calls_dir: Path) -> None:
        self.dir = Path(calls_dir)
        self._cache: dict[str, tuple[tuple[float, ...], CallSummary | str]] = {}
        self.bad: dict[str, str] = {}

    def scan(self) -> list[CallSummary]:
        out: list[CallSummary] = []
        bad: dict[str, str] = {}
        try:
            entries = list(os.scandir(self.dir))
        except OSError:
            self.bad = {}
            return out
        for e in entries:
            if not CALL_ID.fullmatch(e.name) or not e.is_dir(follow_symlinks=False):
                continue  # a symlinked call directory is skipped, wherever it points
            d = self.dir / e.name
            key = _stamp(d)
            if key is None:
                with contextlib.suppress(OSError):
                    mt = e.stat(follow_symlinks=False).st_mtime
                    if time.time() - mt < ACTIVE_WINDOW_S:
                        out.append(CallSummary(e.name, mt, CallReport(e.name, []), False))
                continue
            hit = self._cache.get(e.name)
            if hit is None or hit[0] != key:
                hit = (key, self._load(d))
                self._cache[e.name] = hit
            if isinstance(hit[1], str):
                bad[e.name] = hit[1]
            else:
                out.append(hit[1])
        for gone in set(self._cache) - {e.name for e in entries}:
            del self._cache[gone]
        self.bad = bad
        out.sort(key=lambda c: c.ts, reverse=True)
        return out

    def _load(self, d: Path) -> CallSummary | str:
        try:
            rep = parse_report(d)
            ts = os.lstat(d / "metrics.json").st_mtime
        except (BadReport, OSError) as e:
            reason = str(e) if isinstance(e, BadReport) else f"unreadable ({type(e).__name__})"
            log.warning("skipping call report %s: %s", d.name, reason)
            return reason
        return CallSummary(d.name, ts, rep, True)

    def transcript(self, d: Path) -> dict[str, Any]:
        """The validated transcript, {} when it is missing or unusable."""
        try:
            return validate_transcript(read_report_file(d, "transcript.json") or {})
        except (BadReport, OSError):
            return {}


pct = percentile  # one implementation: core/call_report.py


def ms(v: float | None) -> str:
    return "—" if not _number(v) else f"{v * 1000:.0f}"  # type: ignore[operator]


def overview(calls: list[CallSummary], now: float | None = None, bad_reports: int = 0) -> dict[str, Any]:
    now = time.time() if now is None else now
    done = [c for c in calls if c.finished]
    hour = [c for c in done if now - c.ts <= 3600]
    v2v = [v for c in done for v in c.values("voice_to_voice")]
    turns = sum(len(c.report.turns) for c in done)
    hits = sum(c.cache_hits for c in done)
    return {
        "active_calls": sum(not c.finished for c in calls),
        "calls_total": len(done),
        "calls_last_hour": len(hour),
        "turns": turns,
        "v2v_p50_ms": ms(pct(v2v, 50)),
        "v2v_p95_ms": ms(pct(v2v, 95)),
        "cache_hit_rate": f"{hits / turns:.0%}" if turns else "—",
        "errors": sum(bool(c.report.error) for c in done),
        "bad_reports": bad_reports,
    }


def series(calls: list[CallSummary], bucket_s: int = 300, now: float | None = None,
           span_s: int = 24 * 3600) -> dict[str, Any]:  # fmt: skip
    """Per time bucket: p50/p95 of every stage, cache hit rate, calls/hour (uPlot column arrays)."""
    now = time.time() if now is None else now
    done = [c for c in calls if c.finished and now - c.ts <= span_s]
    buckets: dict[int, list[CallSummary]] = {}
    for c in done:
        buckets.setdefault(int(c.ts // bucket_s) * bucket_s, []).append(c)
    xs = sorted(buckets)
    out: dict[str, Any] = {
        "x": xs,
        "now": now,
        "bucket_s": bucket_s,
        "calls_per_hour": [],
        "cache_hit_rate": [],
    }
    for s in STAGES:
        out[f"{s}_p50"], out[f"{s}_p95"] = [], []
    for x in xs:
        group = buckets[x]
        for s in STAGES:
            vals = [v for c in group for v in c.values(s)]
            out[f"{s}_p50"].append(_r(pct(vals, 50)))
            out[f"{s}_p95"].append(_r(pct(vals, 95)))
        n_turns = sum(len(c.report.turns) for c in group)
        out["cache_hit_rate"].append(
            round(sum(c.cache_hits for c in group) / n_turns, 3) if n_turns else None
        )
        out["calls_per_hour"].append(round(len(group) * 3600 / bucket_s, 1))
    return out


def _r(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)
