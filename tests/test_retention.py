"""Caller data retention: expired call reports are deleted, nothing else is, and the CLI says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from agent.call.retention import expired_calls, purge

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


def _report(
    d: Path, age_days: float, files: tuple[str, ...] = ("call.wav", "transcript.json", "metrics.json")
) -> Path:
    d.mkdir(parents=True)
    for name in files:
        (d / name).write_text("x")
        os.utime(d / name, (time.time() - age_days * DAY,) * 2)
    return d


def _tree(root: Path) -> dict[str, Path]:
    calls = root / "calls"
    t = {
        "old": _report(calls / "old", 40),
        "new": _report(calls / "new", 1),
        "half": _report(calls / "half", 40, ("call.wav", "transcript.json.tmp")),
        "mixed": _report(calls / "mixed", 40),
        "foreign": _report(calls / "foreign", 400, ("notes.txt",)),
        "outside": _report(root / "elsewhere" / "old-report", 400),
    }
    (t["mixed"] / "notes.txt").write_text("not ours")
    (calls / "link").symlink_to(t["outside"], target_is_directory=True)
    (calls / "loose.json").write_text("{}")
    # One new file keeps a report: its age is its newest report file's age.
    _report(calls / "touched", 40)
    (calls / "touched" / "metrics.json").touch()
    t["touched"] = calls / "touched"
    return t


def test_purge_deletes_only_expired_reports_and_only_our_files(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    calls = tmp_path / "calls"
    assert [c.path.name for c in expired_calls(calls, 30)] == ["half", "mixed", "old"]
    assert expired_calls(calls, 0) == [] and expired_calls(tmp_path / "none", 30) == []
    assert [c.path.name for c in purge(calls, 30)] == ["half", "mixed", "old"]
    assert not t["old"].exists() and not t["half"].exists()
    assert sorted(p.name for p in t["mixed"].iterdir()) == ["notes.txt"]  # not ours: kept, and its dir
    assert t["new"].is_dir() and len(list(t["new"].iterdir())) == 3
    assert t["touched"].is_dir() and t["foreign"].is_dir()
    assert len(list(t["outside"].iterdir())) == 3  # a symlink is never followed
    assert (calls / "loose.json").exists()
    assert purge(calls, 30) == []  # idempotent


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "calls", "purge", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def test_cli_dry_run_then_purge_with_the_setting(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    calls = str(tmp_path / "calls")
    p = _cli("--dry-run", env={"CALLCENTER_CALLS_DIR": calls})  # the worker's directory; 30 days
    assert p.returncode == 0, p.stderr
    assert "would delete" in p.stdout and "3 call report(s) older than 30 days (dry run)" in p.stdout
    assert t["old"].exists()
    p = _cli("--calls", calls, env={"CALLCENTER_CALL_RETENTION_DAYS": "500"})
    assert p.returncode == 0 and "0 call report(s) older than 500 days" in p.stdout
    p = _cli("--calls", calls, "--days", "7")
    assert p.returncode == 0 and "3 call report(s)" in p.stdout and not t["old"].exists()
    assert t["new"].exists()
    p = _cli("--calls", calls, "--days", "0")
    assert p.returncode == 0 and "kept forever" in p.stdout and t["new"].exists()


def test_cli_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    for args, env, needle in [
        (("--calls", str(tmp_path / "missing")), None, "no call reports directory"),
        (
            ("--calls", str(tmp_path)),
            {"CALLCENTER_CALL_RETENTION_DAYS": "-1"},
            "CALLCENTER_CALL_RETENTION_DAYS",
        ),
        (
            ("--calls", str(tmp_path)),
            {"CALLCENTER_CALL_RETENTION_DAYS": "soon"},
            "CALLCENTER_CALL_RETENTION_DAYS",
        ),
    ]:
        p = _cli(*args, env=env)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr, p.stderr
