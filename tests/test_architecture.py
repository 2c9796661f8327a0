"""The dependency rules are code: import-linter contracts in pyproject.toml, checked here.

agent/ on top of cache/, tasks/ and sip/, core/ at the bottom; what a call is made of
(agent.call, agent.providers, agent.observability) never imports a driver, a benchmark or the
dashboard; the two drivers and the dashboard are independent; no import cycles inside a package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def test_import_contracts_hold() -> None:
    run = subprocess.run([str(LINT)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in run.stdout, run.stdout[-2000:]
