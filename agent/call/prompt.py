"""The agent's instructions: a ≤30-token system prompt plus the tenant's facts, compactly."""

from __future__ import annotations

from core.tenants import Tenant

# Kept under 30 tokens (asserted in tests with the LLM's own tokenizer): every token here is
# paid on every turn of every call, and short prompts keep the local model's TTFT low.
SYSTEM_PROMPT = (
    "You are a phone agent. Reply in one short sentence, only from the facts below. Never invent details."
)


def instructions_for(tenant: Tenant) -> str:
    return f"{SYSTEM_PROMPT}\nFacts: {tenant.facts_block()}"


def menu_announcement(tenant: Tenant) -> str:
    """The keypad menu read out after the greeting ("" without a menu): every choice by key and
    by the word a caller can say instead."""
    if not tenant.menu:
        return ""
    parts = []
    for key, choice in sorted(tenant.menu.items()):
        if choice.strip().lower() == "human":
            parts.append(f"to talk to a person, press {key} or say person")
        else:
            name = choice.replace("_", " ").replace("-", " ")
            parts.append(f"for {name}, press {key} or say {name}")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def greeting_for(tenant: Tenant) -> str:
    """What the agent says when it answers: the tenant's greeting, then its menu if it has one."""
    menu = menu_announcement(tenant)
    return f"{tenant.greeting} {menu}" if menu else tenant.greeting
