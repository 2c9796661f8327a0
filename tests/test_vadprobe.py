"""The VAD probe's scoring on hand-built probabilities: one hysteresis for every candidate, and
end delays, misses, mid-utterance ends and noise segments counted the way the doc reads them."""

from __future__ import annotations

import pytest

from agent.bench.turns.vadprobe import score, segments


def _probs(
    spans: list[tuple[float, float, float]], until: float, step: float = 0.032
) -> list[tuple[float, float]]:
    """(start, end, probability) spans over a floor of 0.02, sampled every 32 ms like silero."""
    out, t = [], step
    while t <= until:
        out.append((t, next((p for s, e, p in spans if s <= t < e), 0.02)))
        t += step
    return out


def test_segments_use_livekit_like_hysteresis() -> None:
    probs = _probs([(1.0, 2.0, 0.9), (2.0, 2.2, 0.4), (3.0, 3.1, 0.45)], until=4.0)
    (seg,) = segments(probs, activation=0.5)  # 0.4 is above 0.35: still speech; 0.45 never starts one
    start, declared = seg
    assert start == pytest.approx(1.0, abs=0.04)
    assert declared == pytest.approx(2.2 + 0.25, abs=0.07)  # 0.25 s below 0.35 after the dip ends
    assert len(segments(probs, activation=0.4)) == 2  # a lower threshold hears the 0.45 blip


def test_score_counts_delays_misses_inner_ends_and_noise() -> None:
    truth = [(1.0, 2.0), (4.0, 5.0), (7.0, 7.3)]
    segs = [
        (1.02, 1.6),  # ended inside the first utterance (silence from 1.35)
        (1.7, 2.3),  # ... then ends 0.3 s after it
        (4.05, 5.4),  # 0.4 s after the second
        (9.0, 9.5),  # noise only
    ]  # the third utterance is never detected
    s = score(segs, truth)
    assert s["delays"] == pytest.approx([0.3, 0.4])
    assert (s["missed"], s["ends_inside"], s["noise_segments"]) == (1, 1, 1)


@pytest.mark.parametrize("module", ["agent.bench.turns.vadprobe", "agent.bench.turns.sweep"])
def test_an_unwritable_out_is_refused_before_measuring(module: str, tmp_path) -> None:
    import subprocess
    import sys

    blocker = tmp_path / "a-file"
    blocker.write_text("kept")
    args = [sys.executable, "-m", module, *(["{}"] if module.endswith("sweep") else [])]
    for out, why in [(blocker / "x.json", "cannot create"), (tmp_path, "is a directory")]:
        r = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert why in r.stderr and "Traceback" not in r.stderr
    assert blocker.read_text() == "kept"


def test_sweep_refuses_bad_overrides_with_the_field_names() -> None:
    import subprocess
    import sys

    for bad in ["{min_delay: 0.3}", '{"min_dely": 0.3}', "[1]"]:
        r = subprocess.run(
            [sys.executable, "-m", "agent.bench.turns.sweep", bad],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 2, r.stderr
        assert "min_delay" in r.stderr and "Traceback" not in r.stderr
