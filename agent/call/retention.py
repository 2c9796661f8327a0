"""Caller data retention: call reports older than `CALLCENTER_CALL_RETENTION_DAYS` are deleted.

A call report (`calls/<room>/`: call.wav, transcript.json, metrics.json) holds the caller's voice
and words. The worker purges expired ones after each call it reports (at most every few minutes);
admins can run `callcenter calls purge` from cron. Only files this project writes are deleted: a
directory that also holds anything else keeps that file and itself, and symlinks are never
followed, so a mistyped --calls cannot wipe an unrelated tree.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

REPORT_FILES = frozenset({"call.wav", "transcript.json", "metrics.json"})
DAY_S = 86400.0
PURGE_EVERY_S = 300.0
_last_purge: dict[Path, float] = {}


@dataclass(frozen=True)
class ExpiredCall:
    path: Path
    age_days: float


def _ours(name: str) -> bool:
    return name in REPORT_FILES or (name.endswith(".tmp") and name[:-4] in REPORT_FILES)


def expired_calls(calls_dir: Path, days: float, now: float | None = None) -> list[ExpiredCall]:
    """Report directories whose newest report file is older than `days` (0: keep forever)."""
    if days <= 0 or not calls_dir.is_dir():
        return []
    now = time.time() if now is None else now
    out = []
    for entry in os.scandir(calls_dir):
        if not entry.is_dir(follow_symlinks=False):
            continue
        stamps = [
            f.stat(follow_symlinks=False).st_mtime
            for f in os.scandir(entry.path)
            if _ours(f.name) and f.is_file(follow_symlinks=False)
        ]
        if stamps and now - max(stamps) > days * DAY_S:
            out.append(ExpiredCall(Path(entry.path), (now - max(stamps)) / DAY_S))
    return sorted(out, key=lambda c: c.path.name)


def purge(calls_dir: Path, days: float, now: float | None = None) -> list[ExpiredCall]:
    """Delete expired reports' files (and their directory once empty); returns what was expired."""
    expired = expired_calls(calls_dir, days, now)
    for call in expired:
        for f in os.scandir(call.path):
            if _ours(f.name) and f.is_file(follow_symlinks=False):
                os.unlink(f.path)
        try:
            call.path.rmdir()
        except OSError:  # something that is not ours is still in it: leave it
            pass
    return expired


def purge_now_and_then(calls_dir: Path, days: float) -> list[ExpiredCall]:
    """`purge`, at most once per PURGE_EVERY_S per directory (a worker calls this per call)."""
    key = calls_dir.resolve()
    if time.monotonic() - _last_purge.get(key, -PURGE_EVERY_S) < PURGE_EVERY_S:
        return []
    _last_purge[key] = time.monotonic()
    return purge(calls_dir, days)
