"""Agent-side phone helpers: caller info, tenant choice, DTMF, transfer and hang-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from livekit import api

from sip.telephony import (
    CallerInfo,
    DtmfCollector,
    IdlePolicy,
    TransferReason,
    amd_action,
    caller_info,
    end_call,
    tenant_for_call,
    transfer_cold,
)
from tests.support.fake_livekit import FakeLiveKit

ROOM, CALLER = "call-acme-_+14155550123_abc", "sip_+14155550123"
INBOUND_ATTRS = {
    "sip.callID": "SCL_xyz",
    "sip.callStatus": "active",
    "sip.phoneNumber": "+14155550123",
    "sip.trunkID": "ST_1",
    "sip.trunkPhoneNumber": "+15550200100",
    "sip.ruleID": "SDR_1",
}


@pytest.fixture
async def call() -> AsyncIterator[tuple[FakeLiveKit, api.LiveKitAPI]]:
    async with FakeLiveKit() as fake:
        fake.add_participant(ROOM, CALLER, INBOUND_ATTRS)
        lk = api.LiveKitAPI(fake.url, fake.api_key, fake.api_secret)
        try:
            yield fake, lk
        finally:
            await lk.aclose()


def test_caller_info_reads_sip_attributes() -> None:
    info = caller_info(INBOUND_ATTRS)
    assert info == CallerInfo("+14155550123", "+15550200100", "SCL_xyz", "ST_1", "SDR_1", "active", "", True)
    assert not caller_info({"name": "web user"}).is_sip


def test_tenant_chosen_from_dialed_number() -> None:
    assert tenant_for_call(caller_info(INBOUND_ATTRS)).name == "globex"
    acme = dict(INBOUND_ATTRS, **{"sip.trunkPhoneNumber": "+15550100100"})
    assert tenant_for_call(caller_info(acme)).name == "acme"


def test_tenant_falls_back_to_rule_attribute_then_default() -> None:
    unknown = dict(INBOUND_ATTRS, **{"sip.trunkPhoneNumber": "+19999999999"})
    assert tenant_for_call(caller_info({**unknown, "callcenter.tenant": "globex"})).name == "globex"
    assert tenant_for_call(caller_info(unknown), job_metadata='{"tenant": "globex"}').name == "globex"
    assert tenant_for_call(caller_info(unknown)).name == "acme"  # CALLCENTER_DEFAULT_TENANT


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_dtmf_digits_until_pound() -> None:
    c = DtmfCollector(clock=Clock())
    assert [c.feed(d) for d in "1234"] == [None] * 4
    out = c.feed("#")
    assert out and out.kind == "digits" and out.digits == "1234"


def test_dtmf_zero_first_is_operator_but_not_inside_a_number() -> None:
    c = DtmfCollector(clock=Clock())
    assert c.feed("0").kind == "operator"  # type: ignore[union-attr]
    c = DtmfCollector(clock=Clock())
    for d in "102#":
        out = c.feed(d)
    assert out and out.kind == "digits" and out.digits == "102"
    c = DtmfCollector(operator_digit=None, max_digits=3, clock=Clock())
    for d in "007":
        out = c.feed(d)
    assert out and out.digits == "007"


def test_dtmf_timeout_star_and_max_digits() -> None:
    clock = Clock()
    c = DtmfCollector(timeout_s=5, clock=clock)
    c.feed("9")
    c.feed("*")  # clear
    c.feed("4")
    clock.t = 4.9
    assert c.check_timeout() is None
    clock.t = 10.0
    out = c.check_timeout()
    assert out and out.kind == "timeout" and out.digits == "4"
    c = DtmfCollector(max_digits=2, clock=Clock())
    c.feed("5")
    assert c.feed("6").digits == "56"  # type: ignore[union-attr]


async def test_dtmf_async_result_and_room_events() -> None:
    class Room:  # the `rtc.Room` event-emitter surface the collector uses
        def __init__(self) -> None:
            self.handlers: list = []

        def on(self, ev: str, fn) -> None:  # noqa: ANN001
            assert ev == "sip_dtmf_received"
            self.handlers.append(fn)

        def off(self, ev: str, fn) -> None:  # noqa: ANN001
            self.handlers.remove(fn)

    room = Room()
    c = DtmfCollector(timeout_s=0.2)
    detach = c.attach(room)
    task = asyncio.create_task(c.result())
    await asyncio.sleep(0)
    for d in "42":
        room.handlers[0](type("Ev", (), {"digit": d})())
    out = await asyncio.wait_for(task, 2)
    assert out.kind == "timeout" and out.digits == "42"  # no '#': inactivity ends it
    detach()
    assert room.handlers == []


async def test_dtmf_zero_leads_to_transfer_request(call) -> None:  # noqa: ANN001
    fake, lk = call
    c = DtmfCollector()
    if c.feed("0").kind == "operator":  # type: ignore[union-attr]
        tenant = tenant_for_call(caller_info(INBOUND_ATTRS))
        res = await transfer_cold(lk, ROOM, CALLER, tenant.transfer_number)
    assert res.ok and res.reason is TransferReason.COMPLETED
    (req,) = fake.transfers
    assert req.room_name == ROOM and req.participant_identity == CALLER
    assert req.transfer_to == "tel:" + tenant.transfer_number  # type: ignore[operator]
    assert CALLER not in fake.participants[ROOM]  # the caller left for the human


@pytest.mark.parametrize(
    ("mode", "reason", "status"),
    [
        ("busy", TransferReason.BUSY, 486),
        ("no-answer", TransferReason.NO_ANSWER, 480),
        ("timeout", TransferReason.NO_ANSWER, 408),
        ("rejected", TransferReason.REJECTED, 603),
        ("forbidden", TransferReason.REJECTED, 403),
    ],
)
async def test_transfer_failure_is_typed(call, mode: str, reason: TransferReason, status: int) -> None:  # noqa: ANN001
    fake, lk = call
    fake.transfer_failure = mode
    res = await transfer_cold(lk, ROOM, CALLER, "+15550100200")
    assert not res.ok and res.reason is reason and res.sip_status == status
    assert res.caller_message()  # something to tell the caller
    assert CALLER in fake.participants[ROOM]  # the caller is still with the agent


async def test_transfer_without_number_or_to_missing_participant(call) -> None:  # noqa: ANN001
    fake, lk = call
    assert (await transfer_cold(lk, ROOM, CALLER, None)).reason is TransferReason.NOT_CONFIGURED
    res = await transfer_cold(lk, ROOM, "nobody", "+15550100200")
    assert res.reason is TransferReason.FAILED and "not_found" in res.detail
    assert not fake.transfers[-1].transfer_to.startswith("+")


async def test_end_call_deletes_the_room(call) -> None:  # noqa: ANN001
    fake, lk = call
    assert await end_call(lk, ROOM) is True
    assert ROOM not in fake.rooms and ROOM not in fake.participants
    assert fake.requests[-1].method == "DeleteRoom" and fake.requests[-1].claims.video.room_create
    assert await end_call(lk, ROOM) is False  # already gone: not an error


def test_idle_policy_and_amd() -> None:
    p = IdlePolicy(max_prompts=1)
    assert [p.next_action(0), p.next_action(1)] == ["prompt", "hangup"]
    assert amd_action("human", False) == "talk"
    assert amd_action("machine-vm", True) == "voicemail"
    assert amd_action("machine-vm", False) == "hangup"
    assert amd_action("machine-unavailable", True) == "hangup"
