"""Telephone line model: 8 kHz, 300–3400 Hz band, G.711, additive noise at an SNR, packet loss.

Stateful and frame-by-frame (20 ms), so it can sit in the live uplink of a simulated call:
filters keep their state across frames and noise runs continuously through silences.
"""

from __future__ import annotations

import audioop  # stdlib on 3.11 (audioop-lts provides it on 3.13+)
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

if TYPE_CHECKING:
    from agent.sim.scenario import LineConfig

LINE_RATE = 8000
FRAME = LINE_RATE // 50  # 20 ms
SPEECH_RMS = 0.1  # nominal active-speech level the SNR is referenced to (-20 dBFS)


def to_speech_level(audio: np.ndarray, voiced_above: float) -> np.ndarray:
    """Scale so active speech (samples above `voiced_above`) sits at SPEECH_RMS: the SNR a scenario
    asks for is then exact, whichever voice or recording the caller uses."""
    voiced = audio[np.abs(audio) > voiced_above]
    rms = float(np.sqrt(np.mean(voiced**2))) if len(voiced) else 0.0
    return np.clip(audio * (SPEECH_RMS / rms if rms > 0 else 1.0), -0.99, 0.99).astype(np.float32)


class NoiseSource:
    """Procedural noise: white, babble (many overlapping speech-like voices), street (rumble + events).

    Generated a second at a time and served from a buffer: scipy's per-call overhead, paid for each
    20 ms frame of each talker's filters, was a third of the event loop in a 10-call load test.
    """

    BLOCK = LINE_RATE

    def __init__(self, kind: str, seed: int) -> None:
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        self._t = 0
        self._buf = np.zeros(0, dtype=np.float32)
        if kind == "babble":
            # 6 talkers: pitch-pulse trains through moving formant filters, syllable-rate AM
            self._voices = [
                (self.rng.uniform(90, 240), self.rng.uniform(2.5, 5.5), self.rng.uniform(0, 6.28))
                for _ in range(6)
            ]
            self._formants = [
                signal.butter(2, [lo, hi], btype="band", fs=LINE_RATE, output="sos")
                for lo, hi in ((300, 900), (900, 1800), (1800, 3000))
            ]
            self._zi = [[signal.sosfilt_zi(f) * 0 for f in self._formants] for _ in self._voices]
        elif kind == "street":
            self._low = signal.butter(2, 250, btype="low", fs=LINE_RATE, output="sos")
            self._zi_low = signal.sosfilt_zi(self._low) * 0

    def next(self, n: int) -> np.ndarray:
        while len(self._buf) < n:
            self._buf = np.concatenate([self._buf, self._generate(self.BLOCK)])
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _generate(self, n: int) -> np.ndarray:
        t = (self._t + np.arange(n)) / LINE_RATE
        self._t += n
        if self.kind == "white":
            out = self.rng.standard_normal(n)
        elif self.kind == "babble":
            out = np.zeros(n)
            for vi, (f0, rate, ph) in enumerate(self._voices):
                phase = (f0 * t) % 1.0
                pulses = (phase < f0 / LINE_RATE).astype(float) + 0.05 * self.rng.standard_normal(n)
                voice = np.zeros(n)
                for fi, sos in enumerate(self._formants):
                    y, self._zi[vi][fi] = signal.sosfilt(sos, pulses, zi=self._zi[vi][fi])
                    voice += y
                env = np.clip(np.sin(2 * np.pi * rate * t + ph), 0, None) ** 0.5
                out += voice * env
        elif self.kind == "street":
            rumble, self._zi_low = signal.sosfilt(self._low, self.rng.standard_normal(n), zi=self._zi_low)
            out = 3 * rumble + 0.3 * self.rng.standard_normal(n)
            for i in range(0, n, FRAME):  # a passing horn/clank now and then (1 % of frames)
                if self.rng.random() < 0.01:
                    out[i : i + FRAME] += 2 * np.sin(
                        2 * np.pi * self.rng.uniform(300, 800) * t[i : i + FRAME]
                    )
        else:
            return np.zeros(n, dtype=np.float32)
        return out.astype(np.float32)


class LineModel:
    """One direction of a phone line. `process` takes and returns float32 frames at 8 kHz."""

    def __init__(self, cfg: LineConfig, *, direction_seed: int = 0) -> None:
        self.cfg = cfg
        seed = cfg.seed * 1000 + direction_seed
        self._band = signal.butter(4, [300, 3400], btype="band", fs=LINE_RATE, output="sos")
        self._zi = signal.sosfilt_zi(self._band) * 0
        self._loss_rng = np.random.default_rng(seed + 7)
        self._noise = NoiseSource(cfg.noise, seed) if cfg.noise != "none" and cfg.snr_db is not None else None
        self._noise_gain = 0.0
        if self._noise is not None:
            # Calibrate once on the in-band level (what survives the line's filter), so the SNR
            # the caller's speech sees is the one asked for, whatever the noise's spectrum.
            probe = signal.sosfilt(self._band, NoiseSource(cfg.noise, seed + 99).next(LINE_RATE * 4))
            rms = float(np.sqrt(np.mean(probe[LINE_RATE:] ** 2))) or 1.0
            snr = cfg.snr_db if cfg.snr_db is not None else 60.0  # noise without an SNR: barely audible
            self._noise_gain = SPEECH_RMS * 10 ** (-snr / 20) / rms

    def process(self, frame: np.ndarray) -> np.ndarray:
        """A 20 ms frame in the live uplink, or a longer stretch (packet loss stays per 20 ms)."""
        x = frame.astype(np.float64)
        if self._noise is not None:
            x = x + self._noise_gain * self._noise.next(len(x))
        x, self._zi = signal.sosfilt(self._band, x, zi=self._zi)
        x = np.clip(x, -1.0, 1.0)
        if self.cfg.codec != "linear":
            pcm = (x * 32767).astype(np.int16).tobytes()
            enc, dec = (
                (audioop.lin2ulaw, audioop.ulaw2lin)
                if self.cfg.codec == "pcmu"
                else (audioop.lin2alaw, audioop.alaw2lin)
            )
            x = np.frombuffer(dec(enc(pcm, 2), 2), dtype=np.int16) / 32768.0
        if self.cfg.packet_loss > 0:
            lost = self._loss_rng.random(-(-len(x) // FRAME)) < self.cfg.packet_loss
            for k in np.flatnonzero(lost):
                x[k * FRAME : (k + 1) * FRAME] = 0.0  # lost 20 ms packet, no concealment (worst case)
        return x.astype(np.float32)

    def process_all(self, audio: np.ndarray) -> np.ndarray:
        """A whole recording in one pass (the per-frame path costs scipy overhead per 20 ms)."""
        return self.process(audio) if len(audio) else np.zeros(0, dtype=np.float32)
