"""Audio I/O between the simulated phone line and the real `AgentSession`.

Both sides are driven by one clock (`tick`, 20 ms): the uplink pushes the caller frame the
agent hears, the downlink plays exactly 20 ms of whatever the agent queued. So agent audio
lands on the call timeline when a real phone would play it, and voice-to-voice is read off
the timeline itself rather than from framework timestamps.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np
import soxr
from livekit import rtc
from livekit.agents.voice import io

TL_RATE = 16000  # timeline sample rate
TICK = TL_RATE // 50  # 20 ms


def to_frame(samples: np.ndarray, rate: int = TL_RATE) -> rtc.AudioFrame:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    return rtc.AudioFrame(data=pcm.tobytes(), sample_rate=rate, num_channels=1, samples_per_channel=len(pcm))


class SimAudioInput(io.AudioInput):
    """The caller's side of the line as the agent hears it."""

    def __init__(self) -> None:
        super().__init__(label="sim-phone-line")
        self._q: asyncio.Queue[rtc.AudioFrame | None] = asyncio.Queue()

    def push(self, frame: rtc.AudioFrame) -> None:
        self._q.put_nowait(frame)

    def close(self) -> None:
        self._q.put_nowait(None)

    async def __anext__(self) -> rtc.AudioFrame:
        frame = await self._q.get()
        if frame is None:
            raise StopAsyncIteration
        return frame


class SimAudioOutput(io.AudioOutput):
    """A phone speaker playing in real time; supports pause so false interruptions can resume."""

    def __init__(self) -> None:
        super().__init__(label="sim-phone-speaker", capabilities=io.AudioOutputCapabilities(pause=True))
        self._queue: deque[np.ndarray] = deque()
        self._queued = 0
        self._resamplers: dict[int, soxr.ResampleStream] = {}
        self._segment_open = False  # frames captured, playback not finished yet
        self._flushed = False
        self._started = False
        self._played = 0
        self._paused = False

    @property
    def speaking(self) -> bool:
        return self._queued > 0 and not self._paused

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._segment_open:
            self._segment_open, self._flushed, self._started, self._played = True, False, False, 0
            self._resamplers.clear()
        x = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
        if frame.num_channels > 1:
            x = x.reshape(-1, frame.num_channels).mean(axis=1)
        if frame.sample_rate != TL_RATE:
            rs = self._resamplers.setdefault(
                frame.sample_rate, soxr.ResampleStream(frame.sample_rate, TL_RATE, 1, dtype="float32")
            )
            x = rs.resample_chunk(x)
        if len(x):
            self._queue.append(x)
            self._queued += len(x)

    def flush(self) -> None:
        super().flush()
        if self._segment_open:
            self._flushed = True
            if self._queued == 0 and self._started:
                self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        self._queue.clear()
        self._queued = 0
        if self._segment_open:
            self._finish(interrupted=True)

    def pause(self) -> None:
        super().pause()
        self._paused = True

    def resume(self) -> None:
        super().resume()
        self._paused = False

    def _finish(self, *, interrupted: bool) -> None:
        self._segment_open = False
        self.on_playback_finished(playback_position=self._played / TL_RATE, interrupted=interrupted)

    def tick(self, n: int = TICK) -> np.ndarray:
        """Play the next n samples (called by the call clock)."""
        out = np.zeros(n, dtype=np.float32)
        if self._paused or not self._segment_open:
            return out
        filled = 0
        while filled < n and self._queue:
            head = self._queue[0]
            take = min(n - filled, len(head))
            out[filled : filled + take] = head[:take]
            filled += take
            if take == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[take:]
        self._queued -= filled
        if filled and not self._started:
            self._started = True
            self.on_playback_started(created_at=time.time())
        self._played += filled
        if self._queued == 0 and self._flushed and self._started:
            self._finish(interrupted=False)
        return out
