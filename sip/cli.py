"""`callcenter sip ...`: manage LiveKit SIP trunks/dispatch rules from telephony.yaml and dial out.

Mounted by the root CLI (`app.add_typer(sip.cli.app, name="sip")`). Every user-fixable failure
(bad YAML, unknown trunk, LiveKit unreachable or rejecting the key) ends as one line on stderr and
a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from core.errors import UserError
from sip.config import DEFAULT_AGENT_NAME, load_config
from sip.operator import KINDS, Kind, Plan, SipOperator, connect, masked, masked_address

app = typer.Typer(help="LiveKit SIP trunks and dispatch rules as code; outbound calls.", no_args_is_help=True)


# Consoles are built per call so the terminal width (and test runners' COLUMNS) is read at run time.
def _out() -> Console:
    return Console()


def _err() -> Console:
    return Console(stderr=True)


T = TypeVar("T")

Url = Annotated[
    str | None, typer.Option("--url", envvar="LIVEKIT_URL", help="LiveKit server URL", show_default=False)
]
Key = Annotated[str | None, typer.Option("--api-key", envvar="LIVEKIT_API_KEY", show_default=False)]
Secret = Annotated[
    str | None,
    typer.Option("--api-secret", envvar="LIVEKIT_API_SECRET", show_default=False, show_envvar=True),
]
Prune = Annotated[
    bool,
    typer.Option(
        "--prune/--no-prune",
        help="also delete server objects missing from FILE (default: leave them alone and list them)",
    ),
]

_COLOR = {"create": "green", "update": "yellow", "delete": "red", "unchanged": "dim", "keep": "cyan"}


def _run(
    url: str | None, key: str | None, secret: str | None, fn: Callable[[SipOperator], Awaitable[T]]
) -> T:
    async def go() -> T:
        async with connect(url, key, secret) as lk:
            return await fn(SipOperator(lk))

    try:
        return asyncio.run(go())
    except UserError as e:
        _err().print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None


def _show_plan(plan: Plan, applied: bool) -> None:
    t = Table(title="applied" if applied else "plan")
    for col in ("kind", "name", "action", "id", "changed fields"):
        t.add_column(col)
    for c in plan.changes:
        color = _COLOR[c.action]
        t.add_row(c.kind, c.name, f"[{color}]{c.action}[/]", c.id or "-", ", ".join(c.fields) or "")
    _out().print(t)
    n = plan.counts()
    verb = "Applied" if applied else "Plan"
    _out().print(
        f"{verb}: {n['create']} to create, {n['update']} to update, {n['delete']} to delete, {n['unchanged']} unchanged."
    )
    if plan.kept:
        names = ", ".join(f"{c.kind} {c.name}" for c in plan.kept)
        _out().print(
            f"Left alone (on the server, not in the file; --prune deletes them): {names}.",
            markup=False,
            highlight=False,
        )


@app.command()
def plan(
    file: str, url: Url = None, api_key: Key = None, api_secret: Secret = None, prune: Prune = False
) -> None:
    """Show what `apply FILE` would create, update or delete (matched by name)."""
    cfg = _load(file)
    _show_plan(_run(url, api_key, api_secret, lambda op: op.plan(cfg, prune=prune)), applied=False)


@app.command()
def apply(
    file: str, url: Url = None, api_key: Key = None, api_secret: Secret = None, prune: Prune = False
) -> None:
    """Create and update what FILE defines (matched by name); idempotent. Objects FILE does not
    mention are kept and listed unless --prune is given."""
    cfg = _load(file)
    _show_plan(_run(url, api_key, api_secret, lambda op: op.apply(cfg, prune=prune)), applied=True)


def _describe(kind: Kind, m: Any) -> tuple[str, str, str]:
    d = masked(m)
    if kind == "dispatch_rule":
        rule_type = next(iter(d.get("rule", {})), "?").removeprefix("dispatch_rule_")
        agents = [a.get("agent_name", "") for a in d.get("room_config", {}).get("agents", [])]
        numbers = ", ".join(m.numbers) or "any"
        detail = f"{rule_type}; trunks={','.join(m.trunk_ids) or 'any'}; agent={','.join(agents) or '-'}"
        return numbers, detail, _tenant(m)
    auth = f"digest user {m.auth_username[:2]}***" if m.auth_username else "none"
    detail = f"address={masked_address(m.address)}; " if kind == "outbound_trunk" else ""
    return ", ".join(m.numbers) or "any", f"{detail}auth={auth}", ""


def _tenant(m: Message) -> str:
    try:
        return str(json.loads(m.metadata or "{}").get("tenant", ""))  # type: ignore[attr-defined]
    except (ValueError, AttributeError):
        return ""


@app.command("list")
def list_(url: Url = None, api_key: Key = None, api_secret: Secret = None) -> None:
    """List trunks and dispatch rules on the server (credentials masked)."""
    items = _run(url, api_key, api_secret, lambda op: op.list())
    t = Table(title="LiveKit SIP")
    for col in ("kind", "name", "id"):
        t.add_column(col, no_wrap=True)  # identifiers are never cut
    for col in ("numbers", "details", "tenant"):
        t.add_column(col, overflow="fold")
    for kind, m in items:
        numbers, detail, tenant = _describe(kind, m)
        t.add_row(
            kind,
            getattr(m, "name", ""),
            getattr(m, "sip_trunk_id", "") or getattr(m, "sip_dispatch_rule_id", ""),
            numbers,
            detail,
            tenant,
        )
    _out().print(t)


@app.command()
def delete(
    name: str,
    kind: Annotated[str | None, typer.Option(help=f"one of {', '.join(KINDS)}")] = None,
    url: Url = None,
    api_key: Key = None,
    api_secret: Secret = None,
) -> None:
    """Delete the trunk or dispatch rule called NAME."""
    if kind is not None and kind not in KINDS:
        _err().print(f"error: --kind must be one of {', '.join(KINDS)}", markup=False)
        raise typer.Exit(2)
    c = _run(url, api_key, api_secret, lambda op: op.delete(name, kind))
    _out().print(f"deleted {c.kind} {c.name} ({c.id})")


@app.command()
def dial(
    number: str,
    trunk: Annotated[str, typer.Option(help="outbound trunk name")],
    tenant: Annotated[str | None, typer.Option(help="tenant (default: owner of the trunk's number)")] = None,
    agent_name: Annotated[str, typer.Option(help="agent worker name to dispatch")] = DEFAULT_AGENT_NAME,
    room: Annotated[str | None, typer.Option(help="room name (default: generated)")] = None,
    wait: Annotated[bool, typer.Option(help="wait until the callee answers")] = False,
    url: Url = None,
    api_key: Key = None,
    api_secret: Secret = None,
) -> None:
    """Call NUMBER through an outbound trunk and dispatch the agent into the call's room."""
    r = _run(url, api_key, api_secret, lambda op: op.dial(number, trunk, tenant, agent_name, room, wait))
    _out().print(
        f"dialing {number} via {trunk}: room={r.room} participant={r.participant_identity} "
        f"call={r.sip_call_id} dispatch={r.dispatch_id} tenant={r.tenant}"
    )


def _load(file: str) -> Any:
    try:
        return load_config(file, allow_empty=False)
    except UserError as e:
        _err().print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None
