"""The per-turn timeline (`core.call_report.TurnTimeline`): when each stage of a turn happened.

`SessionClock` records the session's own timing events as they happen (VAD end of speech, final
transcripts); `CallAgent`'s `Generation` records the reply's start, the cache
decision, the first LLM token and the first TTS frame. `build_timeline` puts one turn's times together from those, given
the two line times the driver knows; `agent_timelines` does it for the LiveKit worker's turns,
which know no line (see `TurnTimeline.clock`).
"""

from __future__ import annotations

import bisect
import time
from typing import Any, Literal

from livekit.agents import AgentSession, llm

from agent.call.agent import Generation, TurnLog
from core.call_report import TurnMetrics, TurnTimeline

SAME_DECISION_S = 0.02  # a final transcript this close before the VAD's state change: one decision


class SessionClock:
    """The session's timing events on `time.time()`: when the VAD ended speech, when each final
    transcript arrived."""

    def __init__(self) -> None:
        self.vad_ends: list[float] = []  # user state speaking -> listening: the VAD's end of speech
        self.finals: list[float] = []  # final, non-empty transcripts

    def attach(self, session: AgentSession[Any]) -> None:
        session.on("user_state_changed", self._user_state)
        session.on("user_input_transcribed", self._transcribed)

    def _user_state(self, ev: Any) -> None:
        if ev.old_state == "speaking" and ev.new_state != "speaking":
            # now, not ev.created_at: livekit back-dates this event to its estimate of the last
            # speech (by the VAD's min silence, ~0.25 s), but the stage is when the VAD decided.
            # A batch STT's adapter runs its own stream of the same VAD on the same frames, and
            # an instant STT's transcript can be dispatched a few ms before this callback: the
            # VAD had decided by then, so that transcript's time is the decision's.
            now = time.time()
            i = bisect.bisect_left(self.finals, now - SAME_DECISION_S)
            decided = self.finals[i] if i < len(self.finals) and self.finals[i] <= now else now
            bisect.insort(self.vad_ends, decided)

    def _transcribed(self, ev: Any) -> None:
        if ev.is_final and ev.transcript.strip():
            bisect.insort(self.finals, ev.created_at)


def _first(times: list[float], lo: float, hi: float | None) -> float | None:
    """The first of the sorted `times` in [lo, hi] (hi None: no upper bound)."""
    i = bisect.bisect_left(times, lo)
    if i < len(times) and (hi is None or times[i] <= hi):
        return times[i]
    return None


def _last(times: list[float], lo: float, hi: float | None) -> float | None:
    """The last of the sorted `times` in [lo, hi]."""
    i = (len(times) if hi is None else bisect.bisect_right(times, hi)) - 1
    return times[i] if i >= 0 and times[i] >= lo else None


def build_timeline(
    clock: SessionClock,
    gen: Generation | None,
    *,
    caller_last_sample: float | None,
    agent_first_sample: float | None,
    until: float | None = None,
    kind: Literal["line", "agent"] = "line",
) -> TurnTimeline:
    """One turn's timeline.

    Args:
        clock: the call's session events.
        gen: the generation that answered the turn (None: no reply was generated).
        caller_last_sample: when the caller's last speech sample of the turn was on the line.
        agent_first_sample: when the reply's first sample was on the line (None: unanswered).
        until: the latest time an event may belong to this turn when it has no reply (the next
            turn's start); events after the agent's first sample never belong to it.
        kind: where the two line times come from (`TurnTimeline.clock`).

    Returns:
        The timeline; a stage that did not happen in the turn's window is None.
    """
    tl = TurnTimeline(
        caller_last_sample=caller_last_sample, agent_first_sample=agent_first_sample, clock=kind
    )
    if gen is not None:
        tl.reply_started = gen.started_at
        tl.cache_decision = gen.cache_decided_at
        tl.llm_first_token = gen.llm_first_token_at
        tl.tts_first_frame = gen.tts_first_frame_at
    if caller_last_sample is None:
        return tl
    hi = agent_first_sample if agent_first_sample is not None else until
    # The VAD's end of speech follows the caller's last sample (a pause earlier in the turn has
    # its own, before it); the final transcript is the last one before the agent acted on it.
    tl.vad_end = _first(clock.vad_ends, caller_last_sample, hi)
    acted = tl.reply_started if tl.reply_started is not None else hi
    tl.final_transcript = _last(clock.finals, caller_last_sample, acted)
    return tl


def generation_for(turn_log: TurnLog, user_text: str, before: float | None = None) -> Generation | None:
    """The generation that answered `user_text`: the last completed one for it, else the last;
    with `before`, only those started by then (the same question asked again later is another)."""
    if not user_text.strip():
        return None
    matches = [
        g
        for g in turn_log.generations
        if g.user_text.strip() == user_text.strip() and (before is None or g.started_at <= before)
    ]
    done = [g for g in matches if g.completed]
    found = done or matches
    return found[-1] if found else None


def agent_timelines(
    turns: list[TurnMetrics], messages: list[llm.ChatMessage], turn_log: TurnLog, clock: SessionClock
) -> None:
    """Give the worker's turns (one per user message, in order) their timelines, on the agent
    clock: the caller's last sample is the VAD's estimate (`stopped_speaking_at` of the user
    message), the agent's first sample the audio output's playback start (`started_speaking_at`
    of the reply); the phone network's legs are not visible from the worker. A turn that already
    has a timeline, or whose user message does not match it, is left as it is."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    for t, ui in zip(turns, users, strict=False):
        user = messages[ui]
        if t.timeline is not None or (user.text_content or "").strip() != t.user_text.strip():
            continue
        nxt = next((j for j in users if j > ui), len(messages))
        reply = next((m for m in messages[ui + 1 : nxt] if m.role == "assistant"), None)
        caller = (user.metrics or {}).get("stopped_speaking_at")
        agent = (reply.metrics or {}).get("started_speaking_at") if reply is not None else None
        until = messages[nxt].created_at if nxt < len(messages) else None
        t.timeline = build_timeline(
            clock,
            generation_for(turn_log, t.user_text, agent if agent is not None else until),
            caller_last_sample=caller,
            agent_first_sample=agent,
            until=until,
            kind="agent",
        )
