"""Per-turn call metrics: the record, the p50/p95 summary, the rich table, and the JSON files.

Every value comes from its source (framework metrics on ChatMessages, the agent's TurnLog,
the simulator's audio timeline); a value that was not measured is None -> null in JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

STAGES = ("eou_delay", "stt_delay", "llm_ttft", "tts_ttfb", "voice_to_voice")


class TurnMetrics(BaseModel):
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


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(turns: list[TurnMetrics]) -> dict[str, Any]:
    out: dict[str, Any] = {"turns": len(turns)}
    for stage in STAGES:
        vals = [v for t in turns if (v := getattr(t, stage)) is not None]
        out[f"{stage}_p50"] = percentile(vals, 50)
        out[f"{stage}_p95"] = percentile(vals, 95)
    out["cache_hits"] = sum(t.cache_hit for t in turns)
    tokens = [t.context_tokens for t in turns if t.context_tokens is not None]
    out["context_tokens_max"] = max(tokens) if tokens else None
    return out


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:.0f}"


def turn_table(turns: list[TurnMetrics], title: str = "Per-turn latency (ms)") -> Table:
    table = Table(title=title, min_width=100)
    for col in ("#", "caller", "eou", "stt", "llm ttft", "tts ttfb", "voice→voice", "cache", "ctx tok"):
        table.add_column(col, justify="left" if col == "caller" else "right")
    for t in turns:
        table.add_row(
            str(t.index),
            (t.user_text[:30] + "…") if len(t.user_text) > 31 else t.user_text,
            _fmt(t.eou_delay),
            _fmt(t.stt_delay),
            _fmt(t.llm_ttft),
            _fmt(t.tts_ttfb),
            _fmt(t.voice_to_voice),
            "hit" if t.cache_hit else "",
            "—" if t.context_tokens is None else str(t.context_tokens),
        )
    s = summarize(turns)
    for q in ("p50", "p95"):
        table.add_row(q, "", *(_fmt(s[f"{st}_{q}"]) for st in STAGES), "", "", style="bold")
    return table


def write_private(path: Path, text: str) -> None:
    """Transcripts and metrics hold caller PII: owner-only permissions, atomic replace."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_metrics(
    out_dir: Path, turns: list[TurnMetrics], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    doc = {"turns": [t.model_dump() for t in turns], "summary": summarize(turns), **(extra or {})}
    write_private(out_dir / "metrics.json", json.dumps(doc, indent=2))
    return doc


def print_table(turns: list[TurnMetrics], console: Console | None = None) -> None:
    (console or Console()).print(turn_table(turns))
