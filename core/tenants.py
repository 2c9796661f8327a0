"""Tenant configuration: one YAML file per business under tenants/."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from core.errors import UserError
from core.settings import get_settings


class FAQ(BaseModel):
    question: str
    answer: str
    paraphrases: list[str] = Field(default_factory=list)


class Tenant(BaseModel):
    name: str
    business_name: str
    greeting: str
    language: str = "en"
    transfer_number: str | None = None
    numbers: list[str] = Field(default_factory=list, description="dialed numbers (E.164) routed here")
    facts: list[str] = Field(default_factory=list)
    faq: list[FAQ] = Field(default_factory=list)

    @property
    def knowledge_version(self) -> str:
        """Changes whenever anything the agent may say about this tenant changes."""
        blob = json.dumps(self.model_dump(exclude={"numbers"}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def facts_block(self) -> str:
        """Tenant knowledge injected compactly after the short system prompt."""
        lines = [f"Business: {self.business_name}."]
        lines += self.facts
        if self.transfer_number:
            lines.append("A human can take the call if asked.")
        return " ".join(lines)


def tenant_path(name: str, tenants_dir: Path | None = None) -> Path:
    return (tenants_dir or get_settings().tenants_dir) / f"{name}.yaml"


def list_tenants(tenants_dir: Path | None = None) -> list[str]:
    d = tenants_dir or get_settings().tenants_dir
    return sorted(p.stem for p in d.glob("*.yaml"))


def load_tenant(name: str | None = None, tenants_dir: Path | None = None) -> Tenant:
    name = name or get_settings().default_tenant
    path = tenant_path(name, tenants_dir)
    if not path.is_file():
        known = ", ".join(list_tenants(tenants_dir)) or "none"
        raise UserError(f"unknown tenant '{name}' (known: {known})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return Tenant(name=name, **data)
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {e}") from None
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
