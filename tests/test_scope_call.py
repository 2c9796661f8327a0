"""The scope step in a call (issue 22 item 6): through the real session (`SimulatedCall`, the
instant profile), an out-of-scope question gets the refusal with its offer of a person, and the
caller's "yes" transfers, "no thanks" is asked "anything else?".

The step runs in agent/call/agent.py's llm_node (after a cache miss, before the LLM); the
caller's answer to the offer is read by the intent step (agent/call/intents.py).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import agent.call.agent as call_agent
import agent.call.intents as call_intents
from agent.call.scope import REFUSAL
from cache.embedder import get_embedder
from sip.behaviours import ANYTHING_ELSE, TRANSFER_ANNOUNCEMENT
from tests.test_voice_intents import _call, _events, _said


def test_the_step_is_on_the_turn_path() -> None:
    assert "scope_reply" in inspect.getsource(call_agent) and "accepts_offer" in inspect.getsource(
        call_intents
    )


async def test_out_of_scope_is_refused_and_yes_transfers(tmp_path: Path) -> None:
    get_embedder()  # loaded before the call, as the worker's prewarm does
    transcript = await _call(
        tmp_path, [{"say": "Do you sell paint brushes?"}, {"say": "Yes please."}, {"pause": 3}]
    )
    said = _said(transcript)
    assert said[1:] == [REFUSAL, TRANSFER_ANNOUNCEMENT]
    (transfer,) = _events(transcript, "transfer")
    assert transfer["ok"] is True


async def test_no_thanks_to_the_offer_asks_anything_else(tmp_path: Path) -> None:
    get_embedder()
    transcript = await _call(
        tmp_path, [{"say": "Do you offer key cutting?"}, {"say": "No thanks."}, {"pause": 2}]
    )
    assert _said(transcript)[1:] == [REFUSAL, ANYTHING_ELSE]
    assert not _events(transcript, "transfer")
