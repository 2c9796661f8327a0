"""The caller line's noise level, estimated per call from the uplink alone.

A phone call gives no clean reference: the line carries the caller's words, the pauses between
them and whatever noise sits under both. Over a call, the quietest fifth of the 20 ms frames is
the noise floor and the loudest fifth is speech on top of it; the ratio of their mean powers,
mapped through a line fitted on the simulated line (`python -m agent.bench.line_noise`, fitted
on seed 1, reported on seeds 2-3), estimates the SNR the caller's speech sees. Frames while the
agent speaks are left out: they carry the agent's echo, not the caller's line. Counts live in a
0.5 dB histogram, so memory stays constant however long the call, and a frame seen twice (the
session's VAD stream and the STT's both pass it) leaves every fraction where it was.

It is an estimate for choosing behaviour (how far to trust a transcript, whether an audio
end-of-turn model can help), not a measurement: within ~2 dB on babble and street noise between
5 and 30 dB; a clean G.711 line reads 30-40 dB (its quantisation noise).
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.02
FLOOR_DBFS = -85.0  # digital silence (no line yet, a muted leg): not the line's noise
BIN_DB = 0.5
_EDGES = np.arange(FLOOR_DBFS, 0.0 + BIN_DB, BIN_DB)
_POWER = 10 ** ((_EDGES[:-1] + BIN_DB / 2) / 10)  # each bin's centre, as power
FRACTION = 0.2  # the quietest / loudest fifth of the frames
MIN_SPEECH_S = 1.0  # no estimate before 1 s of caller audio outside the agent's turns (a first
# fragment and its pause: within ~2 dB of the line on the bench corpus's six fragments, 10-20 dB)
# raw power ratio (dB) -> SNR (dB), least squares over babble and street at 5-30 dB, seed 1
SLOPE, OFFSET = 1.03, -3.8


def frame_db(x: np.ndarray, n: int) -> np.ndarray:
    """The level (dB re full scale) of each whole `n`-sample frame of `x`, from its start."""
    k = len(x) // n
    f = x[: k * n].reshape(k, n).astype(np.float64)
    return 10 * np.log10(np.mean(f * f, axis=1) + 1e-12)


class LineNoiseMeter:
    """Collects uplink frame levels of one call and estimates its SNR."""

    def __init__(self) -> None:
        self._hist = np.zeros(len(_EDGES) - 1, dtype=np.int64)
        self._carry = np.zeros(0, dtype=np.float32)
        self._rate = 0

    @property
    def frames(self) -> int:
        """How many 20 ms frames above digital silence were counted."""
        return int(self._hist.sum())

    def push(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Count one chunk of caller audio (int16 or float in [-1, 1], mono)."""
        x = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float32)
        if sample_rate != self._rate:  # a new rate: a partial frame at the old one is dropped
            self._rate, self._carry = sample_rate, np.zeros(0, dtype=np.float32)
        x = np.concatenate([self._carry, x]) if len(self._carry) else x
        n = int(sample_rate * FRAME_S)
        k = len(x) // n
        self._carry = x[k * n :]
        if k == 0:
            return
        db = frame_db(x[: k * n], n)
        counts, _ = np.histogram(db[db > FLOOR_DBFS], bins=_EDGES)
        self._hist += counts

    def snr_db(self) -> float | None:
        """The estimated SNR in dB, or None until enough of the caller has been heard."""
        total = self.frames
        if total * FRAME_S < MIN_SPEECH_S:
            return None
        take = max(1, int(total * FRACTION))
        low = _mean_power(self._hist, take)
        high = _mean_power(self._hist[::-1], take, _POWER[::-1])
        raw = 10 * np.log10(max(high - low, 1e-12) / low)
        return round(float(SLOPE * raw + OFFSET), 1)

    def summary(self) -> dict[str, float | int | None]:
        """What the call report records."""
        return {"snr_db_estimate": self.snr_db(), "frames": self.frames}


def _mean_power(hist: np.ndarray, take: int, power: np.ndarray = _POWER) -> float:
    """Mean power of the first `take` frames in histogram order (quietest first by default)."""
    counts = np.minimum(np.cumsum(hist), take)
    used = np.diff(np.concatenate([[0], counts]))
    return float((used * power).sum() / take)
