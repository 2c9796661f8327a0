"""Bad input to `callcenter call` fails with one clear line; a crash mid-call keeps what was recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.sim.caller import ScriptedCaller
from agent.sim.run import run_call

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "agent.cli"]


def _run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, **kw)


def _assert_one_line_error(p: subprocess.CompletedProcess[str], needle: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = [line for line in p.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr and needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "scenario, needle",
    [
        ("tenant: nosuch\nturns: [{say: hi}]\n", "unknown tenant 'nosuch'"),
        ("turns: [{say: hi}\n", "invalid YAML"),
        ("line: {noise: pink}\nturns: [{say: hi}]\n", "line.noise"),
        ("line: {snr_db: 99}\nturns: [{say: hi}]\n", "line.snr_db"),
        ("turns: [{say: hi, barge_in_after: -1}]\n", "turns[0].barge_in_after"),
    ],
)
def test_bad_scenarios(tmp_path, scenario, needle):
    f = tmp_path / "s.yaml"
    f.write_text(scenario)
    _assert_one_line_error(_run("call", "--scenario", str(f), "--out", str(tmp_path / "out")), needle)


def _recordings(d: Path) -> dict[str, Path]:
    """One unusable caller recording per failure mode (written with soundfile, then damaged)."""
    import numpy as np
    import soundfile as sf

    tone = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    sf.write(d / "good.wav", tone, 16000)
    raw = (d / "good.wav").read_bytes()
    (d / "truncated.wav").write_bytes(raw[: len(raw) // 3])
    (d / "header-only.wav").write_bytes(raw[:30])
    (d / "garbage.wav").write_bytes(b"RIFF" + bytes(range(256)) * 10)
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(d / "silent.wav", np.zeros(8000, np.float32), 8000)
    return {p.stem: p for p in d.iterdir()}


@pytest.mark.parametrize(
    "name, needle",
    [
        ("missing", "caller recording not found"),
        ("truncated", "truncated: the header promises 1.00 s"),
        ("header-only", "not a readable audio file"),
        ("garbage", "not a readable audio file"),
        ("empty", "the recording is empty"),
        ("silent", "the recording is silent"),
    ],
)
def test_bad_caller_recordings(tmp_path, name, needle):
    _recordings(tmp_path)
    f = tmp_path / "s.yaml"
    f.write_text(f"turns: [{{play: {name}.wav}}]\n")
    p = _run("call", "--scenario", str(f), "--out", str(tmp_path / "out"))
    _assert_one_line_error(p, needle)
    assert "turns[0].play" in p.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()  # refused before the call started


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_one_line_error(_run("call", "--out", str(blocker / "sub")), "cannot write to --out")


def test_unknown_profile(tmp_path):
    _assert_one_line_error(_run("call", "--profile", "nope", "--out", str(tmp_path)), "unknown profile")


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"CALLCENTER_PROFILE": "gpu"}, "CALLCENTER_PROFILE='gpu'"),
        ({"CALLCENTER_LLM_THREADS": "two"}, "LLM_THREADS"),
    ],
)
def test_bad_setting_in_the_environment(tmp_path, monkeypatch, env, needle):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _assert_one_line_error(_run("call", "--out", str(tmp_path), "--no-cache"), needle)


def test_missing_model_package_is_a_clear_error(tmp_path):
    # Simulate an uninstalled optional model package: Python treats a None entry as "not installed".
    code = (
        "import sys; sys.modules['hibari'] = None\n"
        "from agent.cli import main; sys.argv = ['callcenter', 'call', '--out', sys.argv[1], '--no-cache']; main()"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    _assert_one_line_error(p, "hibari-tts is not installed")


async def test_crash_mid_call_still_writes_recording_and_metrics(tmp_path, monkeypatch):
    real = ScriptedCaller.next_frame

    def crashing(self, tick):
        if tick == 250:  # 5 s into the call, after the first question
            raise RuntimeError("simulated crash")
        return real(self, tick)

    monkeypatch.setattr(ScriptedCaller, "next_frame", crashing)
    result = await run_call(
        ROOT / "scenarios" / "opening-hours.yaml", tmp_path, profile="instant", use_cache=False
    )
    assert result.error and "simulated crash" in result.error
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["error"] and len(metrics["turns"]) >= 1
    assert (tmp_path / "call.wav").stat().st_size > 16000 * 2 * 2 * 4  # ~5 s of stereo audio kept
    assert json.loads((tmp_path / "transcript.json").read_text())["error"]
