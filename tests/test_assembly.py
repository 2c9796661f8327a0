"""One call, assembled once: the LiveKit worker's call path and `callcenter call` run the same
parts (bounded context, document desk over MCP, LLM recovery, phone behaviours, cache) through
`agent/call/assemble.py`, and write one report schema that `cache warm --from-calls` mines.

The worker side runs `PhoneCall` as its entrypoint does once the SIP participant joined (no
LiveKit server here: `room=None` with the simulator's audio I/O, the real `livekit-api` client
against tests/support/fake_livekit.py). Its LLM is a real OpenAI plugin pointed at a port where
nothing listens, so the LLM really fails after livekit's retries and recovery must speak.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from livekit import api
from livekit.agents.testing import fake_job_context
from livekit.plugins import openai

from agent.call.assemble import Call, CallServices
from agent.call.context import ContextManager
from agent.call.documents import DocumentDesk
from agent.call.recovery import APOLOGY, LLMRecovery
from agent.providers import build_providers
from agent.sim.audio_io import TICK, SimAudioInput, SimAudioOutput, to_frame
from agent.sim.run import run_call
from agent.worker import PhoneCall, WorkerConfig, setup_call
from cache.admin import CacheAdmin
from core.call_report import SCHEMA_VERSION
from core.settings import REPO_ROOT, Settings, get_settings
from sip.behaviours import PhoneBehaviours
from tests.support.fake_livekit import FakeLiveKit
from tests.support.workers import free_port

ROOM, CALLER = "call-acme-assembly", "sip_+14155550123"
ATTRS = {"sip.callID": "SCL_9", "sip.phoneNumber": "+14155550123", "sip.trunkPhoneNumber": "+15550100100"}
META = '{"direction":"inbound","tenant":"acme"}'
SEARCH = "Please search the documents for mattress removal."
# in the facts (scope passes it on) and far from every FAQ entry (no cache hit): it reaches the LLM
ODD = "Is delivery free on a sixty dollar order?"


@pytest.fixture
def services(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CallServices:
    """The process's services as a worker opens them, on the test Redis and a copy of the docs."""
    docs = tmp_path / "docs"
    shutil.copytree(REPO_ROOT / "documents", docs)
    monkeypatch.setenv("CALLCENTER_DOCS_DIR", str(docs))
    return CallServices.open(Settings(redis_url=redis_url))


async def _line(inp: SimAudioInput, out: SimAudioOutput) -> None:
    while True:
        inp.push(to_frame(np.zeros(TICK, np.float32)))
        out.tick(TICK)
        await asyncio.sleep(0.02)


def assert_assembled(call: Call) -> None:
    parts = call.attached
    assert isinstance(parts["context"], ContextManager) and call.agent.context is parts["context"]
    assert parts["context"].jobs is not None  # summaries go to Celery
    assert isinstance(parts["documents"], DocumentDesk) and call.agent.documents is parts["documents"]
    assert isinstance(parts["recovery"], LLMRecovery) and parts["recovery"].session is call.session
    assert isinstance(parts["phone"], PhoneBehaviours) and parts["phone"].session is call.session
    assert parts["cache"] is not None and call.agent.cache is parts["cache"]


async def test_worker_call_path_runs_the_assembled_call(
    services: CallServices, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls_dir = tmp_path / "calls"
    monkeypatch.setenv("CALLCENTER_CALLS_DIR", str(calls_dir))
    config = dataclasses.replace(WorkerConfig.from_env(), profile="instant")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: every LLM request fails
    providers = dataclasses.replace(
        build_providers("instant", get_settings()),
        llm=openai.LLM(model="gpt-4o-mini", base_url=dead, api_key="x"),
    )
    async with FakeLiveKit() as fake:
        fake.add_participant(ROOM, CALLER, ATTRS)
        lk = api.LiveKitAPI(fake.url, fake.api_key, fake.api_secret)
        with fake_job_context(job_metadata=META):
            call = PhoneCall(setup_call(ATTRS, CALLER, ROOM, META), providers, lk, config, services=services)
            inp, out = SimAudioInput(), SimAudioOutput()
            call.session.input.audio, call.session.output.audio = inp, out
            line = asyncio.create_task(_line(inp, out))
            try:
                await call.start(None)
                assert_assembled(call.call)
                await call.greeting
                found = await call.session.run(user_input=SEARCH)  # the desk, over MCP (stdio child)
                await found
                await call.session.run(user_input=ODD)  # the LLM fails for good: recovery speaks
                for _ in range(300):  # hang guard: livekit retries 3 times, 2 s apart
                    if call.call.recovery is not None and call.call.recovery.apologies:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # let the apology play
            finally:
                await call.aclose()  # closes the session: the report is written on close
                line.cancel()
                inp.close()
        await lk.aclose()
    desk = call.call.desk
    assert desk is not None and desk._closed  # hang-up closed the MCP session
    assert call.call.recovery is not None and call.call.recovery.failures >= 1
    said = [m.text_content for m in call.call.messages() if m.role == "assistant"]
    assert APOLOGY in said, said
    assert any("mattress" in (s or "").lower() for s in said), said  # read from the documents

    transcript = json.loads((calls_dir / ROOM / "transcript.json").read_text())
    assert transcript["schema_version"] == SCHEMA_VERSION and transcript["tenant"] == "acme"
    assert [t["user_text"] for t in transcript["turns"]] == [SEARCH, ODD]
    assert transcript["llm_failures"] >= 1 and "context" in transcript
    # `cache warm --from-calls` mines what the worker wrote
    mined = CacheAdmin(redis_url).mine_calls(calls_dir, tenant="acme", min_count=1)
    assert ODD in [m["question"] for m in mined], mined


async def test_simulated_call_runs_the_same_assembly(services: CallServices, tmp_path: Path) -> None:
    services = dataclasses.replace(services, sandbox_docs=True)
    result = await run_call(
        REPO_ROOT / "scenarios" / "opening-hours.yaml",
        tmp_path / "call",
        profile="instant",
        services=services,
    )
    assert result.error is None and isinstance(result.call, Call)
    assert_assembled(result.call)
    assert result.call.desk is not None and result.call.desk._closed
    assert (tmp_path / "call" / "documents" / "policy.md").exists()  # its own copy of the docs
    transcript = json.loads((tmp_path / "call" / "transcript.json").read_text())
    metrics = json.loads((tmp_path / "call" / "metrics.json").read_text())
    assert transcript["schema_version"] == metrics["schema_version"] == SCHEMA_VERSION
    assert {"call_id", "tenant", "profile", "items", "turns", "events", "error", "context"} <= set(transcript)
    assert len(metrics["turns"]) == 3 and all(t["agent_text"] for t in metrics["turns"])
