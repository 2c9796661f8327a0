"""The scripted caller: decides, tick by tick, when to speak the scenario's lines.

It behaves like a polite human on the phone: waits for the greeting, waits for each answer
to finish (or gives up after a while), barges in when the scenario says so.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from agent.sim.audio_io import TICK
from agent.sim.caller_voice import synthesize_caller
from agent.sim.scenario import Scenario, Turn

TICKS_PER_S = 50
IDLE_TICKS = 35  # agent silent this long (0.7 s) = its answer is over
ANSWER_TIMEOUT_TICKS = 20 * TICKS_PER_S  # caller stops waiting for an answer after 20 s
GREETING_TIMEOUT_TICKS = 10 * TICKS_PER_S
UP = 2  # timeline (16 kHz) samples per line (8 kHz) sample


@dataclass
class Utterance:
    index: int
    text: str
    start: int  # timeline samples
    end: int  # last caller speech sample (exact: the synthesized audio is trimmed)
    barge_in: bool = False


@dataclass
class AgentActivity:
    """What the caller can perceive of the agent: when it last made sound."""

    voiced_ticks: list[int] = field(default_factory=list)

    def observe(self, tick: int, frame: np.ndarray) -> None:
        if float(np.max(np.abs(frame))) > 0.01:
            self.voiced_ticks.append(tick)

    def last_voice(self) -> int | None:
        return self.voiced_ticks[-1] if self.voiced_ticks else None

    def voiced_since(self, tick: int) -> int | None:
        """First tick at or after `tick` on which the agent made sound."""
        i = bisect.bisect_left(self.voiced_ticks, tick)
        return self.voiced_ticks[i] if i < len(self.voiced_ticks) else None


class ScriptedCaller:
    def __init__(self, scenario: Scenario, on_dtmf=None, on_say=None) -> None:
        self.turns: list[Turn] = list(scenario.turns)
        self.utterances: list[Utterance] = []
        self.activity = AgentActivity()
        self.done = False
        self.hangup_tick: int | None = None
        self._on_dtmf = on_dtmf
        self._on_say = on_say
        self._pos = 0  # next turn index
        self._audio: np.ndarray | None = None  # current utterance (8 kHz)
        self._audio_pos = 0
        self._wait_from = 0  # tick the current wait started
        self._pause_until: int | None = None
        self._greeted = False

    @property
    def speaking(self) -> bool:
        return self._audio is not None

    def _last_end_tick(self) -> int:
        return (self.utterances[-1].end // TICK) if self.utterances else 0

    def _agent_idle(self, tick: int) -> bool:
        last = self.activity.last_voice()
        return last is None or tick - last >= IDLE_TICKS

    def _answered_and_idle(self, tick: int) -> bool:
        since = self._last_end_tick()
        answered = self.activity.voiced_since(since) is not None
        if answered and self._agent_idle(tick):
            return True
        return tick - max(since, self._wait_from) >= ANSWER_TIMEOUT_TICKS and self._agent_idle(tick)

    def _greeting_over(self, tick: int) -> bool:
        if self.activity.last_voice() is not None and self._agent_idle(tick):
            return True
        return tick >= GREETING_TIMEOUT_TICKS

    def next_frame(self, tick: int) -> np.ndarray:
        """Clean caller audio (8 kHz) for this tick; advances the script."""
        n = TICK // UP
        if self._audio is None and not self.done:
            self._advance(tick)
        out = np.zeros(n, dtype=np.float32)
        if self._audio is not None:
            chunk = self._audio[self._audio_pos : self._audio_pos + n]
            out[: len(chunk)] = chunk
            self._audio_pos += n
            if self._audio_pos >= len(self._audio):
                self._audio = None
        return out

    def _advance(self, tick: int) -> None:
        if not self._greeted:
            if not self._greeting_over(tick):
                return
            self._greeted = True
            self._wait_from = tick
        if self._pause_until is not None:
            if tick < self._pause_until:
                return
            self._pause_until = None
        if self._pos >= len(self.turns):
            if self._answered_and_idle(tick):
                self.done = True
                self.hangup_tick = tick
            return
        turn = self.turns[self._pos]
        if turn.pause is not None:
            self._pos += 1
            self._pause_until = tick + int(turn.pause * TICKS_PER_S)
            return
        if turn.barge_in_after is not None:
            onset = self.activity.voiced_since(self._last_end_tick())
            timed_out = tick - max(self._last_end_tick(), self._wait_from) >= ANSWER_TIMEOUT_TICKS
            if not timed_out and (onset is None or tick - onset < int(turn.barge_in_after * TICKS_PER_S)):
                return
        elif self.utterances and not self._answered_and_idle(tick):
            return
        elif not self.utterances and not self._agent_idle(tick):
            return
        self._pos += 1
        self._wait_from = tick
        if turn.dtmf is not None:
            if self._on_dtmf:
                self._on_dtmf(turn.dtmf, tick)
            return
        assert turn.say is not None
        audio = synthesize_caller(turn.say)
        self._audio, self._audio_pos = audio, 0
        start = tick * TICK
        u = Utterance(
            len(self.utterances), turn.say, start, start + len(audio) * UP, turn.barge_in_after is not None
        )
        self.utterances.append(u)
        if self._on_say:
            self._on_say(u)
