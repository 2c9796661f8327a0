"""The turn-taking scorer on hand-built timelines: each known event must be counted exactly once."""

from __future__ import annotations

import numpy as np
import pytest

from agent.bench.turns.score import RATE, AgentMsg, CallObs, Span, aggregate, score_call


def s(t: float) -> int:
    return int(round(t * RATE))


def agent(total: float, *spans: tuple[float, float]) -> np.ndarray:
    a = np.zeros(s(total), np.float32)
    for t0, t1 in spans:
        n = s(t1) - s(t0)
        a[s(t0) : s(t1)] = 0.1 * np.sin(2 * np.pi * 220 * np.arange(n) / RATE)
    return a


def test_false_interruption_by_cough_counts_once() -> None:
    # Reply starts at 2.4 s, a cough at 3.5 s, the agent stops for good at 3.8 s.
    obs = CallObs(
        events=[Span("question", s(1), s(2)), Span("cough", s(3.5), s(3.8)), Span("question", s(8), s(9))],
        agent=agent(12, (2.4, 3.8), (9.4, 11.4)),
        messages=[AgentMsg(s(2.4), True), AgentMsg(s(9.4), False)],
        reply_voiced_s=4.0,
    )
    sc = score_call(obs)
    assert sc.false_interruption == [True]
    assert aggregate([sc])["false_interruption_rate"] == 1.0


def test_pause_then_resume_is_not_a_false_interruption() -> None:
    obs = CallObs(
        events=[
            Span("question", s(1), s(2)),
            Span("backchannel", s(3.5), s(3.9)),
            Span("question", s(8), s(9)),
        ],
        agent=agent(12, (2.4, 4.0), (4.6, 7.0), (9.4, 11.4)),
        messages=[AgentMsg(s(2.4), False), AgentMsg(s(9.4), False)],
        reply_voiced_s=4.0,
    )
    sc = score_call(obs)
    assert sc.false_interruption == [False]
    assert sc.paused == [True]


def test_agent_answering_a_backchannel_is_a_false_interruption() -> None:
    # Never flagged interrupted, but the agent said more than one reply: it took the turn.
    obs = CallObs(
        events=[
            Span("question", s(1), s(2)),
            Span("backchannel", s(3.5), s(3.9)),
            Span("question", s(12), s(13)),
        ],
        agent=agent(14, (2.4, 6.4), (6.8, 10.8)),
        messages=[AgentMsg(s(2.4), False), AgentMsg(s(6.8), False)],
        reply_voiced_s=4.0,
    )
    assert score_call(obs).false_interruption == [True]


def test_premature_cut_in_during_a_hesitation_counts_once() -> None:
    obs = CallObs(
        events=[Span("hesitation", s(1), s(3.0)), Span("question", s(9), s(10))],
        agent=agent(12, (2.0, 2.6), (3.4, 7.4)),
        messages=[AgentMsg(s(2.0), True), AgentMsg(s(3.4), False)],
        reply_voiced_s=4.0,
    )
    sc = score_call(obs)
    assert sc.premature[0] is True and sc.premature_hesitation == [True]
    assert sc.premature[1] is False
    agg = aggregate([sc])
    assert agg["premature_cutin_rate"] == 0.5 and agg["premature_cutin_rate_hesitation"] == 1.0


def test_missed_barge_in_counts_once() -> None:
    # The caller says "stop" at 3.0 s; the agent talks on until 7.0 s.
    obs = CallObs(
        events=[Span("question", s(1), s(2)), Span("bargein", s(3.0), s(3.5))],
        agent=agent(9, (2.4, 7.0)),
        messages=[AgentMsg(s(2.4), False)],
        reply_voiced_s=4.6,
    )
    sc = score_call(obs)
    assert sc.missed_bargein == [True]
    assert sc.reactions == [pytest.approx(4.0, abs=0.03)]
    assert aggregate([sc])["missed_bargein_rate"] == 1.0


def test_barge_in_reaction_and_eou_delay() -> None:
    obs = CallObs(
        events=[Span("question", s(1), s(2)), Span("bargein", s(3.0), s(3.5))],
        agent=agent(9, (2.4, 3.26), (4.0, 5.0)),
        messages=[AgentMsg(s(2.4), True), AgentMsg(s(4.0), False)],
        reply_voiced_s=4.6,
    )
    sc = score_call(obs)
    assert sc.missed_bargein == [False]
    assert sc.reactions == [pytest.approx(0.26, abs=0.021)]  # 20 ms frames
    assert sc.eou_delays == [pytest.approx(0.4, abs=0.021)]
    agg = aggregate([sc])
    assert agg["bargein_reaction_p50"] == pytest.approx(0.26, abs=0.021)
    assert agg["eou_delay_p50"] == pytest.approx(0.4, abs=0.021)
    assert agg["cases"] == 1
