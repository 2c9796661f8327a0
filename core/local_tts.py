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
            _ENGINE = Hibari(threads=threads)
        return _ENGINE


def synthesize_pcm16(text: str, threads: int = 1) -> bytes:
    """Whole-utterance synthesis to 16-bit mono PCM at 24 kHz."""
    engine = load_hibari(threads)
    with _SYNTH_LOCK:  # one synthesis at a time per process: concurrent calls share the engine
        audio = engine(text)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
