"""What the text turn rules see: the product's STT on the corpus's fragments and backchannels.

`python -m agent.bench.turns.heard [--seeds 3] [--out bench-results/heard.json]` speaks every
hesitation's first fragment and every backchannel with the simulated caller, through the line
model (G.711, clean and 10 dB babble), transcribes it with the local STT (faster-whisper tiny.en)
and scores the rules of `agent.call.turn_detector` on what came out: a fragment should read as
unfinished, a backchannel heard while the agent speaks as a backchannel. Prints the rates and
each transcript; writes JSON. The recorded outputs behind tests/data/whisper_*.yaml come from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from livekit import rtc

from agent.bench.turns.corpus import BACKCHANNELS, HESITATIONS
from agent.call.turn_detector import UNLIKELY_THRESHOLD, is_backchannel, utterance_complete_probability
from agent.sim.caller_voice import synthesize_caller
from agent.sim.line import LineModel
from agent.sim.scenario import LineConfig

LINES: dict[str, dict[str, Any]] = {
    "clean": {"codec": "pcmu"},
    "babble-10": {"codec": "pcmu", "noise": "babble", "snr_db": 10.0},
}
MURMURS = [*BACKCHANNELS, "Mm.", "Aha.", "Okay?", "Oh, okay.", "Right, right."]


def _through_line(text: str, line: str, seed: int) -> rtc.AudioFrame:
    voice = np.asarray(synthesize_caller(text), np.float32)  # 8 kHz
    quiet = np.zeros(4000, np.float32)
    heard = LineModel(LineConfig(seed=seed, **LINES[line])).process_all(
        np.concatenate([quiet, voice, quiet, quiet])
    )
    pcm = (np.clip(soxr.resample(heard, 8000, 16000), -1, 1) * 32767).astype(np.int16)
    return rtc.AudioFrame(pcm.tobytes(), 16000, 1, len(pcm))


async def measure(seeds: int) -> dict[str, Any]:
    """Transcribe every fragment and murmur on every line and seed; score the rules on the text."""
    from agent.providers.profiles import local_stt
    from core.settings import get_settings

    stt = local_stt(get_settings(), threads=2)
    rows: list[dict[str, Any]] = []
    for line in LINES:
        for seed in range(seeds):
            for sentence, k in HESITATIONS:
                spoken = " ".join(sentence.split()[:k])
                ev = await stt.recognize(buffer=_through_line(spoken, line, seed))
                text = ev.alternatives[0].text if ev.alternatives else ""
                ok = utterance_complete_probability(text) < UNLIKELY_THRESHOLD
                rows.append(
                    {
                        "kind": "fragment",
                        "line": line,
                        "seed": seed,
                        "spoken": spoken,
                        "heard": text,
                        "ok": ok,
                    }
                )
            for murmur in MURMURS:
                ev = await stt.recognize(buffer=_through_line(murmur, line, seed))
                text = ev.alternatives[0].text if ev.alternatives else ""
                ok = not text.strip() or is_backchannel(text)
                rows.append(
                    {
                        "kind": "backchannel",
                        "line": line,
                        "seed": seed,
                        "spoken": murmur,
                        "heard": text,
                        "ok": ok,
                    }
                )
    summary = {
        f"{kind}/{line}": round(sum(r["ok"] for r in sel) / len(sel), 3)
        for kind in ("fragment", "backchannel")
        for line in LINES
        if (sel := [r for r in rows if r["kind"] == kind and r["line"] == line])
    }
    return {
        "stt": "faster-whisper tiny.en through the line model",
        "seeds": seeds,
        "rates": summary,
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-results/heard.json"))
    a = ap.parse_args()
    if a.seeds < 1:
        ap.error("--seeds must be at least 1")
    try:
        a.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        ap.error(f"cannot write to --out {a.out}: {e.strerror}")
    doc = asyncio.run(measure(a.seeds))
    for r in doc["rows"]:
        mark = "ok " if r["ok"] else "MISS"
        print(f"{mark} {r['kind']:<11} {r['line']:<9} {r['spoken']!r} -> {r['heard']!r}")
    for k, v in doc["rates"].items():
        print(f"{k}: {v:.0%} read right by the rules")
    a.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
