"""Warm transfer (issue 22 item 3): the caller is told, hears hold audio, the human is briefed
with the call summary before the bridge, and a human who is not reached falls back.

- the simulator: a full call through the real session on the local profile (whisper, hibari),
  a simulated human leg (`SimCallControl`), hold audio read back from call.wav; the fallbacks on
  the instant profile (what is said and recorded does not depend on the models);
- the LiveKit path: livekit's `WarmTransferTask` (our `BriefedWarmTransfer`) making its Twirp
  calls with the real livekit-api client against tests/support/fake_livekit.py, and the worker's
  assembled call falling back to a cold transfer when no media server can be reached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml
from livekit import api
from livekit.agents import Agent, AgentSession
from livekit.agents.beta.workflows import WarmTransferResult
from livekit.agents.llm import ToolError
from livekit.agents.testing import fake_job_context
from livekit.agents.utils import http_context
from livekit.agents.voice.agent import AgentTask

from agent.call.session import create_session
from agent.providers import build_providers
from agent.sim.audio_io import TICK, TL_RATE, SimAudioInput, SimAudioOutput, to_frame
from agent.sim.call import SimulatedCall
from agent.sim.scenario import load_scenario
from agent.worker import PhoneCall, WorkerConfig, setup_call
from core.settings import get_settings
from core.tenants import Tenant, WarmTransfer, load_tenant
from sip.behaviours import ANYTHING_ELSE, CALLBACK_PROMISE, COLD_FALLBACK, WARM_ANNOUNCEMENT
from sip.warm import HOLD_AUDIO, BriefedWarmTransfer, briefing_for, run_task, warm_result
from tests.support.fake_livekit import FakeLiveKit

HUMAN = "+15550100777"
TRUNK_NAME = "outbound-main"


def _warm_tenant(**cfg: Any) -> Tenant:
    block = WarmTransfer.model_validate({"to": HUMAN, "outbound_trunk_id": "ST_x", **cfg})
    return load_tenant("acme").model_copy(update={"warm_transfer": block})


def _events(transcript: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e for e in transcript["events"] if e["type"] == type_]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def _said(transcript: dict[str, Any]) -> list[str]:
    return [i["text"] or "" for i in transcript["items"] if i["role"] == "assistant"]


async def _sim_call(
    tmp_path: Path,
    tenant: Tenant,
    turns: list[dict[str, Any]],
    *,
    profile: str,
    human: dict[str, Any],
) -> tuple[SimulatedCall, dict[str, Any]]:
    path = tmp_path / "scenario.yaml"
    scenario = {"tenant": "acme", "line": {"codec": "pcmu", "noise": "none"}, "human": human, "turns": turns}
    path.write_text(yaml.safe_dump(scenario))
    call = SimulatedCall(
        load_scenario(path), tenant, build_providers(profile, get_settings()), tmp_path / "out"
    )
    result = await call.run()
    assert result.error is None
    return call, json.loads((tmp_path / "out" / "transcript.json").read_text())


# ---------------------------------------------------------------------------- the simulator


async def test_a_spoken_request_for_a_human_transfers_warm_with_hold_audio(tmp_path: Path) -> None:
    tenant = _warm_tenant()
    call, transcript = await _sim_call(
        tmp_path,
        tenant,
        # the caller waits on the line (the call ends at the bridge, long before this pause does)
        [{"say": "Hi, my name is Dana. Can I speak to a real person please?"}, {"pause": 20}],
        profile="local",
        human={"outcome": "completed", "ring_s": 3.5},
    )
    (transfer,) = _events(transcript, "transfer")
    assert transfer["warm"] is True and transfer["ok"] is True and transfer["to"] == HUMAN
    summary = transfer["summary"]
    assert summary.startswith("Caller Dana, Acme Hardware line, asked for a person by voice.")
    assert "Asked:" in summary
    assert transfer["briefing"] == briefing_for(tenant, summary)  # what the human heard first
    assert _said(transcript)[1:] == [WARM_ANNOUNCEMENT]  # the caller was told before the hold

    # the caller's channel (right) carries the hold clip while the human's phone rang (the clip
    # fades in over its first ~2.5 s, as on LiveKit: the last second is at full level)
    wav, rate = sf.read(tmp_path / "out" / "call.wav", dtype="float32")
    assert rate == TL_RATE and transfer["hold_s"] >= 3.5
    end = int(transfer["t"] * rate)
    held = wav[end - int(transfer["hold_s"] * rate) : end, 1]
    quiet = wav[: int(0.05 * rate), 1]  # the first ticks, before the greeting: the line's floor
    full = held[-rate:]
    assert float(np.mean(np.abs(full) > 0.01)) > 0.5  # non-silent samples
    assert _rms(full) > 0.03 and _rms(held) > 20 * max(_rms(quiet), 1e-4), (_rms(held), _rms(quiet))
    assert call.hold is not None and call.hold.played >= int(1.5 * rate) and not call.hold.playing
    # the announcement came before the hold: hold audio starts after the agent stopped talking
    assert not any(e["type"] == "hangup" and e.get("by") == "caller" for e in transcript["events"])


@pytest.mark.parametrize("fallback", ["cold", "callback"])
async def test_a_human_who_does_not_answer_falls_back_and_the_caller_is_told(
    tmp_path: Path, fallback: str
) -> None:
    tenant = _warm_tenant(fallback=fallback)
    _call, transcript = await _sim_call(
        tmp_path,
        tenant,
        [{"dtmf": "0"}, {"pause": 6}],
        profile="instant",
        human={"outcome": "no-answer", "ring_s": 0.5},
    )
    transfers = _events(transcript, "transfer")
    warm = transfers[0]
    assert warm["warm"] is True and warm["ok"] is False and warm["reason"] == "no_answer"
    assert warm["fallback"] == fallback and "briefing" not in warm  # nobody was briefed
    said = _said(transcript)
    if fallback == "cold":
        (cold,) = transfers[1:]
        assert cold["warm"] is False and cold["ok"] is True and cold["to"] == tenant.transfer_number
        assert cold["summary"] == warm["summary"]
        assert f"Nobody picked up just now. {COLD_FALLBACK}" in said
    else:
        assert len(transfers) == 1
        (callback,) = _events(transcript, "callback")
        assert callback["reason"] == "no_answer" and callback["summary"] == warm["summary"]
        assert f"Nobody picked up just now. {CALLBACK_PROMISE}" in said and said[-1] == ANYTHING_ELSE
        # the call went on: the caller hung up, not the agent
        assert [h["by"] for h in _events(transcript, "hangup")] == ["caller"]


def test_the_warm_transfer_block_is_checked() -> None:
    with pytest.raises(ValueError, match="fallback"):
        WarmTransfer.model_validate({"fallback": "voicemail"})
    with pytest.raises(ValueError, match="ringing_tiemout"):
        WarmTransfer.model_validate({"ringing_tiemout": 5})  # a typo is refused, not ignored
    acme = load_tenant("acme")
    assert acme.warm_transfer is None and acme.warm_transfer_to is None  # shipped: cold
    # routing, not knowledge: the cached answers stay valid when an operator adds the block
    assert _warm_tenant().knowledge_version == acme.knowledge_version
    assert _warm_tenant(to=None).warm_transfer_to == acme.transfer_number


# ---------------------------------------------------------------------------- LiveKit


@pytest.fixture
def livekit_env(monkeypatch: pytest.MonkeyPatch) -> FakeLiveKit:
    fake = FakeLiveKit()
    monkeypatch.setenv("LIVEKIT_API_KEY", fake.api_key)
    monkeypatch.setenv("LIVEKIT_API_SECRET", fake.api_secret)
    return fake


class _Room:
    """The connected-room objects of a LiveKit call (WebRTC media, which no server here can
    carry); the Twirp requests they lead to are the real client's against the fake server."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on(self, *_a: Any) -> None: ...

    def off(self, *_a: Any) -> None: ...


class _HumanSession:
    def __init__(self, room: str) -> None:
        self.room_io = type("RoomIO", (), {"room": _Room(room)})()

    def shutdown(self) -> None: ...


async def test_warm_transfer_task_dials_then_moves_the_human(livekit_env: FakeLiveKit) -> None:
    fake, room = livekit_env, "call-acme-1"
    tenant = _warm_tenant(caller_id="+15550100100", ringing_timeout_s=15)
    async with fake:
        fake.outbound["ST_x"] = api.SIPOutboundTrunkInfo(
            sip_trunk_id="ST_x", name=TRUNK_NAME, address="sip.example.com", numbers=["+15550100100"]
        )
        fake.add_participant(room, "sip_+14155550123")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LIVEKIT_URL", fake.url)
            http_context._new_session_ctx()
            with fake_job_context():
                task = BriefedWarmTransfer(tenant, briefing_for(tenant, "Caller Dana."))
                assert task._hold_audio == HOLD_AUDIO and HOLD_AUDIO.source.name == "HOLD_MUSIC"
                side = f"{room}-human-agent"  # the task's side room for the human
                await task._originate_human_agent(room_name=side, identity="human-agent-sip", room=None)
                task._caller_room = _Room(room)  # type: ignore[assignment]
                task._human_agent_sess = _HumanSession(side)  # type: ignore[assignment]
                task._set_io_enabled = lambda _on: None  # type: ignore[method-assign]
                await task._bridge()
                # the task's result (awaiting it needs an agent's on_enter; run_task does that)
                outcome = task._AgentTask__fut.result()  # type: ignore[attr-defined]
            await http_context._close_http_ctx()
    assert [r.method for r in fake.requests] == ["CreateSIPParticipant", "MoveParticipant"]
    dial, move = (r.request for r in fake.requests)
    assert (dial.sip_trunk_id, dial.sip_call_to, dial.sip_number) == ("ST_x", HUMAN, "+15550100100")
    assert dial.wait_until_answered and dial.room_name == side
    assert dial.ringing_timeout.ToSeconds() == 15
    assert (move.room, move.identity, move.destination_room) == (side, "human-agent-sip", room)
    assert "human-agent-sip" in fake.participants[room]  # bridged: the human is in the caller's room
    assert isinstance(outcome, WarmTransferResult)
    assert warm_result(task, outcome).ok


async def test_a_busy_human_is_a_busy_transfer(livekit_env: FakeLiveKit) -> None:
    fake = livekit_env
    fake.dial_failure = "busy"
    async with fake:
        fake.outbound["ST_x"] = api.SIPOutboundTrunkInfo(
            sip_trunk_id="ST_x", address="sip.example.com", numbers=["+15550100100"]
        )
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LIVEKIT_URL", fake.url)
            http_context._new_session_ctx()
            with fake_job_context():
                task = BriefedWarmTransfer(_warm_tenant(), "briefing")
                with pytest.raises(api.twirp_client.SipCallError):
                    await task._originate_human_agent(room_name="r-human-agent", identity="h", room=None)
            await http_context._close_http_ctx()
    r = warm_result(task, ToolError("could not dial human agent"))
    assert (r.ok, r.reason.value, r.sip_status) == (False, "busy", 486)


async def test_the_worker_falls_back_to_a_cold_transfer_when_the_warm_one_fails(
    livekit_env: FakeLiveKit, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker's assembled call on the real session: keypad 0 -> announcement -> livekit's
    WarmTransferTask (run through `run_task`), which cannot reach a media server here -> the
    tenant's cold fallback by SIP REFER; the caller is told, both attempts are recorded."""
    monkeypatch.setenv("CALLCENTER_WORKER_PROFILE", "instant")
    fake, room, caller = livekit_env, "call-acme-2", "sip_+14155550123"
    attrs = {"sip.phoneNumber": "+14155550123", "sip.trunkPhoneNumber": "+15550100100"}
    async with fake:
        fake.add_participant(room, caller, attrs)
        monkeypatch.setenv("LIVEKIT_URL", fake.url)
        lk = api.LiveKitAPI(fake.url, fake.api_key, fake.api_secret)
        with fake_job_context():
            setup = setup_call(attrs, caller, room, '{"tenant":"acme"}')
            setup = dataclasses.replace(setup, tenant=_warm_tenant())
            config = WorkerConfig(profile="instant", calls_dir=tmp_path, metrics_port=None)
            call = PhoneCall(setup, build_providers("instant", get_settings()), lk, config)
            inp, out = SimAudioInput(), SimAudioOutput()
            call.session.input.audio, call.session.output.audio = inp, out

            async def line() -> None:
                while True:
                    inp.push(to_frame(np.zeros(TICK, np.float32)))
                    out.tick(TICK)
                    await asyncio.sleep(0.02)

            clock = asyncio.create_task(line())
            try:
                await call.start(None)
                call.phone.on_dtmf("0")
                await asyncio.wait_for(call.phone.ended.wait(), 30)
                await call.aclose()
            finally:
                clock.cancel()
                inp.close()
                await call.session.aclose()
        await lk.aclose()
    warm, cold = (e for e in call.control.events if e["type"] == "transfer")
    assert warm["warm"] is True and warm["ok"] is False and warm["fallback"] == "cold"
    assert warm["hold_s"] >= 0 and "briefing" not in warm  # nobody was reached
    assert cold["warm"] is False and cold["ok"] is True
    (refer,) = fake.calls("TransferSIPParticipant")
    assert refer.transfer_to == "tel:+15550100200"
    said = [m.text_content for m in call.call.messages() if m.role == "assistant"]
    assert WARM_ANNOUNCEMENT in said and any(COLD_FALLBACK in (s or "") for s in said)
    transcript = json.loads((tmp_path / room / "transcript.json").read_text())
    assert [e["warm"] for e in _events(transcript, "transfer")] == [True, False]


# ---------------------------------------------------------------------------- run_task


class _Quick(AgentTask[str]):
    """Completes in on_enter, as WarmTransferTask does once the human is bridged or lost."""

    def __init__(self, fail: bool) -> None:
        super().__init__(instructions="test task")
        self.fail = fail

    async def on_enter(self) -> None:
        await asyncio.sleep(0.05)
        self.complete(ToolError("human not reached") if self.fail else "bridged")


class _Never(AgentTask[str]):
    def __init__(self) -> None:
        super().__init__(instructions="test task")


async def _running_session() -> tuple[AgentSession, Agent, SimAudioInput]:
    session = create_session(build_providers("instant", get_settings()))
    inp = SimAudioInput()
    session.input.audio, session.output.audio = inp, SimAudioOutput()
    agent = Agent(instructions="the call's agent")
    await session.start(agent, record=False)
    return session, agent, inp


async def test_run_task_runs_an_agent_task_outside_a_tool_and_hands_back_on_failure() -> None:
    session, agent, inp = await _running_session()
    try:
        assert await asyncio.wait_for(run_task(session, _Quick(fail=False)), 10) == "bridged"
        assert session.current_agent is agent
        with pytest.raises(ToolError, match="human not reached"):
            await asyncio.wait_for(run_task(session, _Quick(fail=True)), 10)
        assert session.current_agent is agent  # the call's agent talks to the caller again
    finally:
        inp.close()
        await session.aclose()


async def test_run_task_ends_when_the_call_ends_during_the_task() -> None:
    session, _agent, inp = await _running_session()
    running = asyncio.create_task(run_task(session, _Never()))
    await asyncio.sleep(0.3)
    inp.close()
    await session.aclose()  # the caller hung up while on hold
    with pytest.raises(ToolError):  # livekit cancels the task: not left waiting for it
        await asyncio.wait_for(running, 10)
