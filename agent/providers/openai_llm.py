"""The OpenAI plugin's LLM, plus a prompt pre-read for self-hosted servers (`CALLCENTER_LLM_PREFILL`).

llama.cpp's server (`cache_prompt`, on by default), vLLM (automatic prefix caching) and Ollama
keep the last prompt's KV cache, so a 1-token request with the call's prompt at call start (while
the greeting plays; `CallAgent.prefill_prompt`) means the first caller turn reads only the
caller's words. Measured here against llama.cpp with the Qwen2.5-0.5B GGUF: the first turn's
prompt is ~125 tokens, ~1-3 s on 1-2 busy cores. Off by default: hosted APIs (OpenAI, Groq,
Together) bill the extra request and do not keep a per-caller cache we could count on.
"""

from __future__ import annotations

import logging
from typing import Any

from livekit.agents import llm
from livekit.plugins import openai

log = logging.getLogger("callcenter.providers")
PREFILL_TIMEOUT_S = 30.0


class PrefillOpenAILLM(openai.LLM):
    """`openai.LLM` whose `prefill(chat_ctx)` sends the prompt with `max_completion_tokens=1`."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.prefills = 0

    async def prefill(self, chat_ctx: llm.ChatContext) -> bool:
        """Have the server read `chat_ctx` into its prompt cache; False if it could not (never
        raises: a failed pre-read only costs the first turn its head start)."""
        messages, _ = chat_ctx.to_provider_format(format="openai")
        try:
            await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]  # the plugin's own provider format
                max_completion_tokens=1,
                stream=False,
                timeout=PREFILL_TIMEOUT_S,
            )
        except Exception as e:  # the server is down or refuses: the turn reads the prompt itself
            log.info("LLM prompt pre-read failed: %s", type(e).__name__)
            return False
        self.prefills += 1
        return True
