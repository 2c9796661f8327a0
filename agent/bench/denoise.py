"""Noise suppression on the uplink, measured: word errors, noise in pauses, CPU, turn-taking.

`python -m agent.bench.denoise [--modes off,dtln,dfn3] [--conditions clean,babble-10]
[--seeds 2] [--turns] [--out bench-results/denoise.json]`

- Words: every corpus sentence (questions, hesitations, barge-ins) spoken by the simulated
  caller, through the line model (G.711, the condition's noise), resampled to the simulator's
  16 kHz and cut into its 20 ms frames, through the denoise stage exactly as a call applies it
  (`DenoisedAudioInput` over a simulator input), then the product's local STT (faster-whisper
  tiny.en) on the whole utterance. Word error rate against the words spoken.
- Noise in pauses: the line's noise is known (it runs through the caller's silences), so the
  attenuation in the padding before and after each sentence is measured directly.
- CPU: process CPU seconds the stage takes per second of audio (one call's uplink).
- `--turns`: `callcenter bench turns --configs shipped` per mode in a child process with
  `CALLCENTER_DENOISE=<mode>` (real STT, real session), its EOU delay / cut-ins / false
  interruptions / missed barge-ins and the child's CPU seconds per call-second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from agent.bench.turns.corpus import BARGE_INS, HESITATIONS, QUESTIONS
from agent.call.denoise import MODES, DenoisedAudioInput, DenoiseMode, make_denoiser
from agent.sim.audio_io import TICK, TL_RATE, SimAudioInput, to_frame
from agent.sim.caller_voice import synthesize_caller
from agent.sim.line import LINE_RATE, LineModel
from agent.sim.scenario import LineConfig

LINES: dict[str, dict[str, Any]] = {
    "clean": {"codec": "pcmu"},
    "babble-10": {"codec": "pcmu", "noise": "babble", "snr_db": 10.0},
    "babble-5": {"codec": "pcmu", "noise": "babble", "snr_db": 5.0},
    "street-10": {"codec": "pcmu", "noise": "street", "snr_db": 10.0},
}
SENTENCES = [*QUESTIONS, *(s for s, _ in HESITATIONS), *BARGE_INS]
PAD_S = 0.6  # line noise alone before and after each sentence
TURN_CONDITIONS = {"clean": "clean", "babble-10": "babble-10"}


FILLERS = {"um", "uh", "er", "erm", "hmm"}


def words(text: str) -> list[str]:
    """Lower-case words without punctuation ("I'd" stays one word) and without fillers: the
    corpus's hesitations say "um", whisper never writes it, and it carries no meaning."""
    return [w for w in re.findall(r"[a-z0-9']+", text.lower().replace("-", " ")) if w not in FILLERS]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def line_audio(text: str, line: str, seed: int) -> np.ndarray:
    """The caller's sentence as the simulator hands it to the session: line model, 16 kHz."""
    pad = np.zeros(int(PAD_S * LINE_RATE), np.float32)
    heard = LineModel(LineConfig(seed=seed, **LINES[line]), direction_seed=1).process_all(
        np.concatenate([pad, np.asarray(synthesize_caller(text), np.float32), pad])
    )
    return soxr.resample(heard, LINE_RATE, TL_RATE, quality="LQ").astype(np.float32)


async def through_stage(audio: np.ndarray, mode: DenoiseMode) -> tuple[np.ndarray, float]:
    """Audio through the call's denoise stage in 20 ms frames; returns it and the CPU seconds."""
    n = len(audio) // TICK * TICK
    src = SimAudioInput()
    for i in range(0, n, TICK):
        src.push(to_frame(audio[i : i + TICK]))
    src.close()
    proc = make_denoiser(mode)
    stream = DenoisedAudioInput(src, proc) if proc is not None else src
    out: list[np.ndarray] = []
    t = time.process_time()
    async for frame in stream:
        out.append(np.frombuffer(frame.data, np.int16).astype(np.float32) / 32768.0)
    cpu = time.process_time() - t
    if proc is not None:
        proc._close()
    return np.concatenate(out), cpu


def pause_energy(audio: np.ndarray) -> float:
    """Mean energy of the line noise in the pads (the caller silent), past the stage's delay."""
    p = int(PAD_S * TL_RATE)
    quiet = np.concatenate([audio[p // 4 : p], audio[len(audio) - p + p // 4 :]])
    return float(np.mean(quiet**2))


def _db(energy: float) -> float:
    return float(10 * np.log10(energy + 1e-12))


async def measure_words(modes: list[DenoiseMode], lines: list[str], seeds: int) -> dict[str, Any]:
    """WER, noise in pauses and CPU per mode and line (see the module docstring)."""
    from agent.providers.profiles import local_stt
    from core.settings import get_settings

    stt = local_stt(get_settings(), threads=2)
    table: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for line in lines:
        table[line] = {}
        for mode in modes:
            errs = total = 0
            cpu = secs = 0.0
            pauses: list[float] = []
            raw_pauses: list[float] = []
            for seed in range(seeds):
                for text in SENTENCES:
                    audio = line_audio(text, line, seed)
                    out, c = await through_stage(audio, mode)
                    cpu, secs = cpu + c, secs + len(out) / TL_RATE
                    pauses.append(pause_energy(out))
                    raw_pauses.append(pause_energy(audio[: len(out)]))
                    frame = to_frame(out)
                    ev = await stt.recognize(buffer=frame)
                    heard = ev.alternatives[0].text if ev.alternatives else ""
                    e = edit_distance(words(text), words(heard))
                    errs, total = errs + e, total + len(words(text))
                    rows.append({"line": line, "mode": mode, "seed": seed, "spoken": text, "heard": heard})
            table[line][mode] = {
                "wer": round(errs / total, 4),
                "words": total,
                "cpu_s_per_audio_s": round(cpu / secs, 4),
                "pause_noise_dbfs": round(_db(float(np.mean(pauses))), 1),
                "pause_noise_reduction_db": round(
                    _db(float(np.mean(raw_pauses))) - _db(float(np.mean(pauses))), 1
                ),
            }
            print(f"{line:<10} {mode:<5} {json.dumps(table[line][mode])}", flush=True)
    return {"table": table, "rows": rows}


def run_turns(
    mode: DenoiseMode, conditions: list[str], concurrency: int, out_dir: Path, tag: str = ""
) -> dict[str, Any]:
    """`callcenter bench turns --configs shipped` with CALLCENTER_DENOISE=mode, in a child."""
    exe = Path(sys.executable).with_name("callcenter")
    cmd = [
        str(exe),
        "bench",
        "turns",
        "--configs",
        "shipped",
        "--conditions",
        ",".join(conditions),
        "--concurrency",
        str(concurrency),
        "--out",
        str(out_dir / f"turns-{mode}{tag}"),
        "--json",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, env={**os.environ, "CALLCENTER_DENOISE": mode}, capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1], "command": " ".join(cmd)}
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    call_s = doc["meta"]["wall_s"] * concurrency  # calls run `concurrency` at a time throughout
    return {
        "command": f"CALLCENTER_DENOISE={mode} " + " ".join(cmd[1:]),
        "conditions": {
            c: {k: doc["conditions"][c]["shipped"].get(k) for k in _TURN_KEYS} for c in conditions
        },
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "cpu_per_call_s": round(cpu / call_s, 3),
        "stt": doc["meta"].get("stt_label"),
    }


_TURN_KEYS = (
    "eou_delay_p50",
    "premature_cutin_rate",
    "false_interruption_rate",
    "missed_bargein_rate",
    "bargein_reaction_p50",
    "cases",
    "errors",
)


def _csv(value: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(bad) or value!r} (choose {', '.join(allowed)})"
        )
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--conditions", default="clean,babble-10")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--turns", action="store_true", help="also run bench turns per mode")
    ap.add_argument("--skip-words", action="store_true", help="turns only (a repeat round)")
    ap.add_argument("--tag", default="", help="suffix of the turns output dirs (repeat rounds)")
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-results/denoise.json"))
    a = ap.parse_args()
    try:
        modes = _csv(a.modes, MODES, "mode")
        lines = _csv(a.conditions, list(LINES), "condition")
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    if a.seeds < 1 or a.concurrency < 1:
        ap.error("--seeds and --concurrency must be at least 1")
    try:
        a.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        ap.error(f"cannot write to --out {a.out}: {e.strerror}")
    doc: dict[str, Any] = {
        "command": "python -m agent.bench.denoise " + " ".join(sys.argv[1:]),
        "stt": "faster-whisper tiny.en (local), whole utterance after the line model and the stage",
        "cpus": os.cpu_count(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
    }
    if not a.skip_words:
        doc["words"] = asyncio.run(measure_words(modes, lines, a.seeds))  # type: ignore[arg-type]
    if a.turns:
        conds = [c for c in lines if c in TURN_CONDITIONS]
        doc["turns"] = {}
        for mode in modes:
            doc["turns"][mode] = run_turns(mode, conds, a.concurrency, a.out.parent / "denoise", a.tag)  # type: ignore[arg-type]
            print(f"turns {mode}: {json.dumps(doc['turns'][mode])}", flush=True)
    a.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
