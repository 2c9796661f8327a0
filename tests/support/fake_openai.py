"""A small OpenAI-compatible HTTP server for tests, so the real `livekit-plugins-openai` code runs.

Speaks the real wire protocol for:
- `POST /v1/chat/completions` — streaming (SSE `data: {chat.completion.chunk}` lines, a final usage
  chunk when `stream_options.include_usage`, `data: [DONE]`) and non-streaming;
- `POST /v1/audio/transcriptions` — multipart upload, transcribed with the real local whisper
  model (`agent.providers.whisper_stt.load_whisper()`), so transcripts are real, not canned;
- `POST /v1/embeddings` — real sentence vectors (the local all-MiniLM-L6-v2) spread by a fixed
  signed permutation over `EMBED_DIM` (1536, text-embedding-3-small's size) dimensions: cosines are
  MiniLM's, the vectors and their dimension are not; `encoding_format` float or base64;
- `GET /v1/models`.

A chat request with `response_format: {"type": "json_object"}` whose prompt asks for paraphrases
(cache/paraphrase.py) gets `{"paraphrases": [...], "negatives": [...]}`: the authored phrasings in
`PARAPHRASES` for acme's FAQ questions, else templated ones, as many as the prompt asks for.

Chat answers are deterministic from the last user message (keyword lookup in `FAQ`, else
`DEFAULT_ANSWER`). Every request is recorded (`FakeOpenAI.requests`) for assertions. Fault modes
for chat completions can be changed at runtime with `FakeOpenAI.configure(...)`:

- `mode="error"`: HTTP `status` (default 500) with an OpenAI-style JSON error body;
- `mode="rate_limit"`: HTTP 429 with `Retry-After: retry_after`;
- `mode="hang"`: accept the request and send nothing for `hang_s` seconds;
- `mode="break"`: stream `break_after` content chunks, then drop the connection;
- `fail_times=N`: only the first N chat requests (counted from `configure`) fail, then answers
  are normal again; `None` means every request fails while the mode is set.

Transcriptions have their own, independent fault settings (chat faults never touch them):

- `stt_status=500` (or any status): answer with that HTTP status and an OpenAI-style error body;
- `stt_drop=True`: read the upload, then drop the TCP connection without an answer;
- `stt_fail_times=N`: only the first N transcriptions fail; `None`: all of them.

Use from tests: `with running_fake_openai(mode="error", fail_times=1) as fake: fake.base_url`
(a background thread runs the server, so it works from sync and async tests alike). Standalone:
`python -m tests.support.fake_openai --port 8911 [--mode error --fail-times 2]`
(`--first-chunk-delay 0.4 --stt-latency 0.1`: a provider's latencies, for `scripts/bench-cloud-overhead`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aiohttp import web

from tests.support.fake_server import ThreadedServer

Mode = Literal["ok", "error", "rate_limit", "hang", "break"]

# keyword (regex on the lower-cased question) -> answer; first match wins
# The answers agree with tenants/acme.yaml's facts: an answer the facts do not support is never
# stored in the cache (cache.policy / agent.call.scope.grounded).
FAQ: list[tuple[str, str]] = [
    (r"\b(hours?|open|close)", "We are open from eight to six, Monday to Saturday."),
    (r"\b(where|address|located|store)\b", "The store is at 12 Main Street in Springfield."),
    (r"\bdeliver", "Yes, delivery is free over 50 dollars, Monday to Saturday."),
    (r"\b(bye|thanks|thank you)\b", "You're welcome, goodbye!"),
]
DEFAULT_ANSWER = "I can help with opening hours, our address and deliveries."

# FAQ question (normalised) -> (paraphrases, near-miss negatives), for `cache warm --paraphrase`
PARAPHRASES: dict[str, tuple[list[str], list[str]]] = {
    "what are your opening hours": (
        [
            "Till when can I come by today?",
            "Are you guys around on a Saturday morning?",
            "What time do you open up in the morning?",
            "How late do you stay open?",
        ],
        ["Are you open on Christmas Day?", "What time does the pharmacy next door open?"],
    ),
    "where is the store": (
        ["How do I find your shop?", "Which street are you on?", "Where exactly are you located?"],
        ["Where is my order?", "Where can I park?"],
    ),
    "do you deliver": (
        ["Can you bring it to my house?", "Is home delivery an option?", "Do you ship stuff out to people?"],
        ["Do you deliver on Sundays?", "Can I pick it up instead?"],
    ),
    "what is your return policy": (
        ["Can I bring something back?", "How do returns work?", "What if I need to return an item?"],
        ["Can I return it without a receipt?", "What is your price match policy?"],
    ),
}
EMBED_DIM = 1536


def paraphrase_reply(prompt: str) -> str:
    """The JSON a cloud LLM would give for cache/paraphrase.py's prompt (deterministic)."""
    m = re.search(r"FAQ question: (.+)", prompt)
    question = m.group(1).strip() if m else ""
    n_m = re.search(r"Write (\d+) different ways", prompt)
    n = int(n_m.group(1)) if n_m else 3
    key = " ".join(question.lower().split()).strip(" ?.!")
    paras, negs = PARAPHRASES.get(key, ([], []))
    base = question.rstrip("?.! ")
    if not paras:
        low = base[:1].lower() + base[1:]
        paras = [f"Could you tell me {low}?", f"I was wondering, {low}?", f"Quick question: {low}?"]
        negs = [f"{base} on Christmas Day?"]
    return json.dumps({"paraphrases": [paras[i % len(paras)] for i in range(n)], "negatives": negs})


def answer_for(question: str) -> str:
    q = question.lower()
    for pattern, answer in FAQ:
        if re.search(pattern, q):
            return answer
    return DEFAULT_ANSWER


@dataclass
class Behaviour:
    mode: Mode = "ok"
    fail_times: int | None = None  # None: every chat request fails while mode != "ok"
    status: int = 500  # for mode="error"
    retry_after: float = 1.0  # for mode="rate_limit"
    hang_s: float = 120.0  # for mode="hang"
    break_after: int = 2  # for mode="break": content chunks sent before the connection drops
    chunk_delay_s: float = 0.0  # pause between streamed chunks
    first_chunk_delay_s: float = 0.0  # pause before the first chunk (simulated TTFT)
    only_if: str | None = None  # regex on the last user message: fault only those requests
    stt_status: int | None = None  # transcriptions answer this HTTP status (None: transcribe)
    stt_drop: bool = False  # transcriptions: drop the connection without an answer
    stt_fail_times: int | None = None  # only the first N transcriptions fail; None: all
    stt_latency_s: float = 0.0  # answer a transcription no sooner than this after its upload


@dataclass
class RecordedRequest:
    path: str
    at: float  # time.monotonic() when received
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # "ok", "error 500", "rate_limit", "hang", "break", "transcribed", "drop"
    answer: str = ""  # full answer the server meant to give (chat) or the transcript

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def auth(self) -> str | None:
        return self.headers.get("Authorization")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return _text_of(m.get("content"))
    return ""


def _count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


class FakeOpenAI(ThreadedServer):
    name = "fake OpenAI"
    client_max_size = 64 * 1024 * 1024

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None) -> None:
        super().__init__(host, port)
        self.api_key = api_key  # when set, other bearer tokens get a 401
        self.behaviour = Behaviour()
        self.requests: list[RecordedRequest] = []
        self._failures = 0
        self._stt_failures = 0

    # ---- control (any thread) ------------------------------------------------------------

    def configure(self, **behaviour: Any) -> None:
        """Replace the behaviour (unknown keys raise) and restart the failure counts."""
        with self._lock:
            self.behaviour = replace(Behaviour(), **behaviour)
            self._failures = 0
            self._stt_failures = 0

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def transcription_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/audio/transcriptions")]

    def answers(self) -> list[str]:
        """Answers fully delivered to a client."""
        return [r.answer for r in self.chat_requests() if r.outcome == "ok"]

    # ---- routes --------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/_fake/stats", self._stats)

    def embedding_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/embeddings")]

    # ---- helpers -------------------------------------------------------------------------
    def _record(self, request: web.Request, body: dict[str, Any]) -> RecordedRequest:
        rec = RecordedRequest(
            path=request.path, at=time.monotonic(), headers=dict(request.headers), body=body
        )
        with self._lock:
            self.requests.append(rec)
        return rec

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or (self.api_key and auth != f"Bearer {self.api_key}"):
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    def _fault(self, question: str) -> Behaviour | None:
        """The behaviour to apply to this chat request, or None to answer normally."""
        with self._lock:
            b = self.behaviour
            if b.mode == "ok":
                return None
            if b.only_if is not None and not re.search(b.only_if, question, re.IGNORECASE):
                return None
            if b.fail_times is not None and self._failures >= b.fail_times:
                return None
            self._failures += 1
            return b

    def _stt_fault(self) -> Behaviour | None:
        """The behaviour to apply to this transcription, or None to transcribe normally."""
        with self._lock:
            b = self.behaviour
            if b.stt_status is None and not b.stt_drop:
                return None
            if b.stt_fail_times is not None and self._stt_failures >= b.stt_fail_times:
                return None
            self._stt_failures += 1
            return b

    # ---- handlers ------------------------------------------------------------------------
    async def _stats(self, request: web.Request) -> web.Response:
        """Not OpenAI's: how long each transcription took here (a bench checks that the fake's
        own whisper stayed inside the latency it was told to answer with)."""
        times = [r.body["server_s"] for r in self.transcription_requests() if "server_s" in r.body]
        return web.json_response({"stt_server_s": times})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "fake"}]}
        )

    async def _json_request(
        self, request: web.Request
    ) -> tuple[RecordedRequest, dict[str, Any]] | web.Response:
        """The recorded request and its JSON body, or the error answer (bad JSON: 400, key: 401)."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._record(request, {}).outcome = "error 400"
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        rec = self._record(request, body)
        if (denied := self._unauthorized(request)) is not None:
            rec.outcome = "error 401"
            return denied
        return rec, body

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if isinstance(got := await self._json_request(request), web.Response):
            return got
        rec, body = got
        messages = body.get("messages")
        if not isinstance(messages, list) or not body.get("model"):
            rec.outcome = "error 400"
            return _error(400, "'model' and 'messages' are required.", "invalid_request_error")

        question = _last_user_text(messages)
        wants_json = (body.get("response_format") or {}).get("type") == "json_object"
        answer = (
            paraphrase_reply(question) if wants_json and "paraphrases" in question else answer_for(question)
        )
        rec.answer = answer
        fault = self._fault(question)
        if fault is not None and fault.mode == "error":
            rec.outcome = f"error {fault.status}"
            return _error(
                fault.status, "The server had an error while processing your request.", "server_error"
            )
        if fault is not None and fault.mode == "rate_limit":
            rec.outcome = "rate_limit"
            resp = _error(429, "Rate limit reached for gpt-4o-mini.", "requests", "rate_limit_exceeded")
            resp.headers["Retry-After"] = f"{fault.retry_after:g}"
            resp.headers["x-ratelimit-reset-requests"] = f"{fault.retry_after:g}s"
            return resp
        if fault is not None and fault.mode == "hang":
            rec.outcome = "hang"
            assert self._stop is not None
            try:
                await asyncio.wait_for(self._stop.wait(), fault.hang_s)
            except TimeoutError:
                pass
            return _error(504, "Gateway timeout.", "server_error")

        b = self.behaviour
        prompt_tokens = sum(_count_tokens(_text_of(m.get("content"))) for m in messages)
        completion_tokens = _count_tokens(answer)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model = body["model"]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if not body.get("stream"):
            rec.outcome = "ok"
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": "fp_fake",
                }
            )

        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "x-request-id": cid},
        )
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        pieces = re.findall(r"\S+\s*", answer)
        if b.first_chunk_delay_s:
            await asyncio.sleep(b.first_chunk_delay_s)
        await resp.write(chunk({"role": "assistant", "content": "", "refusal": None}))
        for i, piece in enumerate(pieces):
            if fault is not None and fault.mode == "break" and i >= fault.break_after:
                rec.outcome = "break"
                # drop the TCP connection mid-body: the client sees an incomplete chunked response
                if request.transport is not None:
                    request.transport.abort()
                return resp
            if b.chunk_delay_s:
                await asyncio.sleep(b.chunk_delay_s)
            await resp.write(chunk({"content": piece}))
        await resp.write(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(
                f"data: {json.dumps({'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': model, 'choices': [], 'usage': usage})}\n\n".encode()  # noqa: E501
            )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        rec.outcome = "ok"
        return resp

    async def _embeddings(self, request: web.Request) -> web.Response:
        if isinstance(got := await self._json_request(request), web.Response):
            return got
        rec, body = got
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not body.get("model") or not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            rec.outcome = "error 400"
            return _error(
                400,
                "'model' and 'input' (a string or a list of strings) are required.",
                "invalid_request_error",
            )
        fault = self._fault(" ".join(texts))  # chat fault settings apply (mode "error" only)
        if fault is not None and fault.mode == "error":
            rec.outcome = f"error {fault.status}"
            return _error(
                fault.status, "The server had an error while processing your request.", "server_error"
            )
        vecs = await asyncio.to_thread(_embed, texts)
        b64 = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if b64 else v.tolist()}
            for i, v in enumerate(vecs)
        ]  # fmt: skip
        rec.outcome = "ok"
        tokens = sum(_count_tokens(t) for t in texts)
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"],
             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        )  # fmt: skip

    async def _transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        rec = self._record(request, dict(fields))
        if (denied := self._unauthorized(request)) is not None:
            rec.outcome = "error 401"
            return denied
        upload = form.get("file")
        if upload is None or isinstance(upload, str) or not fields.get("model"):
            rec.outcome = "error 400"
            return _error(400, "'file' and 'model' are required.", "invalid_request_error")
        audio = upload.file.read()
        received = time.monotonic()
        rec.body["file_bytes"] = len(audio)
        if (fault := self._stt_fault()) is not None:
            if fault.stt_drop:
                rec.outcome = "drop"
                if request.transport is not None:
                    request.transport.abort()  # the client sees the connection reset, no answer
                return web.Response(status=500)  # never reaches the client
            assert fault.stt_status is not None
            rec.outcome = f"error {fault.stt_status}"
            return _error(
                fault.stt_status, "The server had an error while processing your request.", "server_error"
            )
        try:
            text, duration = await asyncio.to_thread(_whisper, audio, fields.get("language") or "en")
        except Exception as e:  # noqa: BLE001 - a bad upload is the client's error
            rec.outcome = "error 400"
            return _error(400, f"Invalid file format: {e}", "invalid_request_error")
        rec.outcome, rec.answer = "transcribed", text
        # a provider's recorded latency (bench overhead): whisper's own time counts toward it
        if (wait := self.behaviour.stt_latency_s - (time.monotonic() - received)) > 0:
            await asyncio.sleep(wait)
        rec.body["server_s"] = round(time.monotonic() - received, 4)
        fmt = fields.get("response_format", "json")
        if fmt == "text":
            return web.Response(text=text, content_type="text/plain")
        if fmt == "verbose_json":
            return web.json_response(
                {
                    "task": "transcribe",
                    "language": "english",
                    "duration": duration,
                    "text": text,
                    "segments": [],
                }
            )
        return web.json_response({"text": text, "usage": {"type": "duration", "seconds": round(duration)}})


def _silence_wav() -> bytes:
    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, np.float32), 16000, format="WAV")
    return buf.getvalue()


def _whisper(audio: bytes, language: str) -> tuple[str, float]:
    import numpy as np
    import soundfile as sf
    import soxr

    from agent.providers.whisper_stt import load_whisper

    pcm, rate = sf.read(io.BytesIO(audio), dtype="float32", always_2d=True)
    mono = pcm.mean(axis=1)
    if rate != 16000:
        mono = soxr.resample(mono, rate, 16000)
    model = load_whisper()
    segments, _ = model.transcribe(
        np.ascontiguousarray(mono, dtype=np.float32),
        language=language.split("-")[0],
        beam_size=1,
        vad_filter=False,
        condition_on_previous_text=False,
    )
    return " ".join(s.text.strip() for s in segments).strip(), len(mono) / 16000


_SPREAD: Any = None


def _embed(texts: list[str]) -> Any:
    """MiniLM vectors spread over EMBED_DIM dimensions: each of the 384 goes, sign-flipped at
    random, to its own fixed position (an isometry: cosines kept; cheaper than a dense rotation)."""
    import numpy as np

    from cache.embedder import get_embedder

    global _SPREAD
    if _SPREAD is None:
        rng = np.random.default_rng(20)
        _SPREAD = (rng.permutation(EMBED_DIM)[:384], rng.choice([-1.0, 1.0], 384).astype(np.float32))
    pos, sign = _SPREAD
    v = get_embedder().encode(texts)
    out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
    out[:, pos] = v * sign
    return out


def _error(status: int, message: str, type_: str, code: str | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}, status=status
    )


running_fake_openai = FakeOpenAI.running


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8911)
    p.add_argument("--api-key", default=None)
    p.add_argument("--mode", default="ok", choices=["ok", "error", "rate_limit", "hang", "break"])
    p.add_argument("--fail-times", type=int, default=None)
    p.add_argument("--status", type=int, default=500)
    p.add_argument("--retry-after", type=float, default=1.0)
    p.add_argument("--hang-s", type=float, default=120.0)
    p.add_argument("--break-after", type=int, default=2)
    p.add_argument("--stt-status", type=int, default=None, help="transcriptions answer this status")
    p.add_argument("--stt-drop", action="store_true", help="transcriptions drop the connection")
    p.add_argument("--stt-fail-times", type=int, default=None)
    p.add_argument("--first-chunk-delay", type=float, default=0.0, help="chat: seconds to the first chunk")
    p.add_argument("--stt-latency", type=float, default=0.0, help="transcriptions: seconds to answer")
    a = p.parse_args()
    fake = FakeOpenAI(a.host, a.port, api_key=a.api_key)
    fake.configure(
        mode=a.mode,
        fail_times=a.fail_times,
        status=a.status,
        retry_after=a.retry_after,
        hang_s=a.hang_s,
        break_after=a.break_after,
        stt_status=a.stt_status,
        stt_drop=a.stt_drop,
        stt_fail_times=a.stt_fail_times,
        first_chunk_delay_s=a.first_chunk_delay,
        stt_latency_s=a.stt_latency,
    )
    if a.stt_latency > 0:
        _whisper(_silence_wav(), "en")  # load the model now: a latency bench's first turn is not cold
    try:
        asyncio.run(fake.serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()


def use_fake_for_cloud(monkeypatch: Any, fake: FakeOpenAI, *, api_key: str = "dummy") -> None:
    """Point the `cloud` profile at `fake` through the env (pytest `monkeypatch`): no real network,
    HTTP transcriptions (the fake has no realtime websocket), the local TTS voice."""
    from core.settings import get_settings

    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("CALLCENTER_STT_REALTIME", "false")
    monkeypatch.delenv("ELEVEN_API_KEY", raising=False)
    get_settings.cache_clear()
