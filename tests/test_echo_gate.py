"""The echo gate in front of the VAD and, with its own hangover, the STT (agent/call/turn_detector.py)."""

from __future__ import annotations

import numpy as np
from livekit import rtc
from livekit.agents import inference

from agent.call.turn_detector import EchoGateVAD


def frame(level: float) -> rtc.AudioFrame:
    x = (np.sin(np.arange(160) / 3.0) * level * 32767).astype(np.int16)  # 20 ms at 8 kHz
    return rtc.AudioFrame(x.tobytes(), 8000, 1, 160)


def rms(f: rtc.AudioFrame) -> float:
    x = np.frombuffer(f.data, dtype=np.int16).astype(np.float64) / 32768
    return float(np.sqrt(np.mean(x * x)))


def passed(gate: EchoGateVAD, hangover_s: float | None) -> list[bool]:
    """A loud click, then ten frames of the agent's quieter echo: which frames pass unattenuated."""
    state = [0.0]
    frames = [frame(0.5)] + [frame(0.02) for _ in range(10)]  # -6 dBFS, then ~-37 dBFS
    return [rms(gate.gate(f, state, hangover_s)) > 0.5 * rms(f) for f in frames]


def test_the_stt_hears_less_echo_behind_a_click_than_the_vad() -> None:
    gate = EchoGateVAD(inference.VAD(), hangover_s=0.3)
    gate.agent_speaking = lambda: True
    vad_side = passed(gate, None)  # the session's VAD: 0.3 s of hangover keeps quiet syllables
    stt_side = passed(gate, 0.05)  # the STT's stream: the echo behind the click is gated
    assert vad_side == [True] * 11
    assert stt_side[:3] == [True, True, True] and not any(stt_side[4:])
    gate.agent_speaking = lambda: False  # the caller alone on the line: nothing is gated
    assert passed(gate, 0.05) == [True] * 11
