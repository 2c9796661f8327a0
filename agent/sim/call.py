"""Runs one simulated phone call through the real `AgentSession` and writes its report.

Outputs in `out_dir`: call.wav (stereo: L = caller as the agent hears it, R = agent as the
caller hears it, one timeline), transcript.json, metrics.json. They are written even when the
call fails half-way, with whatever was measured until then.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from livekit.agents import llm
from rich.console import Console

from agent.call.agent import Generation
from agent.call.assemble import Call, CallOptions, CallServices, build_call
from agent.call.report import turn_table
from agent.call.timeline import SessionClock, build_timeline, generation_for
from agent.providers import Providers
from agent.sim.audio_io import TICK, TL_RATE, SimAudioInput, SimAudioOutput, to_frame
from agent.sim.caller import ScriptedCaller, Utterance
from agent.sim.caller_voice import synthesize_caller
from agent.sim.hold import HoldMusic
from agent.sim.line import LINE_RATE, LineModel
from agent.sim.scenario import Scenario
from core.call_report import ReportHead, TurnMetrics
from core.tenants import Tenant
from sip.behaviours import SIM_HUMAN_RING_S, SimCallControl, SimTransferOutcome

log = logging.getLogger("callcenter.sim")
MAX_CALL_S = 600
VOICE_THRESHOLD = 0.01  # -40 dBFS: the first agent sample above this is "the agent speaks"


@dataclass
class CallResult:
    turns: list[TurnMetrics]
    transcript: dict[str, Any]
    out_dir: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    call: Call | None = None  # the assembled call (what it ran with: `call.attached`)
    clock: SessionClock | None = None  # the session's timing events (the turns' timelines)
    greeting_delay: float | None = None  # pick-up to the greeting's first sample (s), None: none


class _Timeline:
    def __init__(self) -> None:
        self.caller_heard: list[np.ndarray] = []
        self.agent_clean: list[np.ndarray] = []
        self.wall: list[float] = []  # wall-clock time of each tick

    def tick_at(self, wall: float) -> int:
        return max(0, bisect.bisect_right(self.wall, wall) - 1)

    def line_clock(self, pin: int) -> Callable[[int], float] | None:
        """Sample index -> wall-clock time, placing the audio timeline on the wall clock at the
        tick that played sample `pin`: times of one turn pinned at one tick differ by exactly
        their sample distance (the clock's jitter between ticks stays out of the gaps). None when
        the call ended before that tick."""
        k = pin // TICK
        if k >= len(self.wall):
            return None
        base = self.wall[k] - k * TICK / TL_RATE
        return lambda sample: base + sample / TL_RATE

    def agent_audio(self) -> np.ndarray:
        return np.concatenate(self.agent_clean) if self.agent_clean else np.zeros(0, np.float32)

    def agent_stop_after(self, start: int, quiet_s: float = 0.2) -> int | None:
        """First sample >= start after which the agent stays silent for `quiet_s`."""
        a = self.agent_audio()
        quiet = int(quiet_s * TL_RATE)
        voiced = np.flatnonzero(np.abs(a[start:]) > VOICE_THRESHOLD)
        if not len(voiced):
            return start
        last = start
        for v in voiced:
            idx = start + int(v)
            if idx - last >= quiet:
                return last
            last = idx
        return last if len(a) - last >= quiet else None

    def first_agent_onset(self, start: int, stop: int | None) -> int | None:
        """First agent sample >= start (and < stop) that follows >= 100 ms of agent silence or
        `start` itself: the beginning of a reply, not the tail of an earlier one."""
        a = self.agent_audio()
        stop = len(a) if stop is None else min(stop, len(a))
        voiced = np.flatnonzero(np.abs(a[start:stop]) > VOICE_THRESHOLD)
        if not len(voiced):
            return None
        gap = TL_RATE // 10
        prev = None
        for v in voiced:
            idx = start + int(v)
            if prev is None or idx - prev > gap:
                if not np.any(np.abs(a[max(0, idx - gap) : idx]) > VOICE_THRESHOLD):
                    return idx
            prev = idx
        return None


class SimulatedCall:
    """The simulator's driver: the assembled call (`agent/call/assemble.py`) on a scripted
    caller, a line model and a 20 ms audio clock, with the exact audio timeline for the report."""

    def __init__(
        self,
        scenario: Scenario,
        tenant: Tenant,
        providers: Providers,
        out_dir: Path,
        *,
        services: CallServices | None = None,
        options: CallOptions | None = None,
        console: Console | None = None,
        greet: bool = True,
        transfer_outcome: SimTransferOutcome | None = None,
    ) -> None:
        self.scenario, self.tenant, self.providers, self.out_dir = scenario, tenant, providers, out_dir
        self.greet = greet
        self.console = console or Console(quiet=True)
        self.tl = _Timeline()
        self.events: list[dict[str, Any]] = []
        self.items: list[llm.ChatMessage] = []
        self.tick = 0
        # Phone behaviours on the simulated line; their events go straight into transcript.json.
        # A warm transfer rings the scenario's simulated human (else `transfer_outcome`) with
        # hold audio on the caller's channel meanwhile; a cold one ends as `transfer_outcome`.
        human = scenario.human
        self.hold = HoldMusic() if tenant.warm_transfer_to else None
        self.control = SimCallControl(
            transfer_outcome or "completed",
            events=self.events,
            clock=lambda: self.tick * TICK / TL_RATE,
            call_id=f"sim-{uuid.uuid4().hex[:12]}",
            hold=self.hold,
            human_ring_s=human.ring_s if human else SIM_HUMAN_RING_S,
            human_outcome=human.outcome if human else transfer_outcome,
        )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.call: Call = build_call(
            tenant, providers, self.control, services or CallServices(), out_dir=out_dir, options=options
        )
        self.phone, self.turn_log = self.call.phone, self.call.turn_log
        # the session's timing events for the per-turn timelines, from before the call starts
        self.clock = SessionClock()
        self.clock.attach(self.call.session)

    # ---- live output ---------------------------------------------------------------------
    def _on_say(self, u: Utterance) -> None:
        expect = getattr(self.providers.stt, "expect", None)
        if expect:  # instant STT: tell it what the caller is saying, and for how long
            expect(u.text, (u.end - u.start) / TL_RATE)
        self.console.print(f"[cyan]caller ▸[/] {u.text}")

    def _on_dtmf(self, digits: str, tick: int) -> None:
        self.phone.on_dtmf(digits)  # records the dtmf event; "0" -> transfer to a human
        self.console.print(f"[cyan]caller ▸[/] (presses {digits})")

    def _on_item(self, ev: Any) -> None:
        item = ev.item
        if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant"):
            self.items.append(item)
            if item.role == "assistant":
                mark = " [dim](interrupted)[/]" if item.interrupted else ""
                self.console.print(f"[green]agent  ▸[/] {item.text_content}{mark}")
            else:
                self.console.print(f"[dim]  heard ▸ {item.text_content}[/]")

    # ---- the call ------------------------------------------------------------------------
    async def run(self) -> CallResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        error: str | None = None
        caller = ScriptedCaller(self.scenario, on_dtmf=self._on_dtmf, on_say=self._on_say)
        self.caller = caller
        agent_in, agent_out = SimAudioInput(), SimAudioOutput()
        session = self.call.session
        session.input.audio = agent_in
        session.output.audio = agent_out
        session.on("conversation_item_added", self._on_item)
        uplink = LineModel(self.scenario.line, direction_seed=1)
        up = soxr.ResampleStream(LINE_RATE, TL_RATE, 1, dtype="float32", quality="LQ")
        echo = self.scenario.line.echo_db
        echo_gain = 10 ** (echo / 20) if echo is not None else 0.0
        echo_ticks = int(round(self.scenario.line.echo_delay_ms / 20))
        pending = np.zeros(0, np.float32)
        try:
            # Synthesize the caller's lines up front (cached): piper must not run inside the
            # 20 ms clock, where it would stall this call and every other call in the process.
            lines = [t.say for t in self.scenario.turns if t.say]
            await asyncio.to_thread(lambda: [synthesize_caller(text) for text in lines])
            await self.call.start()
            if self.greet:
                self.call.greet()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            while not caller.done and not self.phone.ended.is_set():
                delay = t0 + self.tick * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)  # let the session run even if we are behind
                self.tl.wall.append(time.time())
                clean = caller.next_frame(self.tick)
                if echo_gain and self.tick >= echo_ticks and self.tl.agent_clean:
                    back = self.tl.agent_clean[self.tick - echo_ticks]
                    clean = (
                        clean
                        + echo_gain * soxr.resample(back, TL_RATE, LINE_RATE, quality="LQ")[: len(clean)]
                    )
                pending = np.concatenate([pending, up.resample_chunk(uplink.process(clean))])
                if len(pending) < TICK:  # resampler warm-up: its first outputs are short
                    pending = np.concatenate([np.zeros(TICK - len(pending), np.float32), pending])
                heard, pending = pending[:TICK], pending[TICK:]
                agent_in.push(to_frame(heard))
                played = agent_out.tick(TICK)
                caller.activity.observe(self.tick, played)
                if self.hold is not None and self.hold.playing:
                    played = played + self.hold.tick(TICK)  # on hold: what the caller hears
                self.tl.caller_heard.append(heard)
                self.tl.agent_clean.append(played)
                self.tick += 1
                if self.tick > MAX_CALL_S * 50:
                    self.events.append({"type": "max_duration", "t": MAX_CALL_S})
                    break
            if not self.phone.ended.is_set():
                self.events.append({"type": "hangup", "by": "caller", "t": self.tick * TICK / TL_RATE})
        except Exception as e:  # a crash mid-call must still leave its recording and metrics
            log.exception("call failed")
            error = f"{type(e).__name__}: {e}"
        finally:
            agent_in.close()
            # hang-up: documents jobs revoked, summaries cancelled, cache writes done, session closed
            await self.call.aclose()
        # The report (downlink line model over the whole call, WAV, JSON) takes 0.1-0.25 s of CPU:
        # in a thread, so other calls sharing this event loop do not stall meanwhile.
        return await asyncio.to_thread(self._finish, caller, error)

    # ---- report --------------------------------------------------------------------------
    def _finish(self, caller: ScriptedCaller, error: str | None) -> CallResult:
        turns = self._turn_metrics(caller.utterances)
        greeting_delay = self._greeting_delay(caller.utterances)
        self._write_wav()
        head = ReportHead(
            call_id=self.out_dir.name,
            tenant=self.tenant.name,
            profile=self.providers.name,
            scenario=self.scenario.name,
        )
        transcript = self.call.write_report(
            head, turns, error=error, messages=self.items, greeting_delay=greeting_delay
        )
        return CallResult(
            turns, transcript, self.out_dir, self.events, error, self.call, self.clock, greeting_delay
        )

    def _greeting_delay(self, utts: list[Utterance]) -> float | None:
        """Seconds of silence the caller had after pick-up (the clock's first tick) before the
        greeting, if the agent spoke before the caller did."""
        if not self.greet:
            return None
        onset = self.tl.first_agent_onset(0, utts[0].start if utts else None)
        return None if onset is None else onset / TL_RATE

    def _write_wav(self) -> None:
        if not self.tl.caller_heard:
            return
        left = np.concatenate(self.tl.caller_heard)
        agent = self.tl.agent_audio()
        downlink = LineModel(self.scenario.line, direction_seed=2)
        right = soxr.resample(
            downlink.process_all(soxr.resample(agent, TL_RATE, LINE_RATE)), LINE_RATE, TL_RATE
        )
        n = min(len(left), len(right))
        stereo = np.stack([left[:n], right[:n]], axis=1)
        # Created owner-only (the caller's voice is PII), not chmod-ed after the fact.
        fd = os.open(self.out_dir / "call.wav", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            sf.write(f, stereo, TL_RATE, format="WAV", subtype="PCM_16")

    def _utterance_at(self, utts: list[Utterance], wall: float | None, slack_s: float = 0.0) -> int | None:
        if wall is None or not utts:
            return None
        pos = self.tl.tick_at(wall) * TICK + int(slack_s * TL_RATE)
        idx = None
        for u in utts:
            if u.start <= pos:
                idx = u.index
        return idx

    def _turn_metrics(self, utts: list[Utterance]) -> list[TurnMetrics]:
        turns = [TurnMetrics(index=u.index) for u in utts]
        users: dict[int, list[llm.ChatMessage]] = {}
        replies: dict[int, list[llm.ChatMessage]] = {}
        for m in self.items:
            mt = m.metrics or {}
            if m.role == "user":
                i = self._utterance_at(utts, mt.get("started_speaking_at") or m.created_at, slack_s=0.3)
                if i is not None:
                    users.setdefault(i, []).append(m)
            else:
                i = self._utterance_at(utts, mt.get("started_speaking_at") or m.created_at)
                if i is not None:
                    replies.setdefault(i, []).append(m)
        for t, u in zip(turns, utts, strict=True):
            nxt = utts[u.index + 1].start if u.index + 1 < len(utts) else None
            onset = self.tl.first_agent_onset(u.end, nxt)
            t.voice_to_voice = None if onset is None else (onset - u.end) / TL_RATE
            if u.barge_in:
                stop = self.tl.agent_stop_after(u.start)
                t.bargein_reaction = None if stop is None else (stop - u.start) / TL_RATE
            us = users.get(u.index, [])
            t.user_text = " ".join(m.text_content or "" for m in us).strip()
            if us:
                last = us[-1].metrics or {}
                t.eou_delay = last.get("end_of_turn_delay")
                t.stt_delay = last.get("transcription_delay")
            rs = replies.get(u.index, [])
            t.agent_text = " ".join(m.text_content or "" for m in rs).strip()
            t.interrupted = any(m.interrupted for m in rs)
            # The line times of this turn: pinned at the tick that played the agent's first
            # sample (so the timeline's span is voice_to_voice exactly), else at the caller's end.
            at = self.tl.line_clock(onset if onset is not None else u.end)
            agent_first = at(onset) if at is not None and onset is not None else None
            until = at(nxt) if at is not None and nxt is not None else None
            bound = agent_first if agent_first is not None else until
            gen = self._generation_for(t.user_text, us[-1].text_content if us else None, bound)
            if at is not None and us:  # a turn the agent heard
                mine = gen is not None and (bound is None or gen.started_at <= bound)
                t.timeline = build_timeline(
                    self.clock, gen if mine else None, caller_last_sample=at(u.end),
                    agent_first_sample=agent_first, until=until, kind="line",
                )  # fmt: skip
            if gen is not None:
                t.cache_hit = gen.cache_hit
                t.context_tokens = gen.context_tokens
                t.cache_outcome, t.cache_lookup_ms = gen.cache_outcome, gen.cache_lookup_ms
            if rs:
                first = rs[0].metrics or {}
                if not t.cache_hit:  # a hit never calls the LLM
                    t.llm_ttft = first.get("llm_node_ttft")
                t.tts_ttfb = first.get("tts_node_ttfb")
        return turns

    def _generation_for(
        self, user_text: str, last_user: str | None, before: float | None = None
    ) -> Generation | None:
        """The turn's generation: one for the last user message, started before the turn's
        reply reached the line (a later same question is another turn's), else any for it."""
        if not last_user:
            return None
        return generation_for(self.turn_log, last_user, before) or generation_for(self.turn_log, last_user)


def print_result(result: CallResult, console: Console) -> None:
    console.print(turn_table(result.turns))
    if result.greeting_delay is not None:
        console.print(f"greeting: first word {result.greeting_delay * 1000:.0f} ms after pick-up")
    console.print(f"[dim]wrote {result.out_dir}/call.wav, transcript.json, metrics.json[/]")
