"""Caller intents through the real session: simulated calls (`SimulatedCall`, the one call
assembly), instant profile where the STT must hear exactly what the scenario says, the local
profile (whisper, the 0.5B LLM, hibari) for the noisy-line case. Events from transcript.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.providers import build_providers
from agent.sim.call import SimulatedCall
from agent.sim.scenario import load_scenario
from core.settings import get_settings
from core.tenants import Tenant, load_tenant
from sip.behaviours import ANYTHING_ELSE, CLOSING, GOODBYE_GRACE_S, TRANSFER_ANNOUNCEMENT

MENU = {"1": "billing", "2": "human"}


async def _call(
    tmp_path: Path,
    turns: list[dict[str, Any]],
    *,
    profile: str = "instant",
    line: dict[str, Any] | None = None,
    tenant: Tenant | None = None,
) -> dict[str, Any]:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({"tenant": "acme", "line": line or {}, "turns": turns}))
    sc = load_scenario(path)
    call = SimulatedCall(
        sc, tenant or load_tenant("acme"), build_providers(profile, get_settings()), tmp_path / "out"
    )
    result = await call.run()
    assert result.error is None
    return json.loads((tmp_path / "out" / "transcript.json").read_text())


def _said(transcript: dict[str, Any]) -> list[str]:
    return [i["text"] or "" for i in transcript["items"] if i["role"] == "assistant"]


def _events(transcript: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e for e in transcript["events"] if e["type"] == type_]


def _agent_hung_up(transcript: dict[str, Any]) -> bool:
    return any(e.get("by") == "agent" for e in _events(transcript, "hangup"))


# Multi-turn behaviours on typed turns (repeat, slow down, failed transfers, the tools) are in
# tests/test_telephony_agent.py, through the same session, agent and behaviours.


async def test_a_spoken_request_for_a_human_transfers_with_a_summary(tmp_path: Path) -> None:
    # the issue's own words; the summary's facts are checked on typed turns (telephony tests)
    transcript = await _call(tmp_path, [{"say": "Actually, can I speak to a real person?"}, {"pause": 3}])
    (transfer,) = _events(transcript, "transfer")
    assert transfer["ok"] is True and transfer["to"] == load_tenant("acme").transfer_number
    assert transfer["summary"] == (
        "Caller (name not given), Acme Hardware line, asked for a person by voice. "
        "Asked: Actually, can I speak to a real person?."
    )
    # the request was acted on, not answered by the LLM: the announcement is the reply
    assert _said(transcript)[1:] == [TRANSFER_ANNOUNCEMENT]
    assert not _agent_hung_up(transcript)


async def test_goodbye_alone_ends_the_call(tmp_path: Path) -> None:
    transcript = await _call(tmp_path, [{"say": "Goodbye."}, {"pause": 8}])
    assert _said(transcript)[1:] == [CLOSING.format(business="Acme Hardware")]
    hangups = _events(transcript, "hangup")
    assert [(h["by"], h["reason"]) for h in hangups] == [("agent", "caller_goodbye")]
    # the caller stayed silent on the line: the agent hung up after its grace period, not at once
    (closing,) = _events(transcript, "intent")
    assert closing["action"] == "end_call" and hangups[0]["t"] - closing["t"] >= GOODBYE_GRACE_S


async def test_goodbye_after_an_answer_ends_the_call(tmp_path: Path) -> None:
    transcript = await _call(
        tmp_path, [{"say": "What are your opening hours?"}, {"say": "Goodbye."}, {"pause": 8}]
    )
    said = _said(transcript)
    assert len(said) == 3 and said[-1] == CLOSING.format(business="Acme Hardware")
    assert [(h["by"], h["reason"]) for h in _events(transcript, "hangup")] == [("agent", "caller_goodbye")]


async def test_a_bye_over_the_agents_answer_is_asked_about_then_no_thanks_ends(tmp_path: Path) -> None:
    """The issue's case on an exact STT: "Bye." spoken into the agent's answer is not a hang-up;
    the agent asks, and the caller's "No thanks." then closes the call."""
    transcript = await _call(
        tmp_path,
        [
            {"say": "Can you tell me about your delivery and returns and opening hours please?"},
            {"say": "Bye.", "barge_in_after": 0.3},
            {"pause": 3},
            {"say": "No thanks."},
            {"pause": 8},
        ],
    )
    assert [e["action"] for e in _events(transcript, "intent")] == ["ask_end", "end_call"]
    said = _said(transcript)
    assert ANYTHING_ELSE in said and said[-1] == CLOSING.format(business="Acme Hardware")
    assert [(h["by"], h["reason"]) for h in _events(transcript, "hangup")] == [("agent", "caller_goodbye")]


async def test_goodbye_to_my_old_plan_does_not_end_the_call(tmp_path: Path) -> None:
    transcript = await _call(
        tmp_path, [{"say": "I want to say goodbye to my old plan, how do I switch?"}, {"pause": 4}]
    )
    assert not _agent_hung_up(transcript)
    assert not _events(transcript, "intent")
    said = _said(transcript)
    assert len(said) == 2 and CLOSING.format(business="Acme Hardware") not in said  # answered
    assert _events(transcript, "hangup")[-1]["by"] == "caller"


async def test_a_keypad_menu_routes_by_key(tmp_path: Path) -> None:
    tenant = load_tenant("acme").model_copy(update={"menu": MENU})
    transcript = await _call(
        tmp_path, [{"dtmf": "1"}, {"pause": 3}, {"dtmf": "2"}, {"pause": 4}], tenant=tenant
    )
    assert [(e["choice"], e["via"]) for e in _events(transcript, "menu")] == [
        ("billing", "dtmf"),
        ("human", "dtmf"),
    ]
    assert "Billing. How can I help you with billing?" in _said(transcript)
    (transfer,) = _events(transcript, "transfer")
    assert transfer["ok"] is True and "by menu" in transfer["summary"]


async def test_a_keypad_menu_routes_by_voice(tmp_path: Path) -> None:
    tenant = load_tenant("acme").model_copy(update={"menu": MENU})
    transcript = await _call(tmp_path, [{"say": "Billing, please."}, {"pause": 3}], tenant=tenant)
    assert [(e["choice"], e["via"]) for e in _events(transcript, "menu")] == [("billing", "voice")]
    assert _said(transcript)[1:] == ["Billing. How can I help you with billing?"]
    assert not _events(transcript, "transfer")


async def test_saying_the_human_choice_transfers(tmp_path: Path) -> None:
    tenant = load_tenant("acme").model_copy(update={"menu": MENU})
    transcript = await _call(tmp_path, [{"say": "A person, please."}, {"pause": 3}], tenant=tenant)
    assert [(e["choice"], e["via"]) for e in _events(transcript, "menu")] == [("human", "voice")]
    assert _events(transcript, "transfer")[0]["ok"] is True


@pytest.mark.slow
async def test_a_backchannel_on_a_noisy_line_never_ends_the_call(tmp_path: Path) -> None:
    """Local profile, 10 dB babble: "uh-huh" and "mm" over the agent's answers (the issue's
    case: whisper may hear "Bye."); the call goes on until the caller hangs up."""
    transcript = await _call(
        tmp_path,
        [
            {"say": "Do you deliver on Sundays?"},
            {"say": "Uh-huh.", "barge_in_after": 0.8},
            {"say": "What is your return policy?"},
            {"say": "Mm.", "barge_in_after": 0.6},
            {"pause": 3},
        ],
        profile="local",
        line={"codec": "pcmu", "noise": "babble", "snr_db": 10, "seed": 3},
    )
    assert not _agent_hung_up(transcript), transcript["events"]
    assert _events(transcript, "hangup")[-1]["by"] == "caller"
