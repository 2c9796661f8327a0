"""Audio into the real AgentSession that is not what the simulator's line produces.

The session's input is whatever a transport hands it: 8 kHz G.711-decoded frames, 48 kHz WebRTC
frames, a frame with no samples, a burst of full-scale garbage. The session must keep working:
hear the caller, answer, and not crash the call.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import llm

from agent.call.agent import CallAgent
from agent.call.session import create_session
from agent.providers.instant import InstantLLM, InstantTTS
from agent.providers.profiles import Providers, build_vad
from agent.providers.whisper_stt import WhisperSTT
from agent.sim.audio_io import SimAudioInput, SimAudioOutput
from agent.sim.caller_voice import synthesize_caller
from core.tenants import load_tenant

pytestmark = pytest.mark.slow


def _frames(samples: np.ndarray, rate: int) -> list[rtc.AudioFrame]:
    n = rate // 50  # 20 ms
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % n, np.int16)])
    return [rtc.AudioFrame(pcm[i : i + n].tobytes(), rate, 1, n) for i in range(0, len(pcm), n)]


async def _talk(rate: int, *, junk: bool) -> tuple[list[str], list[str]]:
    tts = InstantTTS()
    providers = Providers("test", WhisperSTT(threads=1), InstantLLM(), tts, build_vad(), tts.voice)
    session = create_session(providers)
    inp, out = SimAudioInput(), SimAudioOutput()
    session.input.audio, session.output.audio = inp, out
    await session.start(CallAgent(load_tenant("acme"), voice=providers.voice), record=False)
    silence = np.zeros(rate // 2, np.float32)
    speech = synthesize_caller("Do you deliver on Sundays?", rate)
    frames = _frames(silence, rate)
    if junk:
        frames.append(rtc.AudioFrame(b"", rate, 1, 0))  # a frame with no samples
        rng = np.random.default_rng(1)
        frames += _frames(np.sign(rng.standard_normal(rate // 10)).astype(np.float32), rate)  # clipped noise
        frames += _frames(silence, rate)
    frames += _frames(speech, rate) + _frames(np.zeros(rate * 4, np.float32), rate)
    try:
        for f in frames:  # real time: 20 ms per frame, the speaker drains as it would
            inp.push(f)
            out.tick(320)
            await asyncio.sleep(0.02)
        async with asyncio.timeout(60):  # hang guard
            while [m.role for m in session.history.items if isinstance(m, llm.ChatMessage)][-2:] != [
                "user",
                "assistant",
            ]:
                out.tick(320)
                await asyncio.sleep(0.02)
    finally:
        await session.aclose()
        inp.close()
    said = {"user": [], "assistant": []}
    for m in session.history.items:
        if isinstance(m, llm.ChatMessage):
            said[m.role].append(m.text_content or "")
    return said["user"], said["assistant"]


@pytest.mark.parametrize("rate", [8000, 11025, 48000])
async def test_session_hears_the_caller_at_any_input_rate(rate: int) -> None:
    user, agent = await _talk(rate, junk=False)
    assert any("deliver" in u.lower() for u in user), user
    assert agent and agent[-1], agent


async def test_empty_frame_and_garbage_burst_do_not_break_the_session() -> None:
    user, agent = await _talk(16000, junk=True)
    assert any("deliver" in u.lower() for u in user), user
    assert agent and agent[-1], agent
