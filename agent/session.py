"""Builds the `AgentSession` every call uses (simulator and LiveKit worker alike).

Turn-taking configurations (measured by `callcenter bench turns`, see docs/turn-taking.md):

- "vad" (the shipped default): VAD endpointing + the offline text end-of-utterance rules
  (hybrid), backchannel gate, tuned interruption values.
- "eot": the same tuned values with livekit's local audio end-of-turn model instead.
- "vad-fixed", "vad+eot-audio", "vad+text-eou": the benchmark's reference points, all with the
  values this project used before tuning; they differ only in the end-of-turn detector.
"""

from __future__ import annotations

from typing import Literal

from livekit.agents import AgentSession, inference
from livekit.agents.voice.turn import TurnHandlingOptions

from agent.providers import Providers
from agent.turn_detector import BackchannelGateSTT, TextTurnDetector

TurnMode = Literal["vad", "eot", "vad-fixed", "vad+eot-audio", "vad+text-eou"]
SHIPPED: TurnMode = "vad"
BENCH_CONFIGS: dict[str, TurnMode] = {
    "vad-fixed": "vad-fixed",
    "vad+eot-audio": "vad+eot-audio",
    "vad+text-eou": "vad+text-eou",
    "shipped": SHIPPED,
}


def _baseline(mode: TurnMode) -> TurnHandlingOptions:
    """Pre-tuning values (fixed 0.35 s silence, 0.5 s of speech to interrupt)."""
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
    if mode == "vad+eot-audio":
        opts["turn_detection"] = inference.TurnDetector()
    elif mode == "vad+text-eou":
        opts["turn_detection"] = TextTurnDetector()
    else:
        opts["turn_detection"] = "vad"
    return opts


def telephony_turn_handling(mode: TurnMode = "vad") -> TurnHandlingOptions:
    """Turn-taking tuned for 8 kHz phone audio with noise and line echo.

    - endpointing: short silence (0.3 s) when the transcript reads as a finished sentence, up to
      1.6 s when it hangs on "um", "and", "to", "my", a comma... (text EOU decides which).
    - interruption: 0.25 s of speech pauses the agent at once (barge-in reaction), but the reply
      is only cut when a real transcript follows; a cough, click, echo or a pure backchannel
      (blanked by the gate) leaves no transcript, so the agent resumes the same sentence after
      0.6 s of silence instead of restarting or going quiet.
    """
    if mode not in ("vad", "eot"):
        return _baseline(mode)
    return {
        "turn_detection": inference.TurnDetector() if mode == "eot" else TextTurnDetector(),
        "endpointing": {"mode": "fixed", "min_delay": 0.3, "max_delay": 1.6},
        "interruption": {
            "enabled": True,
            "mode": "vad",  # "adaptive" needs LiveKit's hosted model: not available offline
            "min_duration": 0.25,
            "min_words": 0,  # non-streaming STT: words only arrive after the caller stops
            "resume_false_interruption": True,
            "false_interruption_timeout": 0.6,
        },
        "preemptive_generation": {"enabled": True},
    }


def create_session(providers: Providers, *, turn_mode: TurnMode = "vad") -> AgentSession:
    the_stt = providers.stt
    gate: BackchannelGateSTT | None = None
    if turn_mode in ("vad", "eot") and not providers.stt.capabilities.streaming:
        gate = BackchannelGateSTT(providers.stt)
        the_stt = gate
    session = AgentSession(
        stt=the_stt,
        llm=providers.llm,
        tts=providers.tts,
        vad=providers.vad,
        turn_handling=telephony_turn_handling(turn_mode),
    )
    if gate is not None:
        # "mid-reply" = a reply exists and was not cut; a paused reply still counts.
        def _speaking() -> bool:
            sp = session.current_speech
            return sp is not None and not sp.interrupted and not sp.done()

        gate.agent_speaking = _speaking
    return session
