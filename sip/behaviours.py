"""Phone behaviours of a running call, the same on a LiveKit SIP line and in the simulator.

`PhoneBehaviours` listens to a started (or about to start) `AgentSession` and does what a phone
agent must do besides answering: keypad "0" -> transfer to a human, keypad digit collection,
"are you still there?" then hang up on silence, a maximum call duration, and hanging up after
the caller says goodbye. Everything that touches the phone line goes through a `CallControl`:

* `LiveKitCallControl` - the real line: SIP REFER / room deletion via `sip.telephony`, warm
  transfers by livekit's WarmTransferTask (`sip/warm.py`).
* `SimCallControl` - the simulator: no network, a simulated human leg with a configurable outcome
  (answers / busy / no answer / rejects) and hold audio on the caller's channel while it rings.

Every action is appended to `control.events` ({"type", "t", ...}) so the call report/transcript
shows transfers and hang-ups next to the conversation.

Caller intents (talk to a human, end the call, repeat, slow down, start over, a menu choice)
have one action implementation here, whoever decided them:

* local profile (`end_on_goodbye=True`, tools off): the agent's intent step
  (`agent/call/intents.py`, run at the start of `CallAgent.llm_node`) calls `reply_for(action)`,
  which returns the words the agent says for that turn instead of the LLM's and arms what follows
  them (the transfer, the hang-up);
* cloud profile (`end_on_goodbye=False`): the LLM calls the `tools()` (`end_call`,
  `transfer_to_human`), which arm the same follow-ups and let the LLM word the reply.

What follows runs once the reply has been played: a transfer (`transfer_to_human`, a summary of
the call recorded in the `transfer` event; warm when the tenant has a `warm_transfer` block: the
human is briefed with the summary before the caller is bridged, and a human who does not answer
falls back to a cold transfer or a callback promise), or, after the agent's goodbye, a short grace period
(`GOODBYE_GRACE_S`) for the caller to hang up first, then the agent hangs up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, Protocol

from livekit import api
from livekit.agents import AgentSession, llm
from livekit.agents.voice.events import (
    AgentStateChangedEvent,
    CloseEvent,
    ConversationItemAddedEvent,
    UserStateChangedEvent,
)

from core.tenants import Tenant, WarmTransfer
from sip.telephony import (
    DtmfCollector,
    DtmfOutcome,
    IdlePolicy,
    TransferReason,
    TransferResult,
    end_call,
    transfer_cold,
)
from sip.warm import briefing_for

log = logging.getLogger("callcenter.telephony")

OPERATOR_DIGIT = "0"
TRANSFER_ANNOUNCEMENT = "Transferring you to a colleague, one moment please."
WARM_ANNOUNCEMENT = "I'm connecting you with a colleague now. Please hold while I tell them about your call."
COLD_FALLBACK = "I'll put you through to our team's line instead."
CALLBACK_PROMISE = "A colleague will call you back at this number as soon as they can."
SIM_HUMAN_RING_S = 2.0  # the simulated human's phone rings this long before the outcome
MAX_DURATION_GOODBYE = "We've reached the time limit for this call. Please call back anytime. Goodbye."
ANYTHING_ELSE = "Is there anything else I can help with?"
START_OVER = "Sure, let's start over. How can I help?"
GO_AHEAD = "Sure, go ahead."
NOTHING_TO_REPEAT = "Sorry, I haven't answered anything yet. How can I help?"
CLOSING = "Thanks for calling {business}. Goodbye!"
MENU_REPLY = "{choice}. How can I help you with {lower}?"
GOODBYE_GRACE_S = 1.5  # after the agent's goodbye, the caller's turn to hang up first
# The caller's speech counts as over the agent's when it began while the agent spoke or this
# soon after: the echo gate attenuates the uplink while the agent talks, so the VAD may only
# report the caller's "uh-huh" (or a "Bye." whisper made of it) once the agent has stopped.
OVERLAP_WINDOW_S = 0.6
SUMMARY_MAX_CHARS = 600
SimTransferOutcome = Literal["completed", "busy", "no-answer", "rejected"]
ReplyAction = Literal["transfer", "end_call", "ask_end", "repeat", "slow_down", "start_over", "continue"]
FactsFn = Callable[[Sequence[dict[str, str]]], list[str]]
_BY_SESSION: weakref.WeakKeyDictionary[AgentSession, PhoneBehaviours] = weakref.WeakKeyDictionary()


class CallControl(Protocol):
    """What the agent can do to the phone line itself."""

    events: list[dict[str, Any]]
    call_id: str  # the room of a phone call, a unique id for a simulated one

    def now(self) -> float:
        """Seconds since the call started (the `t` of every event)."""
        ...

    async def transfer(self, to_number: str | None, *, summary: str | None = None) -> TransferResult:
        """Hand the caller to `to_number`; `summary` (what the human should know) is recorded."""
        ...

    async def transfer_warm(
        self, tenant: Tenant, *, summary: str, briefing: str, session: AgentSession
    ) -> TransferResult:
        """Put the caller on hold, call the tenant's warm-transfer human, brief them with
        `briefing` and bridge the caller; the attempt is recorded as a `warm: true` transfer."""
        ...

    async def hangup(self, reason: str) -> None: ...


class _EventLog:
    def __init__(
        self,
        events: list[dict[str, Any]] | None = None,
        clock: Callable[[], float] | None = None,
        call_id: str | None = None,
    ) -> None:
        self.call_id = call_id or f"call-{uuid.uuid4().hex[:12]}"
        # Sharing the caller's list lets the simulator put these events straight into transcript.json.
        self.events: list[dict[str, Any]] = events if events is not None else []
        self._t0 = time.monotonic()
        self._clock = clock

    def now(self) -> float:
        return self._clock() if self._clock else time.monotonic() - self._t0

    def record(self, type_: str, **fields: Any) -> dict[str, Any]:
        ev = {"type": type_, "t": round(self.now(), 3), **fields}
        self.events.append(ev)
        return ev

    def _record_transfer(
        self,
        to_number: str | None,
        r: TransferResult,
        summary: str | None = None,
        *,
        warm: WarmTransfer | None = None,
        **extra: Any,
    ) -> None:
        fields: dict[str, Any] = {"summary": summary} if summary is not None else {}
        if warm is not None and not r.ok:
            fields["fallback"] = warm.fallback  # what PhoneBehaviours does next
        self.record(
            "transfer",
            to=to_number,
            ok=r.ok,
            reason=r.reason.value,
            sip_status=r.sip_status,
            warm=warm is not None,
            **fields,
            **extra,
        )


class LiveKitCallControl(_EventLog):
    """The real SIP leg: cold transfer by SIP REFER, hang-up by deleting the room."""

    def __init__(
        self,
        lkapi: api.LiveKitAPI,
        room_name: str,
        participant_identity: str,
        *,
        events: list[dict[str, Any]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(events, clock, call_id=room_name)
        self.lkapi, self.room_name, self.identity = lkapi, room_name, participant_identity

    async def transfer(self, to_number: str | None, *, summary: str | None = None) -> TransferResult:
        # A cold transfer (SIP REFER): the summary is in the call's report for the human's desk.
        # livekit's WarmTransferTask (brief the human first) needs an outbound trunk and a media
        # connection to the LiveKit server; see the README's Telephony section.
        result = await transfer_cold(self.lkapi, self.room_name, self.identity, to_number)
        self._record_transfer(to_number, result, summary)
        return result

    async def transfer_warm(
        self, tenant: Tenant, *, summary: str, briefing: str, session: AgentSession
    ) -> TransferResult:
        # livekit's WarmTransferTask: hold audio, the human dialed on the outbound trunk into a
        # side room, briefed, moved into the caller's room (sip/warm.py)
        from livekit.agents.beta.workflows import WarmTransferResult

        from sip.warm import BriefedWarmTransfer, keep_room_after_close, run_task, warm_result

        held_at = self.now()
        extra: dict[str, Any] = {}
        try:
            task = BriefedWarmTransfer(tenant, briefing)
        except ValueError as e:  # no outbound trunk anywhere: the operator's to fix
            result = TransferResult(False, TransferReason.NOT_CONFIGURED, detail=str(e))
        else:
            outcome: WarmTransferResult | Exception
            try:
                outcome = await run_task(session, task)
            except Exception as e:  # noqa: BLE001 - the task's ToolError says the human was not reached
                outcome = e
            result = warm_result(task, outcome)
            # the caller was on hold (the task's hold audio) while the human was dialed and briefed
            extra["hold_s"] = round(self.now() - held_at, 3)
            if result.ok:
                extra["briefing"] = briefing
                keep_room_after_close(session)  # the caller and the human talk in our room now
        self._record_transfer(tenant.warm_transfer_to, result, summary, warm=tenant.warm_transfer, **extra)
        return result

    async def hangup(self, reason: str) -> None:
        try:
            deleted = await end_call(self.lkapi, self.room_name)
        except Exception as e:  # noqa: BLE001 - the session still ends; the report says why
            log.warning("hang-up failed: %s", e)
            self.record("hangup", by="agent", reason=reason, error=str(e))
            return
        self.record("hangup", by="agent", reason=reason, room_deleted=deleted)


_SIM_RESULTS: dict[str, TransferResult] = {
    "completed": TransferResult(True, TransferReason.COMPLETED, 200, "sim"),
    "busy": TransferResult(False, TransferReason.BUSY, 486, "486 Busy Here"),
    "no-answer": TransferResult(False, TransferReason.NO_ANSWER, 480, "480 Temporarily Unavailable"),
    "rejected": TransferResult(False, TransferReason.REJECTED, 603, "603 Decline"),
}


class HoldPlayer(Protocol):
    """Plays hold audio into the caller's channel (the simulator's downlink)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class SimCallControl(_EventLog):
    """The simulator's line: typed transfer results without a network. A warm transfer rings
    the simulated human for `human_ring_s` (hold audio on `hold`, the caller's speech not
    heard, as WarmTransferTask does), then answers, is busy, rejects or never answers
    (`human_outcome`, default `transfer_outcome`); an answering human gets the briefing
    (recorded in the event). Cold transfers (SIP REFER) end as `transfer_outcome`."""

    def __init__(
        self,
        transfer_outcome: SimTransferOutcome = "completed",
        *,
        events: list[dict[str, Any]] | None = None,
        clock: Callable[[], float] | None = None,
        call_id: str | None = None,
        hold: HoldPlayer | None = None,
        human_ring_s: float = SIM_HUMAN_RING_S,
        human_outcome: SimTransferOutcome | None = None,
    ) -> None:
        super().__init__(events, clock, call_id=call_id)
        human_outcome = human_outcome or transfer_outcome
        for outcome in (transfer_outcome, human_outcome):
            if outcome not in _SIM_RESULTS:
                raise ValueError(f"transfer_outcome must be one of {', '.join(_SIM_RESULTS)}")
        self.transfer_outcome, self.human_outcome = transfer_outcome, human_outcome
        self.hold, self.human_ring_s = hold, human_ring_s
        self.hung_up = False

    async def transfer(self, to_number: str | None, *, summary: str | None = None) -> TransferResult:
        result = (
            _SIM_RESULTS[self.transfer_outcome]
            if to_number
            else TransferResult(False, TransferReason.NOT_CONFIGURED, detail="no transfer number")
        )
        self._record_transfer(to_number, result, summary)
        return result

    async def transfer_warm(
        self, tenant: Tenant, *, summary: str, briefing: str, session: AgentSession
    ) -> TransferResult:
        to, cfg = tenant.warm_transfer_to, tenant.warm_transfer
        assert cfg is not None
        ring_s = min(self.human_ring_s, cfg.ringing_timeout_s)
        audio_in = session.input
        was_enabled = audio_in.audio_enabled
        held_at = self.now()
        if audio_in.audio is not None:
            audio_in.set_audio_enabled(False)
        if self.hold is not None:
            self.hold.start()
        try:
            # the human's phone rings and the caller is on hold, on the call's own clock (the
            # simulator's line time, which falls behind the wall clock when the CPU is busy)
            backstop = time.monotonic() + 5 * ring_s + 10  # the line stopped (caller gone)
            while self.now() - held_at < ring_s and time.monotonic() < backstop:
                await asyncio.sleep(0.02)
        finally:
            if self.hold is not None:
                self.hold.stop()
            if audio_in.audio is not None:
                audio_in.set_audio_enabled(was_enabled)
        result = (
            _SIM_RESULTS[self.human_outcome]
            if to
            else TransferResult(False, TransferReason.NOT_CONFIGURED, detail="no transfer number")
        )
        extra: dict[str, Any] = {"hold_s": round(self.now() - held_at, 3)}
        if result.ok:
            extra["briefing"] = briefing  # what the human heard before the caller was bridged
        self._record_transfer(to, result, summary, warm=cfg, **extra)
        return result

    async def hangup(self, reason: str) -> None:
        self.hung_up = True
        self.record("hangup", by="agent", reason=reason)


class PhoneBehaviours:
    """Keypad, menu, transfer, idle, long-turn, max-duration and caller-intent actions for one call.

    Call `attach()` before `session.start()` so the idle timeout applies from the first
    silence; feed keypad digits with `on_dtmf` (room `sip_dtmf_received` or the simulator).
    `ended` is set when the session closed (hang-up, transfer, caller gone).
    """

    def __init__(
        self,
        session: AgentSession,
        tenant: Tenant,
        control: CallControl,
        *,
        idle: IdlePolicy | None = None,
        hangup_after_prompt_s: float | None = None,
        end_on_goodbye: bool = True,
        goodbye_grace_s: float = GOODBYE_GRACE_S,
    ) -> None:
        self.session, self.tenant, self.control = session, tenant, control
        self.idle = idle or IdlePolicy()
        # After "are you still there?" the framework does not report "away" again (the user
        # state stays away while only the agent talks), so the second timeout is ours.
        self.hangup_after_prompt_s = hangup_after_prompt_s or self.idle.away_after_s
        # True: caller intents are decided from the transcript (the agent's intent step, local
        # profile). False: the LLM decides them with `tools()` (cloud profile).
        self.voice_intents = end_on_goodbye
        self.goodbye_grace_s = goodbye_grace_s
        # Facts the caller gave, for the transfer summary (set by the agent layer: the context's
        # deterministic extractor; sip/ cannot import it).
        self.extract_facts: FactsFn | None = None
        self.ended = asyncio.Event()
        self.last_transfer: TransferResult | None = None
        self._prompts = 0
        self._ending = False
        self._transferring = False
        self._armed: Literal["transfer", "hangup"] | None = None
        self._armed_via = "voice"
        self._own_replies: set[str] = set()  # words the behaviours said (never "the last answer")
        self._last_answer: str | None = None
        self._last_agent_text = ""
        self._agent_was_speaking = False  # when the caller's current turn began
        self._agent_stopped_at = float("-inf")  # monotonic time the agent last stopped speaking
        self._collector: DtmfCollector | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._talking = False  # the caller's current turn is running (see _on_user_state)

    @staticmethod
    def of(session: AgentSession) -> PhoneBehaviours | None:
        """The behaviours attached to `session` (the agent's intent step acts through them)."""
        return _BY_SESSION.get(session)

    # ---- wiring --------------------------------------------------------------------------
    def attach(self) -> None:
        _BY_SESSION[self.session] = self
        # AgentSession raises "away" after this much silence from both sides.
        self.session.options.user_away_timeout = self.idle.away_after_s
        self.session.on("user_state_changed", self._on_user_state)
        self.session.on("agent_state_changed", self._on_agent_state)
        self.session.on("conversation_item_added", self._on_item)
        self.session.on("close", self._on_close)
        if self.idle.max_call_s:
            self._timer("max_duration", self.idle.max_call_s, self._on_max_duration)

    def _record(self, type_: str, **fields: Any) -> None:
        self.control.events.append({"type": type_, "t": round(self.control.now(), 3), **fields})

    def record(self, type_: str, **fields: Any) -> None:
        """Add an event of the agent layer (e.g. `speculation_dropped`) to the call's events."""
        self._record(type_, **fields)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _timer(self, name: str, delay: float, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self._cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, lambda: self._spawn(fn()))

    def _cancel(self, name: str) -> None:
        if (h := self._timers.pop(name, None)) is not None:
            h.cancel()

    def _interrupt(self) -> None:
        try:
            self.session.interrupt()
        except RuntimeError:  # not running, or the current speech is not interruptible
            pass

    async def _say(self, text: str, *, interruptible: bool = True) -> None:
        """Say and wait until it has been played (or cut off). No-op once the session closes."""
        if self.ended.is_set():
            return
        self._own_replies.add(text)
        try:
            await self.session.say(text, allow_interruptions=interruptible)
        except RuntimeError as e:  # session closing under us (caller hung up)
            log.debug("say skipped: %s", e)

    # ---- keypad --------------------------------------------------------------------------
    def on_dtmf(self, digits: str) -> None:
        """One or more keypad presses (sync: called from room events and the simulator's clock)."""
        if self.ended.is_set():
            return
        # A key press is caller activity (RoomIO does this itself for its linked participant).
        self.session.reset_away_timer()
        if self._collector is None:
            # Outside digit collection the keys are menu choices; record them as pressed.
            self._record("dtmf", digits=digits)
            if digits[:1] in self.tenant.menu:
                self._spawn(self._menu_by_keypad(digits[:1]))
            elif digits.startswith(OPERATOR_DIGIT):
                self._spawn(self.transfer_to_human())
            return
        # Collected digits may be an account number: keep them out of the event log.
        self._record("dtmf", digits="*" * len(digits), collecting=True)
        for d in digits:
            self._collector.feed(d)

    async def collect_digits(
        self, prompt: str | None, *, max_digits: int | None = None, timeout_s: float = 8.0
    ) -> DtmfOutcome:
        """Ask for a keypad entry (`#` ends, `*` clears) and wait for it; "0" is a digit here."""
        self._collector = DtmfCollector(max_digits=max_digits, timeout_s=timeout_s, operator_digit=None)
        try:
            if prompt:
                # Not awaited: callers often start typing while the prompt is still playing.
                self.session.say(prompt)
            out = await self._collector.result()
            self._record("dtmf_collected", kind=out.kind, length=len(out.digits))
            return out
        finally:
            self._collector = None

    # ---- keypad menu (tenant YAML `menu`) ------------------------------------------------
    def menu_reply(self, key: str, via: Literal["dtmf", "voice"]) -> str | None:
        """Record the menu choice `key`; the words to say for it, or None for "human" (the caller
        is routed to the transfer: `reply_for("transfer")` / `transfer_to_human()`)."""
        choice = self.tenant.menu[key]
        self._record("menu", key=key, choice=choice, via=via)
        if choice.strip().lower() == "human":
            return None
        name = choice.replace("_", " ").replace("-", " ").strip()
        return MENU_REPLY.format(choice=name[:1].upper() + name[1:], lower=name.lower())

    async def _menu_by_keypad(self, key: str) -> None:
        text = self.menu_reply(key, "dtmf")
        if text is None:
            await self.transfer_to_human(via="menu")
            return
        self._interrupt()
        await self._say(text)

    # ---- caller intents: one action implementation for every profile ----------------------
    def turn_facts(self) -> tuple[bool, bool]:
        """(the agent was speaking when the caller's turn began, the agent's last words asked
        "anything else?"): what the intent step needs to know besides the words."""
        was_speaking, self._agent_was_speaking = self._agent_was_speaking, False
        return was_speaking, self._last_agent_text.strip() == ANYTHING_ELSE

    @property
    def last_agent_text(self) -> str:
        """The words the agent said last (the intent step reads an answer to its own question)."""
        return self._last_agent_text

    def reply_for(self, action: ReplyAction, *, via: str = "voice") -> str | None:
        """The words the agent says this turn for `action`, and what follows once they have been
        played (armed here). None: nothing to do (already transferring or ending)."""
        if self._ending or self._transferring:
            return None
        if action == "transfer" and not self._can_transfer:
            # nobody to hand over to: say so at once instead of announcing a transfer that fails
            text = TransferResult(False, TransferReason.NOT_CONFIGURED).caller_message()
        elif action == "transfer":
            self._arm("transfer", via)
            text = self._announcement
        elif action == "end_call":
            self._arm("hangup", via)
            text = CLOSING.format(business=self.tenant.business_name)
        elif action == "ask_end":
            text = ANYTHING_ELSE
        elif action == "repeat":
            text = self._last_answer or NOTHING_TO_REPEAT
        elif action == "slow_down":
            # hibari has no speaking-rate control: the same answer in shorter sentences (the TTS
            # pauses between sentences), which is all that is honestly possible here.
            text = f"Sure. {shorter_sentences(self._last_answer)}" if self._last_answer else NOTHING_TO_REPEAT
        elif action == "start_over":
            text = START_OVER
        else:  # "continue": the caller has another question after "anything else?"
            text = GO_AHEAD
        if action != "repeat":  # a repeated answer is still the answer
            self._own_replies.add(text)
        self._record("intent", action=action, via=via)
        return text

    def _arm(self, what: Literal["transfer", "hangup"], via: str) -> None:
        self._armed, self._armed_via = what, via

    def tools(self) -> list[llm.FunctionTool]:
        """Tools for a tool-calling LLM (cloud profile) that act through the same actions as the
        local profile's intent step: `end_call` (livekit's `EndCallTool` description) and
        `transfer_to_human`. They arm the follow-up; the LLM words the reply."""
        from livekit.agents.beta.tools.end_call import END_CALL_DESCRIPTION

        async def end_call() -> str:
            self._arm("hangup", "tool")
            self._record("intent", action="end_call", via="tool")
            return "Say a short, polite goodbye. The call ends after it."

        async def transfer_to_human() -> str:
            """Transfer the caller to a human colleague. Call when the caller asks for a person,
            an agent, a representative or a manager."""
            if not self._can_transfer:
                return "No colleague can take calls on this line: tell the caller and keep helping."
            self._arm("transfer", "tool")
            self._record("intent", action="transfer", via="tool")
            return f"Tell the caller exactly: {self._announcement}"

        return [
            llm.function_tool(end_call, name="end_call", description=END_CALL_DESCRIPTION),
            llm.function_tool(transfer_to_human, name="transfer_to_human"),
        ]

    async def _after_reply(self, interrupted: bool) -> None:
        armed, self._armed = self._armed, None
        if armed == "transfer":
            await self.transfer_to_human(announce=False, via=self._armed_via)
        elif armed == "hangup" and not interrupted:
            # The agent said goodbye: the caller may hang up first; then we do.
            self._timer("goodbye_grace", self.goodbye_grace_s, self._hangup_after_goodbye)

    async def _hangup_after_goodbye(self) -> None:
        await self.hangup("caller_goodbye")

    def call_summary(self, via: str) -> str:
        """What the human taking over should know, from the chat history (deterministic): who,
        what they asked, what was answered, the facts they gave, how they asked for a person."""
        msgs = [
            {"role": m.role, "text": (m.text_content or "").strip()}
            for m in self.session.history.items
            if isinstance(m, llm.ChatMessage) and m.role in ("user", "assistant") and m.text_content
        ]
        asked = [m["text"] for m in msgs if m["role"] == "user"]
        answered = [
            m["text"]
            for m in msgs
            if m["role"] == "assistant"
            and m["text"] not in self._own_replies
            and not m["text"].startswith(self.tenant.greeting)
        ]
        facts = self.extract_facts(msgs) if self.extract_facts is not None else []
        name = next((f.split(": ", 1)[1] for f in facts if f.startswith("caller name: ")), None)
        who = f"Caller {name}" if name else "Caller (name not given)"
        parts = [f"{who}, {self.tenant.business_name} line, asked for a person by {via}."]
        if asked:
            parts.append("Asked: " + " | ".join(_clip(a, 100) for a in asked[-4:]) + ".")
        if answered:
            parts.append("We answered: " + " | ".join(_clip(a, 100) for a in answered[-2:]) + ".")
        other = [f for f in facts if not f.startswith("caller name: ")]
        if other:
            parts.append("Facts: " + "; ".join(other) + ".")
        return _clip(" ".join(parts), SUMMARY_MAX_CHARS)

    # ---- transfer ------------------------------------------------------------------------
    @property
    def _can_transfer(self) -> bool:
        return bool(self.tenant.transfer_number or self.tenant.warm_transfer_to)

    @property
    def _announcement(self) -> str:
        """What the caller hears before the transfer: a warm one says the human is being told."""
        return WARM_ANNOUNCEMENT if self.tenant.warm_transfer_to else TRANSFER_ANNOUNCEMENT

    async def _transfer_warm(self, summary: str) -> tuple[TransferResult, bool]:
        """Warm transfer, then the tenant's fallback when the human was not reached: a cold
        transfer to the transfer number, or a callback promise. (result, caller already told)."""
        cfg = self.tenant.warm_transfer
        assert cfg is not None
        briefing = briefing_for(self.tenant, summary)
        result = await self.control.transfer_warm(
            self.tenant, summary=summary, briefing=briefing, session=self.session
        )
        if result.ok or self.ended.is_set():
            return result, False
        if cfg.fallback == "cold" and self.tenant.transfer_number:
            await self._say(f"{result.why()} {COLD_FALLBACK}", interruptible=False)
            return await self.control.transfer(self.tenant.transfer_number, summary=summary), False
        self._record("callback", reason=result.reason.value, summary=summary)
        await self._say(f"{result.why()} {CALLBACK_PROMISE}")
        await self._say(ANYTHING_ELSE)
        return result, True

    async def transfer_to_human(self, *, announce: bool = True, via: str = "keypad") -> TransferResult | None:
        """Announce (unless the reply already did), transfer with a call summary; on failure tell
        the caller why and carry on. One implementation for keypad, menu, voice and tool."""
        if self._transferring or self._ending:
            return None
        self._transferring = True
        try:
            if announce:
                self._interrupt()  # the caller asked for a person: stop the current answer
                await self._say(self._announcement, interruptible=False)
            summary = self.call_summary(via)
            told = False
            if self.tenant.warm_transfer_to:
                result, told = await self._transfer_warm(summary)
            else:
                result = await self.control.transfer(self.tenant.transfer_number, summary=summary)
            self.last_transfer = result
            if result.ok:
                # The caller's SIP leg now belongs to the human; our part of the call is over.
                self._ending = True
                self.session.shutdown(drain=False)
            elif not told:
                await self._say(result.caller_message())
            return result
        finally:
            self._transferring = False

    # ---- hang-up -------------------------------------------------------------------------
    async def hangup(self, reason: str, goodbye: str | None = None) -> None:
        """Say `goodbye` (not interruptible), drop the line, close the session. Idempotent."""
        if self._ending:
            return
        self._ending = True
        self._cancel("goodbye_grace")
        if goodbye:
            self._interrupt()
            await self._say(goodbye, interruptible=False)
        await self.control.hangup(reason)
        if not self.ended.is_set():
            self.session.shutdown(drain=False)

    async def _on_max_duration(self) -> None:
        self._record("max_duration", limit_s=self.idle.max_call_s)
        await self.hangup("max_duration", MAX_DURATION_GOODBYE)

    # ---- idle ----------------------------------------------------------------------------
    def _on_user_state(self, ev: UserStateChangedEvent) -> None:
        if ev.new_state == "away":
            self._spawn(self._on_idle())
        elif ev.old_state == "away" or ev.new_state == "speaking":
            # The caller is back: start counting prompts afresh.
            self._cancel("idle")
            self._prompts = 0
        if ev.new_state == "speaking":
            self._cancel("goodbye_grace")  # the caller had more to say after our goodbye
            # every piece of the turn counts (a barge-in often continues the caller's last run);
            # consumed by the turn's intent step (`turn_facts`)
            self._agent_was_speaking = self._agent_was_speaking or (
                self.session.agent_state == "speaking"
                or time.monotonic() - self._agent_stopped_at < OVERLAP_WINDOW_S
            )
        self._track_turn_length(ev.new_state)

    def _on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        if ev.old_state == "speaking":
            self._agent_stopped_at = time.monotonic()

    # ---- long turn -----------------------------------------------------------------------
    # A "run" is caller speech with no gap of `turn_gap_s`: the agent cannot get a word in.
    # The VAD splits a run at every comma-sized pause and livekit commits each piece as a user
    # turn (each reply is then cut by the caller's next words), so neither the VAD state nor a
    # committed turn says "the caller has been talking for a minute"; the gap timer does.
    def _track_turn_length(self, state: str) -> None:
        if state == "speaking":
            self._cancel("turn_gap")
            if not self._talking:
                self._talking = True
                self._timer("long_turn", self.idle.max_user_turn_s, self._on_long_turn)
        elif self._talking:
            # Breath pauses keep the run going; only a real gap ends it.
            self._timer("turn_gap", self.idle.turn_gap_s, self._end_turn_run)

    def _reset_turn_run(self) -> None:
        self._talking = False
        self._cancel("long_turn")

    async def _end_turn_run(self) -> None:
        self._reset_turn_run()

    async def _on_long_turn(self) -> None:
        if self._ending or self._transferring or not self._talking:
            return
        self._record("long_turn", limit_s=self.idle.max_user_turn_s)
        try:
            self.session.clear_user_turn()  # drops the buffered audio/transcript of this turn
        except RuntimeError:
            return
        # If the caller keeps going, the limit applies again from here.
        self._timer("long_turn", self.idle.max_user_turn_s, self._on_long_turn)
        await self._say(self.idle.long_turn_prompt, interruptible=False)

    async def _on_idle(self) -> None:
        if self._ending or self._transferring or self._collector is not None:
            return
        if self.idle.next_action(self._prompts) == "hangup":
            self._record("idle_timeout", prompts=self._prompts)
            await self.hangup("idle", self.idle.goodbye)
            return
        self._prompts += 1
        self._record("idle_prompt", n=self._prompts)
        await self._say(self.idle.prompt)
        if not self._ending and self.session.user_state == "away":
            self._timer("idle", self.hangup_after_prompt_s, self._on_idle)

    # ---- what was said -------------------------------------------------------------------
    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role != "assistant":
            return
        text = (item.text_content or "").strip()
        self._last_agent_text = text
        if item.interrupted:
            self._agent_was_speaking = True  # the caller's next words came over this reply
        if text and text not in self._own_replies and not item.interrupted:
            self._last_answer = text  # what "repeat that" says again (the greeting and menu too)
        if self._armed is not None:
            # The reply that announced the transfer / said goodbye has been played (or cut off).
            self._spawn(self._after_reply(bool(item.interrupted)))

    def _on_close(self, ev: CloseEvent) -> None:
        self.ended.set()
        for name in list(self._timers):
            self._cancel(name)
        if self._collector is not None:
            self._collector.cancel()

    async def aclose(self) -> None:
        """Cancel timers and wait for in-flight actions (call teardown)."""
        for name in list(self._timers):
            self._cancel(name)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def shorter_sentences(text: str) -> str:
    """The same words in shorter sentences: clauses after commas, "and", "but" become sentences."""
    parts = [p.strip() for p in re.split(r"[,;:]\s+|\s+(?:and|but)\s+", text) if p.strip()]
    out = []
    for p in parts:
        p = p.rstrip(".!?")
        out.append(p[:1].upper() + p[1:] + ".")
    return " ".join(out)


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"
