"""Phone behaviours on a real AgentSession (instant providers, simulator audio I/O, no room).

The LiveKit server side is `tests/support/fake_livekit.py` (real Twirp, real `livekit-api` client).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from livekit import api
from livekit.agents import AgentSession, llm

from agent.call.agent import CallAgent
from agent.call.session import create_session
from agent.providers import build_providers
from agent.sim.audio_io import TICK, SimAudioInput, SimAudioOutput, to_frame
from core.settings import get_settings
from core.tenants import Tenant
from sip.behaviours import (
    ANYTHING_ELSE,
    GO_AHEAD,
    MAX_DURATION_GOODBYE,
    START_OVER,
    TRANSFER_ANNOUNCEMENT,
    CallControl,
    LiveKitCallControl,
    PhoneBehaviours,
    SimCallControl,
)
from sip.telephony import IdlePolicy, TransferReason, caller_info, tenant_for_call
from tests.support.fake_livekit import FakeLiveKit

ROOM, CALLER = "call-globex-_+14155550123_abc", "sip_+14155550123"
SIP_ATTRS = {  # a caller who dialed Globex's number
    "sip.callID": "SCL_xyz",
    "sip.callStatus": "active",
    "sip.phoneNumber": "+14155550123",
    "sip.trunkID": "ST_1",
    "sip.trunkPhoneNumber": "+15550200100",
}


@dataclass
class Call:
    session: AgentSession
    phone: PhoneBehaviours
    control: CallControl
    tenant: Tenant
    closed: list[str] = field(default_factory=list)

    def said(self) -> list[str]:
        return [
            m.text_content or ""
            for m in self.session.history.items
            if isinstance(m, llm.ChatMessage) and m.role == "assistant"
        ]

    async def until(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.02)


async def _line(inp: SimAudioInput, out: SimAudioOutput) -> None:
    """A silent caller on a real-time line: 20 ms in, 20 ms of agent audio played out."""
    silence = np.zeros(TICK, np.float32)
    while True:
        inp.push(to_frame(silence))
        out.tick(TICK)
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def phone_call(control: CallControl, tenant: Tenant, **kw: Any) -> AsyncIterator[Call]:
    providers = build_providers("instant", get_settings())
    session = create_session(providers)
    inp, out = SimAudioInput(), SimAudioOutput()
    session.input.audio, session.output.audio = inp, out
    phone = PhoneBehaviours(session, tenant, control, **kw)
    phone.attach()
    call = Call(session, phone, control, tenant)
    session.on("close", lambda ev: call.closed.append(ev.reason.value))
    line = asyncio.create_task(_line(inp, out))
    await session.start(CallAgent(tenant, voice=providers.voice), record=False)
    try:
        yield call
    finally:
        await phone.aclose()
        await session.aclose()
        line.cancel()
        inp.close()


@pytest.fixture
def globex() -> Tenant:
    # The tenant comes from the SIP attributes: the dialed number is Globex's.
    tenant = tenant_for_call(caller_info(SIP_ATTRS))
    assert tenant.name == "globex" and tenant.transfer_number == "+15550200200"
    return tenant


@pytest.fixture
async def livekit() -> AsyncIterator[tuple[FakeLiveKit, api.LiveKitAPI]]:
    async with FakeLiveKit() as fake:
        fake.add_participant(ROOM, CALLER, SIP_ATTRS)
        lk = api.LiveKitAPI(fake.url, fake.api_key, fake.api_secret)
        try:
            yield fake, lk
        finally:
            await lk.aclose()


async def test_dtmf_zero_transfers_in_the_simulator(globex: Tenant) -> None:
    control = SimCallControl("completed")
    async with phone_call(control, globex) as call:
        call.phone.on_dtmf("0")
        await asyncio.wait_for(call.phone.ended.wait(), 10)
        assert TRANSFER_ANNOUNCEMENT in call.said()
    kinds = [e["type"] for e in control.events]
    assert kinds == ["dtmf", "transfer"]
    summary = control.events[1].pop("summary")
    assert control.events[1] | {"t": 0} == {
        "type": "transfer",
        "t": 0,
        "to": "+15550200200",
        "ok": True,
        "reason": "completed",
        "sip_status": 200,
        "warm": False,  # globex has no warm_transfer block: cold (SIP REFER)
    }
    assert summary.startswith("Caller (name not given), Globex Insurance line, asked for a person by keypad.")
    assert call.closed  # the caller went to the human: our session is over


async def test_dtmf_zero_sends_sip_refer_to_the_tenant_number(
    globex: Tenant, livekit: tuple[FakeLiveKit, api.LiveKitAPI]
) -> None:
    fake, lk = livekit
    control = LiveKitCallControl(lk, ROOM, CALLER)
    async with phone_call(control, globex) as call:
        call.phone.on_dtmf("0")
        await asyncio.wait_for(call.phone.ended.wait(), 10)
    (req,) = fake.calls("TransferSIPParticipant")
    assert (req.room_name, req.participant_identity, req.transfer_to) == (ROOM, CALLER, "tel:+15550200200")
    assert CALLER not in fake.participants[ROOM]  # the REFER took the caller out of the room
    assert call.phone.last_transfer is not None and call.phone.last_transfer.ok


async def test_busy_transfer_tells_the_caller_and_the_call_goes_on(
    globex: Tenant, livekit: tuple[FakeLiveKit, api.LiveKitAPI]
) -> None:
    fake, lk = livekit
    fake.transfer_failure = "busy"
    control = LiveKitCallControl(lk, ROOM, CALLER)
    async with phone_call(control, globex) as call:
        call.phone.on_dtmf("0")
        await call.until(lambda: any("busy" in s for s in call.said()))
        result = call.phone.last_transfer
        assert result is not None and result.reason == TransferReason.BUSY and result.sip_status == 486
        assert result.caller_message() in call.said()
        assert not call.phone.ended.is_set() and not call.closed
        # the conversation continues: the next caller turn is answered normally
        run = await call.session.run(user_input="When is the claims desk open?")
        run.expect.contains_message(role="assistant")
        assert not call.closed
    assert [e["type"] for e in control.events] == ["dtmf", "transfer"]
    assert control.events[1]["reason"] == "busy" and control.events[1]["ok"] is False


async def test_hangup_deletes_the_room_and_closes_the_session(
    globex: Tenant, livekit: tuple[FakeLiveKit, api.LiveKitAPI]
) -> None:
    fake, lk = livekit
    control = LiveKitCallControl(lk, ROOM, CALLER)
    async with phone_call(control, globex) as call:
        await call.phone.hangup("test", goodbye="Thanks for calling, goodbye.")
        await call.until(lambda: bool(call.closed))
        assert "Thanks for calling, goodbye." in call.said()
    assert [r.room for r in fake.calls("DeleteRoom")] == [ROOM]
    assert ROOM not in fake.rooms
    assert control.events[-1]["type"] == "hangup" and control.events[-1]["room_deleted"] is True


async def test_silence_prompts_then_hangs_up(globex: Tenant) -> None:
    control = SimCallControl()
    idle = IdlePolicy(away_after_s=0.4, max_prompts=1)
    async with phone_call(control, globex, idle=idle, hangup_after_prompt_s=0.4) as call:
        await asyncio.wait_for(call.phone.ended.wait(), 10)
        assert idle.prompt in call.said() and idle.goodbye in call.said()
    assert [e["type"] for e in control.events] == ["idle_prompt", "idle_timeout", "hangup"]
    assert control.events[-1]["reason"] == "idle" and call.closed


async def test_caller_goodbye_ends_the_call_after_the_reply(globex: Tenant) -> None:
    control = SimCallControl()
    async with phone_call(control, globex) as call:
        await call.session.run(user_input="That's all, thanks. Bye!")
        await asyncio.wait_for(call.phone.ended.wait(), 10)
    assert control.events[-1] | {"t": 0} == {
        "type": "hangup",
        "t": 0,
        "by": "agent",
        "reason": "caller_goodbye",
    }


async def test_maximum_call_duration(globex: Tenant) -> None:
    control = SimCallControl()
    async with phone_call(control, globex, idle=IdlePolicy(away_after_s=30, max_call_s=0.5)) as call:
        await asyncio.wait_for(call.phone.ended.wait(), 10)
        assert MAX_DURATION_GOODBYE in call.said()
    assert [e["type"] for e in control.events] == ["max_duration", "hangup"]


async def test_keypad_account_number_is_collected_and_kept_out_of_the_log(globex: Tenant) -> None:
    control = SimCallControl()
    async with phone_call(control, globex) as call:
        entry = asyncio.create_task(call.phone.collect_digits("Please type your policy number, then hash."))
        await asyncio.sleep(0.05)
        for d in "1002#":  # "0" is a digit here, not the operator
            call.phone.on_dtmf(d)
        out = await asyncio.wait_for(entry, 5)
        assert (out.kind, out.digits) == ("digits", "1002")
        assert not call.phone.ended.is_set()
    assert "1002" not in repr(control.events)
    assert control.events[-1] | {"t": 0} == {"type": "dtmf_collected", "t": 0, "kind": "digits", "length": 4}
    assert not any(e["type"] == "transfer" for e in control.events)


# ---- caller intents on typed turns (the same session, CallAgent intent step and behaviours) ----


async def _turn(call: Call, text: str) -> str:
    """One caller turn; the agent's reply to it."""
    n = len(call.said())
    await call.session.run(user_input=text)
    await call.until(lambda: len(call.said()) > n)
    return call.said()[-1]


async def test_a_spoken_request_for_a_person_transfers_with_the_calls_summary(globex: Tenant) -> None:
    control = SimCallControl("completed")
    async with phone_call(control, globex) as call:
        await _turn(call, "Hi, this is Maria Lopez, I want to file a claim for policy 778812.")
        assert await _turn(call, "Can I talk to a human please?") == TRANSFER_ANNOUNCEMENT
        await asyncio.wait_for(call.phone.ended.wait(), 10)
    (transfer,) = [e for e in control.events if e["type"] == "transfer"]
    assert transfer["ok"] is True and transfer["to"] == "+15550200200"
    s = transfer["summary"]
    assert s.startswith("Caller Maria Lopez, Globex Insurance line, asked for a person by voice.")
    assert "file a claim" in s and "policy number: 778812" in s and "We answered:" in s


async def test_a_failed_voice_transfer_is_told_and_the_call_goes_on(globex: Tenant) -> None:
    control = SimCallControl("no-answer")
    async with phone_call(control, globex) as call:
        await _turn(call, "Get me a representative.")
        await call.until(lambda: any("Nobody picked up" in s for s in call.said()))
        assert not call.phone.ended.is_set() and not call.closed
        # the conversation goes on: the next question gets an answer, not a transfer
        await _turn(call, "When is the claims desk open?")
    assert [e["type"] for e in control.events if e["type"] == "transfer"] == ["transfer"]


async def test_anything_else_then_no_thanks_ends_the_call(globex: Tenant) -> None:
    control = SimCallControl()
    async with phone_call(control, globex) as call:
        # a closing with words the rules do not know is asked about, never hung up on
        assert await _turn(call, "Okay weird bye") == ANYTHING_ELSE
        assert not call.phone.ended.is_set()
        assert await _turn(call, "No thanks.") == "Thanks for calling Globex Insurance. Goodbye!"
        await asyncio.wait_for(call.phone.ended.wait(), 10)
    assert control.events[-1]["type"] == "hangup" and control.events[-1]["reason"] == "caller_goodbye"


async def test_yes_after_anything_else_keeps_the_call(globex: Tenant) -> None:
    control = SimCallControl()
    async with phone_call(control, globex) as call:
        assert await _turn(call, "Okay weird bye") == ANYTHING_ELSE
        assert await _turn(call, "Yes please.") == GO_AHEAD
        await _turn(call, "How do I file a claim?")
        assert not call.phone.ended.is_set()
    assert not any(e["type"] == "hangup" for e in control.events)


async def test_repeat_slow_down_and_start_over(globex: Tenant) -> None:
    control = SimCallControl()
    async with phone_call(control, globex) as call:
        answer = await _turn(call, "How do I file a claim?")
        assert (await _turn(call, "Sorry, can you repeat that?")).strip() == answer.strip()
        slow = await _turn(call, "You're talking too fast.")
        assert slow.startswith("Sure. ") and slow.count(".") >= answer.count(".")
        assert await _turn(call, "Let's start over.") == START_OVER
        # "repeat" after the restart prompt still repeats the last real answer
        assert (await _turn(call, "Say that again.")).strip() == answer.strip()
    assert [e["action"] for e in control.events if e["type"] == "intent"] == [
        "repeat",
        "slow_down",
        "start_over",
        "repeat",
    ]


async def test_goodbye_inside_a_question_is_answered_not_hung_up(globex: Tenant) -> None:
    control = SimCallControl()
    async with phone_call(control, globex, goodbye_grace_s=0.2) as call:
        reply = await _turn(call, "I want to say goodbye to my old plan, how do I switch?")
        assert reply not in (ANYTHING_ELSE, TRANSFER_ANNOUNCEMENT) and "Goodbye" not in reply
        await asyncio.sleep(0.5)
        assert not call.phone.ended.is_set()
    assert not any(e["type"] in ("hangup", "intent") for e in control.events)


async def test_the_tools_act_through_the_same_actions(globex: Tenant) -> None:
    """The cloud profile's tools arm the same follow-ups as the local intent step."""
    control = SimCallControl()
    async with phone_call(control, globex, end_on_goodbye=False, goodbye_grace_s=0.2) as call:
        tools = {t.info.name: t for t in call.phone.tools()}
        assert set(tools) == {"end_call", "transfer_to_human"}
        # typed turns: the instant LLM does not call tools, so call the tool as the LLM would
        assert "goodbye" in (await tools["end_call"]()).lower()
        await call.session.say("Goodbye!")
        await asyncio.wait_for(call.phone.ended.wait(), 10)
    assert [e["type"] for e in control.events] == ["intent", "hangup"]
    assert control.events[0]["via"] == "tool" and control.events[-1]["reason"] == "caller_goodbye"


async def test_a_line_without_a_transfer_number_says_so_at_once(globex: Tenant) -> None:
    control = SimCallControl()
    tenant = globex.model_copy(update={"transfer_number": None})
    async with phone_call(control, tenant) as call:
        reply = await _turn(call, "Can I speak to a real person?")
        assert reply.startswith("I can't transfer calls for this line.")
        assert TRANSFER_ANNOUNCEMENT not in call.said()
    assert not any(e["type"] == "transfer" for e in control.events)
