"""Typer commands: `app` is mounted as `callcenter worker`, `mcp_app` as `callcenter mcp`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from core.errors import UserError
from core.settings import REPO_ROOT, get_settings

app = typer.Typer(help="Background workers.", no_args_is_help=True)
mcp_app = typer.Typer(help="The MCP document server.", no_args_is_help=True)
DEFAULT_DOCS = REPO_ROOT / "documents"


def _fail(e: UserError) -> NoReturn:
    """One line on stderr and the error's exit code (both `callcenter` and `python -m tasks`)."""
    print(f"error: {e}", file=sys.stderr)
    raise typer.Exit(e.exit_code)


@app.command("celery")
def celery_worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Worker processes")] = 1,
    pool: Annotated[str, typer.Option(help="prefork (isolates a crash to one child) or solo")] = "prefork",
    queues: Annotated[str | None, typer.Option("--queues", "-Q", help="Comma-separated queues")] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Node name, e.g. worker1@%h")] = None,
    nice: Annotated[int, typer.Option(help="CPU niceness: background work yields to live calls")] = 10,
) -> None:
    """Start a Celery worker for summaries and document jobs (Redis from REDIS_URL or embedded).

    Concurrency defaults to 1: each process loads its own copy of the local LLM (~0.5 GB) and two
    cores are shared with the voice agent.
    """
    import os

    try:
        get_settings()  # bad REDIS_URL / CALLCENTER_DATA_DIR / ... : one line, before Celery starts
    except UserError as e:
        _fail(e)
    from tasks.celery_app import app as celery_app

    if nice > 0:
        # On a shared box the summarizer's LLM must not steal CPU from a caller's turn.
        os.nice(nice)
    queues = queues or celery_app.conf.task_default_queue
    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--queues={queues}",
        f"--loglevel={loglevel}",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    celery_app.worker_main(argv)


@mcp_app.command("serve")
def serve(
    docs: Annotated[
        Path, typer.Option(help="Documents directory", envvar="CALLCENTER_DOCS_DIR")
    ] = DEFAULT_DOCS,
    transport: Annotated[str, typer.Option(help="stdio or streamable-http")] = "stdio",
    host: Annotated[str, typer.Option(help="non-loopback needs CALLCENTER_MCP_TOKEN")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
    max_bytes: Annotated[int | None, typer.Option(help="Largest document served (default 2 MB)")] = None,
) -> None:
    """Serve the documents over MCP (streamable-http endpoint: http://HOST:PORT/mcp).

    With CALLCENTER_MCP_TOKEN set, HTTP clients must send `Authorization: Bearer <token>`; on an
    address other than loopback (e.g. 0.0.0.0 in docker-compose) the token is required.
    """
    try:
        if not docs.is_dir():
            raise UserError(f"--docs {docs}: no such directory")
        if max_bytes is not None and max_bytes < 1:
            raise UserError(f"--max-bytes {max_bytes}: must be at least 1")
        from tasks.docs_server import serve as run

        run(docs, transport=transport, host=host, port=port, max_bytes=max_bytes)
    except UserError as e:
        _fail(e)
