"""Plan/apply a telephony.yaml against a LiveKit server, plus list/delete/dial.

Objects are matched by `name` (LiveKit ids are server-assigned), so the YAML file never needs ids.
Updates use the API's *replace* form so the server ends up exactly as the file says, which is
what makes a second `apply` a no-op. Everything goes through the real `livekit-api` client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from livekit import api
from livekit.api.twirp_client import ServerError, SipCallError

from core.errors import UserError
from core.redact import has_credentials, redact_url
from sip.config import DEFAULT_AGENT_NAME, DIRECTION_ATTRIBUTE, TENANT_ATTRIBUTE, TelephonyConfig

Kind = Literal["inbound_trunk", "outbound_trunk", "dispatch_rule"]
# "keep": on the server, not in the file, left alone because --prune was not given.
Action = Literal["create", "update", "delete", "unchanged", "keep"]
KINDS: tuple[Kind, ...] = ("inbound_trunk", "outbound_trunk", "dispatch_rule")
# Server-owned fields that never come from the file.
_SERVER_FIELDS = {"sip_trunk_id", "sip_dispatch_rule_id", "created_at", "updated_at"}
SECRET_FIELDS = {"auth_password"}
MASK = "********"


@dataclass
class Change:
    kind: Kind
    name: str
    action: Action
    id: str = ""
    fields: list[str] = field(default_factory=list)  # changed field names, never their values
    desired: Message | None = None


@dataclass
class Plan:
    changes: list[Change]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action not in ("unchanged", "keep")]

    @property
    def kept(self) -> list[Change]:
        return [c for c in self.changes if c.action == "keep"]

    def counts(self) -> dict[str, int]:
        out = {a: 0 for a in ("create", "update", "delete", "unchanged", "keep")}
        for c in self.changes:
            out[c.action] += 1
        return out


@dataclass
class ServerState:
    inbound: list[api.SIPInboundTrunkInfo]
    outbound: list[api.SIPOutboundTrunkInfo]
    rules: list[api.SIPDispatchRuleInfo]

    def by_name(self, kind: Kind) -> dict[str, Message]:
        lists: dict[str, list[Any]] = {
            "inbound_trunk": list(self.inbound),
            "outbound_trunk": list(self.outbound),
            "dispatch_rule": list(self.rules),
        }
        items = lists[kind]
        out: dict[str, Message] = {}
        for it in items:
            if it.name in out:
                raise UserError(
                    f"server has several {kind.replace('_', ' ')}s named '{it.name}'; "
                    f"delete the extra one by id with `lk sip` first"
                )
            out[it.name] = it
        return out


@dataclass
class DialResult:
    room: str
    participant_identity: str
    sip_call_id: str
    dispatch_id: str
    tenant: str


def object_id(msg: Message) -> str:
    return getattr(msg, "sip_dispatch_rule_id", "") or getattr(msg, "sip_trunk_id", "")


def _canonical(msg: Message) -> dict[str, object]:
    d = MessageToDict(msg, preserving_proto_field_name=True)
    return {k: v for k, v in d.items() if k not in _SERVER_FIELDS}


def diff_fields(desired: Message, current: Message) -> list[str]:
    """Names of fields that differ. A password the server does not echo back is not a diff."""
    a, b = _canonical(desired), _canonical(current)
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if k in SECRET_FIELDS and not b.get(k):
            continue  # server redacts secrets: we cannot tell, so do not churn
        if a.get(k) != b.get(k):
            out.append(k)
    return out


def masked(msg: Message) -> dict[str, Any]:
    """A printable view of an object with credentials masked."""
    d = _canonical(msg)
    for k in SECRET_FIELDS:
        if d.get(k):
            d[k] = MASK
    if isinstance(d.get("address"), str):
        d["address"] = masked_address(str(d["address"]))
    return d


def masked_address(address: str) -> str:
    """A trunk address as printable text: `user:password@host` (made by another tool) -> `***@host`."""
    return f"***@{address.rsplit('@', 1)[1]}" if "@" in address else address


@contextlib.asynccontextmanager
async def connect(url: str | None, key: str | None, secret: str | None) -> AsyncIterator[api.LiveKitAPI]:
    """A LiveKitAPI client whose transport/auth failures become one-line UserErrors."""
    url = url or os.environ.get("LIVEKIT_URL")
    key = key or os.environ.get("LIVEKIT_API_KEY")
    secret = secret or os.environ.get("LIVEKIT_API_SECRET")
    for name, val in (("LIVEKIT_URL", url), ("LIVEKIT_API_KEY", key), ("LIVEKIT_API_SECRET", secret)):
        if not val:
            raise UserError(
                f"{name} is not set (export it or pass --{name.split('_', 1)[1].lower().replace('_', '-')})"
            )
    assert url and key and secret
    check_livekit_url(url)
    shown = redact_url(url)
    lk = api.LiveKitAPI(url, key, secret, timeout=aiohttp.ClientTimeout(total=15))
    try:
        yield lk
    except SipCallError as e:
        raise UserError(
            f"SIP call failed: {e.sip_status_code or ''} {e.sip_status or e.message}".strip()
        ) from None
    except ServerError as e:
        if e.code == "unauthenticated":
            raise UserError(f"LiveKit at {shown} rejected the API key/secret ({e.message})") from None
        if e.code == "permission_denied":
            raise UserError(f"LiveKit at {shown}: permission denied ({e.message})") from None
        raise UserError(f"LiveKit at {shown}: {e.code}: {e.message}") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        why = redact_url(str(e)) if str(e) else ""
        raise UserError(
            f"cannot reach LiveKit at {shown}: {e.__class__.__name__}: {why}".rstrip(": ")
        ) from None
    finally:
        await lk.aclose()


def check_livekit_url(url: str) -> None:
    """One-line UserError for a URL the client could not use; never prints credentials."""
    if not re.match(r"^(https?|wss?)://", url):
        raise UserError(f"LIVEKIT_URL must start with http(s):// or ws(s):// (got {redact_url(url)!r})")
    if has_credentials(url):
        raise UserError(
            "LIVEKIT_URL must not contain credentials (user:password@); "
            "use LIVEKIT_API_KEY and LIVEKIT_API_SECRET (URL not shown)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise UserError(f"LIVEKIT_URL is not a valid URL ({e}): {redact_url(url)!r}") from None
    if not parts.hostname:
        raise UserError(f"LIVEKIT_URL has no host: {redact_url(url)!r}")


class SipOperator:
    def __init__(self, lkapi: api.LiveKitAPI) -> None:
        self.lk = lkapi

    async def snapshot(self) -> ServerState:
        inbound, outbound, rules = await asyncio.gather(
            self.lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest()),
            self.lk.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest()),
            self.lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest()),
        )
        return ServerState(list(inbound.items), list(outbound.items), list(rules.items))

    # ------------------------------------------------------------------ plan / apply
    async def plan(
        self, cfg: TelephonyConfig, env: Mapping[str, str] | None = None, prune: bool = False
    ) -> Plan:
        state = await self.snapshot()
        return self._plan(cfg, state, env if env is not None else os.environ, prune)

    def _plan(self, cfg: TelephonyConfig, state: ServerState, env: Mapping[str, str], prune: bool) -> Plan:
        changes: list[Change] = []
        desired_trunks: dict[Kind, dict[str, Message]] = {
            "inbound_trunk": {
                t.name: t.to_proto(env, f"inbound_trunks[{i}]") for i, t in enumerate(cfg.inbound_trunks)
            },
            "outbound_trunk": {
                t.name: t.to_proto(env, f"outbound_trunks[{i}]") for i, t in enumerate(cfg.outbound_trunks)
            },
        }
        for kind, desired in desired_trunks.items():
            changes += self._compare(kind, desired, state.by_name(kind), prune)
        # Rules reference trunks by id; a trunk still to be created gets a placeholder id,
        # which (correctly) shows the rule as needing an update until the trunk exists.
        existing_in = state.by_name("inbound_trunk")
        trunk_ids = {
            n: object_id(existing_in[n]) if n in existing_in else f"<new:{n}>"
            for n in desired_trunks["inbound_trunk"]
        }
        rules = {
            r.name: r.to_proto([trunk_ids[t] for t in r.trunks], cfg.agent_name) for r in cfg.dispatch_rules
        }
        changes += self._compare("dispatch_rule", rules, state.by_name("dispatch_rule"), prune)
        return Plan(changes)

    @staticmethod
    def _compare(
        kind: Kind, desired: Mapping[str, Message], current: Mapping[str, Message], prune: bool
    ) -> list[Change]:
        out = []
        for name, want in desired.items():
            have = current.get(name)
            if have is None:
                out.append(Change(kind, name, "create", desired=want))
            else:
                fields = diff_fields(want, have)
                out.append(
                    Change(kind, name, "update" if fields else "unchanged", object_id(have), fields, want)
                )
        # Objects the file does not mention are only deleted with prune; otherwise they are listed
        # as kept, so the operator sees what a prune would remove.
        extra: Action = "delete" if prune else "keep"
        out += [Change(kind, n, extra, object_id(m)) for n, m in current.items() if n not in desired]
        return out

    async def apply(
        self, cfg: TelephonyConfig, env: Mapping[str, str] | None = None, prune: bool = False
    ) -> Plan:
        if prune and cfg.is_empty():
            raise UserError(
                "refusing to prune with an empty configuration: it would delete every trunk and rule"
            )
        env = env if env is not None else os.environ
        plan = self._plan(cfg, await self.snapshot(), env, prune)
        sip = self.lk.sip
        # 1. trunks first: rules need their ids.
        trunk_ids: dict[str, str] = {}
        for c in plan.changes:
            if c.kind == "dispatch_rule" or c.action in ("delete", "keep"):
                continue
            if c.action == "create" and c.kind == "inbound_trunk":
                c.id = (
                    await sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=c.desired))  # type: ignore[arg-type]
                ).sip_trunk_id
            elif c.action == "create":
                c.id = (
                    await sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=c.desired))  # type: ignore[arg-type]
                ).sip_trunk_id
            elif c.action == "update" and c.kind == "inbound_trunk":
                await sip.update_inbound_trunk(c.id, c.desired)  # type: ignore[arg-type]
            elif c.action == "update":
                await sip.update_outbound_trunk(c.id, c.desired)  # type: ignore[arg-type]
            if c.kind == "inbound_trunk":
                trunk_ids[c.name] = c.id
        # 2. rules, re-rendered with real trunk ids; recompute the diff now ids are known.
        current_rules = {r.name: r for r in (await self.snapshot()).rules}
        for c in plan.changes:
            if c.kind != "dispatch_rule" or c.action in ("delete", "keep"):
                continue
            rule = next(r for r in cfg.dispatch_rules if r.name == c.name)
            want = rule.to_proto([trunk_ids[t] for t in rule.trunks], cfg.agent_name)
            c.desired = want
            if c.action == "create":
                c.id = (
                    await sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(dispatch_rule=want))
                ).sip_dispatch_rule_id
            elif diff_fields(want, current_rules[c.name]):
                await sip.update_dispatch_rule(c.id, want)
        # 3. deletions: rules before the trunks they may point at.
        for kind in ("dispatch_rule", "outbound_trunk", "inbound_trunk"):
            for c in plan.changes:
                if c.kind == kind and c.action == "delete":
                    await self._delete(c.kind, c.id)
        return plan

    # ------------------------------------------------------------------ list / delete
    async def list(self) -> list[tuple[Kind, Message]]:
        s = await self.snapshot()
        return (
            [("inbound_trunk", t) for t in s.inbound]
            + [("outbound_trunk", t) for t in s.outbound]
            + [("dispatch_rule", r) for r in s.rules]
        )

    async def _delete(self, kind: Kind, obj_id: str) -> None:
        if kind == "dispatch_rule":
            await self.lk.sip.delete_dispatch_rule(
                api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=obj_id)
            )
        else:
            await self.lk.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=obj_id))

    async def delete(self, name: str, kind: Kind | None = None) -> Change:
        state = await self.snapshot()
        hits = [
            (k, state.by_name(k)[name]) for k in KINDS if (kind in (None, k)) and name in state.by_name(k)
        ]
        if not hits:
            raise UserError(f"nothing named '{name}' on the server" + (f" ({kind})" if kind else ""))
        if len(hits) > 1:
            raise UserError(f"'{name}' names a {' and a '.join(k for k, _ in hits)}; pass --kind")
        k, obj = hits[0]
        await self._delete(k, object_id(obj))
        return Change(k, name, "delete", object_id(obj))

    # ------------------------------------------------------------------ outbound call
    async def dial(
        self,
        number: str,
        trunk: str,
        tenant: str | None = None,
        agent_name: str = DEFAULT_AGENT_NAME,
        room: str | None = None,
        wait_until_answered: bool = False,
    ) -> DialResult:
        from core.tenants import load_tenant, tenant_for_number
        from sip.config import _E164

        if not _E164.match(number):
            raise UserError(f"number: not E.164 (expected +<country code><number>, got '{number}')")
        trunks = {t.name: t for t in (await self.snapshot()).outbound}
        if trunk not in trunks:
            known = ", ".join(sorted(trunks)) or "none"
            raise UserError(f"--trunk: no outbound trunk named '{trunk}' (known: {known})")
        t = trunks[trunk]
        # Without --tenant, the tenant owning the caller-id number we dial from.
        tenant_name = load_tenant(tenant).name if tenant else tenant_for_number(t.numbers[0]).name
        room = room or f"call-{tenant_name}-out-{secrets.token_hex(4)}"
        meta = json.dumps(
            {"tenant": tenant_name, "direction": "outbound", "phone_number": number, "trunk": trunk},
            sort_keys=True,
            separators=(",", ":"),
        )
        # Dispatch the agent first so it is in the room (and can run AMD) when the callee answers.
        dispatch = await self.lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=meta)
        )
        identity = "sip-" + number.lstrip("+")
        try:
            info = await self.lk.sip.create_sip_participant(
                api.CreateSIPParticipantRequest(
                    sip_trunk_id=t.sip_trunk_id,
                    sip_call_to=number,
                    room_name=room,
                    participant_identity=identity,
                    participant_name=number,
                    participant_metadata=meta,
                    participant_attributes={TENANT_ATTRIBUTE: tenant_name, DIRECTION_ATTRIBUTE: "outbound"},
                    krisp_enabled=True,
                    wait_until_answered=wait_until_answered,
                )
            )
        except ServerError:
            # Do not leave an agent waiting in an empty room.
            with contextlib.suppress(ServerError, aiohttp.ClientError):
                await self.lk.room.delete_room(api.DeleteRoomRequest(room=room))
            raise
        return DialResult(room, info.participant_identity, info.sip_call_id, dispatch.id, tenant_name)
