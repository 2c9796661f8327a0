"""Recorded caller audio for scenarios (`play: caller.wav`): any rate, any channel count.

Every way a file can be unusable is a one-line `UserError` naming the file, raised when the
scenario is loaded, before a call starts: nothing is half-played.
"""

from __future__ import annotations

import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from agent.sim.line import LINE_RATE, to_speech_level
from core.errors import UserError

MAX_SECONDS = 600.0
SILENT_PEAK = 1e-3  # -60 dBFS: a file this quiet holds no caller


def _header_frames(path: Path) -> int | None:
    """Frame count a PCM WAV header promises (None: not a PCM WAV the stdlib can parse)."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes()
    except (wave.Error, EOFError, OSError):
        return None


@lru_cache(maxsize=32)
def load_caller_recording(path: Path) -> np.ndarray:
    """The recording as mono float32 at the line rate (8 kHz), speech at the line's level."""
    if not path.is_file():
        raise UserError(f"caller recording not found: {path}")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        reason = str(e).split(": ", 1)[-1] if ": " in str(e) else str(e)
        raise UserError(f"{path}: not a readable audio file ({reason.strip()})") from None
    if len(audio) == 0:
        raise UserError(f"{path}: the recording is empty (0 samples)")
    promised = _header_frames(path) if path.suffix.lower() == ".wav" else None
    if promised is not None and promised > len(audio):
        raise UserError(
            f"{path}: truncated: the header promises {promised / rate:.2f} s, "
            f"the file holds {len(audio) / rate:.2f} s"
        )
    if len(audio) / rate > MAX_SECONDS:
        raise UserError(f"{path}: {len(audio) / rate:.0f} s is longer than {MAX_SECONDS:.0f} s")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise UserError(f"{path}: the samples contain NaN or infinity")
    if float(np.max(np.abs(mono))) < SILENT_PEAK:
        raise UserError(f"{path}: the recording is silent (peak below -60 dBFS)")
    if rate != LINE_RATE:
        mono = soxr.resample(mono, rate, LINE_RATE).astype(np.float32)
    # A recording's level is unknown, so "active speech" is relative to its own peak.
    return to_speech_level(mono, voiced_above=0.1 * float(np.max(np.abs(mono))))
