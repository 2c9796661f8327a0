"""One call, assembled once: what the LiveKit worker, the simulator and every benchmark run.

`build_call` makes the parts of one call from a tenant, its providers, a call-control adapter
(the LiveKit room's SIP leg or the simulator's line) and the services the process shares:

- the `AgentSession` with our turn handling (`session.py`, explicit `TurnTuning`);
- the `CallAgent` (`agent.py`): semantic cache first, the LLM on a miss, with the bounded
  context (`context.py`, Celery summaries) and the document desk (`documents.py`, MCP);
- the phone behaviours (`sip/behaviours.py`: keypad, transfer, idle, long turns, goodbye) and,
  once started, LLM recovery (`recovery.py`: an apology instead of dead air);
- the report (`report.py`): one writer and one schema for every call.

Drivers only add audio: the worker starts the call on a room, the simulator on its own audio
I/O (`session.input` / `session.output` set before `start`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents import NOT_GIVEN, AgentSession, llm
from livekit.agents.voice import SpeechHandle, room_io

from agent import observability
from agent.call.agent import CallAgent, TurnLog
from agent.call.audio_turn import load_smart_turn
from agent.call.context import ContextManager
from agent.call.denoise import DENOISE_INPUT_RATE, DenoisedAudioInput, DenoiseMode, make_denoiser
from agent.call.documents import DeskConfig, DocumentDesk, sandbox_docs
from agent.call.early_commit import EarlyCommit
from agent.call.early_stt import EarlySTTAdapter
from agent.call.echo import AgentWords
from agent.call.line_noise import LineNoiseMeter
from agent.call.prompt import greeting_for
from agent.call.recovery import LLMRecovery, attach_recovery
from agent.call.report import write_report
from agent.call.session import TurnMode, TurnTuning, create_session
from agent.call.timeline import SessionClock, agent_timelines
from agent.call.turn_detector import EchoGateVAD, TextTurnDetector, attach_audio_opinion
from agent.providers import Providers
from core.call_report import ReportHead, TurnMetrics
from core.errors import UserError
from core.settings import REPO_ROOT, Settings, get_settings
from core.tenants import Tenant
from sip.behaviours import CallControl, PhoneBehaviours
from sip.telephony import IdlePolicy

if TYPE_CHECKING:
    from agent.call.jobs import JobClient
    from cache.semantic import ResponseCache

log = logging.getLogger("callcenter.call")
CLOSE_TIMEOUT_S = 10.0
GREETING_AUDIO_WAIT_S = 3.0  # longest the prompt read waits for the greeting to be heard


@dataclass
class CallServices:
    """What the calls of one process share: the semantic cache, the Celery job client (context
    summaries) and where the documents are. Open once per process (worker prewarm, runner)."""

    cache: ResponseCache | None = None
    jobs: JobClient | None = None
    desk: DeskConfig | None = None
    keep_recent: int = 10
    max_messages: int = 30
    # simulated calls edit a per-call copy of the repo's documents, never the repo's own
    sandbox_docs: bool = False

    @classmethod
    def open(
        cls, settings: Settings | None = None, *, use_cache: bool = True, sandbox_docs: bool = False
    ) -> CallServices:
        """Connect to Redis (the embedded Redis Stack or `REDIS_URL`) for the cache and the job
        client; without Redis a call still runs (no cache, context bounded by its window alone).

        Args:
            settings: the process settings (default `get_settings()`).
            use_cache: False leaves the cache out (`callcenter call --no-cache`).
            sandbox_docs: give each call its own copy of the documents (the simulator).
        """
        s = settings or get_settings()
        url: str | None = None
        try:
            from cache.redis_server import ensure_redis

            url = ensure_redis(s)
        except UserError as e:
            log.warning("Redis unavailable; calls run without the cache and summaries: %s", e)
        cache = open_cache(url, s) if (url and use_cache and s.cache_enabled) else None
        prewarm_scope_all()
        if s.audio_eou:
            load_smart_turn()  # ~0.15 s, once per process: not on the first call's first turn
        jobs = None
        if url:
            from agent.call.jobs import JobClient

            jobs = JobClient(url)
        desk = None
        if s.documents:
            docs_dir = Path(os.environ.get("CALLCENTER_DOCS_DIR") or REPO_ROOT / "documents")
            desk = DeskConfig(url=s.docs_mcp_url) if s.docs_mcp_url else DeskConfig(docs_dir=docs_dir)
        return cls(cache, jobs, desk, s.context_keep_recent, s.context_max_messages, sandbox_docs)


def prewarm_scope_all() -> None:
    """Every tenant's scope index (agent/call/scope.py) before the first call, with or without a
    cache: built on a call's first question instead, it costs that caller ~0.1-2 s."""
    try:
        from agent.call.scope import prewarm
        from core.tenants import list_tenants, load_tenant

        for name in list_tenants():
            prewarm(load_tenant(name))
    except Exception as e:  # noqa: BLE001 - a cold scope step fails open to the LLM per turn
        log.warning("scope prewarm failed: %s", e)


def open_cache(url: str, settings: Settings) -> ResponseCache | None:
    """The semantic cache on `url`, its embedder loaded and index made before the first call,
    and every tenant's FAQ loaded when its knowledge version is new to the cache (auto-warm:
    one query per tenant when it is not), so a fresh install's first call is answered from the
    curated FAQ. Auto-warm runs here, before any call, and never in `prewarm_cache`: benchmarks
    and cold eval scenarios prewarm private caches that must stay empty."""
    try:
        from cache.semantic import ResponseCache
    except ImportError:
        return None
    cache = ResponseCache(url, threshold=settings.cache_threshold)
    prewarm_cache(cache)
    try:
        from agent.providers.stages import plan_stages
        from cache.admin import auto_warm_tenants
        from core.local_tts import SAMPLE_RATE, VOICE, synthesize_pcm16

        # Audio is pre-rendered when calls speak in the local voice; a cloud voice's audio is
        # kept from the first hit in a call instead (no paid synthesis at start-up).
        local = plan_stages(settings.profile, settings).tts == "local"
        auto_warm_tenants(
            url,
            namespace=cache.namespace,
            synthesize=(lambda text: (synthesize_pcm16(text), SAMPLE_RATE)) if local else None,
            voice=VOICE if local else None,
        )
    except Exception as e:  # noqa: BLE001 - calls run without the warm FAQ, never fail for it
        log.warning("cache auto-warm failed: %s", e)
    return cache


def prewarm_cache(cache: ResponseCache) -> None:
    """Load the embedding model and create the index before the call, not on its first turn."""
    try:
        cache.embedder.embed("warm up")
        cache._ensure_index_sync()
    except Exception as e:  # noqa: BLE001 - a cache that cannot warm up is bypassed per lookup
        log.warning("cache prewarm failed: %s", e)


@dataclass(frozen=True)
class CallOptions:
    """How the call takes turns and when it gives up; explicit, never a module global."""

    turn_mode: TurnMode = "vad"
    tuning: TurnTuning = field(default_factory=TurnTuning)
    idle: IdlePolicy = field(default_factory=IdlePolicy)
    bounded_context: bool = True  # False only for `bench context`'s unmanaged reference run
    denoise: DenoiseMode | None = None  # uplink noise suppression; None: CALLCENTER_DENOISE
    audio_eou: bool | None = None  # the audio end-of-turn veto; None: CALLCENTER_AUDIO_EOU


class Call:
    """The parts of one call (see the module docstring). Start it, let it run, close it, report."""

    def __init__(
        self,
        tenant: Tenant,
        providers: Providers,
        control: CallControl,
        services: CallServices,
        options: CallOptions,
        *,
        out_dir: Path,
        desk: DocumentDesk | None = None,
    ) -> None:
        self.tenant, self.providers, self.control = tenant, providers, control
        self.services, self.options, self.out_dir = services, options, out_dir
        # Only an LLM that calls tools reliably gets them (gpt-4o-mini); local models use rules.
        self.tools = providers.llm_tools
        self.turn_log = TurnLog()
        # one stateful noise suppressor per call, in front of the VAD and the STT (denoise.py)
        self.denoiser = make_denoiser(options.denoise or get_settings().denoise)
        self.session: AgentSession = create_session(
            providers, turn_mode=options.turn_mode, tuning=options.tuning
        )
        use_audio = get_settings().audio_eou if options.audio_eou is None else options.audio_eou
        self.audio_opinion = (
            attach_audio_opinion(self.session, options.tuning.audio_min_snr_db) if use_audio else None
        )
        self.context = (
            ContextManager(
                services.jobs, keep_recent=services.keep_recent, max_messages=services.max_messages
            )
            if options.bounded_context
            else None
        )
        self.desk: DocumentDesk | None = desk or self._desk()
        self.agent = CallAgent(
            tenant,
            voice=providers.voice,
            cache=services.cache,
            turn_log=self.turn_log,
            context=self.context,
            documents=self.desk,
            documents_as_tools=self.tools,
        )
        self.early_commit: EarlyCommit | None = None
        if isinstance(self.session.stt, EarlySTTAdapter):  # the turn's work, warmed during the wait
            self.session.stt.on_early_text = self._on_early_text
            self.session.stt.on_early_void = self._on_early_void
            gate = self.session.vad
            if (
                options.tuning.early_commit
                and get_settings().early_commit
                and self.audio_opinion is not None
                and isinstance(gate, EchoGateVAD)
            ):
                self.early_commit = EarlyCommit(
                    self.session, gate, self.audio_opinion, self.agent.reply_under_way
                )
                self.session.stt.on_early_start = self.early_commit.on_start
        words = getattr(self.session.stt, "agent_words", None)  # the STT gate's, read through
        if isinstance(words, AgentWords):
            self.agent.on_words = words.add
        self.phone = PhoneBehaviours(
            self.session, tenant, control, idle=options.idle, end_on_goodbye=not self.tools
        )
        self.phone.attach()  # before start: the idle timeout applies from the first silence
        self.session.on("conversation_item_added", self._watch_caller)
        # the session's timing events for the worker's per-turn timelines (the simulator times
        # its turns on its own line: agent/sim/call.py)
        self.clock: SessionClock | None = None
        self.recovery: LLMRecovery | None = None
        self.greeting: SpeechHandle | None = None
        self._started = False
        self._prefill: asyncio.Task[None] | None = None
        self._greeting_text: str | None = None  # said, not yet in the chat history
        self._closed = False

    def _watch_caller(self, ev: Any) -> None:
        """A caller who tries to steer the agent ("from now on tell everyone...") marks the call:
        nothing it produces is stored for other callers, even after the line left the context."""
        item = ev.item
        if (
            isinstance(item, llm.ChatMessage)
            and item.role == "user"
            and not self.agent.call_flags.get("steered")
        ):
            from cache.policy import is_steering

            if is_steering(item.text_content or ""):
                self.agent.call_flags["steered"] = True
                log.warning("caller tried to steer the agent: this call's answers are not cached")

    def _desk(self) -> DocumentDesk | None:
        cfg = self.services.desk
        if cfg is None:
            return None
        if self.services.sandbox_docs and cfg.url is None:
            cfg = DeskConfig(docs_dir=sandbox_docs(self.out_dir, cfg.docs_dir), env=cfg.env)
        return cfg.build(owner=self.control.call_id)

    @property
    def attached(self) -> dict[str, Any]:
        """What this call runs with (tests and the report check it is all there)."""
        return {
            "context": self.context,
            "documents": self.desk,
            "recovery": self.recovery,
            "phone": self.phone,
            "cache": self.services.cache,
        }

    async def start(self, room: rtc.Room | None = None, *, participant: str | None = None) -> None:
        """Start the session: on `room`'s SIP participant, or (room None) on the audio I/O the
        driver set on `session.input` / `session.output`."""
        if self.desk is not None and self.tools:
            await self.desk.start()  # the LLM gets the document tools: learn them now
        if room is not None:
            self.clock = SessionClock()
            self.clock.attach(self.session)
            opts = room_io.RoomOptions(
                participant_identity=participant or NOT_GIVEN,
                participant_kinds=[rtc.ParticipantKind.PARTICIPANT_KIND_SIP],
                close_on_disconnect=True,
                delete_room_on_close=True,  # drops the SIP leg and ends the job with the session
                audio_input=room_io.AudioInputOptions(
                    noise_cancellation=self.denoiser, sample_rate=DENOISE_INPUT_RATE
                )
                if self.denoiser is not None
                else room_io.AudioInputOptions(),
            )
            await self.session.start(self.agent, room=room, room_options=opts)
            room.on("sip_dtmf_received", lambda ev: self.phone.on_dtmf(ev.digit))
        else:
            source = self.session.input.audio
            if self.denoiser is not None and source is not None:
                self.session.input.audio = DenoisedAudioInput(source, self.denoiser)
            await self.session.start(self.agent, record=False)
        self._started = True
        observability.call_started(self.tenant.name, self.providers.name)
        self.recovery = attach_recovery(self.session, self.agent.call_flags)
        self._prefill = asyncio.create_task(self._prefill_once_speaking())
        if self.tools:
            # end_call and transfer_to_human act through the same phone behaviours as the rules
            await self.agent.update_tools([*self.agent.tools, *self.phone.tools()])

    def _on_early_text(self, text: str) -> None:
        """The early STT pass has the caller's words before the VAD ends the turn: start the
        turn's work (the agent's lookup and prompt read, the audio end-of-turn model)."""
        self.agent.on_early_text(text)
        if self.audio_opinion is not None and not self.agent.reply_under_way():
            self.audio_opinion.hear_ahead()
        if self.early_commit is not None:  # words and voice both finished: end the turn now
            self.early_commit.on_text(text)

    def _on_early_void(self) -> None:
        if self.early_commit is not None:
            self.early_commit.on_void()
        if self.audio_opinion is not None:
            self.audio_opinion.drop_ahead()

    async def _prefill_once_speaking(self) -> None:
        """No cold first turn: have a local LLM read the prompt (instructions, tenant facts) while
        the greeting plays (a no-op for remote LLMs). Not before its first audio: on two cores
        the ~1 s read slowed the greeting's synthesis to ~1.7 s of silence after pick-up."""
        speaking = asyncio.Event()

        def on_state(ev: Any) -> None:
            if ev.new_state == "speaking":
                speaking.set()

        self.session.on("agent_state_changed", on_state)
        try:
            if self.session.agent_state != "speaking":
                await asyncio.wait_for(speaking.wait(), GREETING_AUDIO_WAIT_S)
        except TimeoutError:
            pass  # no greeting (an outbound call waiting for AMD): read it now
        finally:
            self.session.off("agent_state_changed", on_state)
        if not self._closed:
            self.agent.prefill_prompt(self._greeting_text)

    def greet(self) -> SpeechHandle:
        self._greeting_text = greeting_for(self.tenant)  # + the keypad menu, if any
        self.greeting = self.session.say(self._greeting_text)
        return self.greeting

    async def aclose(self) -> None:
        """Hang-up: cancel the call's document jobs and summaries, wait for cache writes, close
        the session. Idempotent; never raises (the report must still be written)."""
        if self._closed:
            return
        self._closed = True
        if self._prefill is not None:
            self._prefill.cancel()
        if self.early_commit is not None:
            self.early_commit.on_void()
        steps: list[tuple[str, Any]] = []
        if self.desk is not None:
            steps.append(("documents", self.desk.aclose()))
        steps.append(("phone", self.phone.aclose()))
        if self.context is not None:
            steps.append(("context", self.context.aclose()))
        steps.append(("cache writes", self.agent.drain()))
        steps.append(("session", self.session.aclose()))
        for what, coro in steps:
            try:
                await asyncio.wait_for(coro, CLOSE_TIMEOUT_S)
            except Exception as e:  # noqa: BLE001 - closing must not hide the call's own result
                log.warning("closing %s: %s", what, e)
        if self.denoiser is not None:
            self.denoiser._close()  # room_io leaves a processor it was given open
        if self._started:
            observability.call_ended(self.tenant.name, self.providers.name)

    def messages(self) -> list[llm.ChatMessage]:
        return [
            m
            for m in self.session.history.items
            if isinstance(m, llm.ChatMessage) and m.role in ("user", "assistant")
        ]

    def write_report(
        self,
        head: ReportHead,
        turns: list[TurnMetrics],
        *,
        error: str | None = None,
        messages: list[llm.ChatMessage] | None = None,
        greeting_delay: float | None = None,
    ) -> dict[str, Any]:
        """Write transcript.json + metrics.json (+ waterfall.png) to `out_dir` and count the
        call in the metrics. A call started on a room (the worker) first gives each turn
        without a timeline one on the agent clock (`timeline.agent_timelines`: turn i is the
        i-th user message); the simulator times its turns on its line before calling this.

        Args:
            head: who and what the call was.
            turns: one row per caller turn.
            error: why the call failed, or None.
            messages: the chat messages (default: the session's history).
            greeting_delay: pick-up to the greeting's first sample on the line (simulator).

        Returns:
            The transcript written.
        """
        messages = self.messages() if messages is None else messages
        if self.clock is not None:
            agent_timelines(turns, messages, self.turn_log, self.clock)
        extra: dict[str, Any] = {}
        if self.context is not None:
            st = self.context.stats
            extra["context"] = {
                "summaries": st.summaries,
                "summary_failures": st.summary_failures,
                "pruned_messages": st.pruned_messages,
            }
        if self.recovery is not None:
            extra["llm_failures"] = self.recovery.failures
        if isinstance(self.session.stt, EarlySTTAdapter):  # early whisper passes: kept vs thrown away
            extra["stt_speculations"] = {
                "used": self.session.stt.used,
                "voided": self.session.stt.voided,
                "warmed": self.turn_log.early_warmups,
            }
        echoes = getattr(self.session.stt, "echoes", None)
        if isinstance(echoes, list):  # transcripts the gate blanked while the agent spoke
            blanked = getattr(self.session.stt, "dropped", [])
            extra["stt_blanked"] = {"backchannels": len(blanked), "echoes": len(echoes)}
        meter = getattr(self.session.vad, "meter", None)
        line = meter.summary() if isinstance(meter, LineNoiseMeter) else None
        if line is not None and self.audio_opinion is not None:
            line["audio_eou_checks"] = self.audio_opinion.checks
            line["audio_eou_vetoes"] = self.audio_opinion.vetoes
            det = self.session.turn_detection
            if isinstance(det, TextTurnDetector) and det.sure_delay is not None:
                line["audio_eou_sure"] = det.sure_commits  # ends taken at the short delay
            if self.early_commit is not None:  # ... of them, ended before the VAD's silence
                line["early_commits"] = self.early_commit.commits
        transcript = write_report(
            self.out_dir,
            head,
            messages=messages,
            turns=turns,
            events=self.control.events,
            error=error,
            extra=extra,
            line=line,
            greeting_delay=greeting_delay,
        )
        observability.record_call(
            observability.CallReport(
                head.call_id,
                [t.model_dump() for t in turns],
                list(self.control.events),
                head.tenant,
                head.profile,
                head.scenario,
                error,
            )
        )
        return transcript


def build_call(
    tenant: Tenant,
    providers: Providers,
    control: CallControl,
    services: CallServices,
    *,
    out_dir: Path,
    options: CallOptions | None = None,
    desk: DocumentDesk | None = None,
) -> Call:
    """Assemble one call (not started).

    Args:
        tenant: the business the caller dialed.
        providers: STT, LLM, TTS and VAD of this call (built once per process).
        control: what acts on the phone line (`LiveKitCallControl` or `SimCallControl`).
        services: the process's cache, job client and documents (`CallServices.open`).
        out_dir: where the call's report (and a simulated call's document copy) goes.
        options: turn handling and limits (default: the shipped values).
        desk: a document desk made elsewhere (tests with their own MCP server); by default the
            call builds its own from `services.desk`.

    Returns:
        The call; `await call.start(room)` (or set the session's audio I/O and `start()`).
    """
    return Call(tenant, providers, control, services, options or CallOptions(), out_dir=out_dir, desk=desk)
