"""Phone behaviours the agent needs, as small pure helpers (no livekit-agents import at module load).

What the agent should use, and when
-----------------------------------
* Call start: `info = caller_info(participant.attributes)` for the SIP participant
  (`participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP`), then
  `tenant = tenant_for_call(info, job_metadata=ctx.job.metadata)` and greet with `tenant.greeting`.
* DTMF: feed `room.on("sip_dtmf_received", lambda ev: collector.feed(ev.digit))` into a
  `DtmfCollector` (or `collector.attach(room)`); `await collector.result()` gives digits, an
  operator request ("0" pressed first), or a timeout.
* Transfer to a human: `await transfer_cold(lkapi, room, identity, tenant.transfer_number)`
  (SIP REFER). On `not result.ok` say `result.caller_message()` and carry on. The call's
  behaviours (`sip/behaviours.py`) record a summary of the call with every transfer.
* Ending: the caller-intent step and the cloud LLM's `end_call` tool both act through
  `PhoneBehaviours` (sip/behaviours.py): goodbye, a short grace period, then
  `await end_call(lkapi, room)`.
* Silence: construct AgentSession with `user_away_timeout=IdlePolicy.away_after_s`; on
  `user_state_changed` -> "away" call `IdlePolicy.next_action(prompts_done)`: "prompt" = say
  `IdlePolicy.prompt`, "hangup" = goodbye + `end_call`. Max duration: `max_call_duration` on the
  inbound trunk (telephony.yaml) is enforced by LiveKit SIP; `IdlePolicy.max_call_s` is the
  agent-side backstop.
* Outbound calls: livekit-agents' `voice.amd.AMD(session)` classifies human/voicemail;
  `amd_action(category, leave_voicemail)` maps it to "talk" / "voicemail" / "hangup".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import aiohttp
from livekit import api
from livekit.api.twirp_client import ServerError, SipCallError

from core.tenants import Tenant, list_tenants, load_tenant
from sip.config import TENANT_ATTRIBUTE

log = logging.getLogger(__name__)

# Attributes LiveKit SIP sets on a phone participant (docs.livekit.io, "SIP participant").
ATTR_CALL_ID = "sip.callID"
ATTR_CALL_ID_FULL = "sip.callIDFull"
ATTR_CALL_STATUS = "sip.callStatus"
ATTR_PHONE_NUMBER = "sip.phoneNumber"  # the caller (inbound) / the callee (outbound)
ATTR_TRUNK_ID = "sip.trunkID"
ATTR_TRUNK_NUMBER = "sip.trunkPhoneNumber"  # the number that was dialed (inbound) / our caller id
ATTR_RULE_ID = "sip.ruleID"


@dataclass(frozen=True)
class CallerInfo:
    caller_number: str  # remote party
    dialed_number: str  # our number on the trunk
    call_id: str
    trunk_id: str = ""
    rule_id: str = ""
    call_status: str = ""
    tenant_hint: str = ""  # set by our dispatch rules / dial (callcenter.tenant)
    is_sip: bool = False


def caller_info(attributes: Mapping[str, str]) -> CallerInfo:
    """Read the `sip.*` participant attributes (missing ones become "")."""
    a = dict(attributes)
    return CallerInfo(
        caller_number=a.get(ATTR_PHONE_NUMBER, ""),
        dialed_number=a.get(ATTR_TRUNK_NUMBER, ""),
        call_id=a.get(ATTR_CALL_ID, ""),
        trunk_id=a.get(ATTR_TRUNK_ID, ""),
        rule_id=a.get(ATTR_RULE_ID, ""),
        call_status=a.get(ATTR_CALL_STATUS, ""),
        tenant_hint=a.get(TENANT_ATTRIBUTE, ""),
        is_sip=any(k.startswith("sip.") for k in a),
    )


def dispatch_metadata(raw: str | None) -> dict[str, Any]:
    """Parse the agent-dispatch metadata (ctx.job.metadata) our rules and `dial` write."""
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def tenant_for_call(
    info: CallerInfo, job_metadata: str | None = None, tenants_dir: Path | None = None
) -> Tenant:
    """Dialed number first (the business the caller rang), then the tenant our dispatch rule or
    `dial` stamped on the call, then the default tenant."""
    names = list_tenants(tenants_dir)
    if info.dialed_number:
        for name in names:
            t = load_tenant(name, tenants_dir)
            if info.dialed_number in t.numbers:
                return t
    hint = info.tenant_hint or str(dispatch_metadata(job_metadata).get("tenant", ""))
    if hint in names:
        return load_tenant(hint, tenants_dir)
    return load_tenant(None, tenants_dir)


# ---------------------------------------------------------------------------- DTMF


@dataclass(frozen=True)
class DtmfOutcome:
    kind: Literal["digits", "operator", "timeout", "cancelled"]
    digits: str = ""


class DtmfCollector:
    """Accumulate keypad digits until `#`, `max_digits`, or `timeout_s` of inactivity.

    `0` pressed as the *first* key is an operator request ("press 0 for a person"); pass
    `operator_digit=None` when collecting numbers that may start with 0. `*` clears the entry.
    Pure logic with an injectable clock, plus an asyncio `result()` for use in the agent.
    """

    def __init__(
        self,
        *,
        max_digits: int | None = None,
        terminator: str = "#",
        timeout_s: float = 5.0,
        operator_digit: str | None = "0",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.max_digits, self.terminator, self.timeout_s = max_digits, terminator, timeout_s
        self.operator_digit = operator_digit
        self._clock = clock or time.monotonic  # the clock asyncio's loop uses too
        self._digits: list[str] = []
        self._last = self._clock()
        self.outcome: DtmfOutcome | None = None
        self._fut: asyncio.Future[DtmfOutcome] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def digits(self) -> str:
        return "".join(self._digits)

    def _finish(self, outcome: DtmfOutcome) -> DtmfOutcome:
        self.outcome = outcome
        if self._timer:
            self._timer.cancel()
        if self._fut and not self._fut.done():
            self._fut.set_result(outcome)
        return outcome

    def feed(self, digit: str) -> DtmfOutcome | None:
        """One key press; returns the outcome once collection is complete."""
        if self.outcome is not None:
            return self.outcome
        self._last = self._clock()
        if digit == self.terminator:
            return self._finish(DtmfOutcome("digits", self.digits))
        if digit == "*":
            self._digits.clear()
        elif digit == self.operator_digit and not self._digits:
            return self._finish(DtmfOutcome("operator"))
        elif digit.isdigit():
            self._digits.append(digit)
            if self.max_digits and len(self._digits) >= self.max_digits:
                return self._finish(DtmfOutcome("digits", self.digits))
        self._arm()
        return None

    def check_timeout(self) -> DtmfOutcome | None:
        """Call periodically when not using `result()`; times out after inactivity."""
        if self.outcome is None and self._clock() - self._last >= self.timeout_s:
            return self._finish(DtmfOutcome("timeout", self.digits))
        return self.outcome

    def cancel(self) -> None:
        if self.outcome is None:
            self._finish(DtmfOutcome("cancelled", self.digits))

    def _arm(self) -> None:
        if self._fut is None:
            return
        if self._timer:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.timeout_s, self.check_timeout)

    async def result(self) -> DtmfOutcome:
        """Wait for the outcome; the inactivity timer starts now and restarts on each key."""
        if self.outcome is not None:
            return self.outcome
        self._fut = asyncio.get_running_loop().create_future()
        self._last = self._clock()
        self._arm()
        return await self._fut

    def attach(self, room: Any) -> Callable[[], None]:
        """Subscribe to an `rtc.Room`'s `sip_dtmf_received`; returns an unsubscribe function."""

        def on_dtmf(ev: Any) -> None:
            self.feed(ev.digit)

        room.on("sip_dtmf_received", on_dtmf)
        return lambda: room.off("sip_dtmf_received", on_dtmf)


# ---------------------------------------------------------------------------- transfer / hang-up


class TransferReason(StrEnum):
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    NOT_CONFIGURED = "not_configured"
    FAILED = "failed"


_BUSY = {486, 600}
_NO_ANSWER = {408, 480, 487}
_REJECTED = {403, 603, 607, 608}

_CALLER_MESSAGES = {
    TransferReason.BUSY: "Everyone is busy on other calls right now.",
    TransferReason.NO_ANSWER: "Nobody picked up just now.",
    TransferReason.REJECTED: "I couldn't get through to a person right now.",
    TransferReason.NOT_CONFIGURED: "I can't transfer calls for this line.",
    TransferReason.FAILED: "The transfer didn't go through.",
}


@dataclass(frozen=True)
class TransferResult:
    ok: bool
    reason: TransferReason
    sip_status: int | None = None
    detail: str = ""

    def caller_message(self) -> str:
        """What the agent tells the caller before continuing the conversation."""
        if self.ok:
            return "I'm transferring you now, please hold."
        return f"{self.why()} I can keep helping you, or take a message."

    def why(self) -> str:
        """Why the transfer did not go through, in the caller's words ("Nobody picked up just now.")."""
        return _CALLER_MESSAGES.get(self.reason, _CALLER_MESSAGES[TransferReason.FAILED])


def reason_for_sip_status(code: int | None, transfer_reason: str | None = None) -> TransferReason:
    if code in _BUSY:
        return TransferReason.BUSY
    if code in _NO_ANSWER or transfer_reason == "STR_RINGING_TIMEOUT":
        return TransferReason.NO_ANSWER
    if code in _REJECTED or transfer_reason == "STR_REJECTED":
        return TransferReason.REJECTED
    return TransferReason.FAILED


def transfer_uri(to: str) -> str:
    """LiveKit wants `tel:+E164` or `sip:user@host`."""
    return to if to.startswith(("tel:", "sip:", "sips:")) else f"tel:{to}"


async def transfer_cold(
    lkapi: api.LiveKitAPI,
    room: str,
    identity: str,
    to_number: str | None,
    *,
    play_dialtone: bool = False,
    ringing_timeout_s: float | None = None,
) -> TransferResult:
    """Blind-transfer the SIP participant (SIP REFER). Never raises for call failures."""
    if not to_number:
        return TransferResult(False, TransferReason.NOT_CONFIGURED, detail="no transfer number")
    req = api.TransferSIPParticipantRequest(
        room_name=room,
        participant_identity=identity,
        transfer_to=transfer_uri(to_number),
        play_dialtone=play_dialtone,
    )
    if ringing_timeout_s:
        req.ringing_timeout.FromMilliseconds(int(ringing_timeout_s * 1000))
    try:
        resp = await lkapi.sip.transfer_sip_participant(req)
    except SipCallError as e:
        reason = reason_for_sip_status(e.sip_status_code, e.sip_transfer_reason)
        return TransferResult(False, reason, e.sip_status_code, str(e))
    except ServerError as e:
        return TransferResult(False, TransferReason.FAILED, None, f"{e.code}: {e.message}")
    except (TimeoutError, aiohttp.ClientError) as e:
        return TransferResult(False, TransferReason.FAILED, None, repr(e))
    # A response can still report failure without an error (status field).
    code = int(resp.sip_status.code) or None
    if resp.status == api.SIPTransferStatus.STS_TRANSFER_FAILED:
        reason = reason_for_sip_status(code, api.SIPTransferReason.Name(resp.reason))
        return TransferResult(False, reason, code, resp.sip_status.status)
    return TransferResult(True, TransferReason.COMPLETED, code, resp.transfer_id)


async def end_call(lkapi: api.LiveKitAPI, room: str) -> bool:
    """Hang up for everyone by deleting the room (drops the SIP leg). False if already gone."""
    try:
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=room))
        return True
    except ServerError as e:
        if e.code == "not_found":
            return False
        raise


# ---------------------------------------------------------------------------- idle / AMD policy


@dataclass(frozen=True)
class IdlePolicy:
    away_after_s: float = 15.0  # AgentSession(user_away_timeout=...)
    prompt: str = "Are you still there?"
    max_prompts: int = 1  # then hang up
    goodbye: str = "I'll hang up now. Thanks for calling, goodbye."
    max_call_s: float = 30 * 60
    # A caller who talks this long without the turn ending gets a polite cut-in, and what the
    # STT had buffered is dropped, so whisper and the LLM context never take minutes of speech.
    max_user_turn_s: float = 45.0
    turn_gap_s: float = 1.0  # silence shorter than this does not end a running turn
    long_turn_prompt: str = "Sorry to cut in, I want to get this right. In a sentence, what do you need?"

    def next_action(self, prompts_done: int) -> Literal["prompt", "hangup"]:
        return "prompt" if prompts_done < self.max_prompts else "hangup"


def amd_action(category: str, leave_voicemail: bool) -> Literal["talk", "voicemail", "hangup"]:
    """Map livekit-agents AMDCategory values to what an outbound call should do."""
    if category in ("human", "uncertain"):
        return "talk"
    if category == "machine-vm" and leave_voicemail:
        return "voicemail"
    return "hangup"
