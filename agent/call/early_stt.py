"""Early STT: transcribe an utterance during the VAD's end-of-speech wait (issue #23 item 1).

livekit's `stt.StreamAdapter` runs a batch STT (whisper) only once its VAD stream reports
END_OF_SPEECH, i.e. after `min_silence_duration` (0.25 s) of silence, so a cache hit waits the
whole whisper pass on top of that silence. `EarlySTTAdapter` is the same adapter (a
`stt.StreamAdapter`: streaming=True, interim_results=False, same VAD, same END_OF_SPEECH event
and `speech_end_time` math) except that it starts the pass as soon as the VAD's speech
probability has stayed below the speech rule for `speculate_after_s`, on the utterance's frames
buffered so far (START_OF_SPEECH's, which hold the prefix padding, plus every INFERENCE_DONE's
while speaking: exactly the frames the VAD hands END_OF_SPEECH, less the trailing silence).

- If a window counts as speech again before END_OF_SPEECH (the VAD's own rule: probability >=
  activation, or > deactivation while speaking, which resets its silence count), the speculation
  is void: its text is never emitted (the pass may still finish; it is counted in `voided`).
- On END_OF_SPEECH the adapter emits END_OF_SPEECH first, then awaits the speculation (if it is
  still valid and covers the same audio but the trailing silence) and emits its FINAL_TRANSCRIPT;
  otherwise it transcribes `event.frames` as livekit does. No final transcript ever precedes its
  END_OF_SPEECH.
- At most one speculation is in flight per stream; a voided pass still running blocks the next.

The speculation runs on the raw engine (`SpeculativeSTT.inner`); the END_OF_SPEECH path still
calls the wrapped STT (e.g. `BackchannelGateSTT(SpeculativeSTT(whisper))`), whose innermost layer
answers from the speculation instead of transcribing again. So the backchannel gate decides at
end of speech as before, its latency (which stretches the resume timer) is the wait the caller
actually has after end of speech, and STT metrics are emitted once per utterance, not per pass.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterable, Callable
from typing import Any

from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils, vad
from livekit.agents.stt.stream_adapter import DEFAULT_STREAM_ADAPTER_API_CONNECT_OPTIONS
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from agent.call.early_end import speech_rule
from agent.providers.whisper_stt import QUICK_VERDICT

SESSION_END_WAIT_S = 0.3  # longest a ready transcript waits for the session's own VAD to end speech
SPECULATE_AFTER_S = 0.064  # two 32 ms VAD windows below the speech rule (docs/turn-taking.md)
WINDOW_S = 0.032  # inference.VAD's window (512 samples at 16 kHz)

# The speculation the END_OF_SPEECH path should answer from (set around one recognize call).
_ANSWER: contextvars.ContextVar[asyncio.Task[stt.SpeechEvent] | None] = contextvars.ContextVar(
    "early_stt_answer", default=None
)


class SpeculativeSTT(stt.STT):
    """A batch STT that answers from a finished speculation when the adapter hands it one."""

    def __init__(self, inner: stt.STT) -> None:
        super().__init__(capabilities=inner.capabilities)
        self.inner = inner
        self.answered = 0  # recognitions answered from a speculation
        self.failed = 0  # speculations that raised: transcribed again instead

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def prewarm(self) -> None:
        self.inner.prewarm()

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        task = _ANSWER.get()
        if task is not None:
            _ANSWER.set(None)  # a retry transcribes
            try:
                ev = await task
                self.answered += 1
                return ev
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the speculation failed: do what livekit would
                self.failed += 1
        return await self.inner.recognize(buffer, language=language, conn_options=conn_options)


class EarlySTTAdapter(stt.StreamAdapter):
    """`stt.StreamAdapter` whose batch pass starts during the VAD's min-silence wait.

    Args:
        stt: the batch STT the END_OF_SPEECH path calls (the gate, or `engine` itself).
        vad: the VAD that cuts utterances (the session's, as livekit's own adapter uses).
        engine: the `SpeculativeSTT` at the bottom of `stt`; speculations run on its `inner`.
        speculate_after_s: silence (below the VAD's speech rule) before a speculation starts.

    Public attributes of the wrapped STT (the gate's `latencies`, `dropped`, ...) read through.
    """

    def __init__(
        self,
        *,
        stt: stt.STT,
        vad: vad.VAD,
        engine: SpeculativeSTT,
        speculate_after_s: float = SPECULATE_AFTER_S,
    ) -> None:
        super().__init__(stt=stt, vad=vad)
        self.engine = engine
        self.speculate_after_s = speculate_after_s
        self.started = 0  # speculative passes started
        self.used = 0  # ... whose transcript was emitted at END_OF_SPEECH
        self.voided = 0  # ... dropped: speech resumed, or the utterance's audio differed
        self.full_passes = 0  # END_OF_SPEECH with no valid speculation: transcribed as livekit does
        self.head_starts: list[float] = []  # speculation start -> END_OF_SPEECH, seconds (used ones)
        # Whether the session's VAD stream has ended the caller's speech too (`create_session`
        # sets it). The adapter's VAD stream is another stream of the same VAD on the same
        # frames and can decide some ms earlier under load; a transcript ready at once then
        # waits for the session's decision (at most SESSION_END_WAIT_S), so no final transcript
        # precedes the session's end of speech either. It costs nothing: the session cannot
        # end the turn before its own VAD does.
        self.speech_ended: Callable[[], bool] = lambda: True
        self.waited_for_session = 0  # transcripts that waited for it
        # Told each speculation's raw text as soon as it is ready (still during the VAD's wait),
        # for work that is harmless when the speculation is voided (CallAgent.on_early_text).
        self.on_early_text: Callable[[str], None] | None = None
        self.on_early_void: Callable[[], None] | None = None  # ... and when speech resumed after it
        self.on_early_start: Callable[[], None] | None = None  # a speculation started (the caller paused)
        # While the agent's reply is in progress, what a speculation asks of the engine for a
        # quick verdict (whisper_stt.QUICK_VERDICT; `create_session` sets it), else None
        self.quick_verdict: Callable[[], Callable[[str], bool] | None] = lambda: None

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("_stt")
        if name.startswith("_") or inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        return _EarlyStream(self, language=language, conn_options=conn_options)


class _Speculation:
    def __init__(self, task: asyncio.Task[stt.SpeechEvent], samples: int) -> None:
        self.task, self.samples, self.at = task, samples, time.perf_counter()
        self.void = False


class _EarlyStream(stt.RecognizeStream):
    def __init__(
        self, adapter: EarlySTTAdapter, *, language: NotGivenOr[str], conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=adapter, conn_options=DEFAULT_STREAM_ADAPTER_API_CONNECT_OPTIONS)
        self._adapter = adapter
        self._language = language
        self._inner_conn_options = conn_options
        self._frames: list[rtc.AudioFrame] = []
        self._samples = 0
        self._silent_s = 0.0
        self._spec: _Speculation | None = None  # the latest speculation of this utterance
        self._in_flight: asyncio.Task[stt.SpeechEvent] | None = None

    async def _metrics_monitor_task(self, event_aiter: AsyncIterable[stt.SpeechEvent]) -> None:
        async for _ in event_aiter:  # as livekit's adapter: the wrapped STT reports its own
            pass

    def _void(self) -> None:
        if self._spec is not None and not self._spec.void:
            self._spec.void = True
            self._adapter.voided += 1
            if self._adapter.on_early_void is not None:
                self._adapter.on_early_void()
        self._spec = None

    def _push(self, frames: list[rtc.AudioFrame]) -> None:
        self._frames.extend(frames)
        self._samples += sum(f.samples_per_channel for f in frames)

    def _on_window(self, ev: vad.VADEvent, rule: Any) -> None:
        """One INFERENCE_DONE while speaking: extend the utterance, void or start a speculation."""
        self._push(ev.frames)
        act = rule.activation_threshold if rule is not None else 0.5
        deact = rule.deactivation_threshold if rule is not None else max(act - 0.15, 0.01)
        if ev.probability >= act or ev.probability > deact:  # the VAD's rule while speaking
            self._silent_s = 0.0
            self._void()
            return
        rate = ev.frames[0].sample_rate if ev.frames else 0
        self._silent_s += sum(f.samples_per_channel for f in ev.frames) / rate if rate else WINDOW_S
        busy = self._in_flight is not None and not self._in_flight.done()
        if self._spec is None and not busy and self._silent_s >= self._adapter.speculate_after_s - 1e-6:
            quick = QUICK_VERDICT.set(self._adapter.quick_verdict())  # the task copies it
            try:
                task = asyncio.create_task(
                    self._adapter.engine.inner.recognize(
                        buffer=utils.merge_frames(list(self._frames)),
                        language=self._language,
                        conn_options=self._inner_conn_options,
                    ),
                    name="early_stt_speculation",
                )
            finally:
                QUICK_VERDICT.reset(quick)
            task.add_done_callback(_swallow)
            self._in_flight = task
            self._spec = spec = _Speculation(task, self._samples)
            self._adapter.started += 1
            if self._adapter.on_early_start is not None:
                self._adapter.on_early_start()
            task.add_done_callback(lambda t: self._tell(spec, t))

    def _tell(self, spec: _Speculation, task: asyncio.Task[stt.SpeechEvent]) -> None:
        """A speculation finished: hand its text on while it still stands (not voided, still
        this utterance's, END_OF_SPEECH not yet reached)."""
        hook = self._adapter.on_early_text
        if hook is None or spec.void or self._spec is not spec or task.cancelled() or task.exception():
            return
        ev = task.result()
        text = ev.alternatives[0].text.strip() if ev.alternatives else ""
        if text:
            hook(text)

    async def _run(self) -> None:
        v = self._adapter._vad
        stt_stream = getattr(v, "stt_stream", None)  # the echo gate's own stream for the STT
        vad_stream = stt_stream() if callable(stt_stream) else v.stream()
        rule = speech_rule(self._adapter._vad)

        async def _forward_input() -> None:
            async for item in self._input_ch:
                if isinstance(item, self._FlushSentinel):
                    vad_stream.flush()
                    continue
                vad_stream.push_frame(item)
            vad_stream.end_input()

        async def _recognize() -> None:
            speaking = False
            async for event in vad_stream:
                if event.type == vad.VADEventType.START_OF_SPEECH:
                    self._void()  # a flush can reset the VAD without an END_OF_SPEECH
                    self._frames, self._samples, self._silent_s = [], 0, 0.0
                    self._push(event.frames)
                    speaking = True
                    self._event_ch.send_nowait(stt.SpeechEvent(stt.SpeechEventType.START_OF_SPEECH))
                elif event.type == vad.VADEventType.INFERENCE_DONE:
                    if speaking and event.speaking:
                        self._on_window(event, rule)
                elif event.type == vad.VADEventType.END_OF_SPEECH:
                    speaking = False
                    speech_end_time = time.time() - event.silence_duration - event.inference_duration
                    self._event_ch.send_nowait(
                        stt.SpeechEvent(
                            type=stt.SpeechEventType.END_OF_SPEECH, speech_end_time=speech_end_time
                        )
                    )
                    total = sum(f.samples_per_channel for f in event.frames)
                    spec, self._spec = self._spec, None
                    if spec is not None and not (spec.samples <= total == self._samples):
                        spec.void = True  # the VAD's buffer is not ours (max_buffered_speech)
                        self._adapter.voided += 1
                        spec = None
                    if spec is not None:
                        self._adapter.used += 1
                        self._adapter.head_starts.append(time.perf_counter() - spec.at)
                    else:
                        self._adapter.full_passes += 1
                    self._frames, self._samples = [], 0
                    token = _ANSWER.set(spec.task if spec is not None else None)
                    try:
                        t_event = await self._adapter._stt.recognize(
                            buffer=utils.merge_frames(event.frames),
                            language=self._language,
                            conn_options=self._inner_conn_options,
                        )
                    finally:
                        _ANSWER.reset(token)
                    if not t_event.alternatives or not t_event.alternatives[0].text:
                        continue
                    if not self._adapter.speech_ended():
                        self._adapter.waited_for_session += 1
                        deadline = time.perf_counter() + SESSION_END_WAIT_S
                        while not self._adapter.speech_ended() and time.perf_counter() < deadline:
                            await asyncio.sleep(0.005)
                    self._event_ch.send_nowait(
                        stt.SpeechEvent(
                            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                            alternatives=[t_event.alternatives[0]],
                            speech_end_time=(
                                t_event.speech_end_time
                                if t_event.speech_end_time is not None
                                else speech_end_time
                            ),
                        )
                    )

        tasks = [
            asyncio.create_task(_forward_input(), name="forward_input"),
            asyncio.create_task(_recognize(), name="recognize"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await utils.aio.cancel_and_wait(*tasks)
            await vad_stream.aclose()


def _swallow(task: asyncio.Task[Any]) -> None:
    """A voided speculation's error is nobody's: read it so asyncio does not log it."""
    if not task.cancelled():
        task.exception()
