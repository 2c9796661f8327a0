"""The `cloud` profile's real livekit OpenAI plugins against a local fake OpenAI-compatible server.

No real network: `OPENAI_BASE_URL` points at `tests.support.fake_openai`, which speaks the OpenAI wire
protocol (streamed chat completions, multipart transcriptions answered by the local whisper).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit.agents import llm, stt
from livekit.plugins import openai

from agent.providers import build_providers
from agent.sim.run import run_call
from core.settings import Settings, get_settings
from tests.support.fake_openai import FakeOpenAI, answer_for, running_fake_openai, use_fake_for_cloud

HERE = Path(__file__).resolve().parent


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with running_fake_openai(api_key="dummy") as server:
        use_fake_for_cloud(monkeypatch, server)
        try:
            yield server
        finally:
            get_settings.cache_clear()


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


async def test_cloud_llm_streams_from_the_fake(fake: FakeOpenAI) -> None:
    providers = build_providers("cloud", Settings())
    assert isinstance(providers.llm, openai.LLM) and isinstance(providers.stt, stt.FallbackAdapter)
    assert providers.stt.model == "gpt-4o-mini-transcribe"  # OpenAI first, local whisper behind it
    assert providers.llm.model == "gpt-4o-mini"

    ctx = llm.ChatContext()
    ctx.add_message(role="system", content="You answer phone calls for a hardware store.")
    ctx.add_message(role="user", content="What are your opening hours?")
    parts: list[str] = []
    usage: llm.CompletionUsage | None = None
    async with providers.llm.chat(chat_ctx=ctx) as stream:
        async for chunk in stream:
            if chunk.delta is not None and chunk.delta.content:
                parts.append(chunk.delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
    await providers.llm.aclose()

    assert len(parts) > 3  # really streamed, piece by piece
    assert "".join(parts).strip() == answer_for("What are your opening hours?")
    assert usage is not None and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    [req] = fake.chat_requests()
    assert req.model == "gpt-4o-mini"
    assert req.stream is True
    assert req.body.get("stream_options") == {"include_usage": True}
    assert req.auth == "Bearer dummy"
    assert [m["role"] for m in req.messages] == ["system", "user"]
    assert req.messages[-1]["content"] == "What are your opening hours?"


async def test_cloud_stt_transcribes_through_the_fake(fake: FakeOpenAI) -> None:
    """The HTTP transcription path: real plugin upload, real whisper answer."""
    import numpy as np
    from livekit import rtc

    from agent.sim.caller_voice import synthesize_caller

    rate = 16000
    pcm = synthesize_caller("What are your opening hours?", rate)
    samples = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    frame = rtc.AudioFrame(samples.tobytes(), rate, 1, len(samples))
    providers = build_providers("cloud", Settings())
    ev = await providers.stt.recognize([frame])
    await providers.stt.aclose()
    # piper's synthesis is not bit-exact run to run: tiny.en has heard "opening now" once
    assert "opening" in ev.alternatives[0].text.lower()
    [req] = fake.transcription_requests()
    assert req.body["model"] == "gpt-4o-mini-transcribe" and req.body.get("language") == "en"
    assert req.auth == "Bearer dummy"


@pytest.mark.slow
async def test_cloud_profile_call(fake: FakeOpenAI, tmp_path: Path) -> None:
    result = await run_call(
        HERE / "data" / "cloud-two-turns.yaml", tmp_path, profile="cloud", use_cache=False
    )
    assert result.error is None, result.error
    assert len(result.turns) == 2
    served = {_norm(a) for a in fake.answers()}
    for t in result.turns:
        assert t.user_text and t.agent_text, t
        assert t.voice_to_voice is not None and 0.05 < t.voice_to_voice < 30, t  # hang guard only
        # the agent's words are the fake server's answer to what whisper heard
        assert _norm(t.agent_text) in served, (t.agent_text, served)
        assert _norm(t.agent_text) == _norm(answer_for(t.user_text)), t
        assert t.llm_ttft is not None
    assert "close" in result.turns[0].user_text.lower()
    assert "deliver" in result.turns[1].user_text.lower()

    reqs = fake.chat_requests()
    assert reqs and all(r.model == "gpt-4o-mini" and r.stream and r.auth == "Bearer dummy" for r in reqs)
    # the tenant's instructions reach the endpoint as the system message
    assert reqs[-1].messages[0]["role"] in ("system", "developer")
    stt_reqs = fake.transcription_requests()
    assert stt_reqs and all(r.body["model"] == "gpt-4o-mini-transcribe" for r in stt_reqs)
