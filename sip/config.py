"""Declarative telephony set-up (telephony.yaml) and its 1:1 mapping onto LiveKit SIP objects.

Field names follow livekit-protocol's `SIPInboundTrunkInfo`, `SIPOutboundTrunkInfo` and
`SIPDispatchRuleInfo` so an operator who knows `lk sip` recognises them. Two deliberate
differences: credentials are given as *names of environment variables* (`auth_username_env`,
`auth_password_env`) so the file can be committed, and a dispatch rule's `tenant` expands into the
room metadata, participant attributes and agent-dispatch metadata the agent reads.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from livekit.protocol import agent_dispatch as pb_dispatch
from livekit.protocol import room as pb_room
from livekit.protocol import sip as pb_sip
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from core.errors import UserError

# The worker registers under this name (WorkerOptions.agent_name); dispatch rules and `dial`
# target it. Explicit dispatch means the worker only joins rooms we route to it.
DEFAULT_AGENT_NAME = os.environ.get("CALLCENTER_AGENT_NAME", "callcenter")
# Participant attribute / metadata key carrying the tenant (our namespace, next to LiveKit's sip.*).
TENANT_ATTRIBUTE = "callcenter.tenant"
DIRECTION_ATTRIBUTE = "callcenter.direction"

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Upper case only: a mixed-case "name" such as Hunter2LiteralSecret is a pasted value, not a name.
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def _e164(v: str) -> str:
    if not _E164.match(v):
        raise PydanticCustomError("e164", "not E.164 (expected +<country code><number>, got '{v}')", {"v": v})
    return v


def _cidr(v: str) -> str:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise PydanticCustomError("cidr", "not an IP address or CIDR range: '{v}'", {"v": v}) from None
    return v


def _name(v: str) -> str:
    if not _NAME.match(v):
        raise PydanticCustomError("name", "names use letters, digits, '.', '_' or '-' (max 64)", {})
    return v


def _env_name(v: str) -> str:
    if not _ENV.match(v):
        # The value is not echoed: it may well be the password itself.
        raise PydanticCustomError(
            "env",
            "must be the NAME of an environment variable (A-Z, 0-9, _), not a value (value not shown)",
            {},
        )
    return v


E164 = Annotated[str, AfterValidator(_e164)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Name = Annotated[str, AfterValidator(_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Metadata = dict[str, Any] | str


def metadata_str(m: Metadata | None) -> str:
    """Canonical JSON so that an unchanged file compares equal to what the server stores."""
    if m is None or m == {} or m == "":
        return ""
    return m if isinstance(m, str) else json.dumps(m, sort_keys=True, separators=(",", ":"))


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secrets(cls, data: Any) -> Any:
        # A literal password in a committed YAML file is the mistake we most want to stop.
        if isinstance(data, dict) and ("auth_password" in data or "auth_username" in data):
            key = "auth_password" if "auth_password" in data else "auth_username"
            raise PydanticCustomError(
                "literal_secret",
                "literal credentials are not allowed; use {key}_env: ENV_VAR_NAME",
                {"key": key},
            )
        return data


class _Auth(_Base):
    auth_username_env: EnvName | None = None
    auth_password_env: EnvName | None = None

    @model_validator(mode="after")
    def _both_or_none(self) -> _Auth:
        if bool(self.auth_username_env) != bool(self.auth_password_env):
            raise PydanticCustomError(
                "auth", "set both auth_username_env and auth_password_env, or neither", {}
            )
        return self

    def credentials(self, env: Mapping[str, str], where: str) -> tuple[str, str]:
        if not self.auth_username_env or not self.auth_password_env:
            return "", ""
        out = []
        for key in ("auth_username_env", "auth_password_env"):
            var = getattr(self, key)
            if not env.get(var):
                raise UserError(f"{where}.{key}: environment variable {var} is not set")
            out.append(env[var])
        return out[0], out[1]


class InboundTrunk(_Auth):
    name: Name
    numbers: list[E164] = Field(default_factory=list)
    allowed_addresses: list[Cidr] = Field(default_factory=list)
    allowed_numbers: list[E164] = Field(default_factory=list)
    krisp_enabled: bool = False
    ringing_timeout: int | None = Field(default=None, ge=1, le=300, description="seconds")
    max_call_duration: int | None = Field(default=None, ge=60, le=24 * 3600, description="seconds")
    metadata: Metadata | None = None

    def to_proto(self, env: Mapping[str, str], where: str) -> pb_sip.SIPInboundTrunkInfo:
        user, password = self.credentials(env, where)
        t = pb_sip.SIPInboundTrunkInfo(
            name=self.name,
            metadata=metadata_str(self.metadata),
            numbers=self.numbers,
            allowed_addresses=self.allowed_addresses,
            allowed_numbers=self.allowed_numbers,
            auth_username=user,
            auth_password=password,
            krisp_enabled=self.krisp_enabled,
        )
        if self.ringing_timeout:
            t.ringing_timeout.FromSeconds(self.ringing_timeout)
        if self.max_call_duration:
            t.max_call_duration.FromSeconds(self.max_call_duration)
        return t


class OutboundTrunk(_Auth):
    name: Name
    address: str = Field(min_length=1, description="provider SIP host[:port], e.g. acme.pstn.twilio.com")
    transport: Literal["auto", "udp", "tcp", "tls"] = "auto"
    numbers: list[E164] = Field(min_length=1)
    destination_country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _plain_host(self) -> OutboundTrunk:
        if "@" in self.address:  # user:password@host: a credential in a committed file, printed by `list`
            raise PydanticCustomError(
                "address",
                "address must not contain credentials (user:password@); use auth_username_env / "
                "auth_password_env (value not shown)",
                {},
            )
        if "://" in self.address or self.address.startswith(("sip:", "sips:")) or " " in self.address:
            raise PydanticCustomError("address", "address is a bare host[:port], without sip: or scheme", {})
        return self

    def to_proto(self, env: Mapping[str, str], where: str) -> pb_sip.SIPOutboundTrunkInfo:
        user, password = self.credentials(env, where)
        return pb_sip.SIPOutboundTrunkInfo(
            name=self.name,
            metadata=metadata_str(self.metadata),
            address=self.address,
            transport=pb_sip.SIPTransport.Value(f"SIP_TRANSPORT_{self.transport.upper()}"),  # type: ignore[arg-type]  # the enum value
            numbers=self.numbers,
            destination_country=self.destination_country or "",
            auth_username=user,
            auth_password=password,
        )


class DispatchRule(_Base):
    name: Name
    type: Literal["individual", "direct", "callee"]
    room_prefix: str | None = None  # individual / callee
    room_name: str | None = None  # direct
    randomize: bool = False  # callee: a new room per call instead of one per dialed number
    pin: str | None = Field(default=None, pattern=r"^\d{4,12}$")
    trunks: list[Name] = Field(default_factory=list, description="inbound trunk names; empty = all")
    numbers: list[E164] = Field(default_factory=list, description="dialed numbers this rule matches")
    inbound_numbers: list[E164] = Field(default_factory=list, description="caller numbers it accepts")
    hide_phone_number: bool = False
    krisp_enabled: bool = False
    tenant: str | None = None
    agent_name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="participant metadata")
    attributes: dict[str, str] = Field(default_factory=dict, description="participant attributes")
    room_metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _type_fields(self) -> DispatchRule:
        if self.type == "direct" and not self.room_name:
            raise PydanticCustomError("rule", "type 'direct' needs room_name", {})
        if self.type != "direct" and self.room_name:
            raise PydanticCustomError(
                "rule", f"room_name is only for type 'direct' (this is '{self.type}')", {}
            )
        if self.type == "direct" and self.room_prefix:
            raise PydanticCustomError("rule", "room_prefix is not used by type 'direct'", {})
        if self.randomize and self.type != "callee":
            raise PydanticCustomError("rule", "randomize is only for type 'callee'", {})
        return self

    def _with_tenant(self, base: Mapping[str, Any]) -> dict[str, Any]:
        return {**base, "tenant": self.tenant} if self.tenant else dict(base)

    def to_proto(self, trunk_ids: list[str], default_agent: str) -> pb_sip.SIPDispatchRuleInfo:
        rule = pb_sip.SIPDispatchRule()
        if self.type == "individual":
            rule.dispatch_rule_individual.CopyFrom(
                pb_sip.SIPDispatchRuleIndividual(room_prefix=self.room_prefix or "", pin=self.pin or "")
            )
        elif self.type == "direct":
            rule.dispatch_rule_direct.CopyFrom(
                pb_sip.SIPDispatchRuleDirect(room_name=self.room_name or "", pin=self.pin or "")
            )
        else:
            rule.dispatch_rule_callee.CopyFrom(
                pb_sip.SIPDispatchRuleCallee(
                    room_prefix=self.room_prefix or "", pin=self.pin or "", randomize=self.randomize
                )
            )
        attrs = dict(self.attributes)
        if self.tenant:
            attrs[TENANT_ATTRIBUTE] = self.tenant
        attrs.setdefault(DIRECTION_ATTRIBUTE, "inbound")
        agent_meta = metadata_str(self._with_tenant({"direction": "inbound", "dispatch_rule": self.name}))
        room_config = pb_room.RoomConfiguration(
            metadata=metadata_str(self._with_tenant(self.room_metadata)),
            agents=[
                pb_dispatch.RoomAgentDispatch(
                    agent_name=self.agent_name or default_agent, metadata=agent_meta
                )
            ],
        )
        return pb_sip.SIPDispatchRuleInfo(
            name=self.name,
            rule=rule,
            trunk_ids=trunk_ids,
            numbers=self.numbers,
            inbound_numbers=self.inbound_numbers,
            hide_phone_number=self.hide_phone_number,
            krisp_enabled=self.krisp_enabled,
            metadata=metadata_str(self._with_tenant(self.metadata)),
            attributes=attrs,
            room_config=room_config,
        )


class TelephonyConfig(_Base):
    agent_name: str = DEFAULT_AGENT_NAME
    inbound_trunks: list[InboundTrunk] = Field(default_factory=list)
    outbound_trunks: list[OutboundTrunk] = Field(default_factory=list)
    dispatch_rules: list[DispatchRule] = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.inbound_trunks or self.outbound_trunks or self.dispatch_rules)

    def cross_check(self, known_tenants: list[str] | None) -> list[str]:
        """Checks that need the whole file (names, trunk references, tenants)."""
        errs: list[str] = []
        seen: dict[str, str] = {}
        for kind in ("inbound_trunks", "outbound_trunks", "dispatch_rules"):
            for i, item in enumerate(getattr(self, kind)):
                if item.name in seen:
                    errs.append(f"{kind}[{i}].name: duplicate name '{item.name}' (also {seen[item.name]})")
                seen.setdefault(item.name, f"{kind}[{i}]")
        inbound = {t.name for t in self.inbound_trunks}
        for i, r in enumerate(self.dispatch_rules):
            for j, t in enumerate(r.trunks):
                if t not in inbound:
                    errs.append(f"dispatch_rules[{i}].trunks[{j}]: unknown inbound trunk '{t}'")
            if r.tenant and known_tenants is not None and r.tenant not in known_tenants:
                errs.append(
                    f"dispatch_rules[{i}].tenant: unknown tenant '{r.tenant}' (known: {', '.join(known_tenants)})"
                )
        return errs


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def parse_config(
    data: Any, source: str = "telephony.yaml", known_tenants: list[str] | None = None
) -> TelephonyConfig:
    """Validate a loaded YAML document; every problem is reported with its YAML path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping at the top level")
    try:
        cfg = TelephonyConfig.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = tuple(err["loc"])
            if err["type"] == "literal_secret":  # point at the offending key itself
                loc += (err["ctx"]["key"],)
            msgs.append(f"{_loc(loc)}: {err['msg']}")
        raise UserError(f"{source}: " + "; ".join(msgs)) from None
    errs = cfg.cross_check(known_tenants)
    if errs:
        raise UserError(f"{source}: " + "; ".join(errs))
    return cfg


def load_config(path: str | Path, allow_empty: bool = True) -> TelephonyConfig:
    """Read and validate a telephony file. `allow_empty=False` (plan/apply) refuses a file that
    defines no trunk and no rule: applied with --prune it would delete everything on the server."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a UTF-8 text file (is it the YAML file?)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
    cfg = parse_config(data, str(p), _known_tenants())
    if not allow_empty and cfg.is_empty():
        raise UserError(
            f"{p}: defines no trunks or dispatch rules; refusing an empty plan "
            "(remove objects one by one with `callcenter sip delete NAME`)"
        )
    return cfg


def _known_tenants() -> list[str] | None:
    # Only check tenant names when the tenants directory is there to check against.
    from core.tenants import list_tenants

    try:
        names = list_tenants()
    except Exception:
        return None
    return names or None
