"""The call report's schema: what `transcript.json` and `metrics.json` hold, for every call.

The LiveKit worker and the simulator write the same two files through one writer
(`agent/call/report.py`); the cache's mining (`cache warm --from-calls`) and the dashboard read
them with the functions below. Scenario-facing fields are stable; `schema_version` says which
shape a file has (reports without it are version 1: the simulator's old `turns` list, or the
worker's `items` only, which `caller_questions` still understands).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

SCHEMA_VERSION = 2
TRANSCRIPT = "transcript.json"
METRICS = "metrics.json"
# Per-turn latency stages, in the order a turn passes through them.
STAGES = ("eou_delay", "stt_delay", "llm_ttft", "tts_ttfb", "voice_to_voice")


class TurnMetrics(BaseModel):
    """One caller turn: what was heard and answered, and how long each stage took (None: not
    measured, null in JSON)."""

    index: int
    user_text: str = ""
    agent_text: str = ""
    eou_delay: float | None = None
    stt_delay: float | None = None
    llm_ttft: float | None = None
    tts_ttfb: float | None = None
    voice_to_voice: float | None = None
    cache_hit: bool = False
    context_tokens: int | None = None
    interrupted: bool = False
    bargein_reaction: float | None = None  # barge-in turns: caller onset -> agent audio stops
    cache_outcome: str | None = None  # hit | miss | bypass (None: no cache in this call)
    cache_lookup_ms: float | None = None


class ReportHead(BaseModel):
    """Who and what the call was; the same keys head both files."""

    call_id: str
    tenant: str
    profile: str
    scenario: str | None = None  # simulated calls: the scenario's name
    direction: str = "inbound"
    room: str | None = None
    sip_call_id: str | None = None
    started_at: float | None = None


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile of `values`, None for no values."""
    return float(np.percentile(values, q)) if values else None


def summarize(turns: list[TurnMetrics]) -> dict[str, Any]:
    """p50/p95 of every stage over the measured turns, cache hits, the largest context."""
    out: dict[str, Any] = {"turns": len(turns)}
    for stage in STAGES:
        vals = [v for t in turns if (v := getattr(t, stage)) is not None]
        out[f"{stage}_p50"] = percentile(vals, 50)
        out[f"{stage}_p95"] = percentile(vals, 95)
    out["cache_hits"] = sum(t.cache_hit for t in turns)
    tokens = [t.context_tokens for t in turns if t.context_tokens is not None]
    out["context_tokens_max"] = max(tokens) if tokens else None
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A report file as a dict; {} when missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def caller_questions(transcript: dict[str, Any]) -> list[str]:
    """What the caller said, turn by turn, from a transcript of any schema version."""
    turns = transcript.get("turns")
    if isinstance(turns, list):
        texts = [t.get("user_text") for t in turns if isinstance(t, dict)]
    else:  # version 1 worker reports: the chat items only
        items = transcript.get("items")
        texts = [
            i.get("text") for i in (items if isinstance(items, list) else []) if isinstance(i, dict)
            if i.get("role") == "user"
        ]  # fmt: skip
    return [t.strip() for t in texts if isinstance(t, str) and t.strip()]
