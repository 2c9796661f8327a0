"""Phone behaviours of a running call, the same on a LiveKit SIP line and in the simulator.

`PhoneBehaviours` listens to a started (or about to start) `AgentSession` and does what a phone
agent must do besides answering: keypad "0" -> transfer to a human, keypad digit collection,
"are you still there?" then hang up on silence, a maximum call duration, and hanging up after
the caller says goodbye. Everything that touches the phone line goes through a `CallControl`:

* `LiveKitCallControl` - the real line: SIP REFER / room deletion via `sip.telephony`.
* `SimCallControl` - the simulator: no network, a configurable transfer outcome.

Every action is appended to `control.events` ({"type", "t", ...}) so the call report/transcript
shows transfers and hang-ups next to the conversation.

Ending the call: with a tool-calling LLM (cloud profile) give the agent livekit-agents'
`EndCallTool` (`sip.telephony.make_end_call_tool`) and pass `end_on_goodbye=False`. The local
0.5B model has tools off, so by default a caller turn that says "bye"/"goodbye"/"hang up" ends
the call once the agent's reply to it has been played (a plain word match: cheap, predictable,
and it errs toward keeping the caller on the line).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

from livekit import api
from livekit.agents import AgentSession, llm
from livekit.agents.voice.events import CloseEvent, ConversationItemAddedEvent, UserStateChangedEvent

from core.tenants import Tenant
from sip.telephony import (
    DtmfCollector,
    DtmfOutcome,
    IdlePolicy,
    TransferReason,
    TransferResult,
    end_call,
    transfer_cold,
)

log = logging.getLogger("callcenter.telephony")

OPERATOR_DIGIT = "0"
TRANSFER_ANNOUNCEMENT = "Transferring you to a colleague, one moment please."
MAX_DURATION_GOODBYE = "We've reached the time limit for this call. Please call back anytime. Goodbye."
GOODBYE_RE = re.compile(r"\b(good\s?-?bye|bye(\s?-?bye)?|hang up)\b", re.IGNORECASE)
SimTransferOutcome = Literal["completed", "busy", "no-answer", "rejected"]


class CallControl(Protocol):
    """What the agent can do to the phone line itself."""

    events: list[dict[str, Any]]
    call_id: str  # the room of a phone call, a unique id for a simulated one

    def now(self) -> float:
        """Seconds since the call started (the `t` of every event)."""
        ...

    async def transfer(self, to_number: str | None) -> TransferResult: ...

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

    def _record_transfer(self, to_number: str | None, r: TransferResult) -> None:
        self.record("transfer", to=to_number, ok=r.ok, reason=r.reason.value, sip_status=r.sip_status)


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

    async def transfer(self, to_number: str | None) -> TransferResult:
        result = await transfer_cold(self.lkapi, self.room_name, self.identity, to_number)
        self._record_transfer(to_number, result)
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


class SimCallControl(_EventLog):
    """The simulator's line: typed transfer results without a network."""

    def __init__(
        self,
        transfer_outcome: SimTransferOutcome = "completed",
        *,
        events: list[dict[str, Any]] | None = None,
        clock: Callable[[], float] | None = None,
        call_id: str | None = None,
    ) -> None:
        super().__init__(events, clock, call_id=call_id)
        if transfer_outcome not in _SIM_RESULTS:
            raise ValueError(f"transfer_outcome must be one of {', '.join(_SIM_RESULTS)}")
        self.transfer_outcome = transfer_outcome
        self.hung_up = False

    async def transfer(self, to_number: str | None) -> TransferResult:
        result = (
            _SIM_RESULTS[self.transfer_outcome]
            if to_number
            else TransferResult(False, TransferReason.NOT_CONFIGURED, detail="no transfer number")
        )
        self._record_transfer(to_number, result)
        return result

    async def hangup(self, reason: str) -> None:
        self.hung_up = True
        self.record("hangup", by="agent", reason=reason)


class PhoneBehaviours:
    """Keypad, transfer, idle, long-turn, max-duration and goodbye handling for one call.

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
    ) -> None:
        self.session, self.tenant, self.control = session, tenant, control
        self.idle = idle or IdlePolicy()
        # After "are you still there?" the framework does not report "away" again (the user
        # state stays away while only the agent talks), so the second timeout is ours.
        self.hangup_after_prompt_s = hangup_after_prompt_s or self.idle.away_after_s
        self.end_on_goodbye = end_on_goodbye
        self.ended = asyncio.Event()
        self.last_transfer: TransferResult | None = None
        self._prompts = 0
        self._ending = False
        self._transferring = False
        self._goodbye_heard = False
        self._collector: DtmfCollector | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._talking = False  # the caller's current turn is running (see _on_user_state)

    # ---- wiring --------------------------------------------------------------------------
    def attach(self) -> None:
        # AgentSession raises "away" after this much silence from both sides.
        self.session.options.user_away_timeout = self.idle.away_after_s
        self.session.on("user_state_changed", self._on_user_state)
        self.session.on("conversation_item_added", self._on_item)
        self.session.on("close", self._on_close)
        if self.idle.max_call_s:
            self._timer("max_duration", self.idle.max_call_s, self._on_max_duration)

    def _record(self, type_: str, **fields: Any) -> None:
        self.control.events.append({"type": type_, "t": round(self.control.now(), 3), **fields})

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
            if digits.startswith(OPERATOR_DIGIT):
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

    # ---- transfer ------------------------------------------------------------------------
    async def transfer_to_human(self) -> TransferResult | None:
        if self._transferring or self._ending:
            return None
        self._transferring = True
        try:
            self._interrupt()  # the caller asked for a person: stop the current answer
            await self._say(TRANSFER_ANNOUNCEMENT, interruptible=False)
            result = await self.control.transfer(self.tenant.transfer_number)
            self.last_transfer = result
            if result.ok:
                # The caller's SIP leg now belongs to the human; our part of the call is over.
                self._ending = True
                self.session.shutdown(drain=False)
            else:
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
        self._track_turn_length(ev.new_state)

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

    # ---- goodbye -------------------------------------------------------------------------
    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not self.end_on_goodbye or not isinstance(item, llm.ChatMessage):
            return
        if item.role == "user":
            self._goodbye_heard = bool(GOODBYE_RE.search(item.text_content or ""))
        elif item.role == "assistant" and self._goodbye_heard and not item.interrupted:
            # The agent's reply to "bye" has been played in full: now hang up.
            self._spawn(self.hangup("caller_goodbye"))

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
