"""Builds the `AgentSession` every call uses (simulator and LiveKit worker alike).

Turn-taking configurations (measured by `callcenter bench turns`, see docs/turn-taking.md):

- "vad" (the shipped default): VAD endpointing + the offline text end-of-utterance rules
  (hybrid), backchannel gate, tuned interruption values.
- "eot": the same tuned values with livekit's local audio end-of-turn model instead.
- "vad-fixed", "vad+eot-audio", "vad+text-eou": the benchmark's reference points, all with the
  values this project used before tuning; they differ only in the end-of-turn detector.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from livekit.agents import AgentSession, SpeechCreatedEvent, UserStateChangedEvent, inference
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.agents.voice.turn import TurnHandlingOptions

from agent.call.early_stt import SPECULATE_AFTER_S, EarlySTTAdapter, SpeculativeSTT
from agent.call.turn_detector import BackchannelGateSTT, EchoGateVAD, TextTurnDetector
from agent.providers import Providers

TurnMode = Literal["vad", "eot", "vad-fixed", "vad+eot-audio", "vad+text-eou"]
SHIPPED: TurnMode = "vad"
BENCH_CONFIGS: dict[str, TurnMode] = {
    "vad-fixed": "vad-fixed",
    "vad+eot-audio": "vad+eot-audio",
    "vad+text-eou": "vad+text-eou",
    "shipped": SHIPPED,
}


@dataclass(frozen=True)
class TurnTuning:
    """The shipped values (why: docs/turn-taking.md). The benchmark sweeps them in-process."""

    vad_min_silence: float = 0.25  # VAD end-of-speech (0.2 stalled local-profile replies, see doc)
    vad_activation: float = 0.5  # silero speech probability threshold
    vad_deactivation: float | None = None  # speech ends below this (None: activation - 0.15)
    min_delay: float = 0.35  # endpointing after a complete-looking transcript (0.25: cut-ins, doc)
    # ... after one the audio end-of-turn model also hears finished (p >= AUDIO_SURE_P, on a line
    # clean enough to ask it); None: min_delay for every complete-looking end. Clean line, 48
    # cases: EOU p50 487 -> 429 ms, premature cut-ins 0 -> 1 of 96 (docs/turn-taking.md)
    sure_delay: float | None = 0.25
    # the line SNR from which the audio model may veto an end (its "sure" needs 16 dB)
    audio_min_snr_db: float = 16.0
    max_delay: float = 1.6  # ... after one hanging on "um", "and", "my", a comma (pauses <= 1.2 s)
    min_interruption: float = 0.15  # speech needed to pause the agent (barge-in reaction)
    false_interruption_timeout: float = 0.3  # silence after which a pause with no words resumes
    # ... but never before a non-streaming STT could have answered: the timer starts when the
    # caller stops, the transcript that proves a real barge-in comes one transcription later
    stt_latency_margin: float = 0.15
    max_false_interruption_timeout: float = 1.5
    echo_gate_dbfs: float | None = -28.0  # double-talk threshold; None disables the echo gate
    gate_always: bool = False  # gate quiet frames while the caller speaks too (noise gate)
    gate_hangover: float = 0.3
    stt_gate_hangover: float | None = None  # the STT's audio gated with this hangover (None: gate_hangover)
    own_vad: bool = True  # build the VAD with the values above instead of the profile's
    backchannel_gate: bool = True
    # ... which also blanks a transcript of the agent's own words heard back (agent/call/echo.py)
    echo_words: bool = True
    # ... and one the STT scored below this (whisper's transcript_confidence; None: off)
    gate_min_confidence: float | None = 0.4
    resume_on_backchannel: bool = True  # a blanked backchannel resumes the paused reply at once
    # a batch STT's pass starts once the VAD hears this much silence, not at its end of speech
    # (agent/call/early_stt.py; measured in docs/turn-taking.md "Early STT")
    early_stt: bool = True
    speculate_after_s: float = SPECULATE_AFTER_S
    # a turn the early words and the audio model both call finished ends then, not at the VAD's
    # end of speech (agent/call/early_commit.py); livekit's min_delay becomes early_delay, the
    # detector holds every other end as before (docs/turn-taking.md "Early commit")
    early_commit: bool = True
    early_delay: float = 0.1


def _baseline(mode: TurnMode) -> TurnHandlingOptions:
    """Pre-tuning values (fixed 0.35 s silence, 0.5 s of speech to interrupt)."""
    opts: TurnHandlingOptions = {
        "endpointing": {"mode": "fixed", "min_delay": 0.35, "max_delay": 2.5},
        "interruption": {
            "enabled": True,
            "mode": "vad",
            "min_duration": 0.5,
            "resume_false_interruption": True,
            "false_interruption_timeout": 1.5,
        },
        "preemptive_generation": {"enabled": True},
    }
    if mode == "vad+eot-audio":
        opts["turn_detection"] = inference.TurnDetector()
    elif mode == "vad+text-eou":
        opts["turn_detection"] = TextTurnDetector()
    else:
        opts["turn_detection"] = "vad"
    return opts


def telephony_turn_handling(mode: TurnMode = "vad", tuning: TurnTuning | None = None) -> TurnHandlingOptions:
    """Turn-taking tuned for 8 kHz phone audio with noise and line echo.

    - endpointing: a short silence when the transcript reads as a finished sentence, the long
      one when it hangs on "um", "and", "to", "my", a comma... (the text EOU decides which).
    - interruption: 0.15 s of speech pauses the agent at once (barge-in reaction), but
      the reply is only cut when a real transcript follows; a cough, click, echo or a pure
      backchannel (blanked by the gate) leaves no transcript, so the agent resumes the same
      sentence after a short silence instead of restarting or going quiet. The resume must come
      within ~0.7 s or the caller takes the silence as the end of the answer, yet not before
      a non-streaming STT has had time to answer (`create_session` stretches it to follow
      the STT's recent speed).
    """
    if mode not in ("vad", "eot"):
        return _baseline(mode)
    t = tuning or TurnTuning()
    sure = t.sure_delay if mode == "vad" and t.sure_delay is not None and t.sure_delay < t.min_delay else None
    if sure is not None and t.early_commit:
        # ends at the VAD's own end of speech (>= vad_min_silence) commit as with `sure`
        sure = min(sure, t.early_delay)
    detector = TextTurnDetector(sure_delay=sure, full_delay=t.min_delay, silence_s=t.vad_min_silence)
    return {
        "turn_detection": inference.TurnDetector() if mode == "eot" else detector,
        # with a sure delay, livekit waits that; the detector holds every other end to min_delay
        "endpointing": {
            "mode": "fixed",
            "min_delay": t.min_delay if sure is None else sure,
            "max_delay": t.max_delay,
        },
        "interruption": {
            "enabled": True,
            "mode": "vad",  # "adaptive" needs LiveKit's hosted model: not available offline
            "min_duration": t.min_interruption,
            "min_words": 0,  # non-streaming STT: words only arrive after the caller stops
            "resume_false_interruption": True,
            "false_interruption_timeout": t.false_interruption_timeout,
        },
        "preemptive_generation": {"enabled": True},
    }


def create_session(
    providers: Providers, *, turn_mode: TurnMode = "vad", tuning: TurnTuning | None = None
) -> AgentSession:
    """The `AgentSession` of one call: the providers' engines behind our turn handling.

    Args:
        providers: the call's STT, LLM, TTS and VAD.
        turn_mode: the shipped "vad", "eot", or one of the benchmark's reference points.
        tuning: turn-taking values (default: the shipped `TurnTuning()`); sweeps pass others.
    """
    tuned, t = turn_mode in ("vad", "eot"), tuning or TurnTuning()
    the_stt, the_vad = providers.stt, providers.vad
    gate: BackchannelGateSTT | None = None
    echo_gate: EchoGateVAD | None = None
    batch = not providers.stt.capabilities.streaming
    # an STT told the words by the simulator (instant profile) reads a script, not the audio:
    # a voided speculation would consume words the final pass needs
    scripted = hasattr(providers.stt, "expect")
    engine = SpeculativeSTT(providers.stt) if tuned and batch and t.early_stt and not scripted else None
    if tuned and t.backchannel_gate and batch:
        scored = getattr(providers.stt, "reports_confidence", False)
        the_stt = gate = BackchannelGateSTT(
            engine or providers.stt,
            echo_check=t.echo_words,
            min_confidence=t.gate_min_confidence if scored else None,
        )
    elif engine is not None:
        the_stt = engine
    if tuned and t.own_vad and isinstance(providers.vad, inference.VAD):
        # Same native silero VAD, shorter end-of-speech silence (see TurnTuning).
        the_vad = (
            inference.VAD(min_silence_duration=t.vad_min_silence, activation_threshold=t.vad_activation)
            if t.vad_deactivation is None
            else inference.VAD(
                min_silence_duration=t.vad_min_silence,
                activation_threshold=t.vad_activation,
                deactivation_threshold=t.vad_deactivation,
            )
        )
    if tuned and t.echo_gate_dbfs is not None:
        the_vad = echo_gate = EchoGateVAD(
            the_vad, t.echo_gate_dbfs, always=t.gate_always, hangover_s=t.gate_hangover
        )
        echo_gate.stt_hangover_s = t.stt_gate_hangover
    if engine is not None:
        # replaces the `stt.StreamAdapter` livekit would wrap the batch STT in, same VAD
        the_stt = EarlySTTAdapter(
            stt=the_stt, vad=the_vad, engine=engine, speculate_after_s=t.speculate_after_s
        )
    session: AgentSession = AgentSession(
        stt=the_stt,
        llm=providers.llm,
        tts=providers.tts,
        vad=the_vad,
        turn_handling=telephony_turn_handling(turn_mode, t),
    )

    # "mid-reply" = a reply exists and was not cut; a paused reply still counts.
    def _speaking() -> bool:
        sp = session.current_speech
        return sp is not None and not sp.interrupted and not sp.done()

    for g in (gate, echo_gate):
        if g is not None:
            g.agent_speaking = _speaking
    if gate is not None:
        the_gate = gate

        def _date_reply_end(handle: SpeechHandle) -> None:
            if not handle.interrupted:
                the_gate.agent_done_at = time.monotonic()

        def _on_speech(ev: SpeechCreatedEvent) -> None:
            ev.speech_handle.add_done_callback(_date_reply_end)

        session.on("speech_created", _on_speech)
    if isinstance(the_stt, EarlySTTAdapter):
        the_stt.speech_ended = lambda: session.user_state != "speaking"
        if gate is not None:
            accept = gate.quick_accept
            the_stt.quick_verdict = lambda: accept if _speaking() else None
    det = session.turn_detection
    if isinstance(det, TextTurnDetector) and det.sure_delay is not None:

        def _date_speech_end(ev: UserStateChangedEvent) -> None:
            if ev.old_state == "speaking" and ev.new_state == "listening":
                det.speech_end_at = time.time()

        session.on("user_state_changed", _date_speech_end)

        def _last_speech() -> float | None:
            # the anchor livekit counts its endpointing delay from (private: pinned livekit-agents;
            # tests/test_line_noise.py fails if it moves, the VAD's end of speech is the fallback)
            rec = getattr(getattr(session, "_activity", None), "_audio_recognition", None)
            t = getattr(rec, "_last_speaking_time", None)
            return t if isinstance(t, float) else None

        det.last_speech = _last_speech
    if gate is not None:
        # Without this, a real barge-in on a slow CPU resumed the old answer for a moment
        # (whisper took 0.75 s, the resume timer 0.3 s), and the caller heard it as the reply.
        def _follow_stt(slowest_recent: float) -> None:
            timeout = min(
                t.max_false_interruption_timeout,
                max(t.false_interruption_timeout, slowest_recent + t.stt_latency_margin),
            )
            session.options.interruption["false_interruption_timeout"] = timeout

        gate.on_latency = _follow_stt
        if t.resume_on_backchannel:
            gate.on_backchannel = lambda: None if resume_paused_reply(session) else None
    return session


VERDICT_WAIT_S = 0.5  # how long a verdict waits for the session's VAD to agree the caller stopped


def resume_paused_reply(session: AgentSession) -> bool:
    """Resume a reply paused by a backchannel now, instead of when the resume timer runs out.

    The timer (`false_interruption_timeout`, stretched to the STT's speed) waits for a transcript
    that could prove a real barge-in. Once the gate has that transcript and it is only "okay", the
    wait is dead air: at 10 dB babble it added 0.3 s to a pause that already lasted as long as the
    VAD's late end of speech, and the caller took the silence as the end of the answer
    (docs/turn-taking.md). livekit has no public "resume now", so this re-arms its own timer at 0
    through the activity (livekit-agents is pinned; tests/test_turn_detector.py fails if this
    private API moves). The STT segments speech with its own VAD stream, which can end a moment
    before the session's: then the resume waits for the session's end of speech, if it comes
    within VERDICT_WAIT_S (later, the caller went on talking and the timer decides as before).
    Returns whether a paused reply is resumed.
    """
    if not _paused(session):
        return False
    if session.user_state != "speaking":
        _resume_if_paused(session)
        return True
    deadline = time.monotonic() + VERDICT_WAIT_S

    def _on_user_state(ev: UserStateChangedEvent) -> None:
        if ev.new_state == "speaking":
            return
        session.off("user_state_changed", _on_user_state)
        if time.monotonic() <= deadline:
            # after livekit's own handler, which arms the full timer right after this event
            asyncio.get_running_loop().call_soon(_resume_if_paused, session)

    session.on("user_state_changed", _on_user_state)
    return True


def _paused(session: AgentSession) -> bool:
    activity = getattr(session, "_activity", None)
    return activity is not None and getattr(activity, "_paused_speech", None) is not None


def _resume_if_paused(session: AgentSession) -> None:
    if _paused(session) and session.user_state != "speaking":
        session._activity._start_false_interruption_timer(0.0)  # type: ignore[union-attr]
