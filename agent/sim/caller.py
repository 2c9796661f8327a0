"""The scripted caller: decides, tick by tick, when to speak the scenario's lines.

It behaves like a polite human on the phone: waits for the greeting, waits for each answer
to finish (or gives up after a while), barges in when the scenario says so.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace

import numpy as np

from agent.sim.audio_io import TICK
from agent.sim.caller_voice import synthesize_caller
from agent.sim.line import LINE_RATE, SPEECH_RMS
from agent.sim.recording import load_caller_recording
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
    gaps: list[tuple[int, int]] = field(default_factory=list)  # mid-sentence pauses (timeline)
    label: str | None = None


@dataclass
class Sound:
    """A non-speech noise the caller made (cough, click, burst): never a turn."""

    kind: str
    start: int  # timeline samples
    end: int
    label: str | None = None


def synthesize_sound(kind: str, seed: int) -> np.ndarray:
    """Procedural caller-side noises at 8 kHz, at speech level so they look like speech to a VAD."""
    rng = np.random.default_rng(seed)
    r = LINE_RATE
    if kind == "cough":  # two short voiced-ish noise bursts with a fast attack and decay
        parts = []
        for dur in (0.14, 0.18):
            n = int(dur * r)
            env = np.exp(-np.linspace(0, 5, n)) * (1 - np.exp(-np.linspace(0, 60, n)))
            x = rng.standard_normal(n) + 0.8 * np.sin(2 * np.pi * 180 * np.arange(n) / r)
            parts += [np.convolve(x, np.ones(3) / 3, "same") * env, np.zeros(int(0.06 * r))]
        out = np.concatenate(parts)
    elif kind == "click":  # handset clicks: a few sharp decaying impulses
        out = np.zeros(int(0.25 * r))
        for t0 in rng.uniform(0, 0.2, 3):
            i = int(t0 * r)
            n = min(len(out) - i, int(0.008 * r))
            out[i : i + n] += rng.standard_normal(n) * np.exp(-np.linspace(0, 6, n)) * 3
    elif kind == "burst":  # rustle / wind on the mouthpiece: half a second of loud noise
        n = int(0.5 * r)
        out = rng.standard_normal(n) * np.hanning(n) ** 0.3
    else:
        raise ValueError(f"unknown sound {kind}")
    rms = float(np.sqrt(np.mean(out[np.abs(out) > 0.01 * np.max(np.abs(out))] ** 2)))
    return np.clip(out * (SPEECH_RMS * 1.2 / rms), -0.99, 0.99).astype(np.float32)


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
        self.sounds: list[Sound] = []
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
        self._cues: list[tuple[int, Utterance]] = []  # (8 kHz offset, fragment) still to announce

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
            while self._cues and self._cues[0][0] <= self._audio_pos:
                _, frag = self._cues.pop(0)
                if self._on_say:  # the next fragment after a hesitation starts being spoken now
                    self._on_say(frag)
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
        start = tick * TICK
        if turn.sound is not None:
            audio = synthesize_sound(turn.sound, seed=self._pos)
            self._audio, self._audio_pos = audio, 0
            self.sounds.append(Sound(turn.sound, start, start + len(audio) * UP, turn.label))
            return
        if turn.play is not None:
            audio = load_caller_recording(turn.play)
            self._audio, self._audio_pos = audio, 0
            text = turn.text or turn.play.name
            u = Utterance(
                len(self.utterances), text, start, start + len(audio) * UP, turn.barge_in_after is not None
            )
            self.utterances.append(u)
            if self._on_say:
                self._on_say(u)
            return
        assert turn.say is not None
        frags = turn.fragments()
        pieces, offsets, gaps = [], [], []
        pos = 0
        for i, frag in enumerate(frags):
            if i:
                pause = np.zeros(int(turn.hesitate_s * LINE_RATE), np.float32)
                gaps.append((start + pos * UP, start + (pos + len(pause)) * UP))
                pieces.append(pause)
                pos += len(pause)
            offsets.append(pos)
            pieces.append(synthesize_caller(frag))
            pos += len(pieces[-1])
        audio = np.concatenate(pieces)
        self._audio, self._audio_pos = audio, 0
        u = Utterance(
            len(self.utterances),
            turn.say,
            start,
            start + len(audio) * UP,
            turn.barge_in_after is not None,
            gaps,
            turn.label,
        )
        self.utterances.append(u)
        # each fragment spans its own audio, so the instant STT knows how long it takes to say
        spans = [(off, off + len(synthesize_caller(f))) for off, f in zip(offsets, frags, strict=True)]
        parts = [
            replace(u, text=f, start=start + a * UP, end=start + b * UP)
            for f, (a, b) in zip(frags, spans, strict=True)
        ]
        self._cues = list(zip(offsets[1:], parts[1:], strict=True))
        if self._on_say:
            self._on_say(parts[0])
