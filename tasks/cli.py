"""Typer commands: `app` is mounted as `callcenter worker`, `mcp_app` as `callcenter mcp`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from core.settings import REPO_ROOT

app = typer.Typer(help="Background workers.", no_args_is_help=True)
mcp_app = typer.Typer(help="The MCP document server.", no_args_is_help=True)


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
        Path,
        typer.Option(help="Documents directory", exists=True, file_okay=False, envvar="CALLCENTER_DOCS_DIR"),
    ] = REPO_ROOT / "documents",
    transport: Annotated[str, typer.Option(help="stdio or streamable-http")] = "stdio",
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8765,
    max_bytes: Annotated[int | None, typer.Option(help="Largest document served (default 2 MB)")] = None,
) -> None:
    """Serve the documents over MCP (streamable-http endpoint: http://HOST:PORT/mcp)."""
    from tasks.docs_server import serve as run

    if transport not in ("stdio", "streamable-http"):
        raise typer.BadParameter("use stdio or streamable-http", param_hint="--transport")
    if max_bytes:
        os.environ["CALLCENTER_DOCS_MAX_BYTES"] = str(max_bytes)
    run(docs, transport=transport, host=host, port=port)
