"""Runs corpus cases through the real AgentSession (SimulatedCall) and scores them.

Calls are real-time (20 ms clock), so a run is wall-clock bound, not CPU bound: many calls
share one event loop concurrently. Caller audio and agent speech are synthesized up front, so
no call blocks the loop on synthesis while others are timing turns.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from agent.bench.turns import voice
from agent.bench.turns.score import AgentMsg, CallObs, CaseScore, Span, score_call, voiced_seconds
from agent.call.assemble import CallOptions
from agent.call.session import BENCH_CONFIGS, TurnTuning
from agent.sim.call import SimulatedCall
from agent.sim.caller_voice import synthesize_caller
from agent.sim.scenario import Scenario
from core.tenants import load_tenant

log = logging.getLogger("callcenter.turnbench")
RATE = 16000
CASE_TIMEOUT_S = 120.0


@dataclass
class CaseRun:
    config: str
    condition: str
    case: str
    score: CaseScore
    error: str | None
    seconds: float


def prewarm(cases: list[Scenario]) -> float:
    """Synthesize every caller fragment and the agent's lines once; returns the reply's voiced s."""
    for sc in cases:
        for t in sc.turns:
            if t.say is not None:
                for frag in t.fragments():
                    synthesize_caller(frag)
    tenant = load_tenant("acme")
    voice.prewarm([tenant.greeting, voice.LONG_REPLY, voice.SHORT_REPLY])
    pcm = np.frombuffer(voice.speech_pcm(voice.LONG_REPLY), np.int16).astype(np.float32) / 32768
    return voiced_seconds(soxr.resample(pcm, voice.RATE, RATE), 0, 10**9)


def observe(call: SimulatedCall, reply_voiced_s: float) -> CallObs:
    caller = call.caller
    events = [Span(u.label or "question", u.start, u.end) for u in caller.utterances]
    events += [Span(s.label or s.kind, s.start, s.end) for s in caller.sounds]
    events.sort(key=lambda e: e.start)
    msgs = []
    for m in call.items:
        if m.role != "assistant":
            continue
        wall = (m.metrics or {}).get("started_speaking_at")
        if wall is None:
            continue  # never played
        msgs.append(AgentMsg(call.tl.tick_at(wall) * (RATE // 50), bool(m.interrupted)))
    msgs.sort(key=lambda m: m.start)
    return CallObs(events, call.tl.agent_audio(), msgs, reply_voiced_s)


def _heard(call: SimulatedCall) -> str:
    """What the agent took from the caller: the committed turns and the transcripts the gate blanked."""
    said = [m.text_content or "" for m in call.items if m.role == "user"]
    stt = call.call.session.stt
    blanked = list(getattr(stt, "dropped", [])) + list(getattr(stt, "echoes", []))
    return f"heard {said!r}; blanked {blanked!r}"


async def run_case(
    sc: Scenario,
    config: str,
    condition: str,
    reply_voiced_s: float,
    keep: Path | None,
    tuning: TurnTuning | None = None,
    stt: voice.BenchSTT = "whisper",
) -> CaseRun:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        out = keep / config / sc.name if keep else Path(d)
        options = CallOptions(turn_mode=BENCH_CONFIGS[config], tuning=tuning or TurnTuning())
        call = SimulatedCall(sc, load_tenant(sc.tenant), voice.bench_providers(stt), out, options=options)
        try:  # a call normally lasts ~20 s; one that never ends must not stall the whole run
            res = await asyncio.wait_for(call.run(), CASE_TIMEOUT_S)
            error = res.error
        except TimeoutError:
            error = f"timed out after {CASE_TIMEOUT_S:.0f} s"
        score = score_call(observe(call, reply_voiced_s)) if error is None else CaseScore()
        if any("false interruption" in n or "missed barge-in" in n for n in score.notes):
            score.notes.append(_heard(call))
    return CaseRun(config, condition, sc.name, score, error, time.monotonic() - t0)


async def run_all(
    plan: list[tuple[str, str, Scenario]],  # (config, condition, scenario)
    reply_voiced_s: float,
    *,
    concurrency: int,
    keep: Path | None = None,
    progress: Callable[[CaseRun], None] | None = None,
    tuning: TurnTuning | None = None,
    stt: voice.BenchSTT = "whisper",
) -> list[CaseRun]:
    sem = asyncio.Semaphore(concurrency)

    async def one(cfg: str, cond: str, sc: Scenario) -> CaseRun:
        async with sem:
            r = await run_case(sc, cfg, cond, reply_voiced_s, keep, tuning, stt)
            if progress:
                progress(r)
            return r

    # Interleave configs so CPU contention hits every config alike.
    return await asyncio.gather(*(one(c, k, s) for c, k, s in plan))
