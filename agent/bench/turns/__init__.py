"""`callcenter bench turns`: turn-taking on noisy phone lines, scored per caller behaviour."""

from __future__ import annotations

import argparse
from pathlib import Path


def check_out(ap: argparse.ArgumentParser, out: Path | None) -> None:
    """Refuse an --out that cannot be written before the minutes of measuring, not after them
    (argparse prints the usage and the reason, exit 2)."""
    if out is None:
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        ap.error(f"--out {out}: cannot create {out.parent}: {e.strerror or e}")
    if out.is_dir():
        ap.error(f"--out {out}: is a directory, give a file name")
