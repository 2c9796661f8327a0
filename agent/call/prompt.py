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
