"""Prometheus metrics for calls (workers, simulator, dashboard) and A/B experiment arms.

Labels are only tenant, profile and experiment arm (plus a closed `kind` set for a few
counters, and the engine name for provider fallbacks), each reduced to a short identifier:
caller text, numbers and tokens never appear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.call_report import STAGES, read_json

if TYPE_CHECKING:
    from livekit.agents import stt, tts

log = logging.getLogger("callcenter.observability")

BASE = ("tenant", "profile", "experiment")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LOOKUP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0)
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_label(value: object, default: str = "none") -> str:
    """A short identifier for a label value; anything odd becomes `other` (no free text)."""
    s = str(value).strip() if value is not None else ""
    if not s:
        return default
    if len(s) > 40 or _SAFE.search(s):
        return "other"
    return s


def error_kind(error: str | None) -> str:
    """`TimeoutError: ...` -> `TimeoutError`: the class only, never the message."""
    return safe_label((error or "").split(":", 1)[0], "unknown")


class Metrics:
    """One set of call metrics on its own registry (the process default: `METRICS`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stage = {
            s: Histogram(
                f"callcenter_{s}_seconds", f"{s} per turn", BASE, buckets=LATENCY_BUCKETS, registry=r
            )
            for s in STAGES
        }
        self.cache_lookup = Histogram(
            "callcenter_cache_lookup_seconds",
            "semantic cache lookup time",
            BASE,
            buckets=LOOKUP_BUCKETS,
            registry=r,
        )
        self.calls = Counter("callcenter_calls", "finished calls", BASE, registry=r)
        self.turns = Counter("callcenter_turns", "caller turns", BASE, registry=r)
        self.cache_hits = Counter("callcenter_cache_hits", "turns answered from the cache", BASE, registry=r)
        self.cache_misses = Counter(
            "callcenter_cache_misses", "cache lookups without a hit", BASE, registry=r
        )
        self.cache_bypasses = Counter(
            "callcenter_cache_bypasses", "turns not looked up (policy)", BASE, registry=r
        )
        self.interruptions = Counter(
            "callcenter_interruptions", "caller interruptions (kind=true|false)", (*BASE, "kind"), registry=r
        )
        self.transfers = Counter("callcenter_transfers", "transfers to a human", BASE, registry=r)
        self.errors = Counter("callcenter_errors", "call errors by kind", (*BASE, "kind"), registry=r)
        # multiprocess_mode: how the worker's endpoint adds up its job processes (livekit's
        # Prometheus server reads them all; ignored outside multiprocess mode)
        self.active_calls = Gauge(
            "callcenter_active_calls", "calls in progress", BASE, registry=r, multiprocess_mode="livesum"
        )
        self.context_tokens = Gauge(
            "callcenter_context_tokens",
            "LLM context size of the last turn",
            BASE,
            registry=r,
            multiprocess_mode="max",
        )
        # Per process, not per call: the engines are shared by the calls of a worker process.
        self.provider_fallbacks = Counter(
            "callcenter_provider_fallbacks",
            "an STT/TTS engine failed and its fallback adapter switched to the next one",
            ("kind", "provider"),
            registry=r,
        )
        self.provider_recoveries = Counter(
            "callcenter_provider_recoveries",
            "a failed STT/TTS engine answered again and serves first again",
            ("kind", "provider"),
            registry=r,
        )

    def text(self) -> bytes:
        return generate_latest(self.registry)

    @staticmethod
    def labels(tenant: str | None, profile: str | None, arm: str | None) -> dict[str, str]:
        return {"tenant": safe_label(tenant), "profile": safe_label(profile), "experiment": safe_label(arm)}

    def call_started(self, tenant: str | None, profile: str | None, arm: str | None = None) -> None:
        self.active_calls.labels(**self.labels(tenant, profile, arm)).inc()

    def call_ended(self, tenant: str | None, profile: str | None, arm: str | None = None) -> None:
        self.active_calls.labels(**self.labels(tenant, profile, arm)).dec()

    def observe_cache_lookup(self, seconds: float, tenant: str | None, profile: str | None,
                             arm: str | None = None) -> None:  # fmt: skip
        self.cache_lookup.labels(**self.labels(tenant, profile, arm)).observe(seconds)

    def provider_availability(self, kind: str, provider: str, available: bool) -> None:
        lab = {"kind": safe_label(kind), "provider": safe_label(provider)}
        (self.provider_recoveries if available else self.provider_fallbacks).labels(**lab).inc()

    def record_call(self, source: Path | str | Any, tenant: str | None = None, profile: str | None = None,
                    arm: str | None = None, *, cache_enabled: bool = True) -> CallReport:  # fmt: skip
        """Feed a finished call (its report directory or a `CallResult`) into the metrics."""
        rep = load_report(source)
        lab = self.labels(tenant or rep.tenant, profile or rep.profile, arm)
        series = (self.turns, self.cache_hits, self.cache_misses, self.cache_bypasses, self.transfers)
        for c in (*series, *self.stage.values(), self.cache_lookup):
            c.labels(**lab)  # every series exists (at 0) once a call was seen
        self.calls.labels(**lab).inc()
        tokens: int | None = None
        for t in rep.turns:
            self.turns.labels(**lab).inc()
            for s in STAGES:
                if _finite(v := t.get(s)):
                    self.stage[s].labels(**lab).observe(float(v))
            if _finite(ms := t.get("cache_lookup_ms")):
                self.cache_lookup.labels(**lab).observe(ms / 1000)
            outcome = str(t.get("cache_outcome") or "")
            if t.get("cache_hit"):
                self.cache_hits.labels(**lab).inc()
            elif outcome.startswith("bypass"):
                self.cache_bypasses.labels(**lab).inc()
            elif cache_enabled:
                self.cache_misses.labels(**lab).inc()
            if t.get("interrupted"):
                self.interruptions.labels(**lab, kind="true").inc()
            if isinstance(t.get("context_tokens"), int):
                tokens = t["context_tokens"]
        for ev in rep.events:
            kind = ev.get("type")
            if kind == "transfer":
                self.transfers.labels(**lab).inc()
            elif kind == "false_interruption":
                self.interruptions.labels(**lab, kind="false").inc()
        if tokens is not None:
            self.context_tokens.labels(**lab).set(tokens)
        if rep.error:
            self.errors.labels(**lab, kind=error_kind(rep.error)).inc()
        return rep


@dataclass
class CallReport:
    """What a finished call left behind, as plain data."""

    call_id: str
    turns: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)
    tenant: str | None = None
    profile: str | None = None
    scenario: str | None = None
    error: str | None = None


def _read_json(path: Path) -> dict[str, Any]:
    """A report file as a dict; {} for a symlink, a missing or unreadable file, or not an object."""
    if path.is_symlink() or path.parent.is_symlink():
        return {}
    return read_json(path)


def _finite(v: object) -> TypeGuard[float]:
    """A number a histogram may take (a NaN or infinity in a report is skipped, not observed)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _objects(value: object) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def load_report(source: Path | str | CallReport | Any) -> CallReport:
    """What a finished call left: from its report directory, a `CallReport`, or a `CallResult`."""
    if isinstance(source, CallReport):
        return source
    if isinstance(source, str | Path):
        d = Path(source)
        m, tr = _read_json(d / "metrics.json"), _read_json(d / "transcript.json")
        return CallReport(
            d.name, _objects(m.get("turns")), _objects(tr.get("events")),
            tr.get("tenant"), m.get("profile") or tr.get("profile"), m.get("scenario"),
            m.get("error") or tr.get("error"),
        )  # fmt: skip
    tr = getattr(source, "transcript", {}) or {}
    turns = [t.model_dump() if hasattr(t, "model_dump") else dict(t) for t in source.turns]
    return CallReport(
        Path(source.out_dir).name, turns, list(getattr(source, "events", []) or []),
        tr.get("tenant"), tr.get("profile"), tr.get("scenario"), getattr(source, "error", None),
    )  # fmt: skip


METRICS = Metrics()


def record_call(source: Path | str | Any, tenant: str | None = None, profile: str | None = None,
                arm: str | None = None) -> CallReport:  # fmt: skip
    return METRICS.record_call(source, tenant, profile, arm)


def call_started(tenant: str | None, profile: str | None, arm: str | None = None) -> None:
    METRICS.call_started(tenant, profile, arm)


def call_ended(tenant: str | None, profile: str | None, arm: str | None = None) -> None:
    METRICS.call_ended(tenant, profile, arm)


def provider_name(engine: stt.STT | tts.TTS) -> str:
    """A short, closed name for an engine: the livekit plugin's package (`openai`,
    `elevenlabs`; their `provider` is the endpoint's host:port), else its `provider`."""
    inner = getattr(engine, "wrapped_stt", None) or getattr(engine, "wrapped_tts", None)
    if inner is not None:  # the adapter wraps batch STTs in a StreamAdapter
        engine = inner
    parts = type(engine).__module__.split(".")
    if parts[:2] == ["livekit", "plugins"] and len(parts) > 2:
        return safe_label(parts[2])
    return safe_label(engine.provider)


def watch_fallbacks(
    adapter: stt.FallbackAdapter | tts.FallbackAdapter, metrics: Metrics | None = None
) -> None:
    """Count and log every switch of a livekit `FallbackAdapter` (call where it is built)."""
    from livekit.agents import stt  # here, not on top: the dashboard imports this module too

    kind = "stt" if isinstance(adapter, stt.FallbackAdapter) else "tts"

    def on_change(ev: stt.AvailabilityChangedEvent | tts.AvailabilityChangedEvent) -> None:
        engine = ev.stt if isinstance(ev, stt.AvailabilityChangedEvent) else ev.tts
        name = provider_name(engine)
        (metrics or METRICS).provider_availability(kind, name, ev.available)
        if ev.available:
            log.info("%s provider %s recovered; it serves first again", kind, name)
        else:
            log.warning("%s provider %s failed; switching to the next one", kind, name)

    adapter.on(f"{kind}_availability_changed", on_change)  # type: ignore[arg-type]  # one of two literals


# ---- A/B experiments -----------------------------------------------------------------------
@dataclass
class Experiment:
    name: str
    arms: dict[str, dict[str, Any]]
    weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.arms) < 2:
            raise ValueError(f"experiment '{self.name}' needs at least two arms")
        for a in self.arms:
            if safe_label(a) != a:
                raise ValueError(f"arm name '{a}' must be a short identifier")
        w = {a: float(self.weights.get(a, 1.0)) for a in self.arms}
        if any(v <= 0 for v in w.values()):
            raise ValueError("arm weights must be positive")
        self.weights = w

    def assign(self, call_id: str) -> str:
        """Stable arm for a call: sha256(name:call_id) mapped onto the weighted arms."""
        h = int.from_bytes(hashlib.sha256(f"{self.name}:{call_id}".encode()).digest()[:8], "big")
        x = h / 2**64 * sum(self.weights.values())
        for arm, w in sorted(self.weights.items()):
            if x < w:
                return arm
            x -= w
        return sorted(self.arms)[-1]

    def overrides(self, arm: str) -> dict[str, Any]:
        return dict(self.arms[arm])


def load_experiment(path: str | Path) -> Experiment:
    """YAML or JSON: {name, arms: {a: {cache_threshold: 0.15}, b: {...}}, weights?: {a: 1, b: 1}}."""
    p = Path(path)
    text = p.read_text()
    if p.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("arms"), dict):
        raise ValueError(f"{p}: expected a mapping with 'name' and 'arms'")
    arms = {str(k): dict(v or {}) for k, v in data["arms"].items()}
    return Experiment(str(data.get("name") or p.stem), arms, dict(data.get("weights") or {}))


def compare(samples: Mapping[str, Iterable[float]], alpha: float = 0.05, min_n: int = 5) -> dict[str, Any]:
    """Counts and p50/p95 per arm; `significant` when a two-sided Mann-Whitney U test between the
    first two arms gives p < alpha (and both have at least `min_n` samples)."""
    arms = {k: [float(v) for v in vals if v is not None] for k, vals in samples.items()}
    out: dict[str, Any] = {"arms": {}, "p_value": None, "significant": False}
    for k, v in arms.items():
        out["arms"][k] = {
            "n": len(v),
            "p50": float(np.percentile(v, 50)) if v else None,
            "p95": float(np.percentile(v, 95)) if v else None,
        }
    names = list(arms)[:2]
    if len(names) == 2 and all(len(arms[n]) >= min_n for n in names):
        from scipy.stats import mannwhitneyu

        a, b = arms[names[0]], arms[names[1]]
        if len(set(a) | set(b)) > 1:
            p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
            out["p_value"] = p
            out["significant"] = p < alpha
    return out
