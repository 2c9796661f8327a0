"""Tenant configuration: one YAML file per business under tenants/."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from core.errors import UserError
from core.settings import get_settings

# A tenant is named, never pointed at: `acme`, `globex-eu`, `shop_2`; no path, no dot, no slash.
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class FAQ(BaseModel):
    question: str
    answer: str
    paraphrases: list[str] = Field(default_factory=list)


class CacheOptions(BaseModel):
    """The tenant's `cache:` block. Unknown keys are refused (a typo must not silently keep the
    default, which for `auto_serve` decides what callers hear)."""

    model_config = ConfigDict(extra="forbid")
    # Answers the LLM wrote during calls are stored as candidates an admin reviews before they
    # are served (`callcenter cache review`); True serves them at once, as before review existed.
    auto_serve: StrictBool = False


class WarmTransfer(BaseModel):
    """The tenant's `warm_transfer:` block: brief a human on the phone before bridging the caller
    (livekit's WarmTransferTask on LiveKit, a simulated human leg in `callcenter call`). Without
    it transfers stay cold (SIP REFER to `transfer_number`). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
    to: str | None = Field(
        default=None, description="the human's number or sip: URI (default: transfer_number)"
    )
    # LiveKit outbound trunk that places the call to the human (default: LIVEKIT_SIP_OUTBOUND_TRUNK)
    outbound_trunk_id: str | None = None
    caller_id: str | None = Field(
        default=None, description="number the human sees (default: the tenant's first)"
    )
    ringing_timeout_s: float = Field(default=20.0, gt=0, le=120)
    # when the human does not answer, is busy or rejects: cold-transfer to transfer_number, or
    # promise the caller a call back (recorded as a `callback` event; also what `cold` does
    # when the tenant has no transfer_number)
    fallback: Literal["cold", "callback"] = "cold"


class Tenant(BaseModel):
    name: str
    business_name: str
    greeting: str
    language: str = "en"
    transfer_number: str | None = None
    numbers: list[str] = Field(default_factory=list, description="dialed numbers (E.164) routed here")
    facts: list[str] = Field(default_factory=list)
    faq: list[FAQ] = Field(default_factory=list)
    # Optional keypad menu: {"1": "billing", "2": "human"}; "human" routes to the transfer.
    menu: dict[str, str] = Field(default_factory=dict, description="keypad digit -> choice")
    cache: CacheOptions = Field(default_factory=CacheOptions)
    warm_transfer: WarmTransfer | None = None

    @property
    def warm_transfer_to(self) -> str | None:
        """Who a warm transfer dials: the block's `to`, else the transfer number; None = cold."""
        if self.warm_transfer is None:
            return None
        return self.warm_transfer.to or self.transfer_number

    @field_validator("menu", mode="before")
    @classmethod
    def _menu_keys(cls, v: object) -> object:
        """YAML writes `1: billing` with an int key: keys are single keypad digits, choices named."""
        if not isinstance(v, dict):
            return v
        out: dict[str, str] = {}
        for k, choice in v.items():
            key = str(k).strip()
            if not re.fullmatch(r"[0-9]", key):
                raise ValueError(f"menu key {k!r} is not a single keypad digit")
            if not isinstance(choice, str) or not choice.strip():
                raise ValueError(f"menu choice for {key} must be a name")
            out[key] = choice.strip()
        return out

    @property
    def knowledge_version(self) -> str:
        """Changes whenever anything the agent may say about this tenant changes."""
        # `cache` / `warm_transfer` are how answers are served and calls routed, not what is
        # said: changing them keeps the entries
        blob = json.dumps(self.model_dump(exclude={"numbers", "cache", "warm_transfer"}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def facts_block(self) -> str:
        """Tenant knowledge injected compactly after the short system prompt."""
        lines = [f"Business: {self.business_name}."]
        lines += self.facts
        if self.transfer_number:
            lines.append("A human can take the call if asked.")
        return " ".join(lines)


def tenant_path(name: str, tenants_dir: Path | None = None) -> Path:
    """`<tenants_dir>/<name>.yaml` for a plain tenant name; `UserError` for anything else (an
    absolute path, `../x`, a dot or slash), and for a file that resolves outside the tenants dir
    (a symlink pointing elsewhere)."""
    d = tenants_dir or get_settings().tenants_dir
    if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
        known = ", ".join(list_tenants(d)) or "none"
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:77]}..."
        raise UserError(f"bad tenant name {shown!r}: use a plain name of a file in {d} (known: {known})")
    path = d / f"{name}.yaml"
    try:
        inside = path.resolve().parent == d.resolve()
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise UserError(f"tenant '{name}': {path} points outside {d}")
    return path


def list_tenants(tenants_dir: Path | None = None) -> list[str]:
    d = tenants_dir or get_settings().tenants_dir
    return sorted(p.stem for p in d.glob("*.yaml") if TENANT_NAME.fullmatch(p.stem))


def load_tenant(name: str | None = None, tenants_dir: Path | None = None) -> Tenant:
    name = name or get_settings().default_tenant
    path = tenant_path(name, tenants_dir)
    if not path.is_file():
        known = ", ".join(list_tenants(tenants_dir)) or "none"
        raise UserError(f"unknown tenant '{name}' (known: {known})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of tenant fields")
        return Tenant.model_validate({**data, "name": name})  # the file's name is the tenant's name
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {getattr(e, 'strerror', None) or type(e).__name__}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{path}: {loc}: {err['msg']}") from None


def tenant_for_number(dialed: str, tenants_dir: Path | None = None) -> Tenant:
    """The tenant whose `numbers` list the dialed number; default tenant otherwise."""
    for name in list_tenants(tenants_dir):
        t = load_tenant(name, tenants_dir)
        if dialed in t.numbers:
            return t
    return load_tenant(None, tenants_dir)
