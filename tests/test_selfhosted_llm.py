"""The LLM stage on a real self-hosted OpenAI-compatible server (issue 24).

`tests.support.llama_server` runs llama.cpp's HTTP server (from `xllamacpp`) serving the
project's Qwen2.5-0.5B GGUF on 127.0.0.1 in a child process; the call talks to it through the
real `livekit-plugins-openai` code (`CALLCENTER_LLM_PROVIDER=openai`), with the local whisper and
the local voice for the other stages. Nothing is faked: streaming, usage, cancellation and the
restart are llama.cpp's own behaviour, observed through its `/metrics` and `/slots`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from livekit.agents import AgentSession, llm, stt
from livekit.agents.voice.events import ConversationItemAddedEvent, ErrorEvent
from livekit.plugins import openai

import agent.call.assemble as assemble
from agent.call.recovery import APOLOGY
from agent.providers import build_providers
from agent.providers.hibari_tts import LocalVoice
from agent.providers.openai_llm import PrefillOpenAILLM
from agent.providers.whisper_stt import WhisperSTT
from agent.sim.run import run_call
from core.settings import get_settings
from tests.support.llama_server import MODEL_ALIAS, LlamaServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "opening-hours.yaml"
CLEAR = [
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVEN_API_KEY", "CALLCENTER_PROFILE",
    "CALLCENTER_STT_PROVIDER", "CALLCENTER_TTS_PROVIDER", "CALLCENTER_EMBEDDINGS_PROVIDER",
    "CALLCENTER_LLM_TOOLS",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def intent_index() -> None:
    """Embed the intent classifier's exemplars before the first call. `link_phone` starts that in
    the background, and a caller turn that classifies before it finished builds the index a
    second time into the same label list (agent/call/intents.py `_index` is not guarded), after
    which every turn of the process fails with `zip() argument 2 is longer`; seen here on the
    busy shared box. Reported; not this test's subject."""
    from agent.call.intents import default_classifier

    default_classifier()._index()


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    with LlamaServer(threads=1) as server:  # 2 shared cores: the call's whisper/TTS need the other
        yield server


def _point_llm_at(monkeypatch: pytest.MonkeyPatch, server: LlamaServer, **extra: str) -> None:
    for name in CLEAR:
        monkeypatch.delenv(name, raising=False)
    env = {
        "CALLCENTER_LLM_PROVIDER": "openai",
        "CALLCENTER_LLM_BASE_URL": server.base_url,
        "CALLCENTER_LLM_API_KEY": server.api_key,
        "CALLCENTER_LLM_MODEL": MODEL_ALIAS,
        "CALLCENTER_LLM_MAX_TOKENS": "80",  # as the local engine: bounded phone answers
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()


@pytest.fixture
def selfhosted(monkeypatch: pytest.MonkeyPatch, llama: LlamaServer) -> Iterator[LlamaServer]:
    _point_llm_at(monkeypatch, llama)
    yield llama
    get_settings.cache_clear()


def _ctx(question: str) -> llm.ChatContext:
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content="You answer the phone for a hardware store. Be brief.")
    ctx.add_message(role="user", content=question)
    return ctx


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


async def test_llm_stage_streams_with_usage(selfhosted: LlamaServer) -> None:
    providers = build_providers("local", get_settings())
    assert isinstance(providers.llm, openai.LLM)
    before = selfhosted.metric("prompt_tokens_total")
    contents: list[str] = []
    usage: llm.CompletionUsage | None = None
    async with providers.llm.chat(chat_ctx=_ctx("What are your opening hours?")) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                contents.append(chunk.delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
    assert len(contents) >= 3, contents  # streamed token by token, not one block
    assert usage is not None and usage.completion_tokens - len(contents) in (0, 1)  # (+ end token)
    assert usage.prompt_tokens > 15 and usage.completion_tokens <= 80
    # the server counted the prompt it read (all of it or the part not already in its cache)
    read = selfhosted.metric("prompt_tokens_total") - before
    assert 0 < read <= usage.prompt_tokens
    await providers.llm.aclose()


async def test_the_stage_key_is_sent(selfhosted: LlamaServer) -> None:
    wrong = openai.LLM(base_url=selfhosted.base_url, api_key="wrong-key", model=MODEL_ALIAS)
    with pytest.raises(Exception) as e:
        async with wrong.chat(chat_ctx=_ctx("Hello?")) as stream:
            async for _ in stream:
                pass
    assert "401" in str(e.value) or "Invalid API Key" in str(e.value), e.value
    await wrong.aclose()


async def test_interrupted_stream_is_closed_and_the_next_request_served(selfhosted: LlamaServer) -> None:
    """Barge-in closes the LLM stream (`aclose`), as the session does: llama.cpp stops generating
    at once, so its single slot is free for the caller's next question instead of finishing a
    400-token answer nobody hears."""
    m = openai.LLM(
        base_url=selfhosted.base_url, api_key=selfhosted.api_key, model=MODEL_ALIAS, max_completion_tokens=400
    )
    predicted = selfhosted.metric("tokens_predicted_total")
    stream = m.chat(chat_ctx=_ctx("Count from 1 to 300, separated by commas."))
    n = 0
    async for chunk in stream:
        if chunk.delta and chunk.delta.content:
            n += 1
            if n == 5:
                break
    await stream.aclose()
    closed = time.monotonic()
    idle_after: float | None = None
    async with httpx.AsyncClient(headers=selfhosted.headers) as client:
        while time.monotonic() - closed < 10:
            slots = (await client.get(selfhosted.url + "/slots")).json()
            if not any(s.get("is_processing") for s in slots):
                idle_after = time.monotonic() - closed
                break
            await asyncio.sleep(0.1)
    assert idle_after is not None and idle_after < 3, idle_after
    generated = selfhosted.metric("tokens_predicted_total") - predicted
    assert 5 <= generated < 60, generated  # stopped near where we hung up, far from 400
    t0 = time.monotonic()
    first: float | None = None
    async with m.chat(chat_ctx=_ctx("Say hello.")) as nxt:
        async for chunk in nxt:
            if chunk.delta and chunk.delta.content and first is None:
                first = time.monotonic() - t0
    assert first is not None and first < 5, first
    await m.aclose()


async def test_call_with_local_stt_selfhosted_llm_local_voice(
    selfhosted: LlamaServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's done-when: a real call, local STT and TTS, the LLM on the real llama.cpp
    server, and no failover warning (there is nothing to fail over: one engine per stage)."""
    caplog.set_level(logging.WARNING)
    providers = build_providers("local", get_settings())
    assert type(providers.stt) is WhisperSTT and type(providers.tts) is LocalVoice
    before = selfhosted.metric("requests_processing"), selfhosted.metric("tokens_predicted_total")
    result = await run_call(SCENARIO, tmp_path, use_cache=False)
    assert result.error is None, result.error
    assert result.call is not None and result.call.providers.name == "local.llm-openai"
    assert not isinstance(result.call.providers.stt, stt.FallbackAdapter)
    answered = [t for t in result.turns if t.agent_text]
    assert len(answered) == 3, [(t.user_text, t.agent_text) for t in result.turns]
    # every answer came from the server: prompt usage reported per turn, growing with the call
    tokens = [t.context_tokens or 0 for t in result.turns]
    assert all(n > 50 for n in tokens), tokens
    assert tokens == sorted(tokens) and tokens[-1] > tokens[0], tokens
    assert selfhosted.metric("tokens_predicted_total") > before[1]
    assert all(t.voice_to_voice is not None for t in result.turns), result.turns
    noise = [
        r.getMessage() for r in caplog.records if re.search(r"fail|switch|fallback", r.getMessage(), re.I)
    ]
    assert noise == [], noise
    assert '"profile": "local.llm-openai"' in (tmp_path / "metrics.json").read_text()


async def test_barge_in_during_a_selfhosted_answer(selfhosted: LlamaServer, tmp_path: Path) -> None:
    """The caller cuts a long answer short (scenarios/barge-in.yaml): the session closes the
    server's stream, and the server answers the interrupting question on the same call."""
    result = await run_call(ROOT / "scenarios" / "barge-in.yaml", tmp_path, use_cache=False)
    assert result.error is None, result.error
    first, second = result.turns[0], result.turns[1]
    assert first.interrupted and second.bargein_reaction is not None, (first, second)
    assert second.agent_text and _norm(second.agent_text) != _norm(APOLOGY), second
    assert second.context_tokens and first.context_tokens and second.context_tokens > first.context_tokens
    slots = httpx.get(selfhosted.url + "/slots", headers=selfhosted.headers, timeout=5).json()
    assert not any(s.get("is_processing") for s in slots)  # nothing left generating for nobody


async def test_prefill_reads_the_prompt_at_call_start(
    monkeypatch: pytest.MonkeyPatch, llama: LlamaServer, tmp_path: Path
) -> None:
    _point_llm_at(monkeypatch, llama, CALLCENTER_LLM_PREFILL="true")
    result = await run_call(SCENARIO, tmp_path, use_cache=False)
    assert result.error is None and result.call is not None
    the_llm = result.call.providers.llm
    assert isinstance(the_llm, PrefillOpenAILLM) and the_llm.prefills >= 1
    assert all(t.agent_text for t in result.turns), [(t.user_text, t.agent_text) for t in result.turns]
    get_settings.cache_clear()


RESTART_SCENARIO = """\
tenant: acme
line: {codec: pcmu, snr_db: 30, noise: white, packet_loss: 0.0, seed: 1}
turns:
  - say: "Hi, what are your opening hours?"
  - say: "Where is the store?"
  - pause: 4.0
  - say: "Do you deliver?"
  - pause: 1.0
  - say: "Can I pay by card?"
"""


async def test_server_restart_mid_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server goes away after the first answer: the next turn exhausts livekit's retries and
    the call apologises (agent/call/recovery.py) instead of going silent; the server comes back
    on the same port and a later turn is answered by it again."""
    caplog.set_level(logging.WARNING)
    scenario = tmp_path / "restart.yaml"
    scenario.write_text(RESTART_SCENARIO)
    server = LlamaServer(threads=1).start()
    _point_llm_at(monkeypatch, server)
    timeline: list[tuple[str, float]] = []
    said: list[str] = []
    tasks: list[asyncio.Task[Any]] = []
    create = assemble.create_session

    def watched_session(*a: Any, **kw: Any) -> AgentSession:
        session: AgentSession = create(*a, **kw)

        def on_item(ev: ConversationItemAddedEvent) -> None:
            item = ev.item
            if not isinstance(item, llm.ChatMessage) or item.role != "assistant":
                return
            said.append(item.text_content or "")
            if len(said) == 2:  # the greeting, then the answer to the first question
                timeline.append(("stop", time.monotonic()))
                tasks.append(asyncio.ensure_future(asyncio.to_thread(server.stop)))

        def on_error(ev: ErrorEvent) -> None:
            err = ev.error
            if getattr(err, "type", None) == "llm_error" and not getattr(err, "recoverable", True):
                if not server.running and not any(k == "restart" for k, _ in timeline):
                    timeline.append(("restart", time.monotonic()))
                    tasks.append(asyncio.ensure_future(asyncio.to_thread(server.start)))

        session.on("conversation_item_added", on_item)
        session.on("error", on_error)
        return session

    monkeypatch.setattr(assemble, "create_session", watched_session)
    try:
        result = await run_call(scenario, tmp_path / "call", use_cache=False)
        await asyncio.gather(*tasks)
        assert result.error is None, result.error
        kinds = [k for k, _ in timeline]
        assert "stop" in kinds and "restart" in kinds, kinds
        assert result.call is not None and result.call.recovery is not None
        assert result.call.recovery.failures >= 1 and result.call.recovery.apologies >= 1
        items = [i for i in result.transcript["items"] if i["role"] == "assistant"]
        texts = [_norm(i["text"] or "") for i in items]
        apology = texts.index(_norm(APOLOGY))  # the caller heard it
        later = [t for t in texts[apology + 1 :] if t and t != _norm(APOLOGY)]
        assert later, texts  # answered again after the restart
        assert server.starts == 2 and server.metric("tokens_predicted_total") > 0  # by the new process
        assert result.turns[0].agent_text and result.turns[0].context_tokens
    finally:
        server.stop()
        get_settings.cache_clear()
