"""The call report's schema: what `transcript.json` and `metrics.json` hold, for every call.

The LiveKit worker and the simulator write the same two files through one writer
(`agent/call/report.py`); the cache's mining (`cache warm --from-calls`) and the dashboard read
them with the functions below. Scenario-facing fields are stable; `schema_version` says which
shape a file has (reports without it are version 1: the simulator's old `turns` list, or the
worker's `items` only, which `caller_questions` still understands).

A turn's optional `timeline` (`TurnTimeline`, added within version 2: older reports have none and
read as `timeline: None`) holds the absolute time of each stage of the turn, so the gaps between
them show where a slow turn spent its time (`TurnTimeline.gaps`, the call's `waterfall.png`).
`metrics.json`'s optional `line` (also within version 2) is the caller line's noise as the call
estimated it (`agent/call/line_noise.py`): `{"snr_db_estimate": dB or null, "frames": n}`, plus,
with the audio end-of-turn model, `audio_eou_checks` (ends put to it), `audio_eou_vetoes` (held
as unfinished) and, with `TurnTuning.sure_delay`, `audio_eou_sure` (ends taken at the short delay).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

SCHEMA_VERSION = 2
TRANSCRIPT = "transcript.json"
METRICS = "metrics.json"
WATERFALL = "waterfall.png"  # the per-turn timeline chart, beside metrics.json
# Per-turn latency stages, in the order a turn passes through them.
STAGES = ("eou_delay", "stt_delay", "llm_ttft", "tts_ttfb", "voice_to_voice")
# The per-turn timeline's stages, in the order a turn passes through them.
TIMELINE = (
    "caller_last_sample",
    "vad_end",
    "final_transcript",
    "reply_started",
    "cache_decision",
    "llm_first_token",
    "tts_first_frame",
    "agent_first_sample",
)
# What the turn waited for in the gap that ends at each stage (the waterfall's legend).
GAP_LABELS = {
    "vad_end": "VAD silence",
    "final_transcript": "STT",
    "reply_started": "end of turn",
    "cache_decision": "cache lookup",
    "llm_first_token": "LLM first token",
    "tts_first_frame": "TTS first audio",
    "agent_first_sample": "playout",
}


class Gap(BaseModel):
    """The time between two consecutive measured stages of a turn."""

    start: str  # the stage it starts at (a TIMELINE name)
    end: str  # the stage it ends at; GAP_LABELS[end] says what the turn waited for
    seconds: float


class TurnTimeline(BaseModel):
    """When each stage of one answered turn happened: absolute times in seconds on one clock
    (`time.time()` of the process that ran the call), None (null) when the stage did not happen
    or could not be seen (a cache hit has no LLM token; no cache, no cache decision).

    - caller_last_sample: the caller's last speech sample of the turn on the line.
    - vad_end: the session's VAD declared the end of speech (user state -> listening), after its
      minimum silence (livekit back-dates that event to its estimate of the last speech; the
      stage is the moment of the decision).
    - final_transcript: the turn's last final transcript arrived (before the agent acted on it).
    - reply_started: the agent began the reply (`llm_node` entered: the turn was committed, or a
      preemptive generation started on that transcript and was kept).
    - cache_decision: the cache lookup returned (hit, miss or bypass: `TurnMetrics.cache_outcome`).
    - llm_first_token: the LLM's first text (misses only).
    - tts_first_frame: the reply's first audio frame left the TTS stage (cached audio on a hit).
    - agent_first_sample: the reply's first audio sample on the line (what the caller hears).

    `clock` says where the two line times come from. "line" (the simulator): exact samples of the
    call's audio timeline, placed on the wall clock at the tick that played the agent's first
    sample, so `agent_first_sample - caller_last_sample` is the turn's `voice_to_voice` exactly.
    "agent" (the LiveKit worker, which sees no phone line): the VAD's estimate of when the caller
    stopped (the framework's `stopped_speaking_at`) and the room audio output's playback start;
    their difference is the framework's e2e latency, the worker's `voice_to_voice`.

    Times are kept as they happened, never moved to force an order: with the shipped batch STTs
    (whisper, OpenAI HTTP, the instant STT) each stage follows the previous one (`ordered()`), but
    a streaming STT may deliver the final transcript before the session's VAD calls the end of
    speech, and such a turn then shows it.
    """

    caller_last_sample: float | None = None
    vad_end: float | None = None
    final_transcript: float | None = None
    reply_started: float | None = None
    cache_decision: float | None = None
    llm_first_token: float | None = None
    tts_first_frame: float | None = None
    agent_first_sample: float | None = None
    clock: Literal["line", "agent"] = "line"

    def stages(self) -> list[tuple[str, float]]:
        """The measured stages, in TIMELINE order."""
        return [(name, v) for name in TIMELINE if (v := getattr(self, name)) is not None]

    def gaps(self) -> list[Gap]:
        """The time between each measured stage and the next measured one (a stage that did not
        happen is skipped: a hit's gap runs from the cache decision to the first TTS frame).
        Their sum is `span()` when both ends were measured."""
        st = self.stages()
        return [Gap(start=a, end=b, seconds=tb - ta) for (a, ta), (b, tb) in zip(st, st[1:], strict=False)]

    def span(self) -> float | None:
        """Caller's last sample -> agent's first sample (the turn's voice_to_voice), or None."""
        if self.caller_last_sample is None or self.agent_first_sample is None:
            return None
        return self.agent_first_sample - self.caller_last_sample

    def ordered(self) -> bool:
        """Every measured stage is at or after the previous measured one."""
        return all(g.seconds >= 0 for g in self.gaps())


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
    timeline: TurnTimeline | None = None  # absolute stage times (None: not recorded, older reports)


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


def turn_timeline(turn: dict[str, Any]) -> TurnTimeline | None:
    """The timeline of a turn read from metrics.json, None when the turn has none (reports
    written before timelines existed) or it is not a valid timeline."""
    raw = turn.get("timeline")
    if not isinstance(raw, dict):
        return None
    try:
        return TurnTimeline.model_validate(raw)
    except ValueError:
        return None
