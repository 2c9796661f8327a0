"""Confidence-aware commit (issue #23 item 2, agent/call/early_commit.py) in simulated calls
through the real session: native silero VAD, faster-whisper, the Smart Turn model, piper's caller
voice (instant LLM and TTS, so the turn-taking is what is measured)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from agent.call.assemble import CallOptions
from agent.call.session import TurnTuning
from agent.call.turn_detector import EchoGateVAD
from agent.providers import build_providers
from agent.providers.whisper_stt import WhisperSTT
from agent.sim.call import CallResult, SimulatedCall
from agent.sim.scenario import Scenario
from core.settings import get_settings
from core.tenants import load_tenant

LINES = ["What are your opening hours?", "Where is the store?", "Do you deliver on Sundays?"]


async def simulated_call(out: Path, turns: list[dict[str, Any]], *, early: bool = True) -> CallResult:
    providers = dataclasses.replace(build_providers("instant", get_settings()), stt=WhisperSTT())
    sim = SimulatedCall(
        Scenario(tenant="acme", line={"codec": "pcmu", "snr_db": 35, "noise": "white"}, turns=turns),
        load_tenant("acme"),
        providers,
        out,
        options=CallOptions(tuning=TurnTuning(early_commit=early)),
    )
    return await asyncio.wait_for(sim.run(), 180)  # a hang guard, not a latency limit


async def test_finished_questions_commit_before_the_vads_silence(tmp_path: Path) -> None:
    turns: list[dict[str, Any]] = []
    for line in LINES:
        turns += [{"say": line}, {"pause": 0.8}]
    result = await simulated_call(tmp_path / "call", turns)
    assert result.error is None, result.error
    assert result.call is not None and result.call.early_commit is not None
    gate = result.call.session.vad
    assert isinstance(gate, EchoGateVAD)
    commits = result.call.early_commit.commits
    # words and voice both finished on a clean line: most turns end before the VAD's 0.25 s
    assert commits >= 2, (commits, [t.user_text for t in result.turns])
    assert len(gate.early_ends) == commits
    assert all(s < TurnTuning().vad_min_silence for s in gate.early_ends), gate.early_ends
    answered = [t for t in result.turns if t.voice_to_voice is not None]
    firsts = [t.user_text.lower().split()[0] for t in answered]
    assert [w[:2] for w in firsts] == ["wh", "wh", "do"], answered  # whisper: "Where's the store?"
    assert not any(t.interrupted for t in result.turns)
    for t in answered:
        assert t.timeline is not None and t.timeline.ordered(), t.timeline
    line = json.loads((tmp_path / "call" / "metrics.json").read_text())["line"]
    assert line["early_commits"] == commits


async def test_off_the_turn_waits_for_the_vad(tmp_path: Path) -> None:
    result = await simulated_call(tmp_path / "call", [{"say": LINES[0]}, {"pause": 0.8}], early=False)
    assert result.error is None and result.call is not None
    assert result.call.early_commit is None
    gate = result.call.session.vad
    assert isinstance(gate, EchoGateVAD) and gate.early_ends == []
    assert [t.user_text for t in result.turns if t.voice_to_voice is not None] == [LINES[0]]


async def test_a_caller_who_goes_on_after_a_finished_sentence_is_heard(tmp_path: Path) -> None:
    """A pause after a finished question, then more: whether or not the first part was ended
    early, the second part is heard and answered, and nothing is lost or heard twice."""
    say = "What are your opening hours? And do you deliver on Sundays?"
    turns = [{"say": say, "hesitate_after": 5, "hesitate_s": 0.3}, {"pause": 1.0}]
    result = await simulated_call(tmp_path / "call", turns)
    assert result.error is None, result.error
    heard = " ".join(t.user_text for t in result.turns).lower()
    assert "deliver" in heard and heard.count("opening") == 1, heard
    last = [t for t in result.turns if t.user_text][-1]
    assert "deliver" in last.user_text.lower() and last.agent_text, result.turns
