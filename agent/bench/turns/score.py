"""Scoring a call's audio timeline against the corpus' ground truth (pure; tests build inputs by hand).

All positions are timeline samples at 16 kHz. "Agent voice" = |sample| > 0.01 on the agent's
clean output, the same threshold the simulator uses for voice-to-voice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np

RATE = 16000
VOICE = 0.01
FRAME = RATE // 50  # 20 ms
MISSED_AFTER_S = 1.0  # agent still talking 1 s after a real barge-in started = missed
STOP_QUIET_S = 0.3  # the agent "stopped" once it stays silent this long
LENGTH_TOLERANCE_S = 0.6  # reply voiced length off by more than this = cut short or said twice
PAUSE_S = 0.4


@dataclass
class Span:
    label: str  # question | hesitation | backchannel | cough | click | burst | bargein
    start: int
    end: int


@dataclass
class AgentMsg:
    start: int  # when it started playing (timeline)
    interrupted: bool


@dataclass
class CallObs:
    events: list[Span]  # caller utterances and sounds, in time order
    agent: np.ndarray  # agent clean output on the timeline
    messages: list[AgentMsg]  # assistant messages (greeting and replies)
    reply_voiced_s: float  # voiced length of the full reply, measured the same way


@dataclass
class CaseScore:
    premature: list[bool] = field(default_factory=list)  # one per question / hesitation
    premature_hesitation: list[bool] = field(default_factory=list)
    eou_delays: list[float] = field(default_factory=list)  # complete questions, not cut in on
    eou_delays_hesitation: list[float] = field(default_factory=list)
    false_interruption: list[bool] = field(default_factory=list)  # one per reply at risk
    paused: list[bool] = field(default_factory=list)  # reply paused and resumed (not counted above)
    missed_bargein: list[bool] = field(default_factory=list)
    reactions: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def voiced_frames(agent: np.ndarray) -> np.ndarray:
    n = len(agent) // FRAME
    if n == 0:
        return np.zeros(0, bool)
    return np.abs(agent[: n * FRAME]).reshape(n, FRAME).max(axis=1) > VOICE


def voiced_seconds(agent: np.ndarray, start: int, end: int) -> float:
    return float(voiced_frames(agent[start:end]).sum()) * FRAME / RATE


def onset_after(agent: np.ndarray, start: int, end: int | None, gap_s: float = 0.1) -> int | None:
    """First agent onset in [start, end) preceded by >= gap_s of silence (a reply beginning)."""
    v = voiced_frames(agent)
    gap = max(1, int(gap_s * 50))
    f0, f1 = start // FRAME, len(v) if end is None else min(len(v), end // FRAME)
    for f in range(f0, f1):
        if v[f] and not v[max(0, f - gap) : f].any():
            return f * FRAME
    return None


def stop_after(agent: np.ndarray, start: int, quiet_s: float = STOP_QUIET_S) -> int | None:
    """First position >= start from which the agent stays silent for quiet_s (None: never)."""
    v = voiced_frames(agent)
    q = int(quiet_s * 50)
    f = start // FRAME
    while f + q <= len(v):
        if not v[f : f + q].any():
            return f * FRAME
        f += 1
    return None


def longest_gap(agent: np.ndarray, start: int, end: int) -> float:
    v = voiced_frames(agent[start:end])
    idx = np.flatnonzero(v)
    if len(idx) < 2:
        return 0.0
    return float(np.max(np.diff(idx)) - 1) * FRAME / RATE


def _msg_at(msgs: list[AgentMsg], pos: int) -> AgentMsg | None:
    before = [m for m in msgs if m.start <= pos]
    return before[-1] if before else None


def score_call(obs: CallObs) -> CaseScore:
    s = CaseScore()
    ev = obs.events
    for k, e in enumerate(ev):
        nxt = ev[k + 1].start if k + 1 < len(ev) else None
        if e.label in ("question", "hesitation"):
            # Cut-in: a reply starts while the caller is still mid-utterance (pauses included).
            cut = onset_after(obs.agent, e.start + FRAME, e.end) is not None
            s.premature.append(cut)
            if e.label == "hesitation":
                s.premature_hesitation.append(cut)
            if cut:
                s.notes.append(f"cut-in during the {e.label} at {e.start / RATE:.2f}-{e.end / RATE:.2f}s")
            if not cut:
                on = onset_after(obs.agent, e.end, nxt)
                if on is not None:
                    (s.eou_delays if e.label == "question" else s.eou_delays_hesitation).append(
                        (on - e.end) / RATE
                    )
            # The reply to this question is at risk of a false interruption unless the next
            # caller event is a real barge-in.
            if nxt is None or ev[k + 1].label == "bargein":
                continue
            on = onset_after(obs.agent, e.end, None)
            if on is None:
                s.notes.append(f"no reply to {e.label} at {e.end / RATE:.2f}s")
                continue
            end = next(
                (x.start for x in ev[k + 1 :] if x.label in ("question", "hesitation", "bargein")), None
            )
            end = len(obs.agent) if end is None else end
            said = voiced_seconds(obs.agent, on, end)
            msg = _msg_at(obs.messages, nxt)
            cut_short = msg is not None and msg.interrupted
            wrong_len = abs(said - obs.reply_voiced_s) > LENGTH_TOLERANCE_S
            s.false_interruption.append(cut_short or wrong_len)
            s.paused.append(longest_gap(obs.agent, on, end) >= PAUSE_S)
            if cut_short or wrong_len:
                s.notes.append(
                    f"false interruption by {ev[k + 1].label}: said {said:.2f}s "
                    f"of {obs.reply_voiced_s:.2f}s, interrupted={cut_short}"
                )
        elif e.label == "bargein":
            stop = stop_after(obs.agent, e.start)
            reaction = None if stop is None else (stop - e.start) / RATE
            msg = _msg_at(obs.messages, e.start)
            was_talking = voiced_seconds(obs.agent, max(0, e.start - RATE // 2), e.start) > 0
            if not was_talking:
                s.notes.append("barge-in while the agent was silent: not scored")
                continue
            missed = (
                reaction is None or reaction > MISSED_AFTER_S or (msg is not None and not msg.interrupted)
            )
            s.missed_bargein.append(missed)
            if missed:
                s.notes.append(
                    f"missed barge-in at {e.start / RATE:.2f}s: agent stopped after "
                    f"{'never' if reaction is None else f'{reaction:.2f}s'}, "
                    f"reply marked interrupted={msg is not None and msg.interrupted}"
                )
            if reaction is not None:
                s.reactions.append(reaction)
    return s


def _rate(xs: list[bool]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _p50(xs: list[float]) -> float | None:
    return round(median(xs), 3) if xs else None


def aggregate(scores: list[CaseScore]) -> dict[str, Any]:
    def cat(attr: str) -> list:
        return [x for s in scores for x in getattr(s, attr)]

    return {
        "false_interruption_rate": _rate(cat("false_interruption")),
        "premature_cutin_rate": _rate(cat("premature")),
        "missed_bargein_rate": _rate(cat("missed_bargein")),
        "bargein_reaction_p50": _p50(cat("reactions")),
        "eou_delay_p50": _p50(cat("eou_delays")),
        "cases": len(scores),
        "premature_cutin_rate_hesitation": _rate(cat("premature_hesitation")),
        "eou_delay_p50_hesitation": _p50(cat("eou_delays_hesitation")),
        "pause_resume_rate": _rate(cat("paused")),
        "opportunities": {
            "questions": len(cat("premature")),
            "replies_at_risk": len(cat("false_interruption")),
            "bargeins": len(cat("missed_bargein")),
        },
    }
