"""The cloud-overhead benchmark's parts (issue 23 item 5): the fake providers answer with the
latencies they are given, and a turn's voice-to-voice splits into the turn-taking wait, the
providers' time and ours with nothing left over."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from agent.bench.overhead import split_turn
from core.call_report import TurnTimeline
from tests.support.fake_elevenlabs import running_fake_elevenlabs
from tests.support.fake_openai import running_fake_openai


def test_a_turn_splits_into_wait_providers_and_ours() -> None:
    t0 = 1000.0
    tl = TurnTimeline(
        caller_last_sample=t0,
        vad_end=t0 + 0.25,
        final_transcript=t0 + 0.40,  # 0.10 provider + 0.05 ours
        reply_started=t0 + 0.41,
        cache_decision=t0 + 0.42,
        llm_first_token=t0 + 0.83,  # 0.40 provider + 0.03 ours
        tts_first_frame=t0 + 1.15,  # 0.30 provider + 0.02 ours
        agent_first_sample=t0 + 1.19,
    )
    latency = {"stt": 0.1, "ttft": 0.4, "tts": 0.3}
    parts = split_turn(tl, 1.19, latency)
    assert parts is not None
    assert parts["vad_wait"] == pytest.approx(0.25)
    assert parts["stt"] == pytest.approx(0.05) and parts["llm"] == pytest.approx(0.03)
    assert parts["tts"] == pytest.approx(0.02) and parts["playout"] == pytest.approx(0.04)
    assert parts["overhead"] == pytest.approx(0.14)
    ours = parts["stt"] + parts["llm"] + parts["tts"] + parts["playout"]
    assert parts["overhead"] == pytest.approx(ours)  # nothing unaccounted for
    hit = tl.model_copy(update={"llm_first_token": None})
    assert split_turn(hit, 0.6, latency) is None  # a hit has no LLM stage: not a miss's split


def test_fake_transcription_answers_after_its_latency() -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, np.float32), 16000, format="WAV")
    with running_fake_openai(api_key="k", stt_latency_s=0.5) as fake:
        files = {"file": ("a.wav", buf.getvalue(), "audio/wav")}
        start = time.monotonic()
        r = httpx.post(f"{fake.base_url}/audio/transcriptions", headers={"Authorization": "Bearer k"},
                       files=files, data={"model": "gpt-4o-mini-transcribe"}, timeout=60)  # fmt: skip
        took = time.monotonic() - start
        assert r.status_code == 200, r.text
        stats = httpx.get(f"{fake.base_url}/_fake/stats", timeout=5).json()
    assert took >= 0.5
    assert len(stats["stt_server_s"]) == 1 and stats["stt_server_s"][0] >= 0.5


async def test_fake_elevenlabs_first_audio_after_its_latency() -> None:
    import aiohttp

    with running_fake_elevenlabs(api_key="k", first_audio_delay_s=0.4) as fake:
        url = f"{fake.base_url}/text-to-speech/v/multi-stream-input?model_id=m&output_format=pcm_16000"
        async with aiohttp.ClientSession() as s, s.ws_connect(url, headers={"xi-api-key": "k"}) as ws:
            await ws.send_json({"text": " ", "context_id": "c1"})
            start = time.monotonic()
            await ws.send_json({"text": "Hello there.", "context_id": "c1", "flush": True})
            first = await ws.receive_json(timeout=30)
            took = time.monotonic() - start
            await ws.send_json({"text": "And more.", "context_id": "c1", "flush": True})
            start = time.monotonic()
            while (
                "audio" in (msg := await ws.receive_json(timeout=30))
                and msg.get("normalizedAlignment") is None
            ):
                pass  # the rest of the first chunk's audio
            second = time.monotonic() - start
    assert "audio" in first and took >= 0.4
    assert second < 0.4  # only a context's first audio waits
