"""Builds the `AgentSession` every call uses (simulator and LiveKit worker alike)."""

from __future__ import annotations

from typing import Literal

from livekit.agents import AgentSession, inference
from livekit.agents.voice.turn import TurnHandlingOptions

from agent.providers import Providers

TurnMode = Literal["vad", "eot"]


def telephony_turn_handling(mode: TurnMode = "vad") -> TurnHandlingOptions:
    """Turn-taking tuned for 8 kHz phone audio (see docs/turn-taking.md for the measurements).

    - endpointing: a short fixed silence; phone callers expect a quick answer.
    - interruption: needs 0.5 s of speech (coughs, clicks and "uh-huh" are shorter) and resumes
      the interrupted sentence if the caller turns out not to be taking the turn.
    """
    opts: TurnHandlingOptions = {
        "endpointing": {"mode": "fixed", "min_delay": 0.35, "max_delay": 2.5},
        "interruption": {
            "enabled": True,
            "mode": "vad",
            "min_duration": 0.5,
            "resume_false_interruption": True,
            "false_interruption_timeout": 1.5,
        },
        "preemptive_generation": {"enabled": True},
    }
    if mode == "eot":
        opts["turn_detection"] = inference.TurnDetector()
    else:
        opts["turn_detection"] = "vad"
    return opts


def create_session(providers: Providers, *, turn_mode: TurnMode = "vad") -> AgentSession:
    return AgentSession(
        stt=providers.stt,
        llm=providers.llm,
        tts=providers.tts,
        vad=providers.vad,
        turn_handling=telephony_turn_handling(turn_mode),
    )
