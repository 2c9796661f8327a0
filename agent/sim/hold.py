"""Hold audio on the simulated line: livekit's built-in hold clip (the one WarmTransferTask's
`BackgroundAudioPlayer` plays on a LiveKit call, `sip.warm.HOLD_AUDIO`) mixed into the caller's
channel while `SimCallControl` rings the simulated human."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr
from livekit.agents.voice.background_audio import BuiltinAudioClip

from agent.sim.audio_io import TL_RATE
from sip.warm import HOLD_AUDIO


class HoldMusic:
    """`start()` / `stop()` (the control) and `tick(n)` (the call clock): the next n samples at
    the timeline rate, looped like the task's player, silence while stopped."""

    def __init__(self) -> None:
        self.playing = False
        self.played = 0  # samples played into the call, over all holds
        self._clip = self._load()  # decoded before the call, never inside the 20 ms clock
        self._pos = 0

    def _load(self) -> np.ndarray:
        source = HOLD_AUDIO.source
        path = source.path() if isinstance(source, BuiltinAudioClip) else str(source)
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        mono = soxr.resample(data.mean(axis=1), rate, TL_RATE).astype(np.float32)
        return mono * HOLD_AUDIO.volume

    def start(self) -> None:
        self.playing, self._pos = True, 0

    def stop(self) -> None:
        self.playing = False

    def tick(self, n: int) -> np.ndarray:
        if not self.playing:
            return np.zeros(n, np.float32)
        idx = (self._pos + np.arange(n)) % len(self._clip)
        self._pos = (self._pos + n) % len(self._clip)
        self.played += n
        return self._clip[idx]
