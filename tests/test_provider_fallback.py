"""Provider failure in the `cloud` profile (issue #10): livekit's `FallbackAdapter` switches the
STT from OpenAI to the local whisper and the TTS from ElevenLabs to the local hibari voice, and
`callcenter_provider_fallbacks_total{kind,provider}` counts every switch.

Real plugins against local fakes, no network: `tests.support.fake_openai` (transcriptions answered by
whisper, or failing with `stt_status` / `stt_drop`) and `tests.support.fake_elevenlabs` (the websocket
TTS, a tone voice, or failing with `mode="error"` / `mode="drop"`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from livekit import rtc
from livekit.agents import APIConnectionError, stt, tts, utils
from livekit.plugins import elevenlabs, openai

from agent.observability import METRICS
from agent.providers import Providers, build_providers
from agent.providers.hibari_tts import HibariTTS, LocalVoice
from agent.providers.profiles import TTS_MAX_RETRY, VoiceFallbackTTS, primary_voice_token
from agent.providers.whisper_stt import WhisperSTT, load_whisper
from agent.sim.caller_voice import synthesize_caller
from agent.sim.run import run_call
from cache.semantic import CacheHit
from core.settings import Settings, get_settings
from tests.support.fake_elevenlabs import TONE_HZ, FakeElevenLabs, running_fake_elevenlabs
from tests.support.fake_openai import FakeOpenAI, answer_for, running_fake_openai, use_fake_for_cloud

HERE = Path(__file__).resolve().parent
HANG_GUARD_S = 120.0  # generous: only catches a hang, never measures speed
ELEVEN_KEY = "eleven-dummy"
ANSWER = "We are open from eight to six, Monday to Saturday."


# ---- fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with running_fake_openai(api_key="dummy") as server:
        use_fake_for_cloud(monkeypatch, server)  # HTTP transcriptions, no ElevenLabs key
        try:
            yield server
        finally:
            get_settings.cache_clear()


@pytest.fixture
def eleven(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI) -> Iterator[FakeElevenLabs]:
    """The cloud profile's TTS is ElevenLabs, pointed at the fake."""
    with running_fake_elevenlabs(api_key=ELEVEN_KEY) as server:
        monkeypatch.setenv("ELEVEN_API_KEY", ELEVEN_KEY)
        monkeypatch.setenv("CALLCENTER_ELEVENLABS_BASE_URL", server.base_url)
        get_settings.cache_clear()
        yield server


def counter(name: str, kind: str, provider: str) -> float:
    """A sample of the process-wide registry (tests compare before/after: it is shared)."""
    return METRICS.registry.get_sample_value(name, {"kind": kind, "provider": provider}) or 0.0


def fallbacks(kind: str, provider: str) -> float:
    return counter("callcenter_provider_fallbacks_total", kind, provider)


def recoveries(kind: str, provider: str) -> float:
    return counter("callcenter_provider_recoveries_total", kind, provider)


def caller_frame(text: str, rate: int = 16000) -> rtc.AudioFrame:
    pcm = synthesize_caller(text, rate)  # real piper speech, the simulated caller's voice
    samples = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    return rtc.AudioFrame(samples.tobytes(), rate, 1, len(samples))


def watch(adapter: stt.STT | tts.TTS, event: str) -> list[Any]:
    seen: list[Any] = []
    adapter.on(event, seen.append)
    return seen


async def synthesize(t: tts.TTS, text: str) -> list[rtc.AudioFrame]:
    """The way the session drives a streaming TTS: push the answer, read the audio. Closes `t`.

    The ElevenLabs plugin takes its aiohttp session from the job context; tests have none."""

    async def run() -> list[rtc.AudioFrame]:
        frames: list[rtc.AudioFrame] = []
        async with t.stream() as s:
            s.push_text(text)
            s.end_input()
            async for audio in s:
                frames.append(audio.frame)
        return frames

    async with utils.http_context.open():
        try:
            return await asyncio.wait_for(run(), HANG_GUARD_S)
        finally:
            await t.aclose()


def pcm_of(frames: list[rtc.AudioFrame]) -> tuple[np.ndarray, int]:
    rate = frames[0].sample_rate
    data = b"".join(bytes(f.data) for f in frames)
    return np.frombuffer(data, dtype=np.int16).astype(np.float32) / 32768.0, rate


def tone_share(frames: list[rtc.AudioFrame]) -> float:
    """Share of the audio's energy within 20 Hz of the fake ElevenLabs tone."""
    pcm, rate = pcm_of(frames)
    spectrum = np.abs(np.fft.rfft(pcm)) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(spectrum[np.abs(freqs - TONE_HZ) < 20].sum() / spectrum.sum())


def transcribe(frames: list[rtc.AudioFrame]) -> str:
    pcm, rate = pcm_of(frames)
    segments, _ = load_whisper().transcribe(
        soxr.resample(pcm, rate, 16000).astype(np.float32), language="en", beam_size=1, vad_filter=False
    )
    return " ".join(s.text.strip() for s in segments).lower()


def cloud_providers() -> Providers:
    providers = build_providers("cloud", Settings())
    assert isinstance(providers.stt, stt.FallbackAdapter)
    return providers


# ---- STT --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", [{"stt_status": 500}, {"stt_drop": True}], ids=["http500", "drop"])
async def test_cloud_stt_falls_back_to_local_whisper(fake: FakeOpenAI, fault: dict[str, Any]) -> None:
    fake.configure(**fault)
    providers = cloud_providers()
    events = watch(providers.stt, "stt_availability_changed")
    before, before_local = fallbacks("stt", "openai"), fallbacks("stt", "faster-whisper")
    try:
        ev = await asyncio.wait_for(
            providers.stt.recognize([caller_frame("What are your opening hours?")]), HANG_GUARD_S
        )
    finally:
        await providers.stt.aclose()

    # the endpoint was asked and never answered a transcript, yet one came: local whisper's
    reqs = fake.transcription_requests()
    assert reqs and all(r.outcome in ("error 500", "drop") for r in reqs), [r.outcome for r in reqs]
    assert "opening" in ev.alternatives[0].text.lower(), ev.alternatives[0].text
    [down] = events
    assert down.available is False
    assert isinstance(down.stt.wrapped_stt, openai.STT)  # the adapter wraps batch STTs
    assert fallbacks("stt", "openai") == before + 1
    assert fallbacks("stt", "faster-whisper") == before_local  # the fallback itself is fine


async def test_cloud_stt_switches_back_when_the_endpoint_recovers(fake: FakeOpenAI) -> None:
    fake.configure(stt_status=503)
    providers = cloud_providers()
    events = watch(providers.stt, "stt_availability_changed")
    recovered = asyncio.Event()

    def on_change(ev: stt.AvailabilityChangedEvent) -> None:
        if ev.available:
            recovered.set()

    providers.stt.on("stt_availability_changed", on_change)
    before_down, before_up = fallbacks("stt", "openai"), recoveries("stt", "openai")
    frame = caller_frame("Do you deliver?")
    try:
        await asyncio.wait_for(providers.stt.recognize([frame]), HANG_GUARD_S)  # falls back
        fake.configure()  # the endpoint answers again
        # OpenAI is skipped (whisper answers) while the adapter probes it with the same audio
        second = await asyncio.wait_for(providers.stt.recognize([frame]), HANG_GUARD_S)
        await asyncio.wait_for(recovered.wait(), HANG_GUARD_S)
        served_before = len([r for r in fake.transcription_requests() if r.outcome == "transcribed"])
        third = await asyncio.wait_for(providers.stt.recognize([frame]), HANG_GUARD_S)
    finally:
        await providers.stt.aclose()

    assert [e.available for e in events] == [False, True]
    assert fallbacks("stt", "openai") == before_down + 1
    assert recoveries("stt", "openai") == before_up + 1
    # after the recovery the endpoint serves first again: one more real transcription upload
    served = [r for r in fake.transcription_requests() if r.outcome == "transcribed"]
    assert len(served) == served_before + 1 and served[-1].answer == third.alternatives[0].text
    assert (
        "deliver" in second.alternatives[0].text.lower() and "deliver" in third.alternatives[0].text.lower()
    )


async def test_forced_exception_in_local_whisper_fails_loudly_and_is_counted(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both engines down: an error the session sees (and retries), never an empty transcript."""

    def broken(self: WhisperSTT, pcm: np.ndarray) -> tuple[str, float]:
        raise RuntimeError("forced: whisper model unusable")

    monkeypatch.setattr(WhisperSTT, "_transcribe_scored", broken)  # what recognize() calls
    fake.configure(stt_status=500)
    providers = cloud_providers()
    events = watch(providers.stt, "stt_availability_changed")
    before_cloud, before_local = fallbacks("stt", "openai"), fallbacks("stt", "faster-whisper")
    try:
        with pytest.raises(APIConnectionError, match="all STTs failed"):
            await asyncio.wait_for(providers.stt.recognize([caller_frame("Do you deliver?")]), HANG_GUARD_S)
    finally:
        await providers.stt.aclose()

    assert [e.available for e in events] == [False, False]
    assert fallbacks("stt", "openai") == before_cloud + 1
    assert fallbacks("stt", "faster-whisper") == before_local + 1


# ---- TTS --------------------------------------------------------------------------------------
async def test_cloud_tts_speaks_elevenlabs_when_healthy(eleven: FakeElevenLabs) -> None:
    """The control for the fallback test: same set-up, the fake voice (a tone) is what comes out."""
    providers = cloud_providers()
    t = providers.tts
    assert isinstance(t, VoiceFallbackTTS) and isinstance(t.primary, elevenlabs.TTS)
    assert providers.voice.startswith("elevenlabs-")
    assert {type(e) for e in providers.standby} == {WhisperSTT, HibariTTS}  # prewarmed too
    events = watch(t, "tts_availability_changed")
    before = fallbacks("tts", "elevenlabs")
    token = primary_voice_token(t)
    frames = await synthesize(t, ANSWER)

    assert frames and tone_share(frames) > 0.8
    assert eleven.spoken() == [ANSWER]
    # raw PCM, not MP3 (whose encoder priming is ~50 ms of silence before every reply)
    assert {r.query["output_format"] for r in eleven.requests} == {"pcm_16000"}
    assert events == [] and fallbacks("tts", "elevenlabs") == before
    assert token is not None and primary_voice_token(t) == token  # audio may be cached under it


@pytest.mark.parametrize("mode", ["error", "drop"])
async def test_cloud_tts_falls_back_to_hibari(eleven: FakeElevenLabs, mode: str) -> None:
    eleven.configure(mode=mode)
    providers = cloud_providers()
    t = providers.tts
    assert isinstance(t, VoiceFallbackTTS)
    events = watch(t, "tts_availability_changed")
    before = fallbacks("tts", "elevenlabs")
    token = primary_voice_token(t)
    frames = await synthesize(t, ANSWER)

    # ElevenLabs was tried (1 + TTS_MAX_RETRY attempts) and spoke nothing ...
    attempts = eleven.recorded()
    assert len(attempts) >= 1 + TTS_MAX_RETRY
    assert all(r.kind == "ws" and r.outcome != "ok" for r in attempts), [r.outcome for r in attempts]
    assert eleven.spoken() == []
    # ... yet the caller hears the answer: hibari's speech, not the fake's tone
    assert frames and sum(f.samples_per_channel for f in frames) / frames[0].sample_rate > 1.0
    assert tone_share(frames) < 0.2
    heard = transcribe(frames)
    assert "nine" in heard or "open" in heard, heard
    [down] = events
    assert down.available is False and isinstance(down.tts, elevenlabs.TTS)
    assert fallbacks("tts", "elevenlabs") == before + 1
    # the audio is not the primary voice's: it must not be cached under providers.voice
    assert token is not None and primary_voice_token(t) != token


def test_local_profile_is_unchanged() -> None:
    """No second local engine to fall back to: the local profile has no fallback adapters."""
    providers = build_providers("local", Settings())
    assert isinstance(providers.stt, WhisperSTT) and isinstance(providers.tts, LocalVoice)
    assert isinstance(providers.tts.engine, HibariTTS)  # hibari, fed by the first-clause chunker
    assert primary_voice_token(providers.tts) == 0  # always its own voice


# ---- a whole simulated call: cached answers and the fallback voice ---------------------------
class HitCache:
    """The `ResponseCache` interface `CallAgent` uses: every question is a hit on an entry without
    audio yet, so the agent synthesizes it and offers the audio back (`attach_audio`)."""

    def __init__(self) -> None:
        self.lookups: list[str] = []
        self.attached: list[tuple[str, int, str]] = []  # (entry id, sample rate, voice)

    async def lookup(self, question: str, **kw: Any) -> CacheHit:
        self.lookups.append(question)
        return CacheHit(
            id=f"e{len(self.lookups)}", question=question, answer=answer_for(question), distance=0.0
        )

    async def store(self, *a: Any, **kw: Any) -> None:
        return None

    async def attach_audio(self, entry_id: str, audio: bytes, sample_rate: int, voice: str) -> None:
        assert audio
        self.attached.append((entry_id, sample_rate, voice))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ok", "error"])
async def test_call_caches_audio_only_in_the_primary_voice(
    eleven: FakeElevenLabs, tmp_path: Path, mode: str
) -> None:
    eleven.configure(mode=mode)
    cache = HitCache()
    before = fallbacks("tts", "elevenlabs")
    result = await asyncio.wait_for(  # run_call opens livekit's http context itself
        run_call(HERE / "data" / "cloud-two-turns.yaml", tmp_path, profile="cloud", cache=cache),
        HANG_GUARD_S * 3,
    )
    assert result.error is None, result.error
    assert len(result.turns) == 2 and all(t.cache_hit and t.agent_text for t in result.turns), result.turns
    assert len(cache.lookups) == 2
    voice = f"elevenlabs-{Settings().elevenlabs_voice_id}"
    if mode == "ok":  # ElevenLabs spoke both answers: their audio is kept under its voice
        assert sorted(e for e, _, _ in cache.attached) == ["e1", "e2"]
        assert {v for _, _, v in cache.attached} == {voice}
        assert fallbacks("tts", "elevenlabs") == before
    else:  # hibari spoke them: nothing is kept, so no ElevenLabs caller ever hears hibari
        assert cache.attached == []
        assert eleven.spoken() == []
        assert fallbacks("tts", "elevenlabs") == before + 1
