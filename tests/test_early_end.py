"""`EndableVADStream` (agent/call/early_end.py): the echo gate's VAD stream can end the caller's
speech before the VAD's own silence rule, and what follows stays one consistent sequence of
utterances for livekit and the early STT adapter (issue #23 item 2)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
from livekit import rtc
from livekit.agents import vad

from agent.call.early_end import EndableVADStream

RATE = 16000
WIN = 512  # one 32 ms window
T = vad.VADEventType


def frame(value: int) -> rtc.AudioFrame:
    pcm = np.full(WIN, value, np.int16)
    return rtc.AudioFrame(pcm.tobytes(), RATE, 1, WIN)


def ev(kind: vad.VADEventType, *, p: float = 0.0, speaking: bool = False, speech: float = 0.0,
       silence: float = 0.0, raw_silence: float = 0.0, frames: list[rtc.AudioFrame] | None = None,
       ) -> vad.VADEvent:  # fmt: skip
    return vad.VADEvent(
        type=kind,
        samples_index=0,
        timestamp=0.0,
        speech_duration=speech,
        silence_duration=silence,
        frames=frames or [],
        probability=p,
        speaking=speaking,
        raw_accumulated_silence=raw_silence,
    )


class ScriptedInner:
    """Stands in for a VAD's stream: yields the events put on its queue."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[vad.VADEvent | None] = asyncio.Queue()
        self.pushed = 0

    def push_frame(self, f: rtc.AudioFrame) -> None:
        self.pushed += 1

    def flush(self) -> None: ...
    def end_input(self) -> None:
        self.q.put_nowait(None)

    async def aclose(self) -> None:
        self.q.put_nowait(None)

    def __aiter__(self) -> ScriptedInner:
        return self

    async def __anext__(self) -> vad.VADEvent:
        item = await self.q.get()
        if item is None:
            raise StopAsyncIteration
        return item


class Owner(vad.VAD):
    def __init__(self) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=0.032))

    def stream(self) -> vad.VADStream:
        raise NotImplementedError


RULE = SimpleNamespace(activation_threshold=0.5, deactivation_threshold=0.35, min_speech_duration=0.05)


async def collect(stream: EndableVADStream, n: int) -> list[vad.VADEvent]:
    out = []
    async for e in stream:
        out.append(e)
        if len(out) == n:
            break
    return out


def samples(e: vad.VADEvent) -> list[int]:
    return [int(v) for f in e.frames for v in np.frombuffer(f.data, np.int16)[::WIN]]


async def test_events_pass_unchanged_until_end_now() -> None:
    inner = ScriptedInner()
    s = EndableVADStream(Owner(), inner, RULE)  # type: ignore[arg-type]
    s.push_frame(frame(0))
    assert inner.pushed == 1
    script = [
        ev(T.START_OF_SPEECH, speaking=True, speech=0.05, frames=[frame(1)]),
        ev(T.INFERENCE_DONE, p=0.9, speaking=True, speech=0.08, frames=[frame(2)]),
        ev(T.END_OF_SPEECH, silence=0.25, speech=0.08, frames=[frame(1), frame(2)]),
    ]
    for e in script:
        inner.q.put_nowait(e)
    got = await asyncio.wait_for(collect(s, 3), 5)
    assert got == script
    assert not s.end_now()  # no speech to end
    await s.aclose()


async def test_end_now_ends_the_speech_and_hides_its_tail() -> None:
    inner = ScriptedInner()
    s = EndableVADStream(Owner(), inner, RULE)  # type: ignore[arg-type]
    for e in [
        ev(T.START_OF_SPEECH, speaking=True, speech=0.05, frames=[frame(1)]),
        ev(T.INFERENCE_DONE, p=0.9, speaking=True, speech=0.5, frames=[frame(2)]),
        ev(T.INFERENCE_DONE, p=0.1, speaking=True, speech=0.6, raw_silence=0.12, frames=[frame(3)]),
    ]:
        inner.q.put_nowait(e)
    await asyncio.wait_for(collect(s, 3), 5)
    assert s.end_now()
    assert not s.end_now()  # once per speech
    end = (await asyncio.wait_for(collect(s, 1), 5))[0]
    assert end.type == T.END_OF_SPEECH and not end.speaking
    assert end.silence_duration == 0.12  # livekit dates the caller's last speech from it
    assert abs(end.speech_duration - 0.48) < 1e-9
    assert samples(end) == [1, 2, 3]  # the utterance so far, for the STT
    # the VAD's own silence goes on: shown as silence, no speech duration (no barge-in)
    inner.q.put_nowait(ev(T.INFERENCE_DONE, p=0.05, speaking=True, speech=0.63, raw_silence=0.15))
    inner.q.put_nowait(ev(T.END_OF_SPEECH, silence=0.25, speech=0.4, frames=[frame(1)]))
    inner.q.put_nowait(ev(T.START_OF_SPEECH, speaking=True, speech=0.05, frames=[frame(7)]))
    tail, nxt = await asyncio.wait_for(collect(s, 2), 5)
    assert tail.type == T.INFERENCE_DONE and not tail.speaking and tail.speech_duration == 0.0
    assert nxt.type == T.START_OF_SPEECH and samples(nxt) == [7]  # its END was swallowed
    await s.aclose()


async def test_speech_resumed_after_an_early_end_is_a_new_utterance() -> None:
    inner = ScriptedInner()
    s = EndableVADStream(Owner(), inner, RULE)  # type: ignore[arg-type]
    for e in [
        ev(T.START_OF_SPEECH, speaking=True, speech=0.05, frames=[frame(1)]),
        ev(T.INFERENCE_DONE, p=0.1, speaking=True, speech=0.4, raw_silence=0.1, frames=[frame(2)]),
    ]:
        inner.q.put_nowait(e)
    await asyncio.wait_for(collect(s, 2), 5)
    assert s.end_now()
    await asyncio.wait_for(collect(s, 1), 5)
    # the caller goes on before the VAD's silence ran out: two windows over the speech rule
    inner.q.put_nowait(ev(T.INFERENCE_DONE, p=0.2, speaking=True, speech=0.45, frames=[frame(4)]))
    inner.q.put_nowait(ev(T.INFERENCE_DONE, p=0.8, speaking=True, speech=0.48, frames=[frame(5)]))
    inner.q.put_nowait(ev(T.INFERENCE_DONE, p=0.9, speaking=True, speech=0.51, frames=[frame(6)]))
    inner.q.put_nowait(ev(T.INFERENCE_DONE, p=0.9, speaking=True, speech=0.54, frames=[frame(8)]))
    got = await asyncio.wait_for(collect(s, 5), 5)
    assert [e.type for e in got] == [T.INFERENCE_DONE] * 3 + [T.START_OF_SPEECH, T.INFERENCE_DONE]
    assert [e.speaking for e in got] == [False, False, False, True, True]
    start = got[3]
    assert samples(start) == [4, 5, 6]  # the windows since the early end: prefix and onset
    assert abs(got[4].speech_duration - 3 * 0.032) < 1e-6  # long enough to pause the reply
    # the VAD ends the (whole) speech: reported with the new speech's audio only
    inner.q.put_nowait(ev(T.END_OF_SPEECH, silence=0.25, speech=1.0, frames=[frame(1)] * 9))
    end = (await asyncio.wait_for(collect(s, 1), 5))[0]
    assert end.type == T.END_OF_SPEECH and samples(end) == [4, 5, 6, 8]
    assert not s.speaking and not s.ended_early
    assert s.resumed == 1 and s.early_silences == [0.1]
    await s.aclose()
