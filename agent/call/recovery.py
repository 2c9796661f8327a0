"""Keep the call when the LLM gives up: a short apology instead of dead air.

livekit-agents retries a failed LLM request itself (`APIConnectOptions.max_retry`, default 3,
0.1 s then 2 s apart) and then emits an unrecoverable `error` event on the session; the turn
produces no reply and, after `max_unrecoverable_errors` consecutive ones, the session closes.
`attach_recovery` answers each such final failure with one spoken apology (the agent speaking
also resets the session's consecutive-error count, so the call goes on) and marks the call in
`call_flags` (`error=True`, `llm_failures=n`) so nothing from that turn is cached.

Wire it once per call, after `session.start(...)`: `attach_recovery(session, agent.call_flags)`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.voice.events import ErrorEvent

log = logging.getLogger("callcenter.recovery")

APOLOGY = "I am sorry but I am having trouble right now so please say that again."  # no comma: no pause


class LLMRecovery:
    def __init__(
        self,
        session: AgentSession,
        call_flags: dict[str, Any] | None = None,
        *,
        apology: str = APOLOGY,
        min_gap_s: float = 3.0,
    ) -> None:
        self.session = session
        self.call_flags = call_flags if call_flags is not None else {}
        self.apology = apology
        self.min_gap_s = min_gap_s  # one apology per failure, not one per failed attempt/stream
        self.apologies = 0
        self.failures = 0
        self._last_apology = float("-inf")
        session.on("error", self._on_error)

    def detach(self) -> None:
        self.session.off("error", self._on_error)

    def _on_error(self, ev: ErrorEvent) -> None:
        err = ev.error
        if getattr(err, "type", None) != "llm_error" or getattr(err, "recoverable", True):
            return  # retries in progress, or not an LLM failure
        self.failures += 1
        self.call_flags["error"] = True
        self.call_flags["llm_failures"] = self.failures
        log.warning("LLM failed after retries (%s); apologising", getattr(err, "error", err))
        now = time.monotonic()
        if now - self._last_apology < self.min_gap_s:
            return
        self._last_apology = now
        # speak outside the failing stream's callback
        asyncio.get_running_loop().call_soon(self._say)

    def _say(self) -> None:
        try:
            self.session.say(self.apology, allow_interruptions=True)
        except RuntimeError as e:  # session closing: nothing left to say it to
            log.info("no apology: %s", e)
            return
        self.apologies += 1
        self.call_flags["apologies"] = self.apologies


def attach_recovery(
    session: AgentSession, call_flags: dict[str, Any] | None = None, **kw: Any
) -> LLMRecovery:
    return LLMRecovery(session, call_flags, **kw)
