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
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import CloseEvent

from agent.call.agent import TurnLog
from agent.call.assemble import CallOptions, CallServices, build_call
from agent.call.retention import purge_now_and_then
from agent.call.session import TurnMode
from agent.providers import Providers, build_providers
from core.call_report import ReportHead, TurnMetrics
from core.settings import get_settings
from core.tenants import Tenant
from sip.behaviours import LiveKitCallControl
from sip.config import DEFAULT_AGENT_NAME, DIRECTION_ATTRIBUTE
from sip.telephony import (
    CallerInfo,
    IdlePolicy,
    amd_action,
    caller_info,
    dispatch_metadata,
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
    metrics_port: int | None = 9464  # Prometheus /metrics of this worker (None: off)
    metrics_dir: Path | None = None  # where job processes keep their metric files

    @classmethod
    def from_env(cls) -> WorkerConfig:
        env = os.environ
        return cls(
            profile=env.get("CALLCENTER_WORKER_PROFILE") or get_settings().profile,
            turn_mode="eot" if env.get("CALLCENTER_WORKER_TURN") == "eot" else "vad",
            max_calls=max(1, int(env.get("CALLCENTER_WORKER_MAX_CALLS", "2"))),
            calls_dir=Path(env.get("CALLCENTER_CALLS_DIR", "calls")),
            leave_voicemail=env.get("CALLCENTER_LEAVE_VOICEMAIL", "1") not in ("0", "false", "no"),
            metrics_port=_port(env.get("CALLCENTER_WORKER_METRICS_PORT", "9464")),
            metrics_dir=get_settings().data_dir / "worker-metrics",
        )


def _port(raw: str) -> int | None:
    """CALLCENTER_WORKER_METRICS_PORT: 1-65535, or 0 / empty for no metrics endpoint."""
    from core.errors import UserError

    try:
        port = int(raw or 0)
    except ValueError:
        raise UserError(f"setting CALLCENTER_WORKER_METRICS_PORT={raw!r}: not a port number") from None
    if not 0 <= port <= 65535:
        raise UserError(f"setting CALLCENTER_WORKER_METRICS_PORT={raw!r}: not a port number (0-65535)")
    return port or None


# ---------------------------------------------------------------------------- process hooks


def prewarm(proc: JobProcess) -> None:
    """Once per job process, before any call: load the models so the first call does not wait."""
    config = WorkerConfig.from_env()
    providers = build_providers(config.profile, get_settings())
    providers.prewarm()
    proc.userdata["config"] = config
    proc.userdata["providers"] = providers
    # the cache (embedder loaded, index made), the Celery client and the documents, per process
    proc.userdata["services"] = CallServices.open()


def load(server: AgentServer) -> float:
    """Share of the worker in use: calls in progress vs max_calls, or CPU, whichever is higher."""
    max_calls = WorkerConfig.from_env().max_calls
    try:
        jobs = len(server.active_jobs)
    except AttributeError:  # the server is not running yet (no process pool)
        jobs = 0
    # load_fnc runs in an executor thread, so sampling the CPU for 0.5 s does not block the loop.
    return min(1.0, max(jobs / max_calls, get_cpu_monitor().cpu_percent(0.5)))


def server_options(config: WorkerConfig | None = None) -> WorkerOptions:
    """The worker's options. Metrics: calls run in job processes, so livekit's Prometheus server
    (in the worker's main process) reads every process's metric files from `metrics_dir`
    (prometheus_client's multiprocess mode): fallbacks, cache lookups, per-stage latency."""
    config = config or WorkerConfig.from_env()
    metrics: dict[str, Any] = {}
    if config.metrics_port is not None:
        metrics = {
            "prometheus_port": config.metrics_port,
            "prometheus_multiproc_dir": str(config.metrics_dir),
        }
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
        **metrics,
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
    """One phone call: the assembled call (`agent/call/assemble.py`) on a LiveKit room's SIP
    leg, with outbound answering-machine handling and the report when the session closes."""

    def __init__(
        self,
        setup: CallSetup,
        providers: Providers,
        lkapi: api.LiveKitAPI,
        config: WorkerConfig,
        *,
        services: CallServices | None = None,
    ) -> None:
        self.setup, self.providers, self.config = setup, providers, config
        self.control = LiveKitCallControl(lkapi, setup.room, setup.identity)
        self.out_dir = config.calls_dir / _safe_dir(setup.room)
        self.call = build_call(
            setup.tenant,
            providers,
            self.control,
            services or CallServices(),
            out_dir=self.out_dir,
            options=CallOptions(turn_mode=config.turn_mode, idle=config.idle),
        )
        self.session, self.agent, self.phone = self.call.session, self.call.agent, self.call.phone
        self.turn_log = self.call.turn_log
        self.started_at = time.time()
        self.greeting: SpeechHandle | None = None
        self.session.on("close", self._on_close)

    async def start(self, room: rtc.Room | None) -> None:
        """Start on the room's SIP participant (room=None: the caller set session.input/output)."""
        await self.call.start(room, participant=self.setup.identity)
        if self.setup.direction == "outbound" and room is not None:
            await self._answering_machine()
        else:
            self.greeting = self.call.greet()

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
            self.greeting = self.call.greet()
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
        s = self.setup
        head = ReportHead(
            call_id=_safe_dir(s.room),
            tenant=s.tenant.name,
            profile=self.providers.name,
            direction=s.direction,
            room=s.room,
            sip_call_id=s.info.call_id,
            started_at=self.started_at,
        )
        messages = self.call.messages()
        self.call.write_report(head, turn_metrics(messages, self.turn_log), error=error, messages=messages)
        try:
            expired = purge_now_and_then(self.config.calls_dir, get_settings().call_retention_days)
        except OSError as e:  # the report above is written; a purge that fails waits for the next call
            log.error("retention: could not purge old call reports in %s: %s", self.config.calls_dir, e)
        else:
            if expired:
                log.info("retention: deleted %d call report(s) past the retention period", len(expired))

    async def aclose(self) -> None:
        await self.call.aclose()


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
            t.cache_outcome, t.cache_lookup_ms = gens[-1].cache_outcome, gens[-1].cache_lookup_ms
            if t.cache_hit:
                t.llm_ttft = None  # a hit never calls the LLM
    return turns


# ---------------------------------------------------------------------------- entrypoint


async def entrypoint(ctx: JobContext) -> None:
    config: WorkerConfig = ctx.proc.userdata.get("config") or WorkerConfig.from_env()
    providers: Providers | None = ctx.proc.userdata.get("providers")
    if providers is None:  # prewarm did not run (e.g. a custom executor)
        providers = build_providers(config.profile, get_settings())
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    participant = await ctx.wait_for_participant(kind=rtc.ParticipantKind.PARTICIPANT_KIND_SIP)
    setup = setup_call(dict(participant.attributes), participant.identity, ctx.room.name, ctx.job.metadata)
    ctx.log_context_fields = {"tenant": setup.tenant.name, "direction": setup.direction}
    services: CallServices | None = ctx.proc.userdata.get("services")
    if services is None:  # may start the embedded Redis: off the loop
        services = ctx.proc.userdata["services"] = await asyncio.to_thread(CallServices.open)
    call = PhoneCall(setup, providers, ctx.api, config, services=services)
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
