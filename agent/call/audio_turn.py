"""A second opinion on end of turn from the caller's audio: Smart Turn v3.2.

The text rules (`turn_detector.utterance_complete_probability`) judge what whisper wrote, and
whisper often writes an unfinished phrase as a finished sentence ("the, er," -> "the earth."),
so the turn ends while the caller is still thinking. Smart Turn v3.2 (pipecat-ai's wheel,
BSD-2-Clause; a whisper-tiny encoder over the last 8 s of 16 kHz audio, 8.7 MB ONNX) hears the
intonation instead. It separates complete from unfinished utterances well on a clean line
(AUC 0.92 through our G.711 line model) and poorly in noise (0.75 at 10 dB babble, ~0.5 at
5 dB; ../shared/FACTS.md), so the detector asks it only when the call's line measures clean
enough (`line_noise.LineNoiseMeter`), and only to veto an end the text rules would allow.

The model file and its feature code (`_whisper_features.py`, numpy only, BSD-2-Clause, derived
from transformers' Whisper feature extractor) are read from the installed `pipecat-ai` package
without running the package's own imports: `install.sh` installs it with --no-deps, and the
framework itself is not used. (transformers' extractor gives the same features but its import
alone took 1.6 s of a call's start.)
"""

from __future__ import annotations

import importlib.util
import threading
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import soxr

MODEL_RATE = 16000
WINDOW_S = 8  # the model reads the last 8 s, zero-padded in front when shorter
# it was trained on one turn's audio: earlier turns in front of it pull a finished question
# down to ~0.65 (alone: ~0.97), so the turn starts this long before the VAD said "speaking"
TURN_LEAD_S = 0.3
MODEL_FILE = "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
FEATURES_FILE = "audio/turn/smart_turn/_whisper_features.py"


def _package_file(rel: str) -> Path | None:
    spec = importlib.util.find_spec("pipecat")  # locates the package; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.is_file() else None


def model_path() -> Path | None:
    """The Smart Turn v3.2 ONNX file inside the installed pipecat-ai package, or None."""
    return _package_file(MODEL_FILE)


def _log_mel() -> Callable[..., np.ndarray]:
    """pipecat's numpy log-mel function, loaded from its file alone."""
    path = _package_file(FEATURES_FILE)
    if path is None:
        raise FileNotFoundError(FEATURES_FILE)
    spec = importlib.util.spec_from_file_location("callcenter_smart_turn_features", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn: Callable[..., np.ndarray] = module.compute_whisper_log_mel_features
    return fn


class SmartTurn:
    """Probability that the audio ends a complete turn (one ONNX session, one thread)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1  # ~45 ms a call on one core; a call must not take two
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        self._features = _log_mel()
        self._lock = threading.Lock()  # one inference at a time per process: calls share the cores

    def probability(self, audio: np.ndarray, sample_rate: int) -> float:
        """P(turn complete) for mono float audio in [-1, 1] ending where the caller stopped."""
        x = audio.astype(np.float32)
        if sample_rate != MODEL_RATE:
            x = soxr.resample(x, sample_rate, MODEL_RATE).astype(np.float32)
        n = WINDOW_S * MODEL_RATE
        x = x[-n:] if len(x) >= n else np.pad(x, (n - len(x), 0))
        feats = np.expand_dims(self._features(x, do_normalize=True), 0).astype(np.float32)
        with self._lock:
            out = self._session.run(None, {"input_features": feats})
        return float(np.asarray(out[0]).reshape(-1)[0])


@lru_cache(maxsize=1)
def load_smart_turn() -> SmartTurn | None:
    """The process's model (loaded once, ~0.2 s), or None when pipecat-ai is not installed."""
    path = model_path()
    return SmartTurn(path) if path is not None else None


class RecentAudio:
    """The last few seconds of the caller's uplink, for the audio end-of-turn model."""

    def __init__(self, seconds: float = WINDOW_S) -> None:
        self.seconds = seconds
        self._chunks: deque[np.ndarray] = deque()
        self._samples = 0
        self._total = 0  # samples ever pushed
        self._turn_start: int | None = None  # in `_total` samples
        self.rate = 0

    def start_turn(self, lead_s: float = TURN_LEAD_S) -> None:
        """The caller began speaking: the turn's audio starts `lead_s` earlier (the VAD needs
        that long to say so). A turn already started keeps its start (a pause mid-turn)."""
        if self._turn_start is None:
            self._turn_start = max(0, self._total - int(lead_s * self.rate))

    def end_turn(self) -> None:
        """The turn was committed (or the agent took the floor): the next speech starts anew."""
        self._turn_start = None

    def push(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Append one int16 frame; older audio beyond `seconds` is dropped."""
        if sample_rate != self.rate:
            self._chunks.clear()
            self._samples, self.rate, self._total, self._turn_start = 0, sample_rate, 0, None
        self._chunks.append(pcm.copy())
        self._samples += len(pcm)
        self._total += len(pcm)
        keep = int(self.seconds * sample_rate)
        while self._chunks and self._samples - len(self._chunks[0]) >= keep:
            self._samples -= len(self._chunks.popleft())

    def snapshot(self, turn_only: bool = False) -> np.ndarray:
        """The buffered audio as float32 in [-1, 1] (empty before the first frame); with
        `turn_only`, only the current turn's part of it (when a turn was started)."""
        if not self._chunks:
            return np.zeros(0, np.float32)
        x = np.concatenate(list(self._chunks)).astype(np.float32) / 32768.0
        if turn_only and self._turn_start is not None:
            x = x[-max(1, self._total - self._turn_start) :]
        return x
