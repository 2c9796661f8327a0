"""The call agent: cache first, LLM on a miss, cached audio played without TTS on a hit.

A caller's turn flows: session (VAD/EOU/STT) -> `llm_node` here (cache lookup, else the
LLM) -> `tts_node` here (cached audio, else the TTS) -> audio output. `TurnLog` records
what each generation did, and when (`Generation`'s `*_at` times, the per-turn timeline of the
call report), so the call report can show it per turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from livekit import rtc
from livekit.agents import Agent, ModelSettings, llm
from livekit.agents.voice.io import TimedString

from agent.call.context import ContextManager
from agent.call.intents import intent_reply, link_phone, normalise
from agent.call.prompt import instructions_for
from agent.call.scope import grounded, is_question, scope_reply_async
from agent.call.scope import prewarm as prewarm_scope
from agent.providers.profiles import primary_voice_token
from cache.embedder import loaded_embedder
from cache.policy import is_self_contained
from core.local_tts import trim_silence
from core.settings import get_settings
from core.tenants import Tenant

if TYPE_CHECKING:
    from agent.call.documents import DocumentDesk
    from cache.semantic import AheadLookup, CacheHit, ResponseCache

log = logging.getLogger("callcenter.agent")
FRAME_MS = 20
LOOKUP_HARD_TIMEOUT_S = 0.5


@dataclass
class Generation:
    """One reply the agent started producing (a turn may have several if interrupted)."""

    user_text: str
    started_at: float
    cache_hit: bool = False
    cache_lookup_ms: float | None = None
    cache_outcome: str | None = None  # hit | miss | bypass
    context_tokens: int | None = None
    used_tool: bool = False
    completed: bool = False
    answer: str = ""
    # When (time.time(), the clock of the session's events): the cache lookup returned (None: no
    # lookup), the LLM's first text arrived (None: no LLM, e.g. a hit), the first audio frame of
    # the reply left tts_node (synthesized, or cached audio on a hit).
    cache_decided_at: float | None = None
    llm_first_token_at: float | None = None
    tts_first_frame_at: float | None = None


@dataclass
class TurnLog:
    generations: list[Generation] = field(default_factory=list)
    cache_bypasses: int = 0
    # complete replies the caller never heard: a preemptive generation for a transcript the
    # caller went on from (livekit drops it), or a reply cut before it was played
    speculations_dropped: int = 0
    # early transcripts (during the VAD's end-of-speech wait) the turn's work was warmed on
    early_warmups: int = 0


def _as_said(text: str) -> str:
    """A reply's words as the chat history keeps them (the streamed chunks' spacing differs)."""
    return " ".join(text.split())


def _message_text(item: llm.ChatItem) -> str:
    return item.text_content or "" if isinstance(item, llm.ChatMessage) else ""


class CallAgent(Agent):
    def __init__(
        self,
        tenant: Tenant,
        *,
        voice: str,
        cache: ResponseCache | None = None,
        turn_log: TurnLog | None = None,
        context: ContextManager | None = None,
        call_flags: dict[str, Any] | None = None,
        documents: DocumentDesk | None = None,
        documents_as_tools: bool = False,
    ) -> None:
        super().__init__(instructions=instructions_for(tenant))
        self.tenant = tenant
        self.voice = voice
        self.check_scope = get_settings().scope_check
        self.cache = cache
        self.turn_log = turn_log or TurnLog()
        self.context = context
        if context is not None:
            context.on_fold = self._prefill
        self.call_flags = call_flags if call_flags is not None else {}
        self.documents, self.documents_as_tools = documents, documents_as_tools
        self._pending_hit: CacheHit | None = None
        # cache hits served in this call by what the caller heard: parents for follow-ups
        self._served: dict[str, CacheHit] = {}
        # the generation whose text the next tts_node speaks (its first frame is timed there)
        self._tts_gen: Generation | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # complete LLM replies waiting to be heard before they are stored (see _on_item)
        self._unheard: list[tuple[str, Generation, list[dict[str, str]]]] = []
        self._listening = False
        self._generating = False  # the LLM is producing a reply of this call
        # the cache lookup made on the latest early transcript: (its words, context length, task)
        self._ahead: tuple[str, int, asyncio.Task[AheadLookup | None]] | None = None
        self._prefill_due = False  # a prefill was asked for meanwhile (see _prefill)
        # every piece of text the agent speaks, as it goes out (the STT gate's echo check)
        self.on_words: Callable[[str], None] = lambda _text: None

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    def _prefill(self, chat_ctx: llm.ChatContext | None = None) -> None:
        """A summary was folded in or old turns pruned between turns: the next prompt's start
        changed, so have a local LLM read it now rather than while the caller waits (remote LLMs
        cache prefixes themselves). While a reply is being generated, wait for its end: the
        engine is busy, and the reply's end may prune again."""
        prefill = getattr(self.session.llm, "prefill", None)
        if prefill is None or self.context is None:
            return
        if self._generating:
            self._prefill_due = True
            return
        self._prefill_due = False
        self._spawn(prefill(self.context.preview(chat_ctx or self.chat_ctx)))

    def on_early_text(self, text: str) -> None:
        """The early STT pass's transcript, ready while the VAD still waits to end the caller's
        speech (agent/call/early_stt.py): start the turn's work that is harmless if the caller
        goes on (issue #23 item 1). The cache is looked up ahead (its counts written only if
        the turn uses the result, `cache/deferred.py`); on a miss a local LLM reads the prompt
        with these words as the caller's message, so the reply's first token only waits for
        itself; the intent step's embedding lands in the embedder's LRU. Nothing is decided,
        said or stored here: `llm_node` takes the lookup only for the same words.

        Skipped while a reply is under way (generated, spoken, or paused by a noise): the
        words may be a barge-in or a backchannel the gate drops, a prompt read then would take
        both cores from the gate's decision to resume the reply (measured: more replies cut by
        coughs), and a prompt without that reply would push it out of the LLM's prompt cache.
        The prefill waits for the lookup: on a hit, two LLM threads on two cores would slow the
        cached audio's start."""
        if self.reply_under_way():
            return
        self.turn_log.early_warmups += 1
        context = self._context_of(self.chat_ctx.items)
        ahead: asyncio.Task[AheadLookup | None] = asyncio.create_task(self._look_ahead(text, context))
        self._ahead = (_as_said(text), len(context), ahead)
        self._spawn(self._warm_for(text, ahead))

    def reply_under_way(self) -> bool:
        """The agent is generating, speaking or holding a paused reply."""
        return (
            self._generating
            or self.session.current_speech is not None
            or (self.session.agent_state == "speaking")
        )

    async def _look_ahead(self, text: str, context: list[dict[str, str]]) -> AheadLookup | None:
        if self.cache is None:
            return None
        shared = loaded_embedder()
        if shared is not None and self.cache.embedder is shared:
            # the cache's and the intent step's embeddings of these words in one pass: the turn
            # may commit at once on them (agent/call/early_commit.py) and then waits for both
            await asyncio.to_thread(shared.warm, [text, normalise(text)])
        return await self.cache.lookup_ahead(
            text,
            tenant=self.tenant.name,
            language=self.tenant.language,
            knowledge_version=self.tenant.knowledge_version,
            context=context,
            voice=self.voice,
            parent=self._parent_hit(context),
        )

    async def _warm_for(self, text: str, ahead: asyncio.Task[AheadLookup | None]) -> None:
        try:
            looked = await ahead
        except Exception:  # noqa: BLE001 - the turn looks up again
            looked = None
        # after the lookup, which embeds these words for the intent step too (`_look_ahead`):
        # then this is an LRU hit, not a second pass racing the batch for the model
        embedder = loaded_embedder()  # the local model the steps share; never loaded for this
        if embedder is not None:
            await asyncio.to_thread(embedder.embed, normalise(text))
        prefill = getattr(self.session.llm, "prefill", None)
        if (looked is None or looked.hit is None) and prefill is not None and self.context is not None:
            ctx = self.chat_ctx.copy()
            ctx.add_message(role="user", content=text)
            await prefill(self.context.preview(ctx))

    async def _lookup(
        self, question: str, context: list[dict[str, str]], parent: CacheHit | None
    ) -> CacheHit | None:
        """The turn's cache decision: the lookup made ahead on the same words if there is one
        (its counts written now), else a lookup of its own."""
        assert self.cache is not None
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == _as_said(question) and ahead[1] == len(context):
            looked = await ahead[2]
            if looked is not None:
                self._spawn(looked.commit())
                return looked.hit
        return await self.cache.lookup(
            question,
            tenant=self.tenant.name,
            language=self.tenant.language,
            knowledge_version=self.tenant.knowledge_version,
            context=context,
            voice=self.voice,
            parent=parent,
        )

    @staticmethod
    def _context_of(items: list[llm.ChatItem]) -> list[dict[str, str]]:
        """The conversation so far as the cache reads it (user and assistant messages)."""
        msgs = [i for i in items if isinstance(i, llm.ChatMessage) and i.role in ("user", "assistant")]
        return [{"role": i.role, "text": _message_text(i)} for i in msgs]

    def prefill_prompt(self, greeting: str | None = None) -> None:
        """Have a local LLM read this call's prompt (instructions, tenant facts) now, at call
        start, while the greeting plays: the first turn then reads only the caller's words.

        Args:
            greeting: the words being said, not yet in the chat history (it is added once
                played): read as the agent's message after the prompt, where turn 0 finds it.
        """
        if greeting is None:
            self._prefill()
            return
        ctx = self.chat_ctx.copy()
        ctx.add_message(role="assistant", content=greeting)
        self._prefill(ctx)

    async def drain(self) -> None:
        """Wait for cache writes still in flight (call end)."""
        self._drop_unheard(len(self._unheard))
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _on_item(self, ev: Any) -> None:
        """A reply entered the chat history: it was played. Only now is an LLM answer stored.
        With preemptive generation the LLM answers each final transcript before the turn is
        committed; when the caller goes on, livekit drops that reply unheard, and storing it
        would cache an answer to half a question."""
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role != "assistant" or not self._unheard:
            return
        said = _as_said(item.text_content or "")
        for k, (question, gen, context) in enumerate(self._unheard):
            if _as_said(gen.answer) == said:
                self._drop_unheard(k)  # replies started before the one heard were never played
                self._unheard.pop(0)
                if self.cache is not None and not item.interrupted:
                    self._spawn(self._store(question, gen, context))
                return

    def _drop_unheard(self, n: int) -> None:
        for question, _gen, _ctx in self._unheard[:n]:
            self.turn_log.speculations_dropped += 1
            phone = link_phone(self.session)
            if phone is not None:
                phone.record("speculation_dropped", user_text=question)
        del self._unheard[:n]

    async def on_enter(self) -> None:
        link_phone(self.session)  # transfer summaries get the caller's facts from the first key press
        if not self._listening:  # on_enter runs again when a transfer task hands the call back
            self._listening = True
            self.session.on("conversation_item_added", self._on_item)
        self._spawn(asyncio.to_thread(prewarm_scope, self.tenant))  # the scope index, off the loop
        if self.documents is not None:  # the desk speaks finished job results through the session
            self.documents.attach(self.session)
            if self.documents_as_tools:  # cloud profile: gpt-4o-mini calls the fast tools itself
                await self.update_tools([*self.tools, *self.documents.function_tools()])

    # ---- LLM stage -------------------------------------------------------------------------
    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterator[llm.ChatChunk | str]:
        items = [
            i for i in chat_ctx.items if isinstance(i, llm.ChatMessage) and i.role in ("user", "assistant")
        ]
        question = _message_text(items[-1]) if items and items[-1].role == "user" else ""
        context = [{"role": i.role, "text": _message_text(i)} for i in items[:-1]]
        gen = Generation(user_text=question, started_at=time.time())
        self.turn_log.generations.append(gen)
        self._pending_hit = None
        # The framework starts this reply's TTS on its first text, so after this line; a say()
        # (greeting, idle prompt) calls tts_node without llm_node and finds None.
        self._tts_gen = gen

        # Caller intents first (a person, goodbye, repeat, ...): their words replace an answer.
        phone = link_phone(self.session) if question else None
        if phone is not None:
            confidence = items[-1].transcript_confidence
            reply = await intent_reply(phone, question, confidence)
            if reply is not None:
                gen.used_tool = True  # an action's words: never looked up in nor stored into the cache
                gen.answer, gen.completed = reply, True
                yield reply
                return

        if self.documents is not None and question:
            doc = await self.documents.handle(question)
            if doc is not None:
                gen.used_tool = True  # a tool result: never looked up in nor stored into the cache
                gen.answer, gen.completed = doc.text, True
                yield doc.text
                return

        parent = self._parent_hit(context)
        if self.cache is not None and question:
            t0 = time.perf_counter()
            try:
                # The cache enforces its own budget; this outer bound also covers a cold start.
                hit = await asyncio.wait_for(
                    self._lookup(question, context, parent), timeout=LOOKUP_HARD_TIMEOUT_S
                )
            except TimeoutError:
                hit = None
                self.turn_log.cache_bypasses += 1
                gen.cache_outcome = "bypass"
            gen.cache_lookup_ms = (time.perf_counter() - t0) * 1000
            gen.cache_decided_at = time.time()
            gen.cache_outcome = gen.cache_outcome or ("hit" if hit is not None else "miss")
            if hit is not None:
                gen.cache_hit = True
                gen.answer = hit.answer
                gen.completed = True
                self._pending_hit = hit
                self._served[_as_said(hit.answer)] = hit  # a parent for the next turn
                yield hit.answer
                return

        # Not in the tenant's facts or FAQ: say so and offer a person instead of letting the model
        # invent an answer. Only for a question that stands on its own (a follow-up's topic is in
        # the context, which the step does not read) and when the LLM has no tools (a tool-calling
        # model acts on requests the step would refuse: "search the documents", "transfer me").
        if (
            self.check_scope
            and question
            and not tools
            and is_question(question)
            and is_self_contained(question)
        ):
            refusal = await scope_reply_async(question, self.tenant)  # the cache's shared embedder
            if refusal is not None:
                gen.used_tool = True  # fixed words: never looked up in nor stored into the cache
                gen.answer, gen.completed = refusal, True
                yield refusal
                return

        parts: list[str] = []
        llm_ctx = self.context.prepare(chat_ctx) if self.context is not None else chat_ctx
        self._generating = True
        try:
            async for chunk in self._generate(llm_ctx, tools, model_settings, gen, parts):
                yield chunk
        finally:
            self._generating = False
            if not parts and self._tts_gen is gen:  # nothing to speak: no tts_node will take it
                self._tts_gen = None
            if self.context is not None and (self.context.prune_ahead(chat_ctx) or self._prefill_due):
                self._prefill(chat_ctx)
        gen.answer = "".join(parts).strip()
        gen.completed = True  # reached only when not interrupted (generator not closed early)
        if question and gen.answer:
            self._unheard.append((question, gen, context))  # stored once heard (_on_item)

    async def _generate(
        self,
        llm_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
        gen: Generation,
        parts: list[str],
    ) -> AsyncIterator[llm.ChatChunk | str]:
        async for chunk in Agent.default.llm_node(self, llm_ctx, tools, model_settings):
            if isinstance(chunk, llm.ChatChunk):
                if chunk.usage is not None:
                    gen.context_tokens = chunk.usage.prompt_tokens
                if chunk.delta is not None:
                    if chunk.delta.tool_calls:
                        gen.used_tool = True
                    if chunk.delta.content:
                        parts.append(chunk.delta.content)
            elif isinstance(chunk, str):
                parts.append(chunk)
            else:  # the framework's flush marker: nothing to say or store
                continue
            if gen.llm_first_token_at is None and parts:
                gen.llm_first_token_at = time.time()
            yield chunk

    def _parent_hit(self, context: list[dict[str, str]]) -> CacheHit | None:
        """The cache hit that was the agent's previous turn, word for word as the chat history has
        it (not interrupted, nothing said since): a follow-up is keyed on it (cache/followups.py)."""
        if not context or context[-1]["role"] != "assistant":
            return None
        return self._served.get(_as_said(context[-1]["text"]))

    async def _store(self, question: str, gen: Generation, context: list[dict[str, str]]) -> None:
        assert self.cache is not None
        if not grounded(gen.answer, self.tenant):  # spoken already (streamed), but never replayed
            log.info("answer not stored: not grounded in tenant %s's facts", self.tenant.name)
            return
        await self.cache.store(
            question,
            gen.answer,
            tenant=self.tenant.name,
            language=self.tenant.language,
            knowledge_version=self.tenant.knowledge_version,
            context=context,
            used_tool=gen.used_tool or bool(self.call_flags.get("used_tool")),
            call_error=bool(self.call_flags.get("error")),
            # no caller can poison another's answers: nothing from a call where the caller tried
            # to steer the agent, nothing the tenant's own knowledge does not support
            steered=bool(self.call_flags.get("steered")),
            facts=knowledge_text(self.tenant),
            # a dependent question right after a hit: stored as that entry's follow-up
            parent=self._parent_hit(context),
        )

    # ---- TTS stage -------------------------------------------------------------------------
    async def transcription_node(
        self, text: AsyncIterable[str | TimedString], model_settings: ModelSettings
    ) -> AsyncIterator[str | TimedString]:
        # replies, cached answers and say() alike pass here: the words the caller's line may echo
        async for delta in Agent.default.transcription_node(self, text, model_settings):
            self.on_words(str(delta))
            yield delta

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterator[rtc.AudioFrame]:
        hit, self._pending_hit = self._pending_hit, None
        # only a reply's first segment is timed: later segments of it find None
        gen, self._tts_gen = self._tts_gen, None
        if hit is not None and hit.audio and hit.audio_sample_rate:
            async for _ in text:  # the text is already in the chat context; drain it
                pass
            for frame in pcm_frames(hit.audio, hit.audio_sample_rate):
                if gen is not None and gen.tts_first_frame_at is None:
                    gen.tts_first_frame_at = time.time()
                yield frame
            return

        captured: list[bytes] = []
        sample_rate = 0
        # self.voice names the primary voice: audio a fallback TTS spoke must not be kept under it
        voice_token = primary_voice_token(self.session.tts) if hit is not None else None
        async for frame in Agent.default.tts_node(self, text, model_settings):
            if gen is not None and gen.tts_first_frame_at is None:
                gen.tts_first_frame_at = time.time()
            if hit is not None:
                captured.append(bytes(frame.data))
                sample_rate = frame.sample_rate
            yield frame
        primary_spoke = voice_token is not None and primary_voice_token(self.session.tts) == voice_token
        if hit is not None and captured and self.cache is not None and primary_spoke:
            # First hit on an entry without audio: keep what we just synthesized.
            self._spawn(self.cache.attach_audio(hit.id, b"".join(captured), sample_rate, self.voice))


def knowledge_text(tenant: Tenant) -> str:
    """Everything the tenant says about itself (facts and FAQ answers): what a stored answer
    must be consistent with."""
    return " ".join([tenant.facts_block(), *(f.answer for f in tenant.faq)])


def pcm_frames(pcm16: bytes, sample_rate: int) -> list[rtc.AudioFrame]:
    # Entries stored before synthesis trimmed its pads (or by another voice) start with dead air.
    samples = trim_silence(np.frombuffer(pcm16, dtype=np.int16), sample_rate)
    step = sample_rate * FRAME_MS // 1000
    return [
        rtc.AudioFrame(
            data=samples[i : i + step].tobytes(),
            sample_rate=sample_rate,
            num_channels=1,
            samples_per_channel=len(samples[i : i + step]),
        )
        for i in range(0, len(samples), step)
    ]
