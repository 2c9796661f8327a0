"""Local LLM plugin: streams the embedded Qwen2.5-0.5B (core.local_llm) as a livekit `llm.LLM`.

Generation runs in a worker thread; deltas hop to the event loop through a queue so the
session's TTFT metrics, interruption and cancellation logic stay the framework's own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from core.local_llm import LocalLLMEngine


class LocalLLM(llm.LLM):
    def __init__(self, *, max_tokens: int = 80, temperature: float = 0.1) -> None:
        super().__init__()
        self._max_tokens = max_tokens
        self._temperature = temperature

    @property
    def model(self) -> str:
        return "qwen2.5-0.5b-instruct-q4_k_m"

    @property
    def provider(self) -> str:
        return "llama.cpp"

    def prewarm(self, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        LocalLLMEngine.shared()

    async def prefill(self, chat_ctx: llm.ChatContext) -> bool:
        """Pre-read the prompt of the next turn (after the context manager folded a summary in or
        pruned old messages, between turns)."""
        messages = chat_messages(chat_ctx)
        return await asyncio.get_running_loop().run_in_executor(
            None, LocalLLMEngine.shared().prefill, messages
        )

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        # The 0.5B model cannot call tools reliably; tools stay with the cloud profile.
        return _LocalStream(self, chat_ctx=chat_ctx, tools=[], conn_options=conn_options)


def chat_messages(chat_ctx: llm.ChatContext) -> list[dict[str, Any]]:
    """OpenAI-style messages, text only, as llama.cpp's chat template expects."""
    msgs, _ = chat_ctx.to_provider_format("openai", inject_dummy_user_message=True)
    out: list[dict[str, Any]] = []
    for m in msgs:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in ("system", "user", "assistant") or not content:
            continue
        if role == "system" and out and out[-1]["role"] == "system":
            # one system block: small models follow a single system message far better
            out[-1]["content"] += "\n" + content
        else:
            out.append({"role": role, "content": content})
    return out


class _LocalStream(llm.LLMStream):
    async def _run(self) -> None:
        llm_: LocalLLM = self._llm  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        stop = threading.Event()
        request_id = f"local-{time.monotonic_ns()}"

        def on_delta(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        def generate() -> dict[str, Any]:
            try:
                return LocalLLMEngine.shared().stream_chat(
                    chat_messages(self._chat_ctx),
                    on_delta,
                    max_tokens=llm_._max_tokens,
                    temperature=llm_._temperature,
                    should_stop=stop.is_set,
                )
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        fut = loop.run_in_executor(None, generate)
        try:
            while (delta := await queue.get()) is not None:
                self._event_ch.send_nowait(
                    llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=delta))
                )
            result = await fut
        finally:
            stop.set()  # interrupted: let llama.cpp stop at the next token
        timings = result.get("timings") or {}
        prompt = int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0))
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=request_id,
                usage=llm.CompletionUsage(
                    completion_tokens=int(timings.get("predicted_n", 0)),
                    prompt_tokens=prompt,
                    prompt_cached_tokens=int(timings.get("cache_n", 0)),
                    total_tokens=prompt + int(timings.get("predicted_n", 0)),
                ),
            )
        )
