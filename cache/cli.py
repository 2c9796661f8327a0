"""`callcenter cache …` — admin commands over `cache.admin` (thin: parse, call, print)."""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.errors import UserError
from core.settings import get_settings

app = typer.Typer(
    help="Semantic response cache: warm, inspect, invalidate, export/import, eval, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)


def handled(fn):
    """UserError -> one line on stderr, exit 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except UserError as e:
            _fail(str(e).splitlines()[0] if str(e) else "failed", e.exit_code)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def _admin(namespace: str = "cc"):
    from cache.admin import CacheAdmin

    return CacheAdmin(namespace=namespace)


TOKEN_HELP = "--token-file PATH, CALLCENTER_TOKEN or --token"
_PLACEHOLDERS = {"change-me", "changeme", "change_me", "change-this", "replace-me", "secret", "password",
                 "admin", "token", "test", "example", "xxx", "your-token-here", "please-change-me"}  # fmt: skip


def configured_token() -> str | None:
    """The admin token this deployment is configured with (CALLCENTER_ADMIN_TOKEN), or None.

    The process environment and the `.env` file are both consulted: an empty value in the
    caller's own environment cannot switch off a token the `.env` configures. A value that is
    set but empty everywhere is refused rather than read as "no token".

    Raises:
        UserError: set but empty, or a placeholder / shorter than 16 characters.
    """
    from dotenv import dotenv_values

    env = os.environ.get("CALLCENTER_ADMIN_TOKEN")
    try:
        dot = dotenv_values(".env").get("CALLCENTER_ADMIN_TOKEN") if Path(".env").is_file() else None
    except (OSError, UnicodeDecodeError):
        dot = None
    values = [v for v in (env, dot) if v is not None]
    token = next((v.strip() for v in values if v.strip()), None)
    if token is None:
        if values:
            raise UserError(
                "CALLCENTER_ADMIN_TOKEN is set but empty: unset it to run without a token, or set the token"
            )
        return None
    squashed = "".join(c for c in token.lower() if c.isalnum())
    if token.lower() in _PLACEHOLDERS or "changeme" in squashed or len(token) < 16:
        raise UserError(
            "CALLCENTER_ADMIN_TOKEN is a placeholder or shorter than 16 characters: "
            "set a random one (openssl rand -hex 24)"
        )
    return token


def presented_token(token: str | None, token_file: Path | None) -> str | None:
    """The token the caller presents: --token, else --token-file, else $CALLCENTER_TOKEN.

    Raises:
        UserError: the token file is missing, not a regular file, too large or empty.
    """
    if token is not None:
        return token
    if token_file is not None:
        p = Path(token_file)
        if not p.is_file():
            raise UserError(f"token file not found or not a regular file: {p}")
        if p.stat().st_size > 4096:
            raise UserError(f"token file too large (expected one line): {p}")
        try:
            text = p.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read token file {p}: {e.__class__.__name__}") from None
        if not text:
            raise UserError(f"token file is empty: {p}")
        return text.splitlines()[0].strip()
    return os.environ.get("CALLCENTER_TOKEN") or None


def token_state(token: str | None, token_file: Path | None) -> bool | None:
    """None: no admin token configured; True: the presented token matches; False: none presented.

    Raises:
        UserError: a token was presented and does not match (or the configuration is unusable).
    """
    need = configured_token()
    got = presented_token(token, token_file)
    if need is None:
        return None
    if got is None:
        return False
    if not hmac.compare_digest(got.encode(), need.encode()):
        raise UserError(f"admin token does not match CALLCENTER_ADMIN_TOKEN ({TOKEN_HELP})")
    return True


def _check_token(token: str | None, token_file: Path | None = None) -> None:
    if token_state(token, token_file) is False:
        raise UserError(f"this command needs the admin token ({TOKEN_HELP}) matching CALLCENTER_ADMIN_TOKEN")


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"


NS = Annotated[str, typer.Option("--namespace", help="key namespace (default: the live cache)")]
TENANT = Annotated[str | None, typer.Option("--tenant", "-t", help="tenant name")]
JSON_OUT = Annotated[bool, typer.Option("--json", help="print JSON")]
TOKEN = Annotated[
    str | None,
    typer.Option("--token", help="admin token (visible in ps: prefer --token-file or CALLCENTER_TOKEN)"),
]
TOKEN_FILE = Annotated[Path | None, typer.Option("--token-file", help="file holding the admin token")]


@app.command()
@handled
def warm(
    file: Annotated[Path | None, typer.Argument(help="FAQ file: .yaml, .csv or .jsonl")] = None,
    tenant: TENANT = None,
    from_calls: Annotated[Path | None, typer.Option("--from-calls", help="dir of saved calls")] = None,
    min_count: Annotated[int, typer.Option(help="--from-calls: min times a question was asked")] = 2,
    audio: Annotated[bool, typer.Option("--audio", help="pre-synthesize audio (local voice)")] = False,
    ttl: Annotated[int | None, typer.Option("--ttl", help="entry TTL in seconds (60 .. 10 years)")] = None,
    paraphrase: Annotated[
        int | None,
        typer.Option("--paraphrase", help="also ask the cloud LLM for N paraphrases + near-misses per entry"),
    ] = None,
    token: TOKEN = None,
    token_file: TOKEN_FILE = None,
    namespace: NS = "cc",
) -> None:
    """Store FAQ answers (a file, the tenant's own faq, or questions mined from calls).

    With CALLCENTER_ADMIN_TOKEN set, replacing existing entries with different answers needs the
    token; new entries do not. --paraphrase N (cloud LLM only; it needs the token) adds N
    generated phrasings per entry, shown by `cache show` and removed by `cache drop-generated`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cache.admin import check_ttl

    check_ttl(ttl)
    get_settings()  # bad CALLCENTER_CACHE_* values: one line before anything is touched
    allow_overwrite = token_state(token, token_file) is not False
    if file is not None and from_calls is not None:
        raise UserError("give either FILE or --from-calls, not both")
    if paraphrase is not None:
        from cache.paraphrase import MAX_N, llm_client

        if not 1 <= paraphrase <= MAX_N:  # before the warm-up stores anything
            raise UserError(f"--paraphrase must be between 1 and {MAX_N}, got {paraphrase}")
        if from_calls is not None:
            raise UserError("--paraphrase works with FILE or --tenant warm-up, not --from-calls")
        llm_client()  # the local profile is refused before anything is stored
        _check_token(token, token_file)
    synth = voice = None
    if audio:
        if from_calls is not None:
            raise UserError("--audio works with FILE or --tenant warm-up, not --from-calls")
        # The local profile's voice (core/local_tts.py, shared with the agent's TTS plugin); a
        # cloud voice's audio is stored on the first hit in a call instead.
        from core.local_tts import SAMPLE_RATE, VOICE, synthesize_pcm16

        voice = VOICE

        def synth(text: str) -> tuple[bytes, int]:
            return synthesize_pcm16(text), SAMPLE_RATE

    if file is not None:
        from cache.admin import read_faq

        read_faq(file)  # validate before touching Redis
    adm = _admin(namespace)
    with Progress(
        TextColumn("warming"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as prog:
        task = prog.add_task("warm", total=None)

        def cb(i: int, n: int) -> None:
            prog.update(task, completed=i, total=n)

        if from_calls is not None:
            res = adm.warm_from_calls(from_calls, tenant=tenant, min_count=min_count, progress=cb)
        else:
            res = adm.warm(
                file, tenant=tenant, ttl_s=ttl, progress=cb, audio=audio, synthesize=synth, voice=voice,
                allow_overwrite=allow_overwrite,
            )  # fmt: skip
    skipped = ", ".join(f"{k}: {v}" for k, v in res["skipped"].items()) or "none"
    extra = f", mined {res['mined']} questions" if "mined" in res else ""
    extra += f", audio for voice {voice}" if res.get("audio") else ""
    console.print(f"stored {res['stored']} of {res['total']} entries{extra}; skipped: {skipped}")
    if paraphrase is not None:
        g = adm.paraphrase(res["ids"], paraphrase)
        console.print(
            f"generated for {g['entries']} entries: {g['added']} paraphrases stored (dropped: {g['duplicate']} "
            f"duplicate, {g['refused']} refused, {g['ambiguous']} nearer another entry), {g['negatives']} near-misses"
        )
    if from_calls is not None and res["stored"] and (n := adm.pending_count()):
        console.print(f"{n} answers the LLM wrote wait for review: callcenter cache review")


@app.command("list")
@handled
def list_(tenant: TENANT = None, limit: int = 50, json_out: JSON_OUT = False, namespace: NS = "cc") -> None:
    """Entries with tenant, question, answer, age, TTL left, hits, last hit."""
    rows = _admin(namespace).list(tenant, limit)
    if json_out:
        print(json.dumps(rows))
        return
    t = Table("id", "tenant", "question", "answer", "status", "age", "ttl left", "hits", "last hit")
    for r in rows:
        t.add_row(r["id"], r["tenant"], r["question"], r["answer"][:60], r["status"], _dur(r["age_s"]),
                  _dur(r["ttl_left_s"]), str(r["hits"]), _when(r["last_hit"]))  # fmt: skip
    console.print(t)
    console.print(f"{len(rows)} entries")


@app.command()
@handled
def show(entry_id: str, json_out: JSON_OUT = False, namespace: NS = "cc") -> None:
    """One entry in full."""
    r = _admin(namespace).show(entry_id)
    if json_out:
        print(json.dumps(r))
        return
    t = Table("field", "value", show_header=False)
    for k, v in r.items():
        if k in ("created", "last_hit", "expiry"):
            v = _when(v)
        if k == "paraphrases":
            gen = set(r.get("generated_paraphrases") or [])
            v = "; ".join(f"{p} [generated]" if p in gen else p for p in v) or "-"
        elif k == "negatives":
            v = "; ".join(f"{n.get('text')} [{n.get('source')}]" for n in v if isinstance(n, dict)) or "-"
        elif k == "generated_paraphrases":
            continue  # marked in the paraphrases row
        t.add_row(k, Text(str(v)))  # plain text: "[generated]" or an answer's brackets are not markup
    console.print(t)


@app.command("drop-generated")
@handled
def drop_generated(
    ids: Annotated[list[str], typer.Argument(help="entry ids")],
    token: TOKEN = None,
    token_file: TOKEN_FILE = None,
    namespace: NS = "cc",
) -> None:
    """Remove the LLM-generated paraphrases and near-misses of these entries (FAQ ones stay)."""
    _check_token(token, token_file)
    adm = _admin(namespace)
    for eid in ids:
        adm.show(eid)  # every id exists before the first one changes
    n = sum(adm.drop_generated(eid) for eid in ids)
    console.print(f"dropped {n} generated phrasings from {len(ids)} entries")


@app.command()
@handled
def reembed(
    json_out: JSON_OUT = False,
    token: TOKEN = None,
    token_file: TOKEN_FILE = None,
    namespace: NS = "cc",
) -> None:
    """Re-embed every entry with the configured embedder (CALLCENTER_CACHE_EMBEDDER) and rebuild the
    index; entries, answers, audio and provenance are kept, and an interrupted run loses nothing
    (run it again). Processes using the old model need a restart."""
    from cache.admin import CacheAdmin
    from cache.embedders import get_cache_embedder

    _check_token(token, token_file)
    get_cache_embedder()  # not installed / endpoint down: one line before anything changes
    adm = CacheAdmin(namespace=namespace, check_model=False)
    res = adm.reembed(progress=lambda phase, i, n: err.print(f"{phase} {i}/{n}", highlight=False))
    if json_out:
        print(json.dumps(res))
        return
    console.print(
        f"re-embedded {res['entries']} entries ({res['vectors']} vectors) with {res['model']} "
        f"({res['dim']} dims; was {res['previous'] or 'none'}) in {res['seconds']} s"
    )


@app.command()
@handled
def search(
    text: str,
    tenant: TENANT = None,
    k: int = 5,
    threshold: Annotated[float | None, typer.Option(help="cosine distance (default: settings)")] = None,
    json_out: JSON_OUT = False,
    namespace: NS = "cc",
) -> None:
    """Nearest entries of a tenant with distance and whether the lookup would hit."""
    from cache.admin import check_distance

    check_distance(threshold, "--threshold")
    rows = _admin(namespace).search(text, tenant=tenant, k=k, threshold=threshold)
    if json_out:
        print(json.dumps(rows))
        return
    t = Table("id", "question", "distance", "would hit")
    for r in rows:
        t.add_row(
            r["id"], r["question"], f"{r['distance']:.3f}", "yes" if r["would_hit"] else (r["bypass"] or "no")
        )
    console.print(t)


@app.command()
@handled
def stats(json_out: JSON_OUT = False, namespace: NS = "cc") -> None:
    """Hit rate, lookups, bypasses, lookup p50/p99, estimated seconds and tokens saved."""
    s = _admin(namespace).stats()
    if json_out:
        print(json.dumps(s))
        return
    t = Table("metric", "value", show_header=False)
    for k, v in s.items():
        if k == "pending_review_by_tenant":
            for tenant, n in v.items():
                t.add_row(Text(f"pending_review[{tenant}]"), str(n))  # not markup
        elif k != "detail":
            t.add_row(k, str(v))
    for k, v in s["detail"].items():
        t.add_row(k, str(v))
    console.print(t)


review_app = typer.Typer(
    help="Answers the LLM wrote in calls wait here until approved (never served before). "
    "Without a subcommand: list the pending candidates.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(review_app, name="review")
IDS = Annotated[list[str], typer.Argument(help="candidate ids (from `cache review`)")]


def _review_table(rows: list[dict[str, Any]]) -> None:
    t = Table("id", "tenant", "source", "question", "answer", "age")
    for r in rows:
        t.add_row(r["id"], r["tenant"], r["source"], r["question"], r["answer"], _dur(r["age_s"]))
    console.print(t)


@review_app.callback(invoke_without_command=True)
@handled
def review(
    ctx: typer.Context,
    tenant: TENANT = None,
    limit: Annotated[int, typer.Option(help="at most this many (0: all)", min=0)] = 100,
    json_out: JSON_OUT = False,
    namespace: NS = "cc",
) -> None:
    """List pending candidates: approve, edit or reject them by id (the admin token, when one is
    configured, is needed for those)."""
    if ctx.invoked_subcommand is not None:
        return
    adm = _admin(namespace)
    rows = adm.pending(tenant, limit)
    if json_out:
        print(json.dumps(rows))
        return
    _review_table(rows)
    console.print(f"{adm.pending_count(tenant)} pending review")


def _check_pending(adm: Any, ids: list[str]) -> None:
    """Every id must be a pending candidate before the first one changes (all or nothing)."""
    if len(set(ids)) != len(ids):
        raise UserError("an id is given twice")
    for eid in ids:
        adm.candidate(eid)


@review_app.command("approve")
@handled
def review_approve(
    ids: IDS,
    json_out: JSON_OUT = False,
    token: TOKEN = None,
    token_file: TOKEN_FILE = None,
    namespace: NS = "cc",
) -> None:
    """Serve these candidates' answers from now on, as they are."""
    _check_token(token, token_file)
    adm = _admin(namespace)
    _check_pending(adm, ids)
    rows = [adm.approve(eid) for eid in ids]
    if json_out:
        print(json.dumps(rows))
        return
    console.print(f"approved {len(rows)}: {', '.join(ids)}")


@review_app.command("edit")
@handled
def review_edit(
    entry_id: Annotated[str, typer.Argument(help="candidate id (from `cache review`)")],
    answer: Annotated[str, typer.Argument(help="the answer callers will hear instead")],
    json_out: JSON_OUT = False,
    token: TOKEN = None,
    token_file: TOKEN_FILE = None,
    namespace: NS = "cc",
) -> None:
    """Approve a candidate with a new answer text (its old audio is dropped)."""
    _check_token(token, token_file)
    row = _admin(namespace).edit(entry_id, answer)
    if json_out:
        print(json.dumps(row))
        return
    console.print(f"approved {entry_id} with the edited answer")


@review_app.command("reject")
@handled
def review_reject(
    ids: IDS,
    json_out: JSON_OUT = False,
    token: TOKEN = None,
    token_file: TOKEN_FILE = None,
    namespace: NS = "cc",
) -> None:
    """Delete these candidates (the question goes to the LLM again next time)."""
    _check_token(token, token_file)
    adm = _admin(namespace)
    _check_pending(adm, ids)
    for eid in ids:
        adm.reject(eid)
    if json_out:
        print(json.dumps({"rejected": ids}))
        return
    console.print(f"rejected {len(ids)}: {', '.join(ids)}")


@app.command()
@handled
def invalidate(
    entry_id: Annotated[str | None, typer.Argument(help="entry id")] = None,
    tenant: TENANT = None,
    similar_to: Annotated[str | None, typer.Option("--similar-to", help="entries near this text")] = None,
    max_distance: Annotated[float | None, typer.Option(help="--similar-to radius")] = None,
    stale: Annotated[
        bool, typer.Option("--stale", help="tenant entries of an old knowledge version")
    ] = False,
    all_: Annotated[bool, typer.Option("--all", help="every entry")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    token: TOKEN = None,
    token_file: TOKEN_FILE = None,
    namespace: NS = "cc",
) -> None:
    """Delete entries by id, tenant, similarity, stale knowledge version, or all."""
    from cache.admin import check_distance

    _check_token(token, token_file)
    check_distance(max_distance, "--max-distance")
    if entry_id is None and tenant is None and similar_to is None and not all_:
        raise UserError("say what to invalidate: an id, --tenant, --similar-to, --stale or --all")
    what = entry_id or (f"similar to '{similar_to}'" if similar_to else None) or ("ALL entries" if all_ else
                                                                                     f"tenant {tenant}")  # fmt: skip
    if not yes:
        if not sys.stdin.isatty():
            raise UserError("invalidate needs --yes when not interactive")
        typer.confirm(f"invalidate {what}?", abort=True)
    n = _admin(namespace).invalidate(entry_id=entry_id, tenant=tenant, similar_to=similar_to,
                                     max_distance=max_distance, stale=stale, everything=all_)  # fmt: skip
    console.print(f"invalidated {n} entries")


@app.command()
@handled
def export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file (default stdout)")] = None,
    tenant: TENANT = None,
    namespace: NS = "cc",
) -> None:
    """Write entries as JSONL (ids, ttl, hits, vectors: import restores them exactly)."""
    n = _admin(namespace).export(out, tenant)
    if out is not None:
        console.print(f"exported {n} entries to {out}")


@app.command("import")
@handled
def import_(file: Path, token: TOKEN = None, token_file: TOKEN_FILE = None, namespace: NS = "cc") -> None:
    """Load a JSONL export: all rows are checked first; expired and policy-refused rows are skipped."""
    _check_token(token, token_file)
    from cache.admin import read_jsonl

    read_jsonl(file, "import file")
    res = _admin(namespace).import_(file)
    refused = ", ".join(f"{k}: {v}" for k, v in res["refused"].items())
    extra = f"; refused by the cache policy: {refused}" if refused else ""
    console.print(f"imported {res['imported']} entries ({res['expired']} expired, skipped){extra}")


@app.command("eval")
@handled
def eval_(
    entries: Annotated[Path, typer.Option("--entries", help="ENTRIES.jsonl")],
    queries: Annotated[Path, typer.Option("--queries", help="QUERIES.jsonl")],
    threshold: Annotated[float | None, typer.Option(help="cosine distance (default: settings)")] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="threshold curve and a recommendation")] = False,
    verifier: Annotated[
        bool | None,
        typer.Option(
            "--verifier/--no-verifier", help="two-stage matching (default: settings; --threshold: off)"
        ),
    ] = None,
    accept: Annotated[float | None, typer.Option(help="the verifier's acceptance probability")] = None,
    json_out: JSON_OUT = False,
) -> None:
    """Hit and false-hit rates of the agent's lookup on a labelled set (isolated namespace).

    With the verifier on, "threshold" (and the sweep) is its acceptance probability; --threshold
    (a cosine distance) measures the single-stage lookup, as before."""
    from cache.admin import check_distance, load_eval_files, run_eval
    from cache.redis_server import ensure_redis

    if threshold is not None and sweep:
        raise UserError("give --threshold or --sweep, not both")
    if threshold is not None and verifier:
        raise UserError("--threshold is the single-stage lookup's distance: use --accept with --verifier")
    if accept is not None and (threshold is not None or verifier is False or sweep):
        raise UserError("--accept needs the verifier and no --threshold / --sweep")
    if accept is not None and not 0 <= accept <= 1:
        raise UserError("--accept must be in [0, 1]")
    check_distance(threshold, "--threshold")
    load_eval_files(entries, queries)
    res = run_eval(
        ensure_redis(), entries, queries, threshold=threshold, sweep=sweep, verifier=verifier, accept=accept
    )
    curve = res.pop("curve", None)
    if json_out:
        if curve is not None:
            res["curve"] = curve
        print(json.dumps(res))
        return
    if curve is not None:
        t = Table("threshold", "hit rate", "false hit rate")
        for c in curve:
            t.add_row(f"{c['threshold']:.2f}", f"{c['hit_rate']:.3f}", f"{c['false_hit_rate']:.3f}")
        console.print(t)
        console.print(f"recommended threshold: {res['recommended_threshold']}")
    t = Table("metric", "value", show_header=False)
    for k, v in res.items():
        t.add_row(k, str(v))
    console.print(t)


@app.command()
@handled
def bench(
    sizes: Annotated[str, typer.Option(help="comma-separated entry counts")] = "1000,10000,100000",
    queries: int = 300,
    out: Annotated[Path | None, typer.Option("--out", help="write JSON here")] = None,
) -> None:
    """Lookup p50/p99 (embedding + KNN) and memory per entry at growing index sizes."""
    from cache.bench import run_bench
    from cache.redis_server import ensure_redis

    try:
        ns = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--sizes must be comma-separated integers, got '{sizes}'") from None
    if not ns or min(ns) <= 0:
        raise UserError("--sizes must be positive integers")
    res = run_bench(ensure_redis(), ns, queries=queries, progress=lambda m: err.print(m))
    t = Table(
        "entries", "insert s", "knn p50 ms", "knn p99 ms", "lookup p50 ms", "lookup p99 ms", "bytes/entry"
    )
    for r in res["sizes"]:
        t.add_row(str(r["entries"]), str(r["insert_s"]), str(r["knn_p50_ms"]), str(r["knn_p99_ms"]),
                  str(r.get("lookup_p50_ms", "-")), str(r.get("lookup_p99_ms", "-")), str(r["bytes_per_entry"]))  # fmt: skip
    console.print(t)
    console.print(
        f"embedding: p50 {res.get('embed_p50_ms', 0):.1f} ms, p99 {res.get('embed_p99_ms', 0):.1f} ms"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        console.print(f"wrote {out}")
