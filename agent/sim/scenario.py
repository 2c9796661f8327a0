"""Scenario files (stable format; tooling outside the project writes them too).

tenant: acme
line: {codec: pcmu, snr_db: 20, noise: babble, packet_loss: 0.0, seed: 1}
turns:
  - say: "Hi, what are your opening hours?"
  - pause: 1.5
  - say: "Do you deliver on Sundays?"
    barge_in_after: 0.8
  - sound: cough               # a non-speech noise from the caller's side (cough|click|burst)
    barge_in_after: 1.0
  - say: "I'd like to, um, change my address"
    hesitate_after: 4          # pause after the 4th word ...
    hesitate_s: 0.8            # ... for 0.8 s, mid-sentence
  - play: recordings/caller.wav  # a recorded caller (path relative to this file; any rate)
    text: "Is my order on its way?"  # what it says (optional: for reports and the instant STT)

Expectations (judged by `callcenter eval`, ignored by `callcenter call`; all optional):

  - say: "When do you open on Saturday?"
    expect: {contains: ["8"], not_contains: [closed], contains_any: [morning, "8am"],
             cache: hit, event: transfer, interrupted: false, max_voice_to_voice: 1.0}
  - dtmf: "0"
    expect: {event: transfer}    # a keypad turn takes `event` only
expect: {hangup: caller, events: [dtmf], events_absent: [transfer], max_turns_unanswered: 0}
quick: true                      # part of `callcenter eval --quick`
cache: warm                      # eval only: warm (tenant FAQ stored) | cold (empty cache)
human: {outcome: no-answer, ring_s: 3}   # the simulated human of a warm transfer (default: answers after 2 s)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import UserError

NoiseType = Literal["none", "white", "babble", "street"]
SoundType = Literal["cough", "click", "burst"]


class LineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    codec: Literal["pcmu", "pcma", "linear"] = "pcmu"
    snr_db: float | None = Field(default=None, ge=-5, le=60)
    noise: NoiseType = "none"
    packet_loss: float = Field(default=0.0, ge=0.0, le=0.5)
    seed: int = 1
    echo_db: float | None = Field(default=None, ge=-60, le=0, description="agent echo level into the uplink")
    echo_delay_ms: float = Field(default=120.0, ge=0, le=1000)


EVENT_TYPE = r"^[a-z][a-z0-9_]*$"


def _text_list(v: Any) -> Any:
    """One phrase or a list of phrases; YAML numbers (`[8]`) count as their digits."""
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        v = [v]
    if isinstance(v, list):
        out = []
        for x in v:
            if isinstance(x, int) and not isinstance(x, bool):
                x = str(x)
            if isinstance(x, str) and not x.strip():
                raise ValueError("phrases must not be empty")
            out.append(x)
        return out
    return v


class TurnExpect(BaseModel):
    """What must hold for one caller line (`callcenter eval`); every key is optional."""

    model_config = ConfigDict(extra="forbid")
    contains: list[str] | None = Field(default=None, min_length=1, description="all in the reply")
    not_contains: list[str] | None = Field(default=None, min_length=1, description="none in the reply")
    contains_any: list[str] | None = Field(default=None, min_length=1, description="one in the reply")
    cache: Literal["hit", "miss", "any"] | None = None
    event: str | None = Field(default=None, pattern=EVENT_TYPE, max_length=40, description="follows the turn")
    interrupted: bool | None = None
    max_voice_to_voice: float | None = Field(default=None, gt=0, le=600, description="seconds")

    @field_validator("contains", "not_contains", "contains_any", mode="before")
    @classmethod
    def _phrases(cls, v: Any) -> Any:
        return _text_list(v)

    def keys(self) -> list[str]:
        """The expectations that are set, in the order they are checked."""
        return [k for k in type(self).model_fields if getattr(self, k) is not None]


class CallExpect(BaseModel):
    """What must hold for the whole call (`callcenter eval`); every key is optional."""

    model_config = ConfigDict(extra="forbid")
    hangup: Literal["caller", "agent"] | None = Field(default=None, description="who ended the call")
    events: list[str] | None = Field(default=None, min_length=1, description="event types that occur")
    events_absent: list[str] | None = Field(default=None, min_length=1, description="event types that don't")
    max_turns_unanswered: int | None = Field(default=None, ge=0)

    @field_validator("events", "events_absent", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("events", "events_absent")
    @classmethod
    def _event_types(cls, v: list[str] | None) -> list[str] | None:
        for x in v or []:
            if not re.match(EVENT_TYPE, x) or len(x) > 40:
                raise ValueError(f"'{x}' is not an event type (lowercase letters, digits, _)")
        return v

    def keys(self) -> list[str]:
        """The expectations that are set, in the order they are checked."""
        return [k for k in type(self).model_fields if getattr(self, k) is not None]


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    say: str | None = None
    play: Path | None = Field(default=None, description="recorded caller audio, relative to the scenario")
    text: str | None = Field(default=None, max_length=2000, description="what a play turn says")
    pause: float | None = Field(default=None, ge=0, le=600)
    barge_in_after: float | None = Field(default=None, ge=0, le=60)
    dtmf: str | None = Field(default=None, pattern=r"^[0-9*#]+$")
    sound: SoundType | None = None
    hesitate_after: int | None = Field(default=None, ge=1, le=100, description="words before a pause")
    hesitate_s: float = Field(default=0.8, ge=0.05, le=5.0)
    label: str | None = Field(default=None, max_length=40, description="benchmark ground truth tag")
    expect: TurnExpect | None = None

    @model_validator(mode="after")
    def one_action(self) -> Turn:
        actions = [a for a in ("say", "play", "pause", "dtmf", "sound") if getattr(self, a) is not None]
        if len(actions) != 1:
            raise ValueError("each turn needs exactly one of: say, play, pause, dtmf, sound")
        if self.text is not None and self.play is None:
            raise ValueError("text only applies to a play turn")
        if self.say is not None and not self.say.strip():
            raise ValueError("say must not be empty")
        if self.barge_in_after is not None and self.say is None and self.sound is None and self.play is None:
            raise ValueError("barge_in_after only applies to a say, play or sound turn")
        if self.hesitate_after is not None:
            if self.say is None:
                raise ValueError("hesitate_after only applies to a say turn")
            if self.hesitate_after >= len(self.say.split()):
                raise ValueError("hesitate_after must leave words after the pause")
        if self.expect is not None and self.say is None and self.play is None:
            if self.dtmf is None:
                raise ValueError("expect only applies to a say, play or dtmf turn")
            extra = [k for k in self.expect.keys() if k != "event"]
            if extra:
                raise ValueError(f"expect.{extra[0]} does not apply to a dtmf turn (only expect.event)")
        return self

    @property
    def spoken(self) -> bool:
        """A line the caller speaks (say/play): one row of the call report's turns."""
        return self.say is not None or self.play is not None

    def fragments(self) -> list[str]:
        """The spoken pieces of a say turn: two when the caller hesitates mid-sentence."""
        assert self.say is not None
        if self.hesitate_after is None:
            return [self.say]
        words = self.say.split()
        return [" ".join(words[: self.hesitate_after]), " ".join(words[self.hesitate_after :])]


class HumanLeg(BaseModel):
    """The simulated human a warm transfer calls (tenants with a `warm_transfer` block)."""

    model_config = ConfigDict(extra="forbid")
    outcome: Literal["completed", "busy", "no-answer", "rejected"] = "completed"
    ring_s: float = Field(default=2.0, ge=0, le=60, description="rings this long before the outcome")


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str | None = None
    line: LineConfig = Field(default_factory=LineConfig)
    human: HumanLeg | None = None
    turns: list[Turn] = Field(min_length=1)
    name: str = "scenario"
    expect: CallExpect | None = None
    quick: bool = Field(default=False, description="part of `callcenter eval --quick`")
    cache: Literal["warm", "cold"] = Field(
        default="warm", description="eval only: a private cache with the tenant's FAQ, or empty"
    )


def _loc(err: Any) -> str:
    out = ""
    for p in err["loc"]:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def load_scenario(path: Path) -> Scenario:
    if not path.is_file():
        raise UserError(f"scenario not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a scenario is a mapping with 'turns'")
    data.setdefault("name", path.stem)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise UserError(f"{path}: {_loc(err)}: {msg}") from None
    for i, turn in enumerate(scenario.turns):
        if turn.play is not None:
            from agent.sim.recording import load_caller_recording  # scipy: only for recorded callers

            turn.play = (path.parent / turn.play).resolve()
            try:
                load_caller_recording(turn.play)  # fail now, not mid-call
            except UserError as e:
                raise UserError(f"{path}: turns[{i}].play: {e}") from None
    return scenario
