"""The telephone line model really changes the signal the way a phone line does."""

import audioop

import numpy as np
import pytest

from agent.sim.line import FRAME, LINE_RATE, LineModel
from agent.sim.scenario import LineConfig


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / LINE_RATE)
    return float(spec[(freqs >= lo) & (freqs < hi)].sum())


def _tones(freqs: list[float], seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(LINE_RATE * seconds)) / LINE_RATE
    return (sum(0.1 * np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)


def test_band_limits_attenuate_outside_300_3400():
    x = _tones([100, 1000, 3800])
    y = LineModel(LineConfig(codec="linear")).process_all(x)[LINE_RATE // 2 :]  # skip filter settling
    x = x[LINE_RATE // 2 :]
    keep = 10 * np.log10(_band_energy(y, 900, 1100) / _band_energy(x, 900, 1100))
    low = 10 * np.log10(_band_energy(y, 80, 120) / _band_energy(x, 80, 120))
    high = 10 * np.log10(_band_energy(y, 3700, 3900) / _band_energy(x, 3700, 3900))
    assert abs(keep) < 1.0  # passband untouched
    assert low < -15 and high < -15  # out of band strongly attenuated


def test_mulaw_round_trip_error_is_bounded():
    x = _tones([440, 1200])
    y = LineModel(LineConfig(codec="pcmu")).process_all(x)
    ref = LineModel(LineConfig(codec="linear")).process_all(x)
    err = y - ref
    snr = 10 * np.log10(np.mean(ref**2) / np.mean(err**2))
    assert 25 < snr < 45  # G.711 gives ~35-38 dB SQNR: audible change, bounded error
    # and it is really mu-law: same result as the stdlib codec
    pcm = (np.clip(ref[:FRAME], -1, 1) * 32767).astype(np.int16).tobytes()
    again = np.frombuffer(audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2), np.int16) / 32768.0
    assert np.max(np.abs(again - y[:FRAME])) < 1e-3


@pytest.mark.parametrize("noise", ["white", "babble", "street"])
def test_noise_hits_requested_snr(noise):
    silence = np.zeros(LINE_RATE * 4, np.float32)
    cfg = LineConfig(codec="linear", noise=noise, snr_db=10, seed=3)
    y = LineModel(cfg).process_all(silence)
    speech_rms = 0.1  # nominal speech level the SNR refers to
    measured = 20 * np.log10(speech_rms / np.sqrt(np.mean(y**2)))
    assert 8.5 < measured < 11.5  # calibrated in-band


def test_packet_loss_drops_whole_20ms_frames():
    x = _tones([1000])
    y = LineModel(LineConfig(codec="linear", packet_loss=0.2, seed=5)).process_all(x)
    frames = y.reshape(-1, FRAME)
    dropped = np.sum(np.all(frames == 0, axis=1))
    assert 0.1 * len(frames) < dropped < 0.3 * len(frames)


def test_line_is_deterministic_for_a_seed():
    x = _tones([700])
    cfg = LineConfig(noise="babble", snr_db=5, packet_loss=0.05, seed=11)
    assert np.array_equal(LineModel(cfg).process_all(x), LineModel(cfg).process_all(x))


def test_noise_is_continuous_across_frame_and_block_boundaries() -> None:
    # The noise is generated a second at a time; frame-by-frame reads and one long read of the
    # same source must give the same signal (no gap or repeat at a block boundary).
    from agent.sim.line import NoiseSource

    for kind in ("white", "babble", "street"):
        a, b = NoiseSource(kind, 3), NoiseSource(kind, 3)
        framed = np.concatenate([a.next(FRAME) for _ in range(2 * LINE_RATE // FRAME + 7)])
        whole = b.next(len(framed))
        assert np.array_equal(framed, whole), kind
        assert np.std(whole[LINE_RATE - FRAME : LINE_RATE + FRAME]) > 0
