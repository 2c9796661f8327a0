"""plan/apply/delete/dial against the fake Twirp server, through the real livekit-api client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from livekit import api
from livekit.protocol import sip as pb_sip

from core.errors import UserError
from sip.config import load_config, parse_config
from sip.operator import SipOperator, connect
from tests.support.fake_livekit import FakeLiveKit

REPO = Path(__file__).resolve().parent.parent
ENV = {
    "SIP_INBOUND_USERNAME": "in-user",
    "SIP_INBOUND_PASSWORD": "in-pass-s3cret",
    "SIP_OUTBOUND_USERNAME": "out-user",
    "SIP_OUTBOUND_PASSWORD": "out-pass-s3cret",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeLiveKit]:
    async with FakeLiveKit() as f:
        yield f


@pytest.fixture
async def op(fake: FakeLiveKit) -> AsyncIterator[SipOperator]:
    async with connect(fake.url, fake.api_key, fake.api_secret) as lk:
        yield SipOperator(lk)


def example():
    return load_config(REPO / "deploy" / "telephony.yaml")


async def test_plan_on_empty_server_creates_everything(op: SipOperator, fake: FakeLiveKit) -> None:
    plan = await op.plan(example(), ENV)
    assert {(c.kind, c.name, c.action) for c in plan.changes} == {
        ("inbound_trunk", "twilio-inbound", "create"),
        ("outbound_trunk", "twilio-outbound", "create"),
        ("dispatch_rule", "acme-inbound", "create"),
        ("dispatch_rule", "globex-inbound", "create"),
    }
    assert not fake.inbound and not fake.rules  # plan changes nothing
    assert {r.method for r in fake.requests} == {
        "ListSIPInboundTrunk",
        "ListSIPOutboundTrunk",
        "ListSIPDispatchRule",
    }


async def test_apply_then_apply_again_is_a_noop(op: SipOperator, fake: FakeLiveKit) -> None:
    first = await op.apply(example(), ENV)
    assert first.counts()["create"] == 4
    (trunk,) = fake.inbound.values()
    assert trunk.name == "twilio-inbound" and trunk.auth_password == "in-pass-s3cret"
    assert list(trunk.allowed_addresses) == ["54.172.60.0/30", "54.244.51.0/30"]
    assert trunk.krisp_enabled and trunk.max_call_duration.seconds == 1800
    (out,) = fake.outbound.values()
    assert out.transport == pb_sip.SIP_TRANSPORT_AUTO and out.auth_username == "out-user"
    rules = {r.name: r for r in fake.rules.values()}
    acme = rules["acme-inbound"]
    assert list(acme.trunk_ids) == [trunk.sip_trunk_id]
    assert acme.rule.dispatch_rule_individual.room_prefix == "call-acme-"
    assert acme.attributes["callcenter.tenant"] == "acme"
    assert json.loads(acme.room_config.metadata) == {"tenant": "acme"}
    assert acme.room_config.agents[0].agent_name == "callcenter"
    assert json.loads(acme.room_config.agents[0].metadata)["tenant"] == "acme"

    n_requests = len(fake.requests)
    second = await op.apply(example(), ENV)
    assert second.counts() == {"create": 0, "update": 0, "delete": 0, "unchanged": 4, "keep": 0}
    writes = [r.method for r in fake.requests[n_requests:] if not r.method.startswith("List")]
    assert writes == []


async def test_plan_detects_update_and_prune(op: SipOperator, fake: FakeLiveKit) -> None:
    await op.apply(example(), ENV)
    data = {
        "inbound_trunks": [{"name": "twilio-inbound", "numbers": ["+15550100100"], "krisp_enabled": True}],
        "dispatch_rules": [
            {
                "name": "acme-inbound",
                "type": "individual",
                "room_prefix": "acme-",
                "trunks": ["twilio-inbound"],
                "tenant": "acme",
            }
        ],
    }
    cfg = parse_config(data, known_tenants=["acme", "globex"])
    plan = await op.plan(cfg, ENV, prune=True)
    by = {(c.kind, c.name): c for c in plan.changes}
    assert by[("inbound_trunk", "twilio-inbound")].action == "update"
    assert "numbers" in by[("inbound_trunk", "twilio-inbound")].fields
    assert by[("dispatch_rule", "acme-inbound")].action == "update"
    assert by[("dispatch_rule", "globex-inbound")].action == "delete"
    assert by[("outbound_trunk", "twilio-outbound")].action == "delete"
    # without prune (the default) objects missing from the file are kept, and listed as kept
    kept = await op.plan(cfg, ENV)
    assert all(c.action != "delete" for c in kept.changes)
    assert {(c.kind, c.name) for c in kept.kept} == {
        ("dispatch_rule", "globex-inbound"),
        ("outbound_trunk", "twilio-outbound"),
    }

    await op.apply(cfg, ENV, prune=True)
    assert [r.name for r in fake.rules.values()] == ["acme-inbound"]
    assert not fake.outbound
    (trunk,) = fake.inbound.values()
    assert list(trunk.numbers) == ["+15550100100"] and trunk.auth_username == ""
    assert (await op.plan(cfg, ENV)).pending == []


async def test_missing_credential_env_names_the_path(op: SipOperator) -> None:
    with pytest.raises(
        UserError, match=r"inbound_trunks\[0\]\.auth_password_env: environment variable SIP_INBOUND_PASSWORD"
    ):
        await op.plan(example(), {k: v for k, v in ENV.items() if k != "SIP_INBOUND_PASSWORD"})


async def test_delete_by_name(op: SipOperator, fake: FakeLiveKit) -> None:
    await op.apply(example(), ENV)
    c = await op.delete("globex-inbound")
    assert c.kind == "dispatch_rule"
    assert sorted(r.name for r in fake.rules.values()) == ["acme-inbound"]
    with pytest.raises(UserError, match="nothing named"):
        await op.delete("globex-inbound")


async def test_dial_request_shape(op: SipOperator, fake: FakeLiveKit) -> None:
    await op.apply(example(), ENV)
    res = await op.dial("+14155550123", "twilio-outbound", tenant="globex")
    (req,) = fake.calls("CreateSIPParticipant")
    (out,) = fake.outbound.values()
    assert req.sip_trunk_id == out.sip_trunk_id
    assert req.sip_call_to == "+14155550123"
    assert req.room_name == res.room and res.room.startswith("call-globex-out-")
    assert req.participant_identity == "sip-14155550123"
    assert req.participant_attributes["callcenter.tenant"] == "globex"
    assert req.participant_attributes["callcenter.direction"] == "outbound"
    (disp,) = fake.calls("CreateDispatch")
    assert disp.agent_name == "callcenter" and disp.room == res.room
    assert json.loads(disp.metadata) == {
        "direction": "outbound",
        "phone_number": "+14155550123",
        "tenant": "globex",
        "trunk": "twilio-outbound",
    }
    # the JWTs carried the grants LiveKit requires for each call
    by_method = {r.method: r.claims for r in fake.requests}
    assert by_method["CreateSIPParticipant"].sip.call
    assert by_method["CreateDispatch"].video.room_admin and by_method["CreateDispatch"].video.room == res.room
    assert by_method["CreateSIPDispatchRule"].sip.admin
    # the callee is in the room with LiveKit's sip.* attributes
    (p,) = fake.participants[res.room].values()
    assert p.attributes["sip.phoneNumber"] == "+14155550123"


async def test_dial_tenant_defaults_to_trunk_number_owner(op: SipOperator, fake: FakeLiveKit) -> None:
    await op.apply(example(), ENV)
    res = await op.dial("+14155550123", "twilio-outbound")
    assert res.tenant == "acme"  # +15550100100 is the trunk's first number, owned by acme


async def test_dial_bad_input(op: SipOperator, fake: FakeLiveKit) -> None:
    await op.apply(example(), ENV)
    with pytest.raises(UserError, match="not E.164"):
        await op.dial("4155550123", "twilio-outbound")
    with pytest.raises(UserError, match="no outbound trunk named 'nope'"):
        await op.dial("+14155550123", "nope")
    with pytest.raises(UserError, match="unknown tenant"):
        await op.dial("+14155550123", "twilio-outbound", tenant="initech")
    assert not fake.calls("CreateSIPParticipant")


async def test_wrong_secret_and_unreachable_server_are_user_errors(fake: FakeLiveKit) -> None:
    with pytest.raises(UserError, match="rejected the API key"):
        async with connect(fake.url, fake.api_key, "wrong-secret-wrong-secret-wrong-secret") as lk:
            await SipOperator(lk).list()
    with pytest.raises(UserError, match="cannot reach LiveKit"):
        async with connect("http://127.0.0.1:9", "k", "s" * 32) as lk:
            await SipOperator(lk).list()


async def test_fake_requires_the_right_grant(fake: FakeLiveKit) -> None:
    # A token with only roomList must not manage SIP (checks the fake, not just the happy path).
    tok = api.AccessToken(fake.api_key, fake.api_secret).with_grants(api.VideoGrants(room_list=True)).to_jwt()
    body = pb_sip.ListSIPInboundTrunkRequest().SerializeToString()
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            f"{fake.url}/twirp/livekit.SIP/ListSIPInboundTrunk",
            data=body,
            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/protobuf"},
        )
        assert r.status == 403 and (await r.json())["code"] == "permission_denied"
        # Twirp JSON bodies are accepted too
        admin = (
            api.AccessToken(fake.api_key, fake.api_secret).with_sip_grants(api.SIPGrants(admin=True)).to_jwt()
        )
        r = await s.post(
            f"{fake.url}/twirp/livekit.SIP/CreateSIPInboundTrunk",
            json={"trunk": {"name": "j", "numbers": ["+15550001111"]}},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert r.status == 200 and (await r.json())["name"] == "j"
        r = await s.post(
            f"{fake.url}/twirp/livekit.SIP/Nope", data=b"", headers={"Authorization": f"Bearer {admin}"}
        )
        assert r.status == 404 and (await r.json())["code"] == "bad_route"
