"""`python -m tasks worker celery ...` / `python -m tasks mcp serve ...` without the agent CLI
(used by tests, and by a worker-only container that does not need livekit-agents imported)."""

from __future__ import annotations

import typer

from tasks.cli import app as worker_app
from tasks.cli import mcp_app

main = typer.Typer(no_args_is_help=True)
main.add_typer(worker_app, name="worker")
main.add_typer(mcp_app, name="mcp")

if __name__ == "__main__":
    main()
