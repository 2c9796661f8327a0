"""The `callcenter` command line: one entry point, a sub-command group per area."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import UserError

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "opening-hours.yaml"

app = typer.Typer(
    help="Telephony voice agent with a semantic response cache.", no_args_is_help=True, add_completion=False
)
bench_app = typer.Typer(help="Benchmarks: print numbers and write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
worker_app = typer.Typer(help="Agent worker (LiveKit) and background (Celery) workers.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")
calls_app = typer.Typer(help="Call reports (recordings, transcripts, metrics).", no_args_is_help=True)
app.add_typer(calls_app, name="calls")


@bench_app.command("pipeline")
def bench_pipeline(
    scenario: Annotated[Path, typer.Option("--scenario", "-s")] = DEFAULT_SCENARIO,
    profiles: Annotated[str, typer.Option(help="comma-separated: instant,local,cloud")] = "instant,local",
    runs: Annotated[int, typer.Option(min=1, max=20)] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="JSON file")] = Path(
        "bench-results/pipeline.json"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document")] = False,
) -> None:
    """Framework overhead (instant providers) vs the local models, on the same simulated call."""
    _quiet_logs()
    from agent.bench.pipeline import bench_pipeline as run
    from agent.bench.pipeline import write_json

    try:
        doc = asyncio.run(
            run(scenario, [p.strip() for p in profiles.split(",") if p.strip()], runs, err_console)
        )
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    write_json(doc, out, err_console)
    if as_json:
        print(json.dumps(doc))


@bench_app.command("cache")
def bench_cache(
    sizes: Annotated[str, typer.Option(help="index sizes for the lookup benchmark")] = "1000,10000,100000",
    scenario: Annotated[Path, typer.Option("--scenario", "-s")] = DEFAULT_SCENARIO,
    profile: Annotated[str, typer.Option(help="provider profile for the call comparison")] = "local",
    calls: Annotated[bool, typer.Option("--calls/--no-calls", help="also compare warm vs cold calls")] = True,
    out: Annotated[Path | None, typer.Option("--out")] = Path("bench-results/cache.json"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Lookup p50/p99 and memory per entry by index size; voice-to-voice of a warmed vs cold call."""
    _quiet_logs()
    from agent.bench.pipeline import bench_cache_calls, write_json
    from cache.bench import run_bench
    from cache.redis_server import ensure_redis

    try:
        size_list = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        fail(f"--sizes must be comma-separated integers, got '{sizes}'")
        return
    try:
        doc: dict = {
            "lookup": run_bench(
                ensure_redis(), size_list, progress=lambda m: err_console.print(f"[dim]{m}[/]")
            )
        }
        if calls:
            doc["calls"] = asyncio.run(bench_cache_calls(scenario, profile, err_console))
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    table = Table(title="bench cache — lookup (embed + KNN) by index size")
    for col in ("entries", "p50 ms", "p99 ms", "bytes/entry"):
        table.add_column(col, justify="right")
    for row in doc["lookup"].get("sizes", []):
        table.add_row(
            *(str(row.get(k, "")) for k in ("entries", "lookup_p50_ms", "lookup_p99_ms", "bytes_per_entry"))
        )
    err_console.print(table)
    if calls:
        c = doc["calls"]
        err_console.print(
            f"voice-to-voice p50: cold {c['cold']['voice_to_voice_p50']:.3f} s, "
            f"warm {c['warm']['voice_to_voice_p50']:.3f} s ({c['warm']['hits']}/{c['warm']['turns']} hits)"
        )
    write_json(doc, out, err_console)
    if as_json:
        print(json.dumps(doc))


@bench_app.command("context")
def bench_context(
    turns: Annotated[int, typer.Option(min=4, max=200)] = 50,
    pace: Annotated[
        float, typer.Option(min=0, max=30, help="seconds between turns (the caller listening and speaking)")
    ] = 2.0,
    out: Annotated[Path | None, typer.Option("--out")] = Path("bench-results/context.json"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Context tokens and turn latency per turn, with and without the context manager."""
    _quiet_logs()
    from agent.bench.context import bench_context as run
    from agent.bench.pipeline import write_json

    try:
        doc = asyncio.run(run(turns, pace))
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    table = Table(title=f"bench context — {turns}-turn call")
    for col in ("turn", "tokens managed", "tokens unmanaged", "ttft managed", "ttft unmanaged"):
        table.add_column(col, justify="right")
    pt = doc["per_turn"]
    for i in range(turns):
        cells = [
            pt["context_tokens_managed"],
            pt["context_tokens_unmanaged"],
            pt["latency_managed"],
            pt["latency_unmanaged"],
        ]
        table.add_row(
            str(i + 1),
            *(
                f"{c[i]:.3f}" if i < len(c) and isinstance(c[i], float) else str(c[i]) if i < len(c) else "—"
                for c in cells
            ),
        )
    err_console.print(table)
    summary = {k: v for k, v in doc.items() if k != "per_turn"}
    err_console.print(summary)
    write_json(doc, out, err_console)
    if as_json:
        print(json.dumps(summary))


@bench_app.command("load")
def bench_load(
    calls: Annotated[int, typer.Option("--calls", min=1, max=200)] = 10,
    duration: Annotated[float, typer.Option("--duration", min=5, help="seconds")] = 60,
    processes: Annotated[int, typer.Option(min=1, max=8)] = 1,
    profile: Annotated[str, typer.Option(help="local-fastllm | instant | local")] = "local-fastllm",
    cache: Annotated[bool, typer.Option("--cache/--no-cache")] = False,
    ramp: Annotated[
        float, typer.Option("--ramp", min=0, help="seconds over which the calls start (0: all at once)")
    ] = 5.0,
    quick: Annotated[bool, typer.Option("--quick", help="4 calls for 20 s")] = False,
    out: Annotated[Path | None, typer.Option("--out")] = Path("bench-results/load.json"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Concurrent simulated calls: voice-to-voice p50/p95, loop lag, CPU, memory per call, errors."""
    _quiet_logs()
    from agent.bench.load import run_load
    from agent.bench.pipeline import write_json

    if quick:
        calls, duration = 4, 20
    doc = run_load(calls, duration, processes, profile, cache, ramp)
    table = Table(title=f"bench load — {calls} concurrent calls, {processes} process(es), {duration:.0f} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in doc.items():
        if k not in ("error_samples", "slowest_turns"):
            table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    err_console.print(table)
    slow = Table(title="slowest turns (s)")
    for col in ("scenario", "turn", "v2v", "eou", "stt", "llm", "tts", "cache", "heard"):
        slow.add_column(col)
    for t in doc["slowest_turns"]:
        f = [
            t["scenario"],
            str(t["turn"]),
            *(f"{t[k]:.2f}" if t.get(k) is not None else "—" for k in ("v2v", "eou", "stt", "llm", "tts")),
        ]
        slow.add_row(*f, str(t["cache"] or "—"), escape(t["heard"] or ""))
    err_console.print(slow)
    write_json(doc, out, err_console)
    if as_json:
        print(json.dumps(doc))


@worker_app.command("start")
def worker_start(
    log_level: Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING…")] = None,
) -> None:
    """Run the LiveKit agent worker (agent_name from CALLCENTER_AGENT_NAME; SIGTERM drains calls)."""
    _start_worker("start", log_level)


def _start_worker(mode: str, log_level: str | None) -> None:
    from agent.worker import WorkerConfig, run_worker
    from sip.operator import check_livekit_url

    try:
        missing = [
            v for v in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET") if not os.environ.get(v)
        ]
        if missing:  # livekit-agents would print a JSON traceback and exit 0
            raise UserError(
                f"the agent worker needs {', '.join(missing)} (the LiveKit server it registers with; "
                "see docs/deploy.md)"
            )
        check_livekit_url(os.environ["LIVEKIT_URL"])  # one line, never the credentials
        WorkerConfig.from_env()  # bad worker settings: one line before livekit starts
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    run_worker(mode, log_level)  # type: ignore[arg-type]


@worker_app.command("dev")
def worker_dev(
    log_level: Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING…")] = None,
) -> None:
    """Run the LiveKit agent worker in development mode (debug logs, no drain, no idle processes)."""
    _start_worker("dev", log_level)


@app.command()
def dashboard(
    host: Annotated[str, typer.Option("--host", help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8700,
    calls_dir: Annotated[
        Path, typer.Option("--calls", envvar="CALLCENTER_CALLS_DIR", help="call reports directory")
    ] = Path("calls"),
    experiment: Annotated[Path | None, typer.Option("--experiment", help="A/B config (YAML/JSON)")] = None,
) -> None:
    """Web dashboard: overview, calls, cache admin, Prometheus /metrics."""
    from agent.dashboard import run_dashboard

    try:
        run_dashboard(host, port, calls_dir, experiment)
    except UserError as e:
        fail(str(e), e.exit_code)


@calls_app.command("purge")
def calls_purge(
    calls_dir: Annotated[
        Path, typer.Option("--calls", envvar="CALLCENTER_CALLS_DIR", help="call reports directory")
    ] = Path("calls"),
    days: Annotated[
        float | None, typer.Option(min=0, help="older than this (default CALLCENTER_CALL_RETENTION_DAYS)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list, delete nothing")] = False,
) -> None:
    """Delete call reports past the retention period (caller PII); run it from cron."""
    from agent.call.retention import expired_calls, purge
    from core.settings import get_settings

    try:
        days = get_settings().call_retention_days if days is None else days
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    if not calls_dir.is_dir():
        fail(f"no call reports directory at {calls_dir}")
    if days == 0:
        console.print("retention is 0 days: reports are kept forever, nothing to purge")
        return
    try:
        found = expired_calls(calls_dir, days) if dry_run else purge(calls_dir, days)
    except OSError as e:
        fail(f"cannot purge {calls_dir}: {e.strerror} ({e.filename})", 1)
        return
    for c in found:
        console.print(f"{'would delete' if dry_run else 'deleted'} {c.path}  ({c.age_days:.1f} days old)")
    console.print(f"{len(found)} call report(s) older than {days:g} days{' (dry run)' if dry_run else ''}")


@app.command()
def redis(
    action: Annotated[
        str, typer.Argument(help="run (foreground) | start (shared, detached) | stop | url")
    ] = "run",
    port: Annotated[int | None, typer.Option(help="port for `run`")] = None,
    reveal: Annotated[
        bool, typer.Option("--reveal", help="`url`: print the password too (for scripts; keep it private)")
    ] = False,
) -> None:
    """The embedded Redis Stack server (RediSearch + JSON, AOF) that Celery and the cache share.

    Its password lives in the data directory (0600); printed URLs show it as *** unless
    `url --reveal` is asked for explicitly."""
    from cache.redis_server import ensure_redis, redacted, run_foreground, stop_shared

    try:
        if action == "run":
            run_foreground(port)
        elif action in ("start", "url"):
            url = ensure_redis()
            print(url if (reveal and action == "url") else redacted(url))
        elif action == "stop":
            print("stopped" if stop_shared() else "not running")
        else:
            fail(f"unknown action '{action}' (run, start, stop, url)")
    except UserError as e:
        fail(str(e), e.exit_code)


@app.command("doctor")
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="seconds per network check")] = 5.0,
) -> None:
    """Check each configured stage, Redis, Celery, the MCP server and LiveKit; exit 1 if any is down."""
    _quiet_logs()
    from agent.doctor import DOWN, run_checks
    from core.settings import get_settings

    try:
        rows = run_checks(get_settings(), timeout)
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    if as_json:
        print(json.dumps([r.as_dict() for r in rows]))
    else:
        table = Table(title="callcenter doctor")
        for col in ("component", "check", "status", "ms", "reason"):
            table.add_column(col)
        for r in rows:
            colour = {"ok": "green", "down": "red"}.get(r.status, "dim")
            ms = "" if r.latency_ms is None else f"{r.latency_ms:.0f}"
            table.add_row(r.component, r.check, f"[{colour}]{r.status}[/]", ms, escape(r.reason))
        console.print(table)
    if any(r.status == DOWN for r in rows):
        raise typer.Exit(1)


def _mount() -> None:
    """Sub-command groups live next to the code they drive (one-way: agent -> others)."""
    from sip.cli import app as sip_app
    from tasks.cli import app as tasks_app
    from tasks.cli import mcp_app

    app.add_typer(sip_app, name="sip")
    app.add_typer(mcp_app, name="mcp")
    for cmd in tasks_app.registered_commands:  # `callcenter worker celery`
        worker_app.registered_commands.append(cmd)
    try:
        from cache.cli import app as cache_app

        app.add_typer(cache_app, name="cache")
    except ImportError:  # cache package not built yet
        pass


console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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


CALL_PROFILES = ("local", "cloud", "instant", "local-fastllm")


def _precheck_call(scenario: Path, profile: str | None, turn_mode: str) -> None:
    """What `run_call` would refuse, checked before loading the call's machinery, so a typo in
    the command line is answered at once rather than after several seconds of imports."""
    from agent.sim.scenario import load_scenario
    from core.settings import get_settings
    from core.tenants import load_tenant

    if turn_mode not in ("vad", "eot"):
        raise UserError(f"unknown --turn '{turn_mode}' (choose vad, eot)")
    chosen = profile or get_settings().profile
    if chosen not in CALL_PROFILES:
        raise UserError(f"unknown profile '{chosen}' (choose local, cloud)")
    load_tenant(load_scenario(scenario).tenant)


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
        _precheck_call(scenario or DEFAULT_SCENARIO, profile, turn_mode)
        out = out or Path("calls") / datetime.now().strftime("%Y%m%d-%H%M%S")
        _check_out_dir(out)
        from agent.sim.run import run_call_sync  # seconds of imports (livekit, scipy): after the checks

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


@app.command("eval")
def eval_suite(
    paths: Annotated[list[Path], typer.Argument(help="scenario files or directories of them")],
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="instant | local | cloud")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=16, help="calls at a time")] = 2,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="reports + eval.json (default calls/eval-<timestamp>)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print eval.json on stdout (table on stderr)")
    ] = False,
    quick: Annotated[bool, typer.Option("--quick", help="only the scenarios marked quick: true")] = False,
) -> None:
    """Run scenarios as simulated calls and judge each against its `expect:` (exit 0 either way)."""
    _quiet_logs()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agent.eval.report import results_table, summary_line, to_doc, write_doc
    from agent.eval.run import load_suite, run_suite_sync

    try:
        suite = load_suite(paths, quick=quick)
        out = out or Path("calls") / datetime.now().strftime("eval-%Y%m%d-%H%M%S")
        _check_out_dir(out)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task("calls", total=len(suite))
            run = run_suite_sync(
                suite,
                out,
                profile=profile,
                concurrency=concurrency,
                on_done=lambda o: bar.update(task, advance=1, description=f"done {o.item.name}"),
            )
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    doc = to_doc(run)
    write_doc(doc, out / "eval.json")
    shown = err_console if as_json else console
    shown.print(results_table(doc))
    shown.print(summary_line(doc), highlight=False)
    err_console.print(f"[dim]wrote {out}/eval.json and a report per call under {out}/[/]")
    if as_json:
        print(json.dumps(doc))


_mount()


# ---- bench turns (turn-taking benchmark; owned by the turn-taking work, issue 8) -------------
@bench_app.command("turns")
def bench_turns(
    quick: Annotated[bool, typer.Option("--quick", help="3 cases at 10 dB babble + echo")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
    out: Annotated[Path, typer.Option("--out", help="dir for turns.json/.md/.png")] = Path(
        "bench-results/turns"
    ),
    cases: Annotated[int | None, typer.Option(min=1, help="cases per condition")] = None,
    configs: Annotated[str | None, typer.Option(help="comma-separated subset of configs")] = None,
    conditions: Annotated[str | None, typer.Option(help="comma-separated subset of conditions")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="calls at a time")] = 6,
    stt: Annotated[
        str, typer.Option(help="whisper (the product's recognizer) | oracle (exact words: framework only)")
    ] = "whisper",
) -> None:
    """Turn-taking on noisy phone lines: false/missed interruptions, cut-ins, EOU delay per config."""
    _quiet_logs()
    from agent.bench.turns.bench import print_tables, run_sync, write_outputs
    from agent.bench.turns.corpus import CONDITIONS
    from agent.call.session import BENCH_CONFIGS

    cfgs = [c.strip() for c in configs.split(",")] if configs else None
    conds = [c.strip() for c in conditions.split(",")] if conditions else None
    bad = [c for c in cfgs or [] if c not in BENCH_CONFIGS] + [c for c in conds or [] if c not in CONDITIONS]
    if stt not in ("whisper", "oracle"):
        fail(f"unknown --stt '{stt}' (choose whisper, oracle)")
    if bad:
        fail(
            f"unknown config/condition: {', '.join(bad)} (configs: {', '.join(BENCH_CONFIGS)}; "
            f"conditions: {', '.join(CONDITIONS)})"
        )
    try:
        _check_out_dir(out)
        doc = run_sync(
            err_console,
            quick=quick,
            cases=cases,
            configs=cfgs,
            conditions=conds,
            concurrency=concurrency,
            stt=stt,
        )
    except UserError as e:
        fail(str(e), e.exit_code)
        return
    print_tables(doc, err_console)
    for p in write_outputs(doc, out):
        err_console.print(f"[dim]wrote {p}[/]")
    if as_json:
        print(json.dumps({k: doc[k] for k in ("shipped", "configs", "condition", "conditions", "meta")}))


# ---- end bench turns ---------------------------------------------------------------------------


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except UserError as e:  # raised outside a command's own handler (e.g. settings at start-up)
        err_console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
