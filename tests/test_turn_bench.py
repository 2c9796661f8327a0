"""A tiny `callcenter bench turns --quick` run through the real AgentSession: completes, prints
exactly one JSON object with the documented keys, writes the table, JSON and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "false_interruption_rate",
    "premature_cutin_rate",
    "missed_bargein_rate",
    "bargein_reaction_p50",
    "eou_delay_p50",
    "cases",
}


def test_quick_bench_emits_json(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "callcenter"
    cmd = [
        str(exe),
        "bench",
        "turns",
        "--quick",
        "--cases",
        "2",
        "--configs",
        "vad-fixed,shipped",
        "--json",
        "--out",
        str(tmp_path),
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)  # stdout holds the JSON object and nothing else
    assert doc["shipped"] == "shipped"
    assert doc["meta"]["stt"] == "whisper"  # by default the bench hears through the product's STT
    assert "STT: faster-whisper" in r.stderr and "STT: faster-whisper" in (tmp_path / "turns.md").read_text()
    assert set(doc["configs"]) == {"vad-fixed", "shipped"}
    for m in doc["configs"].values():
        assert KEYS <= set(m)
        assert m["cases"] == 2
        for k in ("false_interruption_rate", "premature_cutin_rate", "missed_bargein_rate"):
            assert m[k] is None or 0.0 <= m[k] <= 1.0
    assert (tmp_path / "turns.json").is_file() and (tmp_path / "turns.md").is_file()
    assert (tmp_path / "turns.png").stat().st_size > 1000


def test_unknown_config_is_a_one_line_error() -> None:
    exe = Path(sys.executable).parent / "callcenter"
    r = subprocess.run(
        [str(exe), "bench", "turns", "--configs", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "unknown config" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [str(exe), "bench", "turns", "--stt", "perfect"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "unknown --stt 'perfect'" in r.stderr and "Traceback" not in r.stderr
