"""Warm transfer on a LiveKit SIP line: brief a human on the phone, then bridge the caller.

livekit-agents' `WarmTransferTask` does the work. While it runs the caller hears its hold audio
(`BackgroundAudioPlayer` playing the built-in hold clip, `HOLD_AUDIO`) and the session's own
audio in/out is off; it dials the human into a side room (`CreateSIPParticipant`, waiting until
answered, `ringing_timeout`). `BriefedWarmTransfer` then reads the human our call summary - the
same deterministic text on every profile, so no LLM has to decide when to connect - and moves the
human into the caller's room (`MoveParticipant`), which is what the task's `connect_to_caller`
tool does. A busy / unanswered / rejected human ends the task with a ToolError; the SIP status
is kept so the caller is told why (`warm_result`).

livekit runs an AgentTask only inside a tool or an agent's `on_enter`; `run_task` runs one from
anywhere (keypad, the intent step, a tool's follow-up) through a short-lived host agent and hands
the call back to the previous agent when the task is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, TypeVar

from livekit.agents import NOT_GIVEN, Agent, AgentSession
from livekit.agents.beta.workflows import WarmTransferResult, WarmTransferTask
from livekit.agents.llm import ToolError
from livekit.agents.voice.agent import AgentTask
from livekit.agents.voice.background_audio import AudioConfig, BuiltinAudioClip
from livekit.api.twirp_client import SipCallError

from core.tenants import Tenant
from sip.telephony import TransferReason, TransferResult, reason_for_sip_status

log = logging.getLogger("callcenter.telephony")

# What the caller hears on hold, on LiveKit (the task's player) and in the simulator alike.
HOLD_AUDIO = AudioConfig(BuiltinAudioClip.HOLD_MUSIC, volume=0.8)
BRIEFING = "Hi, this is the {business} voice assistant with a caller for you. {summary} Connecting you now."
T = TypeVar("T")


def briefing_for(tenant: Tenant, summary: str) -> str:
    """What the human hears when they pick up, before the caller is bridged to them."""
    return BRIEFING.format(business=tenant.business_name, summary=summary)


class BriefedWarmTransfer(WarmTransferTask):
    """`WarmTransferTask` for a tenant's `warm_transfer` block that briefs the human with
    `briefing` as soon as they answer and then bridges the caller.

    Raises:
        ValueError: no outbound trunk (`outbound_trunk_id` nor LIVEKIT_SIP_OUTBOUND_TRUNK).
    """

    def __init__(self, tenant: Tenant, briefing: str) -> None:
        cfg, to = tenant.warm_transfer, tenant.warm_transfer_to
        if cfg is None or not to:
            raise ValueError("the tenant has no warm transfer number")
        caller_id = cfg.caller_id or (tenant.numbers[0] if tenant.numbers else None)
        super().__init__(
            sip_call_to=to,
            sip_trunk_id=cfg.outbound_trunk_id or NOT_GIVEN,  # NOT_GIVEN: LIVEKIT_SIP_OUTBOUND_TRUNK
            sip_number=caller_id or NOT_GIVEN,
            ringing_timeout=cfg.ringing_timeout_s,
            hold_audio=HOLD_AUDIO,
            # if the human talks back before the bridge (a tool-calling LLM may answer them)
            instructions=(
                f"You are briefing a colleague at {tenant.business_name} about a caller on hold. "
                f"What you know: {briefing} Answer their questions about the call in one sentence."
            ),
        )
        self.briefing = briefing
        self.sip_error: SipCallError | None = None
        self.bridge_error: str | None = None

    async def on_enter(self) -> None:
        try:
            await super().on_enter()  # hold audio on, caller I/O off, the human dialed and answered
        except Exception as e:  # noqa: BLE001 - e.g. the hold track cannot be published
            log.warning("warm transfer could not start: %s", e)
            if not self.done():
                self._set_result(ToolError(f"warm transfer could not start: {e}"))
            return
        human = self._human_agent_sess
        if self.done() or human is None:
            return
        try:
            await human.say(self.briefing, allow_interruptions=False)
        except RuntimeError as e:  # the human's session closed: they hung up (the task has ended)
            log.info("warm transfer: briefing cut off: %s", e)
        if not self.done():
            await self._bridge()

    async def _bridge(self) -> None:
        # The task's `connect_to_caller` tool, called by us once the briefing has been played.
        assert self._caller_room is not None
        try:
            await self._merge_calls()
        except Exception as e:  # noqa: BLE001 - e.g. MoveParticipant unsupported: fall back
            self.bridge_error = f"{type(e).__name__}: {e}"
            log.warning("warm transfer: bridging the human failed: %s", self.bridge_error)
            self._set_result(RuntimeError(self.bridge_error))
            return
        self._set_result(WarmTransferResult(human_agent_identity=self._human_agent_identity))
        self._caller_room.on("participant_disconnected", self._on_caller_participant_disconnected)

    async def _originate_human_agent(self, *, room_name: str, identity: str, room: Any) -> None:
        try:
            await super()._originate_human_agent(room_name=room_name, identity=identity, room=room)
        except SipCallError as e:  # busy / no answer / rejected: kept to tell the caller why
            self.sip_error = e
            raise


def warm_result(task: BriefedWarmTransfer, outcome: object) -> TransferResult:
    """The task's outcome (its result, or the exception it completed with) as a TransferResult."""
    if isinstance(outcome, WarmTransferResult):
        return TransferResult(True, TransferReason.COMPLETED, 200, outcome.human_agent_identity)
    e = task.sip_error
    if e is not None:
        reason = reason_for_sip_status(e.sip_status_code, e.sip_transfer_reason)
        return TransferResult(False, reason, e.sip_status_code, str(e))
    text = str(outcome)
    if "declined" in text:
        return TransferResult(False, TransferReason.REJECTED, None, text)
    if "voicemail" in text or "did not answer" in text:
        return TransferResult(False, TransferReason.NO_ANSWER, None, text)
    return TransferResult(False, TransferReason.FAILED, None, task.bridge_error or text)


class _TaskHost(Agent):
    """Runs one AgentTask from its `on_enter`, the place livekit allows outside a tool call."""

    def __init__(self, task: AgentTask[Any]) -> None:
        super().__init__(instructions="Say nothing.")
        self._task = task
        self.outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def on_enter(self) -> None:
        if self.outcome.done():  # entered again (a later hand-off): the task ran once already
            return
        try:
            self.outcome.set_result(await self._task)
        except asyncio.CancelledError:  # the session closed under the task (the caller hung up)
            if not self.outcome.done():
                self.outcome.set_exception(ToolError("the call ended during the transfer"))
            raise
        except Exception as e:  # noqa: BLE001 - the task's failure is the caller's to handle
            self.outcome.set_exception(e)


async def run_task(session: AgentSession, task: AgentTask[T]) -> T:
    """Run `task` on `session` from outside a tool; the previous agent takes the call back when
    the task is done (it failed, or it succeeded and the caller is about to be let go).

    Returns:
        The task's result.

    Raises:
        Exception: whatever the task completed with (a ToolError when the human was not reached
            or the call ended meanwhile).
    """
    previous = session.current_agent
    host = _TaskHost(task)
    session.update_agent(host)
    try:
        result: T = await host.outcome
        return result
    finally:
        try:
            session.update_agent(previous)
        except RuntimeError as e:  # the session is closing: nobody to hand back to
            log.debug("warm transfer: no hand-back: %s", e)
        else:
            # what follows (telling the caller) must reach the previous agent's activity, not
            # the closing host's: wait for the hand-back (no public handle in 1.8)
            pending = getattr(session, "_update_activity_atask", None)
            if pending is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pending)


def keep_room_after_close(session: AgentSession) -> None:
    """The caller and the human now talk in the caller's room: closing our session must not
    delete it (the call assembly asks RoomIO to delete the room on close, which hangs up)."""
    try:
        session.room_io._options.delete_room_on_close = False  # no public setter in 1.8
    except (RuntimeError, AttributeError) as e:
        log.warning("warm transfer: could not keep the room open: %s", e)
