"""The `callcenter` command line: one entry point, a sub-command group per area."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core.errors import UserError

app = typer.Typer(
    help="Telephony voice agent with a semantic response cache.", no_args_is_help=True, add_completion=False
)
bench_app = typer.Typer(help="Benchmarks: print numbers and write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()
err_console = Console(stderr=True)

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "opening-hours.yaml"


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _quiet_logs() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("livekit", "livekit.agents", "faster_whisper", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out {out}: {e.strerror}") from None


@app.command()
def call(
    scenario: Annotated[Path | None, typer.Option("--scenario", "-s", help="scenario YAML")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output dir (default calls/<timestamp>)")
    ] = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="local | cloud")] = None,
    turn_mode: Annotated[str, typer.Option("--turn", help="vad | eot (local end-of-turn model)")] = "vad",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not use the semantic cache")] = False,
) -> None:
    """Place a simulated phone call and print the per-turn latency table."""
    _quiet_logs()
    try:
        from agent.runner import run_call_sync

        out = out or Path("calls") / datetime.now().strftime("%Y%m%d-%H%M%S")
        _check_out_dir(out)
        result = run_call_sync(
            scenario or DEFAULT_SCENARIO,
            out,
            profile=profile,
            turn_mode=turn_mode,
            use_cache=not no_cache,
            console=console,
        )
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    if result.error:
        fail(f"call failed: {result.error} (partial results in {out})", 1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
