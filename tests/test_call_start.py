"""The first seconds of a call on the local profile: the greeting is not held up by the LLM's
prompt read, and that read (done while the greeting plays) includes the greeting itself, so the
caller's first turn reads only the caller's words (issue #23 item 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.call.agent import CallAgent
from agent.call.turn_detector import BackchannelGateSTT
from agent.sim.run import run_call
from core.local_llm import LocalLLMEngine

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# The chat template around one user message ("<|im_start|>user\n" ... "<|im_end|>\n
# <|im_start|>assistant\n") and the greeting's closing tokens: 10 measured, 2 of slack. An unread
# greeting would add its own ~12 tokens and 5 of template.
TEMPLATE_TOKENS = 12


async def test_prompt_is_read_after_the_greeting_starts_and_turn_0_reads_only_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefills: list[tuple[str, str | None]] = []  # (agent state, greeting) at each prompt read
    reads: list[dict[str, Any]] = []  # llama.cpp's timings of each generation

    real_prefill = CallAgent.prefill_prompt

    def prefill(self: CallAgent, greeting: str | None = None) -> None:
        prefills.append((self.session.agent_state, greeting))
        real_prefill(self, greeting)

    real_stream = LocalLLMEngine.stream_chat

    def stream(self: LocalLLMEngine, *a: Any, **kw: Any) -> dict[str, Any]:
        out = real_stream(self, *a, **kw)
        reads.append(dict(self.last_timings))
        return out

    gates: list[BackchannelGateSTT] = []
    real_init = BackchannelGateSTT.__init__

    def init(self: BackchannelGateSTT, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        gates.append(self)

    monkeypatch.setattr(BackchannelGateSTT, "__init__", init)
    monkeypatch.setattr(CallAgent, "prefill_prompt", prefill)
    monkeypatch.setattr(LocalLLMEngine, "stream_chat", stream)
    result = await run_call(
        ROOT / "scenarios" / "opening-hours.yaml", tmp_path, profile="local", use_cache=False
    )
    assert result.error is None
    # read once, while the greeting is being heard, with the greeting's words
    assert len(prefills) == 1, prefills
    state, greeting = prefills[0]
    assert state == "speaking" and greeting and "Acme" in greeting, prefills

    # turn 0's request re-read nothing but the caller's words: prompt and greeting were cached
    assert reads, "the LLM answered no turn"
    first = reads[0]
    question = result.turns[0].user_text
    assert question
    words = LocalLLMEngine.shared().count_tokens(question)
    assert first["prompt_n"] <= words + TEMPLATE_TOKENS, (first, question)
    assert first["cache_n"] > LocalLLMEngine.shared().count_tokens(greeting), first

    # the silence after pick-up is measured on the line and reported
    assert result.greeting_delay is not None and result.greeting_delay > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["greeting_delay"] == result.greeting_delay

    # the STT gate was told when a reply finished uncut (it checks the reply's echo tail after)
    assert len(gates) == 1 and gates[0].agent_done_at is not None
