"""The LiveKit worker: options, prewarm, tenant/session wiring and the per-call report.

No LiveKit server runs here, so the room-connected part of `entrypoint` (connect + wait for the
SIP participant) is not exercised; everything after it runs for real: a fake job context from
livekit-agents' own `testing.fake_job_context`, the real AgentSession (instant providers,
simulator audio I/O) and the real `livekit-api` client against tests/support/fake_livekit.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from livekit import api
from livekit.agents import AgentServer, JobExecutorType, JobProcess
from livekit.agents.testing import fake_job_context

from agent.sim.audio_io import TICK, SimAudioInput, SimAudioOutput, to_frame
from agent.worker import (
    LOAD_THRESHOLD,
    PhoneCall,
    entrypoint,
    load,
    prewarm,
    server_options,
    setup_call,
)
from sip.config import DEFAULT_AGENT_NAME
from tests.support.fake_livekit import FakeLiveKit

ROOM, CALLER = "call-acme-_+14155550123_abc", "sip_+14155550123"
ACME_ATTRS = {
    "sip.callID": "SCL_1",
    "sip.callStatus": "active",
    "sip.phoneNumber": "+14155550123",
    "sip.trunkPhoneNumber": "+15550100100",  # Acme's number
}
INBOUND_META = '{"direction":"inbound","dispatch_rule":"acme","tenant":"acme"}'


def test_worker_options_dispatch_explicitly_by_agent_name() -> None:
    opts = server_options()
    assert opts.agent_name == DEFAULT_AGENT_NAME == "callcenter"
    assert (opts.entrypoint_fnc, opts.prewarm_fnc, opts.load_fnc) == (entrypoint, prewarm, load)
    assert opts.drain_timeout >= 30 * 60  # SIGTERM waits for a full-length call
    server = AgentServer.from_server_options(opts)
    assert server._agent_name == "callcenter"  # what the worker registers with
    assert 0.0 <= load(server) <= 1.0 and LOAD_THRESHOLD < 1.0


def test_prewarm_loads_providers_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCENTER_WORKER_PROFILE", "instant")
    proc = JobProcess(executor_type=JobExecutorType.THREAD, user_arguments=None, http_proxy=None)
    prewarm(proc)
    assert proc.userdata["providers"].name == "instant"
    assert proc.userdata["config"].profile == "instant"


def test_setup_call_picks_tenant_and_direction() -> None:
    s = setup_call(ACME_ATTRS, CALLER, ROOM, INBOUND_META)
    assert (s.tenant.name, s.direction, s.info.caller_number) == ("acme", "inbound", "+14155550123")
    globex = dict(ACME_ATTRS, **{"sip.trunkPhoneNumber": "+15550200100"})
    assert setup_call(globex, CALLER, ROOM, None).tenant.name == "globex"
    # Outbound: the trunk number is our caller id; the tenant `sip dial` stamped wins.
    out_meta = '{"direction":"outbound","tenant":"globex","phone_number":"+14155550123"}'
    s = setup_call(ACME_ATTRS, CALLER, ROOM, out_meta)
    assert (s.tenant.name, s.direction) == ("globex", "outbound")


async def _line(inp: SimAudioInput, out: SimAudioOutput) -> None:
    while True:
        inp.push(to_frame(np.zeros(TICK, np.float32)))
        out.tick(TICK)
        await asyncio.sleep(0.02)


async def test_call_wiring_in_a_fake_job_context(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALLCENTER_WORKER_PROFILE", "instant")
    monkeypatch.setenv("CALLCENTER_CALLS_DIR", str(tmp_path))
    old_call = tmp_path / "call-from-last-year"  # past the default 30-day retention
    old_call.mkdir()
    (old_call / "transcript.json").write_text("{}")
    os.utime(old_call / "transcript.json", (time.time() - 365 * 86400,) * 2)
    async with FakeLiveKit() as fake:
        fake.add_participant(ROOM, CALLER, ACME_ATTRS)
        lk = api.LiveKitAPI(fake.url, fake.api_key, fake.api_secret)
        with fake_job_context(job_metadata=INBOUND_META) as ctx:
            prewarm(ctx.proc)
            # What entrypoint does once the SIP participant has joined.
            setup = setup_call(ACME_ATTRS, CALLER, ROOM, ctx.job.metadata)
            call = PhoneCall(setup, ctx.proc.userdata["providers"], lk, ctx.proc.userdata["config"])
            inp, out = SimAudioInput(), SimAudioOutput()
            call.session.input.audio, call.session.output.audio = inp, out
            line = asyncio.create_task(_line(inp, out))
            try:
                await call.start(None)
                assert ctx.primary_session is call.session
                assert call.greeting is not None
                await call.greeting
                await call.session.run(user_input="What are your opening hours?")
                call.phone.on_dtmf("0")  # press 0 for a person
                await asyncio.wait_for(call.phone.ended.wait(), 10)
                await call.aclose()
            finally:
                line.cancel()
                inp.close()
                await call.session.aclose()
        await lk.aclose()
    (req,) = fake.calls("TransferSIPParticipant")
    assert req.transfer_to == "tel:+15550100200"  # Acme's transfer number

    out_dir = tmp_path / ROOM
    transcript = json.loads((out_dir / "transcript.json").read_text())
    assert transcript["tenant"] == "acme" and transcript["direction"] == "inbound"
    texts = [i["text"] for i in transcript["items"]]
    assert texts[0] == "Thanks for calling Acme Hardware, how can I help?"  # greeted for the dialed tenant
    assert [e["type"] for e in transcript["events"]] == ["dtmf", "transfer"]
    assert transcript["events"][-1]["ok"] is True  # the transfer ended our part of the call
    metrics = json.loads((out_dir / "metrics.json").read_text())
    (turn,) = metrics["turns"]
    assert turn["user_text"] == "What are your opening hours?" and turn["agent_text"]
    assert turn["llm_ttft"] is not None
    assert turn["eou_delay"] is None  # a typed turn has no speech to measure: null, not 0
    assert (out_dir / "transcript.json").stat().st_mode & 0o077 == 0
    assert out_dir.stat().st_mode & 0o077 == 0
    assert not old_call.exists()  # the worker applied the retention period after reporting this call


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LIVEKIT_URL": "wss://admin:Hunter2secret@lk.example.com"}, "must not contain credentials"),
        ({"LIVEKIT_URL": "ws://127.0.0.1:7880", "CALLCENTER_WORKER_METRICS_PORT": "99999"}, "not a port"),
        (
            {"LIVEKIT_URL": "", "LIVEKIT_API_KEY": "", "LIVEKIT_API_SECRET": ""},
            "needs LIVEKIT_URL, LIVEKIT_API_KEY",
        ),
    ],
)
def test_worker_start_refuses_bad_settings_in_one_line(env: dict[str, str], needle: str) -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "worker", "start"],
        env={**os.environ, "LIVEKIT_API_KEY": "devkey", "LIVEKIT_API_SECRET": "s" * 32, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], run.stderr[-2000:]
    assert "Hunter2secret" not in run.stdout + run.stderr and "Traceback" not in run.stderr
