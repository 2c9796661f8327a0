"""A VAD stream that can end the caller's speech before its own silence rule does (issue #23 item 2).

The VAD ends speech after `min_silence_duration` (0.25 s) below its speech rule, and its
probability only drops ~0.1 s after the caller's last sound: a turn whose words and voice both
read finished (the early transcript ends a question, the audio end-of-turn model hears a
finished one) still waited ~0.35-0.42 s of silence to commit. `EndableVADStream` wraps one
stream of the inner VAD and forwards its events unchanged until `end_now()` is called; then:

- it reports END_OF_SPEECH at once, with the utterance's frames so far (START_OF_SPEECH's plus
  every INFERENCE_DONE's while speaking: what the inner VAD would hand over, less the rest of
  its silence) and the silence heard so far, so livekit dates the caller's last speech right;
- until the inner VAD ends that speech itself, its windows are reported as silence (speaking
  False, no speech duration: livekit would otherwise take the tail of the old speech for a
  barge-in on the reply it just started), and its own END_OF_SPEECH is swallowed;
- if the caller goes on before that (the VAD's own rule for `min_speech_duration`), it reports
  a new START_OF_SPEECH with the windows since the early end as its prefix, then that speech's
  windows, and the inner END_OF_SPEECH carries only the new speech's frames and duration.

So every consumer (livekit's audio recognition, the early STT adapter) sees one consistent
sequence of utterances, as if the VAD's silence had been shorter for that one turn.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from livekit import rtc
from livekit.agents import utils, vad

PREFIX_S = 0.5  # the most audio a resumed speech keeps from before its start (silero's prefix padding)


def _merged(frames: list[rtc.AudioFrame]) -> list[rtc.AudioFrame]:
    return [utils.merge_frames(frames)] if frames else []


def speech_rule(v: vad.VAD) -> Any:
    """The VAD's options object (activation/deactivation thresholds), through wrappers."""
    for _ in range(5):
        opts = getattr(v, "_opts", None)
        if opts is not None and hasattr(opts, "activation_threshold"):
            return opts
        inner = getattr(v, "inner", None)
        if not isinstance(inner, vad.VAD):
            break
        v = inner
    return None


class EndableVADStream(vad.VADStream):
    """One stream of `inner_stream`'s VAD whose current speech `end_now()` can end early.

    Args:
        owner: the VAD this stream belongs to (the echo gate).
        inner: the inner VAD's stream; frames pushed here go to it.
        rule: the inner VAD's options (activation / deactivation thresholds,
            min_speech_duration), or None for silero's defaults.
    """

    def __init__(self, owner: vad.VAD, inner: vad.VADStream, rule: Any) -> None:
        self._inner = inner
        self._act = float(getattr(rule, "activation_threshold", 0.5))
        self._deact = float(getattr(rule, "deactivation_threshold", max(self._act - 0.15, 0.01)))
        self._min_speech = float(getattr(rule, "min_speech_duration", 0.05))
        self.speaking = False  # as reported downstream
        self.ended_early = False  # reported END_OF_SPEECH; the inner VAD still hears speech
        self._frames: list[rtc.AudioFrame] = []  # the reported utterance's audio
        self._since_end: list[rtc.AudioFrame] = []  # windows after an early end (a resumption's prefix)
        self._speech_s = 0.0  # reported speech duration (resumed speech)
        self._resume_s = 0.0  # consecutive speech-rule windows after an early end
        self._silence_s = 0.0  # the inner VAD's silence below its speech rule, last window
        self._last: vad.VADEvent | None = None
        self.early_silences: list[float] = []  # the silence at each early end (VAD rule, s)
        self.resumed = 0  # early ends the caller spoke on after, before the VAD ended the speech
        super().__init__(owner)

    # input goes straight to the inner stream (the echo gate patched its push_frame)
    def push_frame(self, frame: rtc.AudioFrame) -> None:
        self._inner.push_frame(frame)

    def flush(self) -> None:
        self._inner.flush()

    def end_input(self) -> None:
        self._inner.end_input()

    async def aclose(self) -> None:
        await self._inner.aclose()
        await super().aclose()

    async def _metrics_monitor_task(self, event_aiter: Any) -> None:
        async for _ in event_aiter:  # the inner stream reports its own metrics
            pass

    def end_now(self) -> bool:
        """End the current speech now. Returns False when there is none to end (not speaking,
        or already ended early and not resumed since)."""
        if not self.speaking or self.ended_early:
            return False
        last = self._last
        speech = last.speech_duration if last is not None else 0.0
        self._send(
            vad.VADEvent(
                type=vad.VADEventType.END_OF_SPEECH,
                samples_index=last.samples_index if last is not None else 0,
                timestamp=last.timestamp if last is not None else 0.0,
                silence_duration=self._silence_s,
                speech_duration=max(0.0, speech - self._silence_s),
                frames=_merged(self._frames),
                speaking=False,
            )
        )
        self.speaking, self.ended_early = False, True
        self.early_silences.append(self._silence_s)
        self._frames, self._since_end, self._resume_s = [], [], 0.0
        return True

    def _send(self, ev: vad.VADEvent) -> None:
        if not self._event_ch.closed:
            self._event_ch.send_nowait(ev)

    async def _main_task(self) -> None:
        async for ev in self._inner:
            self._on_event(ev)

    def _on_event(self, ev: vad.VADEvent) -> None:
        T = vad.VADEventType
        if ev.type == T.INFERENCE_DONE:
            self._last = ev
            self._silence_s = ev.raw_accumulated_silence
        if not self.ended_early:
            if ev.type == T.START_OF_SPEECH:
                self.speaking, self._frames = True, list(ev.frames)
            elif ev.type == T.INFERENCE_DONE and ev.speaking and self.speaking:
                self._frames.extend(ev.frames)
            elif ev.type == T.END_OF_SPEECH:
                self.speaking, self._frames = False, []
            self._send(ev)
            return
        # after an early end, until the inner VAD's own END_OF_SPEECH
        if ev.type == T.END_OF_SPEECH:
            if self.speaking:  # the resumed speech ends: only its own audio
                self._send(
                    dataclasses.replace(
                        ev,
                        frames=_merged(self._frames),
                        speech_duration=max(0.0, self._speech_s - ev.silence_duration),
                    )
                )
            self.speaking = self.ended_early = False
            self._frames, self._since_end = [], []
            return
        if ev.type != T.INFERENCE_DONE:
            return
        window = utils.audio.calculate_audio_duration(ev.frames)
        if self.speaking:
            self._frames.extend(ev.frames)
            self._speech_s += window
        else:
            self._since_end.extend(ev.frames)
            while (
                len(self._since_end) > 1
                and utils.audio.calculate_audio_duration(self._since_end[1:]) >= PREFIX_S
            ):
                self._since_end.pop(0)
            voiced = ev.probability >= self._act or ev.probability > self._deact
            self._resume_s = self._resume_s + window if voiced else 0.0
        self._send(
            dataclasses.replace(
                ev,
                speaking=self.speaking,
                speech_duration=self._speech_s if self.speaking else 0.0,
                silence_duration=0.0 if self.speaking else ev.raw_accumulated_silence,
            )
        )
        if not self.speaking and self._resume_s >= self._min_speech - 1e-6:
            # as the inner VAD does: the window's INFERENCE_DONE (not speaking yet), then
            # START_OF_SPEECH holding it and the windows before it
            self.speaking, self._speech_s = True, self._resume_s
            self.resumed += 1
            self._frames = _merged(self._since_end)
            self._send(
                vad.VADEvent(
                    type=T.START_OF_SPEECH,
                    samples_index=ev.samples_index,
                    timestamp=ev.timestamp,
                    silence_duration=0.0,
                    speech_duration=self._speech_s,
                    frames=list(self._frames),
                    speaking=True,
                )
            )
