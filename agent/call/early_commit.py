"""Confidence-aware commit (issue #23 item 2): a turn both the words and the voice call finished
ends as soon as both are known, not after the VAD's whole end-of-speech silence.

The early STT pass has the caller's words ~0.1-0.2 s into the VAD's 0.25 s end-of-speech wait
(agent/call/early_stt.py), and the audio end-of-turn model hears the turn once 0.1 s of
silence follows the last sound (EARLY_SILENCE_S). When the transcript reads
complete (ends a sentence or a question, `utterance_complete_probability` >= COMPLETE_P), the
line is clean enough for the model's "finished" to count (>= 16 dB), and the model hears a
finished turn (p >= AUDIO_SURE_P), the echo gate ends the caller's speech on its VAD streams at
once (agent/call/early_end.py). livekit then commits the turn as it would at the VAD's own end
of speech, ~0.1-0.2 s sooner. Anything less sure waits the VAD as before, and so does every
turn heard while a reply is under way (a barge-in or a backchannel, decided by the STT gate).

If the caller goes on after an early end, the VAD stream reports the new speech as a new
START_OF_SPEECH: livekit treats it as a caller talking over the reply just started (the same as
a premature end by the VAD itself), which the turn benchmark counts as a premature cut-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from livekit.agents import AgentSession

from agent.call.turn_detector import (
    AUDIO_SURE_P,
    COMPLETE_P,
    AudioOpinion,
    EchoGateVAD,
    utterance_complete_probability,
)

# the silence after the last sound before the audio model is asked: it heard the turn corpus's
# questions and fragments about as well after 0.1 s as after its usual 0.2 s
# (docs/turn-taking.md "Early commit"), and each 0.1 s is a tenth of a second off every turn
EARLY_SILENCE_S = 0.1
AUDIO_WAIT_S = 0.3  # how long the early words wait for the silence the audio model needs
POLL_S = 0.02  # one VAD window and a bit: how often that silence is looked for


class EarlyCommit:
    """Ends a finished-sounding turn on the early transcript (see the module docstring).

    Args:
        session: the call's session (its user state says whether the VAD still hears speech).
        gate: the echo gate in front of the session's and the STT's VAD streams.
        opinion: the audio end-of-turn model's view of the current turn.
        reply_under_way: whether an agent reply is generated, spoken or paused.
    """

    def __init__(
        self,
        session: AgentSession,
        gate: EchoGateVAD,
        opinion: AudioOpinion,
        reply_under_way: Callable[[], bool],
    ) -> None:
        self.session, self.gate, self.opinion = session, gate, opinion
        self.reply_under_way = reply_under_way
        self.commits = 0  # turns ended early
        self._task: asyncio.Task[None] | None = None
        self._listen: asyncio.Task[bool] | None = None

    def on_start(self) -> None:
        """The caller paused (the early STT pass starts): have the audio model hear the turn as
        soon as the silence it needs is there, beside the STT pass instead of after it."""
        self.on_void()
        if self.reply_under_way() or not self.opinion.sure_allowed():
            return
        self._listen = asyncio.create_task(self._hear(), name="early_commit_hear")

    def on_text(self, text: str) -> None:
        """The early STT pass has these words (the VAD still hears the caller's speech)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.reply_under_way() or utterance_complete_probability(text) < COMPLETE_P:
            return
        if not self.opinion.sure_allowed():
            return
        self._task = asyncio.create_task(self._decide(), name="early_commit")

    def on_void(self) -> None:
        """The caller spoke again after the pause: nothing to end."""
        for task in (self._task, self._listen):
            if task is not None and not task.done():
                task.cancel()
        self._task = self._listen = None

    def _still_speaking(self) -> bool:
        return self.session.user_state == "speaking" and not self.reply_under_way()

    async def _hear(self) -> bool:
        """Start the audio model once EARLY_SILENCE_S follows the caller's last sound; whether
        it started (not if the VAD ended the speech first or the silence never came)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + AUDIO_WAIT_S
        while not self.opinion.hear_ahead(EARLY_SILENCE_S):
            if not self._still_speaking() or loop.time() > deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True

    async def _decide(self) -> None:
        listen = self._listen
        heard = await listen if listen is not None else await self._hear()
        p = await self.opinion.ahead_probability() if heard else None
        if p is None or p < AUDIO_SURE_P or not self._still_speaking():
            return
        if self.gate.end_now():
            self.commits += 1
