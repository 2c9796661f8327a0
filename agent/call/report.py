"""The call report, written the same by the LiveKit worker and the simulator.

`write_report` turns what a call left behind (chat items, per-turn metrics, events) into
`transcript.json` and `metrics.json` (schema: `core/call_report.py`), owner-only, atomically,
and the per-turn timeline's chart `waterfall.png` (`waterfall.py`). `turn_table` is the per-turn
latency table `callcenter call` prints.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from livekit.agents import llm
from rich.table import Table

from agent.call.waterfall import WATERFALL, render
from core.call_report import (
    METRICS,
    SCHEMA_VERSION,
    STAGES,
    TRANSCRIPT,
    ReportHead,
    TurnMetrics,
    percentile,
    summarize,
)

__all__ = ["STAGES", "TurnMetrics", "percentile", "summarize", "turn_table", "write_private", "write_report"]
log = logging.getLogger("callcenter.report")


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


def write_private(path: Path, text: str | bytes) -> None:
    """Transcripts and metrics hold caller PII: owner-only permissions, atomic replace."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    os.replace(tmp, path)


def chat_items(messages: list[llm.ChatMessage]) -> list[dict[str, Any]]:
    return [
        {"role": m.role, "text": m.text_content, "interrupted": m.interrupted, "created_at": m.created_at}
        for m in messages
    ]


def write_report(
    out_dir: Path,
    head: ReportHead,
    *,
    messages: list[llm.ChatMessage],
    turns: list[TurnMetrics],
    events: list[dict[str, Any]],
    error: str | None,
    extra: dict[str, Any] | None = None,
    line: dict[str, Any] | None = None,
    greeting_delay: float | None = None,
) -> dict[str, Any]:
    """Write `transcript.json`, `metrics.json` and `waterfall.png` for one call; returns the
    transcript. The chart is drawn after both reports are written, and a chart that cannot be
    drawn is logged, never raised: the reports matter more.

    Args:
        out_dir: the call's directory (created owner-only).
        head: who and what the call was (tenant, profile, scenario or room...).
        messages: the user/assistant chat messages in order.
        turns: one row per caller turn.
        events: transfers, hang-ups, keypad presses, context folds... in order.
        error: why the call failed, or None.
        extra: more transcript fields (e.g. the context manager's counters).
        line: the caller line's estimated noise (`LineNoiseMeter.summary`), or None.
        greeting_delay: seconds from pick-up to the greeting's first sample on the line, or
            None (not measured: a LiveKit call has no line timeline).
    """
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    top = {"schema_version": SCHEMA_VERSION, **head.model_dump()}
    transcript = {
        **top,
        "items": chat_items(messages),
        "turns": [{"index": t.index, "user_text": t.user_text, "agent_text": t.agent_text} for t in turns],
        "events": events,
        **(extra or {}),
        "error": error,
    }
    write_private(out_dir / TRANSCRIPT, json.dumps(transcript, indent=2))
    doc = {
        **top,
        "turns": [t.model_dump() for t in turns],
        "summary": summarize(turns),
        "greeting_delay": greeting_delay,
        "line": line,
        "error": error,
    }
    write_private(out_dir / METRICS, json.dumps(doc, indent=2))
    try:
        write_private(out_dir / WATERFALL, render(turns, f"call {head.call_id}: per-turn timeline"))
    except Exception as e:  # noqa: BLE001 - a chart must never cost the call its report
        log.warning("could not draw %s for call %s: %s", WATERFALL, head.call_id, e)
    return transcript
