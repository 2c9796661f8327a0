"""How well the per-call line noise estimate (`agent/call/line_noise.py`) reads the line.

    python -m agent.bench.line_noise [--out bench-results/line-noise.json]

The simulated caller says three questions with 1.2 s pauses, through `LineModel` (G.711 mu-law)
with babble or street noise at 5-30 dB, seeds 1-3, fed to the meter in 20 ms frames as a call
does. Seed 1 fits the raw ratio -> SNR line (printed, and compared with the shipped one);
seeds 2-3 are the report: the shipped constants' error per condition. No STT, no session: this
measures the estimator alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.call import line_noise
from agent.call.line_noise import LineNoiseMeter

if TYPE_CHECKING:
    from agent.sim.scenario import NoiseType

TEXTS = (
    "Hi, what are your opening hours?",
    "Do you deliver to my street on Saturdays?",
    "Okay, and where is the store exactly?",
)
NOISES: tuple[NoiseType, ...] = ("babble", "street")
SNRS = (5, 10, 15, 20, 30)
FIT_SEEDS, REPORT_SEEDS = (1,), (2, 3)


def caller_audio() -> np.ndarray:
    from agent.sim.caller_voice import synthesize_caller

    gap = np.zeros(int(1.2 * 8000), np.float32)
    return np.concatenate([gap] + [np.concatenate([synthesize_caller(t), gap]) for t in TEXTS])


def measure(audio: np.ndarray, noise: NoiseType, snr: float | None, seed: int) -> tuple[float, float]:
    """(raw power ratio dB, shipped estimate dB) for one line."""
    from agent.sim.line import LineModel
    from agent.sim.scenario import LineConfig

    line = LineModel(LineConfig(codec="pcmu", noise=noise, snr_db=snr, seed=seed))
    meter = LineNoiseMeter()
    step = int(8000 * line_noise.FRAME_S)
    for i in range(0, len(audio), step):
        meter.push(line.process(audio[i : i + step]), 8000)
    est = meter.snr_db()
    assert est is not None
    return (est - line_noise.OFFSET) / line_noise.SLOPE, est


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-results/line-noise.json"))
    args = ap.parse_args(argv)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.touch()
    except OSError as e:
        print(f"error: cannot write {args.out}: {e.strerror}", file=sys.stderr)
        return 2
    audio = caller_audio()
    rows: list[dict[str, Any]] = []
    for noise in NOISES:
        for snr in SNRS:
            for seed in FIT_SEEDS + REPORT_SEEDS:
                raw, est = measure(audio, noise, snr, seed)
                rows.append({"noise": noise, "snr_db": snr, "seed": seed, "raw_db": raw, "estimate_db": est})
    clean = [measure(audio, "none", None, s)[1] for s in REPORT_SEEDS]
    fit = [r for r in rows if r["seed"] in FIT_SEEDS]
    slope, offset = np.polyfit([r["raw_db"] for r in fit], [r["snr_db"] for r in fit], 1)
    report = [r for r in rows if r["seed"] in REPORT_SEEDS]
    errors = [abs(r["estimate_db"] - r["snr_db"]) for r in report]
    print(f"fit on seed {FIT_SEEDS}: slope {slope:.3f} offset {offset:.2f} "
          f"(shipped {line_noise.SLOPE} / {line_noise.OFFSET})")  # fmt: skip
    print(f"{'noise':8} {'true dB':>7} {'estimate (seeds 2-3)':>22}")
    for noise in NOISES:
        for snr in SNRS:
            ests = [r["estimate_db"] for r in report if r["noise"] == noise and r["snr_db"] == snr]
            print(f"{noise:8} {snr:7d} {'  '.join(f'{e:6.1f}' for e in ests):>22}")
    print(f"{'clean':8} {'—':>7} {'  '.join(f'{e:6.1f}' for e in clean):>22}")
    print(
        f"report seeds: mean |error| {np.mean(errors):.1f} dB, max {np.max(errors):.1f} dB over {len(errors)} lines"
    )
    out = {
        "fit": {"seeds": FIT_SEEDS, "slope": slope, "offset": offset},
        "shipped": {"slope": line_noise.SLOPE, "offset": line_noise.OFFSET},
        "rows": rows,
        "clean_estimates": clean,
        "report_mean_abs_error_db": float(np.mean(errors)),
        "report_max_abs_error_db": float(np.max(errors)),
    }
    args.out.write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
