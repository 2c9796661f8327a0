"""How soon does each offline VAD notice that a caller stopped, on our phone lines?

python -m agent.bench.turns.vadprobe [--seeds 4] [--out bench-results/turns/vadprobe.json]

The EOU delay at 10 dB babble is bounded by the VAD's end of speech (docs/turn-taking.md), so
this compares the end-of-speech signals available offline on the same line audio: livekit's
native silero (what ships), the same VAD behind an adaptive noise gate, and silero v6 (the onnx
faster-whisper ships). Each gets the same hysteresis as livekit's VAD (start at `activation`, end
after `min_silence` below `activation - 0.15`), so only the probabilities differ. Per line
condition it reports the end-detection delay (the caller's last sample -> end of speech), how many
utterances it never detected (a missed "Stop." is a missed barge-in), ends declared inside an
utterance, and segments on noise alone. The caller's voice and the line noise are repeatable
(seeded noise, piper without sampling), so only the models decide the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import soxr
from livekit import rtc
from livekit.agents import inference
from livekit.agents import vad as lk_vad

from agent.bench.turns import check_out
from agent.sim.caller_voice import synthesize_caller
from agent.sim.line import LINE_RATE, LineModel
from agent.sim.scenario import LineConfig

RATE = 16000
FRAME = 320  # 20 ms, as the call pushes it
CONDITIONS = {
    "clean": LineConfig(codec="pcmu"),
    "white-20": LineConfig(codec="pcmu", noise="white", snr_db=20),
    "babble-10": LineConfig(codec="pcmu", noise="babble", snr_db=10),
    "babble-5": LineConfig(codec="pcmu", noise="babble", snr_db=5),
    "street-10": LineConfig(codec="pcmu", noise="street", snr_db=10),
}
# (what the caller says, silence after it): a hesitation fragment, questions, a backchannel, a barge-in
SCRIPT = [
    ("I'd like to, um,", 0.9),
    ("change my delivery address.", 2.0),
    ("What time do you close today?", 2.0),
    ("Do you deliver on Sundays?", 2.0),
    ("Okay.", 1.5),
    ("Stop.", 1.5),
]

Probs = list[tuple[float, float]]  # (end of the window in s, speech probability)


def line_audio(cfg: LineConfig) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The script through one line at 16 kHz, with each utterance's true (start, end)."""
    parts, truth, t = [np.zeros(LINE_RATE, np.float32)], [], 1.0
    for text, gap in SCRIPT:
        speech = synthesize_caller(text)
        truth.append((t, t + len(speech) / LINE_RATE))
        t += len(speech) / LINE_RATE + gap
        parts += [speech, np.zeros(int(gap * LINE_RATE), np.float32)]
    return soxr.resample(LineModel(cfg).process_all(np.concatenate(parts)), LINE_RATE, RATE), truth


def noise_gate(
    x: np.ndarray, margin_db: float = 6.0, rise_db_s: float = 3.0, hang_s: float = 0.1
) -> np.ndarray:
    """Attenuate (30 dB) 20 ms frames within `margin_db` of a tracked noise floor (drops at once,
    rises `rise_db_s`), keeping `hang_s` open after a loud frame."""
    out, floor, hang, dt = x.copy(), None, 0.0, FRAME / RATE
    for i in range(0, len(x) - FRAME + 1, FRAME):
        level = 10 * np.log10(float(np.mean(x[i : i + FRAME] ** 2)) + 1e-12)
        floor = level if floor is None or level < floor else floor + rise_db_s * dt
        if level > floor + margin_db:
            hang = hang_s
        elif hang > 0:
            hang -= dt
        else:
            out[i : i + FRAME] *= 10 ** (-30 / 20)
    return out


async def native_probs(x: np.ndarray) -> Probs:
    stream = inference.VAD(min_silence_duration=0.25, activation_threshold=0.5).stream()
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        stream.push_frame(rtc.AudioFrame(pcm[i : i + FRAME].tobytes(), RATE, 1, FRAME))
    stream.end_input()
    return [
        (ev.timestamp, ev.probability) async for ev in stream if ev.type == lk_vad.VADEventType.INFERENCE_DONE
    ]


@lru_cache(maxsize=1)
def _silero_v6():  # -> onnxruntime.InferenceSession, loaded once
    import os

    import faster_whisper
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
    path = os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)


def silero_v6_probs(x: np.ndarray) -> Probs:
    """faster-whisper's bundled silero v6, run window by window with its LSTM state carried."""
    session = _silero_v6()
    h = c = np.zeros((1, 1, 128), np.float32)
    context, out = np.zeros(64, np.float32), []
    for i in range(0, len(x) - 512 + 1, 512):
        window = x[i : i + 512].astype(np.float32)
        p, h, c = session.run(None, {"input": np.concatenate([context, window])[None], "h": h, "c": c})
        context = window[-64:]
        out.append(((i + 512) / RATE, float(np.ravel(p)[0])))
    return out


def segments(probs: Probs, activation: float, min_silence: float = 0.25) -> list[tuple[float, float]]:
    """(start, end-declared-at) of each speech segment under livekit-like hysteresis."""
    deactivation, out = activation - 0.15, []
    start: float | None = None
    below: float | None = None
    for t, p in probs:
        if start is None:
            if p >= activation:
                start, below = t, None
        elif p < deactivation:
            below = below if below is not None else t
            if t - below >= min_silence:
                out.append((start, t))
                start = None
        else:
            below = None
    return out


def score(segs: list[tuple[float, float]], truth: list[tuple[float, float]]) -> dict[str, object]:
    delays, missed = [], 0
    for s, e in truth:
        ends = [end - e for start, end in segs if s - 0.3 < start < e + 0.3 and end >= e - 0.05]
        if ends:
            delays.append(min(ends))
        else:
            missed += 1
    inside = sum(1 for _, end in segs if any(s < end - 0.25 < e - 0.1 for s, e in truth))
    on_noise = sum(1 for start, _ in segs if not any(s - 0.1 < start < e + 0.3 for s, e in truth))
    return {"delays": delays, "missed": missed, "ends_inside": inside, "noise_segments": on_noise}


async def run(seeds: int) -> dict[str, dict[str, dict[str, float]]]:
    # Each line's audio and each model's probabilities are computed once per seed; the two
    # silero v6 rows differ only in the threshold applied to the same probabilities.
    probes: dict[str, Callable[[np.ndarray], Awaitable[Probs]]] = {
        "native": native_probs,
        "native+gate": lambda x: native_probs(noise_gate(x)),
        "v6": lambda x: asyncio.sleep(0, silero_v6_probs(x)),
    }
    sources = {  # row name -> (probe, activation threshold)
        "native silero (shipped)": ("native", 0.5),
        "native silero + noise gate": ("native+gate", 0.5),
        "silero v6 @0.5": ("v6", 0.5),
        "silero v6 @0.35": ("v6", 0.35),
    }
    report: dict[str, dict[str, dict[str, float]]] = {}
    for cond, cfg in CONDITIONS.items():
        delays: dict[str, list[float]] = {name: [] for name in sources}
        totals = {
            name: {"missed": 0, "ends_inside": 0, "noise_segments": 0, "utterances": 0} for name in sources
        }
        for seed in range(1, seeds + 1):
            x, truth = line_audio(cfg.model_copy(update={"seed": seed}))
            probs = {key: await probe(x) for key, probe in probes.items()}
            for name, (key, activation) in sources.items():
                s = score(segments(probs[key], activation), truth)
                delays[name] += s["delays"]  # type: ignore[arg-type]
                for k in ("missed", "ends_inside", "noise_segments"):
                    totals[name][k] += s[k]  # type: ignore[operator]
                totals[name]["utterances"] += len(truth)
        report[cond] = {}
        for name in sources:
            d = np.array(delays[name]) if delays[name] else np.array([np.nan])
            report[cond][name] = {
                "end_delay_p50": round(float(np.median(d)), 3),
                "end_delay_p90": round(float(np.percentile(d, 90)), 3),
                **totals[name],
            }
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4, help="line noise seeds per condition")
    ap.add_argument("--out", type=Path, default=Path("bench-results/turns/vadprobe.json"))
    a = ap.parse_args()
    check_out(ap, a.out)
    report = asyncio.run(run(a.seeds))
    print("| line | VAD | end delay p50 | p90 | missed | ends inside | noise segments |")
    print("|---|---|---|---|---|---|---|")
    for cond, rows in report.items():
        for name, m in rows.items():
            print(
                f"| {cond} | {name} | {m['end_delay_p50'] * 1000:.0f} ms | {m['end_delay_p90'] * 1000:.0f} ms "
                f"| {m['missed']}/{m['utterances']} | {m['ends_inside']} | {m['noise_segments']} |"
            )
    a.out.write_text(json.dumps({"seeds": a.seeds, "script": SCRIPT, "conditions": report}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
