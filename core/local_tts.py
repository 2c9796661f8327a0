"""The embedded TTS voice: hibari "heart" (24 kHz, bundled in `hibari-tts`), one engine per process.

Lives in core/ because both the agent (its TTS plugin) and the cache admin (pre-rendering
cached answers with the agent's voice) synthesize with it.
"""

from __future__ import annotations

import threading

import numpy as np

from core.errors import UserError

SAMPLE_RATE = 24000
VOICE = "hibari-heart"
_ENGINE_LOCK = threading.Lock()
_SYNTH_LOCK = threading.Lock()
_ENGINE = None


def load_hibari(threads: int = 1):  # -> hibari.Hibari
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            try:
                from hibari import Hibari
            except ImportError:
                raise UserError("local TTS missing: hibari-tts is not installed (run ./install.sh)") from None
            engine = Hibari(threads=threads)
            # The first synthesis sets the runtime up (~0.5 s, whatever the text): pay it here,
            # at load, not in the first call's greeting, where it was silence after pick-up.
            engine("Hello.")
            _ENGINE = engine
        return _ENGINE


# hibari pads every sentence with ~300 ms of silence before and ~480 ms after. On a phone line
# the lead is dead air the caller waits through on every turn, and between two sentences of one
# answer the pads add up to a ~0.8 s pause, so we keep only a short onset and a natural gap.
SILENCE = 0.003  # ~-50 dBFS: below the quietest consonant onsets
KEEP_LEAD_S = 0.02
KEEP_TAIL_S = 0.15


def trim_silence(audio: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """`audio` (float, or int16 PCM) without its leading/trailing pads beyond KEEP_LEAD_S / KEEP_TAIL_S."""
    threshold = SILENCE * (32768 if audio.dtype == np.int16 else 1.0)
    voiced = np.flatnonzero(np.abs(audio) > threshold)
    if not len(voiced):
        return audio[:0]
    start = max(0, int(voiced[0]) - int(KEEP_LEAD_S * rate))
    end = min(len(audio), int(voiced[-1]) + 1 + int(KEEP_TAIL_S * rate))
    return audio[start:end]


def synthesize_pcm16(text: str, threads: int = 1) -> bytes:
    """Whole-utterance synthesis to 16-bit mono PCM at 24 kHz, silence pads trimmed."""
    engine = load_hibari(threads)
    with _SYNTH_LOCK:  # one synthesis at a time per process: concurrent calls share the engine
        audio = engine(text)
    audio = trim_silence(np.asarray(audio, dtype=np.float32))
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
