"""The LiveKit agent worker: joins the rooms our SIP dispatch rules create and runs the same
`AgentSession` (create_session + CallAgent) as the simulator, with the phone behaviours attached.

Run: `callcenter worker start` (production: SIGTERM drains, i.e. waits for calls in progress up to
`drain_timeout`) or `callcenter worker dev` (debug logs, no drain). Also discoverable by the
LiveKit CLI / `python -m livekit.agents start agent/worker.py` through the module-level `server`.
Needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET.

Worker settings (env): CALLCENTER_WORKER_PROFILE (default: CALLCENTER_PROFILE; `instant` for
plumbing tests), CALLCENTER_WORKER_MAX_CALLS (calls per worker before it reports full, default 2),
CALLCENTER_CALLS_DIR (per-call reports, default ./calls), CALLCENTER_LEAVE_VOICEMAIL (outbound
calls answered by a voicemail box: leave a message, default 1; 0 = hang up),
CALLCENTER_CALL_RETENTION_DAYS (reports older than this are deleted after a later call, default 30).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from livekit import api, rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobProcess, WorkerOptions, llm
from livekit.agents.utils.hw import get_cpu_monitor
from livekit.agents.voice import SpeechHandle, room_io
from livekit.agents.voice.events import CloseEvent

from agent.call.agent import CallAgent, TurnLog
from agent.call.report import TurnMetrics, write_metrics, write_private
from agent.call.retention import purge_now_and_then
from agent.call.session import TurnMode, create_session
from agent.providers import Providers, build_providers
from core.settings import get_settings
from core.tenants import Tenant
from sip.behaviours import LiveKitCallControl, PhoneBehaviours
from sip.config import DEFAULT_AGENT_NAME, DIRECTION_ATTRIBUTE
from sip.telephony import (
    CallerInfo,
    IdlePolicy,
    amd_action,
    caller_info,
    dispatch_metadata,
    make_end_call_tool,
    tenant_for_call,
)

log = logging.getLogger("callcenter.worker")
# Full at max_calls jobs, or when the CPU is saturated (local models share the cores).
LOAD_THRESHOLD = 0.95


@dataclass(frozen=True)
class WorkerConfig:
    profile: str
    turn_mode: TurnMode = "vad"
    max_calls: int = 2
    calls_dir: Path = Path("calls")
    leave_voicemail: bool = True
    idle: IdlePolicy = field(default_factory=IdlePolicy)

    @classmethod
    def from_env(cls) -> WorkerConfig:
        env = os.environ
        return cls(
            profile=env.get("CALLCENTER_WORKER_PROFILE") or get_settings().profile,
            turn_mode="eot" if env.get("CALLCENTER_WORKER_TURN") == "eot" else "vad",
            max_calls=max(1, int(env.get("CALLCENTER_WORKER_MAX_CALLS", "2"))),
            calls_dir=Path(env.get("CALLCENTER_CALLS_DIR", "calls")),
            leave_voicemail=env.get("CALLCENTER_LEAVE_VOICEMAIL", "1") not in ("0", "false", "no"),
        )


# ---------------------------------------------------------------------------- process hooks


def prewarm(proc: JobProcess) -> None:
    """Once per job process, before any call: load the models so the first call does not wait."""
    config = WorkerConfig.from_env()
    providers = build_providers(config.profile, get_settings())
    providers.prewarm()
    proc.userdata["config"] = config
    proc.userdata["providers"] = providers


def load(server: AgentServer) -> float:
    """Share of the worker in use: calls in progress vs max_calls, or CPU, whichever is higher."""
    max_calls = WorkerConfig.from_env().max_calls
    try:
        jobs = len(server.active_jobs)
    except AttributeError:  # the server is not running yet (no process pool)
        jobs = 0
    # load_fnc runs in an executor thread, so sampling the CPU for 0.5 s does not block the loop.
    return min(1.0, max(jobs / max_calls, get_cpu_monitor().cpu_percent(0.5)))


def server_options() -> WorkerOptions:
    return WorkerOptions(
        entrypoint_fnc=entrypoint,
        prewarm_fnc=prewarm,
        load_fnc=load,
        load_threshold=LOAD_THRESHOLD,
        # Explicit dispatch: our dispatch rules and `sip dial` name this agent.
        agent_name=DEFAULT_AGENT_NAME,
        # On SIGTERM let a call in progress run to its maximum length before exiting.
        drain_timeout=int(IdlePolicy().max_call_s) + 60,
        # Whisper + the local LLM take longer than the default 10 s to load on 2 cores.
        initialize_process_timeout=120.0,
        job_memory_warn_mb=2500,
    )


# ---------------------------------------------------------------------------- one call


@dataclass(frozen=True)
class CallSetup:
    room: str
    identity: str
    info: CallerInfo
    tenant: Tenant
    direction: Literal["inbound", "outbound"]
    metadata: dict[str, Any]


def setup_call(attributes: dict[str, str], identity: str, room: str, job_metadata: str | None) -> CallSetup:
    """Who called whom: the SIP participant's attributes + the dispatch metadata -> tenant."""
    info = caller_info(attributes)
    meta = dispatch_metadata(job_metadata)
    outbound = meta.get("direction") == "outbound" or attributes.get(DIRECTION_ATTRIBUTE) == "outbound"
    # Outbound, the "dialed" number is our own caller id; the tenant `dial` stamped is authoritative.
    tenant = tenant_for_call(replace(info, dialed_number="") if outbound else info, job_metadata)
    return CallSetup(room, identity, info, tenant, "outbound" if outbound else "inbound", meta)


def _safe_dir(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name) or "room"


class PhoneCall:
    """The session, agent, phone behaviours and report of one call (not started yet)."""

    def __init__(
        self,
        setup: CallSetup,
        providers: Providers,
        lkapi: api.LiveKitAPI,
        config: WorkerConfig,
        *,
        cache: Any = None,
    ) -> None:
        self.setup, self.providers, self.config = setup, providers, config
        self.turn_log = TurnLog()
        self.session = create_session(providers, turn_mode=config.turn_mode)
        self.agent = CallAgent(setup.tenant, voice=providers.voice, cache=cache, turn_log=self.turn_log)
        self.control = LiveKitCallControl(lkapi, setup.room, setup.identity)
        # Only the cloud LLM calls tools; the local models end calls on a spoken goodbye.
        self.tools = providers.name == "cloud"
        self.phone = PhoneBehaviours(
            self.session, setup.tenant, self.control, idle=config.idle, end_on_goodbye=not self.tools
        )
        self.phone.attach()
        self.out_dir = config.calls_dir / _safe_dir(setup.room)
        self.started_at = time.time()
        self.greeting: SpeechHandle | None = None
        self.session.on("close", self._on_close)

    async def start(self, room: rtc.Room | None) -> None:
        """Start on the room's SIP participant (room=None: the caller set session.input/output)."""
        if room is not None:
            opts = room_io.RoomOptions(
                participant_identity=self.setup.identity,
                participant_kinds=[rtc.ParticipantKind.PARTICIPANT_KIND_SIP],
                close_on_disconnect=True,
                delete_room_on_close=True,  # drops the SIP leg and ends the job with the session
            )
            await self.session.start(self.agent, room=room, room_options=opts)
            room.on("sip_dtmf_received", lambda ev: self.phone.on_dtmf(ev.digit))
        else:
            await self.session.start(self.agent, record=False)
        if self.tools:
            await self.agent.update_tools([*self.agent.tools, make_end_call_tool()])
        if self.setup.direction == "outbound" and room is not None:
            await self._answering_machine()
        else:
            self.greeting = self.session.say(self.setup.tenant.greeting)

    async def _answering_machine(self) -> None:
        """Outbound: hold the greeting until livekit-agents' AMD says who picked up."""
        from livekit.agents.voice.amd import AMD

        category = "uncertain"
        try:
            # llm/stt None: classify with this session's own models (no LiveKit inference).
            async with AMD(
                self.session,
                llm=None,
                stt=None,
                participant_identity=self.setup.identity,
                suppress_compatibility_warning=True,
            ) as amd:
                category = (await amd.execute()).category.value
        except Exception as e:  # noqa: BLE001 - if detection fails, talk: a human may be there
            log.warning("answering machine detection failed: %s", e)
        action = amd_action(category, self.config.leave_voicemail)
        self.control.record("amd", category=category, action=action)
        t = self.setup.tenant
        if action == "talk":
            self.greeting = self.session.say(t.greeting)
        elif action == "voicemail":
            message = f"Hello, this is {t.business_name}. Please call us back when it suits you. Goodbye."
            await self.phone.hangup("voicemail_left", goodbye=message)
        else:
            await self.phone.hangup("answering_machine")

    # ---- report --------------------------------------------------------------------------
    def _on_close(self, ev: CloseEvent) -> None:
        # Every report says how the call ended: by our hang-up, a completed transfer, or this.
        ended = any(
            e["type"] == "hangup" or (e["type"] == "transfer" and e["ok"]) for e in self.control.events
        )
        if not ended:
            by = "agent" if ev.reason.value in ("user_initiated", "task_completed") else "caller"
            self.control.record("hangup", by=by, reason=ev.reason.value)
        try:
            self.write_report(error=str(ev.error) if ev.error else None)
        except OSError as e:
            log.error("could not write the call report to %s: %s", self.out_dir, e)

    def write_report(self, error: str | None = None) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        messages = [
            m
            for m in self.session.history.items
            if isinstance(m, llm.ChatMessage) and m.role in ("user", "assistant")
        ]
        s = self.setup
        head = {
            "room": s.room,
            "tenant": s.tenant.name,
            "direction": s.direction,
            "profile": self.providers.name,
        }
        transcript = {
            **head,
            "call_id": s.info.call_id,
            "started_at": self.started_at,
            "items": [
                {
                    "role": m.role,
                    "text": m.text_content,
                    "interrupted": m.interrupted,
                    "created_at": m.created_at,
                }
                for m in messages
            ],
            "events": self.control.events,
            "error": error,
        }
        write_private(self.out_dir / "transcript.json", json.dumps(transcript, indent=2))
        write_metrics(self.out_dir, turn_metrics(messages, self.turn_log), {**head, "error": error})
        try:
            expired = purge_now_and_then(self.config.calls_dir, get_settings().call_retention_days)
        except OSError as e:  # the report above is written; a purge that fails waits for the next call
            log.error("retention: could not purge old call reports in %s: %s", self.config.calls_dir, e)
        else:
            if expired:
                log.info("retention: deleted %d call report(s) past the retention period", len(expired))

    async def aclose(self) -> None:
        await self.phone.aclose()
        await self.agent.drain()


def turn_metrics(messages: list[llm.ChatMessage], turn_log: TurnLog) -> list[TurnMetrics]:
    """One row per caller turn from the framework's per-message metrics (missing -> None).

    voice_to_voice is the framework's e2e_latency (end of caller speech -> first agent audio
    at our side); the network legs of a real phone line are not visible from here.
    """
    turns: list[TurnMetrics] = []
    for m in messages:
        mt = m.metrics or {}
        if m.role == "user":
            turns.append(
                TurnMetrics(
                    index=len(turns),
                    user_text=m.text_content or "",
                    eou_delay=mt.get("end_of_turn_delay"),
                    stt_delay=mt.get("transcription_delay"),
                )
            )
            continue
        if not turns:  # the greeting precedes every caller turn
            continue
        t = turns[-1]
        if not t.agent_text:  # the first reply carries the latency
            t.llm_ttft = mt.get("llm_node_ttft")
            t.tts_ttfb = mt.get("tts_node_ttfb")
            t.voice_to_voice = mt.get("e2e_latency")
        t.agent_text = f"{t.agent_text} {m.text_content or ''}".strip()
        t.interrupted = t.interrupted or m.interrupted
    for t in turns:
        gens = [g for g in turn_log.generations if g.user_text.strip() == t.user_text.strip()]
        if gens:
            t.cache_hit, t.context_tokens = gens[-1].cache_hit, gens[-1].context_tokens
            if t.cache_hit:
                t.llm_ttft = None  # a hit never calls the LLM
    return turns


# ---------------------------------------------------------------------------- entrypoint


def _open_cache() -> Any:
    from agent.sim.run import open_cache

    try:
        return open_cache()
    except Exception as e:  # noqa: BLE001 - a call without the cache still works
        log.warning("semantic cache unavailable: %s", e)
        return None


async def entrypoint(ctx: JobContext) -> None:
    config: WorkerConfig = ctx.proc.userdata.get("config") or WorkerConfig.from_env()
    providers: Providers | None = ctx.proc.userdata.get("providers")
    if providers is None:  # prewarm did not run (e.g. a custom executor)
        providers = build_providers(config.profile, get_settings())
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    participant = await ctx.wait_for_participant(kind=rtc.ParticipantKind.PARTICIPANT_KIND_SIP)
    setup = setup_call(dict(participant.attributes), participant.identity, ctx.room.name, ctx.job.metadata)
    ctx.log_context_fields = {"tenant": setup.tenant.name, "direction": setup.direction}
    cache = await asyncio.to_thread(_open_cache)  # may start the embedded Redis: off the loop
    call = PhoneCall(setup, providers, ctx.api, config, cache=cache)
    ctx.add_shutdown_callback(call.aclose)
    await call.start(ctx.room)


def run_worker(mode: Literal["start", "dev"] = "start", log_level: str | None = None) -> None:
    """`callcenter worker start|dev`: what `python -m livekit.agents start [--dev]` runs."""
    from livekit.agents.cli import proto
    from livekit.agents.cli.cli import _run_worker

    dev = mode == "dev"
    args = proto.CliArgs(
        log_level=(log_level or ("DEBUG" if dev else "INFO")).upper(),
        log_format="colored" if dev else "json",
        dev=dev,
    )
    _run_worker(AgentServer.from_server_options(server_options()), args)


# For `lk agent ...` / `python -m livekit.agents start agent/worker.py` discovery.
server = AgentServer.from_server_options(server_options())
