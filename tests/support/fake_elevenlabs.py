"""A small ElevenLabs-compatible server for tests, so the real `livekit-plugins-elevenlabs` TTS runs.

Speaks the wire protocol the plugin (1.8) uses, under `/v1` (point `base_url` at `.base_url`):

- websocket `/v1/text-to-speech/{voice_id}/multi-stream-input?model_id=..&output_format=..`
  (the streaming path the agent uses), multi-context: `{"text": " ", "voice_settings", "context_id"}`
  opens a context, `{"text", "context_id", "flush"?}` adds text, `{"context_id", "close_context":
  true}` ends it. Each flushed chunk is answered with `{"audio": base64, "normalizedAlignment",
  "context_id"}`, a closed context with `{"isFinal": true, "context_id"}`; one socket serves many
  contexts, as the plugin reuses it;
- `POST /v1/text-to-speech/{voice_id}/stream?output_format=..` (the one-shot `synthesize` path):
  the audio as the response body.

The audio is a `TONE_HZ` tone, `SECONDS_PER_CHAR` per character of text, encoded as the request
asks: `mp3_<rate>_<kbps>` (real MP3 frames from LAME via PyAV, what the plugin decodes by default)
or `pcm_<rate>`. A tone, not speech, so a test can tell this voice from the local one.

Faults, changed at runtime with `FakeElevenLabs.configure(...)`:

- `mode="error"`: the websocket handshake and HTTP requests get HTTP `status` (default 500);
- `mode="drop"`: the websocket is accepted, the first message read, then the TCP connection is
  dropped (no close frame, no audio); HTTP requests are dropped the same way;
- `fail_times=N`: only the first N connections/requests fail; `None`: all of them.

Requests with another `xi-api-key` than `api_key` (when set) get a 401. Every connection and
request is recorded (`FakeElevenLabs.requests`). Use from tests:
`with running_fake_elevenlabs(api_key="k", mode="error") as fake: fake.base_url`.
Standalone: `python -m tests.support.fake_elevenlabs --port 8912 [--mode drop]`
(`--first-audio-delay 0.3`: a provider's first-byte latency, for `scripts/bench-cloud-overhead`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from aiohttp import WSMsgType, web

from tests.support.fake_server import ThreadedServer

Mode = Literal["ok", "error", "drop"]
TONE_HZ = 440.0
SECONDS_PER_CHAR = 0.05
AUTH_HEADER = "xi-api-key"


@dataclass
class Behaviour:
    mode: Mode = "ok"
    fail_times: int | None = None  # None: every connection/request fails while mode != "ok"
    status: int = 500  # for mode="error"
    first_audio_delay_s: float = 0.0  # a context's first audio no sooner than this after its flush


@dataclass
class RecordedRequest:
    kind: Literal["ws", "http"]
    path: str
    at: float  # time.monotonic() when received
    headers: dict[str, str]
    query: dict[str, str]
    texts: list[str] = field(default_factory=list)  # text synthesized, one entry per chunk
    outcome: str = ""  # "ok", "error 500", "error 401", "drop"

    @property
    def voice_id(self) -> str:
        return self.path.split("/")[3]  # /v1/text-to-speech/{voice_id}/...


def tone(text: str, rate: int) -> np.ndarray:
    """The fake voice for `text`: int16 mono samples of a tone with short fades."""
    n = max(int(rate * 0.2), int(rate * SECONDS_PER_CHAR * len(text.strip())))
    t = np.arange(n) / rate
    wave = 0.3 * np.sin(2 * np.pi * TONE_HZ * t)
    fade = min(n // 2, rate // 100)
    ramp = np.linspace(0.0, 1.0, fade)
    wave[:fade] *= ramp
    wave[n - fade :] *= ramp[::-1]
    return (wave * 32767).astype(np.int16)


def encode(samples: np.ndarray, output_format: str) -> bytes:
    """`mp3_22050_32` -> raw MP3 frames (no ID3/Xing header, so chunks concatenate into one
    valid stream, as a streaming server sends them); `pcm_24000` -> s16le."""
    parts = output_format.split("_")
    rate = int(parts[1])
    if parts[0] == "pcm":
        return samples.astype("<i2").tobytes()
    if parts[0] != "mp3":
        raise ValueError(f"unsupported output_format {output_format}")
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3", options={"write_xing": "0", "id3v2_version": "0"}) as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        stream.bit_rate = int(parts[2]) * 1000 if len(parts) > 2 else 32000
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _alignment(text: str) -> dict[str, Any]:
    ms = int(SECONDS_PER_CHAR * 1000)
    return {
        "chars": list(text),
        "charStartTimesMs": [i * ms for i in range(len(text))],
        "charDurationsMs": [ms] * len(text),
    }


class FakeElevenLabs(ThreadedServer):
    name = "fake ElevenLabs"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None) -> None:
        super().__init__(host, port)
        self.api_key = api_key
        self.behaviour = Behaviour()
        self.requests: list[RecordedRequest] = []
        self._failures = 0

    # ---- control (any thread) ------------------------------------------------------------

    def configure(self, **behaviour: Any) -> None:
        """Replace the behaviour (unknown keys raise) and restart the failure count."""
        with self._lock:
            self.behaviour = replace(Behaviour(), **behaviour)
            self._failures = 0

    def recorded(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    def spoken(self) -> list[str]:
        """Text chunks answered with audio."""
        return [t for r in self.recorded() for t in r.texts]

    # ---- routes --------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/text-to-speech/{voice_id}/multi-stream-input", self._multi_stream)
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._http_stream)

    # ---- helpers -------------------------------------------------------------------------
    def _record(self, request: web.Request, kind: Literal["ws", "http"]) -> RecordedRequest:
        rec = RecordedRequest(
            kind=kind,
            path=request.path,
            at=time.monotonic(),
            headers=dict(request.headers),
            query=dict(request.query),
        )
        with self._lock:
            self.requests.append(rec)
        return rec

    def _denied(self, request: web.Request, rec: RecordedRequest) -> web.Response | None:
        key = request.headers.get(AUTH_HEADER)
        if not key or (self.api_key and key != self.api_key):
            rec.outcome = "error 401"
            return _error(401, "invalid_api_key", "Invalid API key")
        return None

    def _fault(self) -> Behaviour | None:
        with self._lock:
            b = self.behaviour
            if b.mode == "ok" or (b.fail_times is not None and self._failures >= b.fail_times):
                return None
            self._failures += 1
            return b

    # ---- handlers ------------------------------------------------------------------------
    async def _multi_stream(self, request: web.Request) -> web.StreamResponse:
        rec = self._record(request, "ws")
        if (denied := self._denied(request, rec)) is not None:
            return denied  # before the upgrade: the client sees a failed handshake
        fault = self._fault()
        if fault is not None and fault.mode == "error":
            rec.outcome = f"error {fault.status}"
            return _error(fault.status, "internal_error", "The server had an error.")
        output_format = request.query.get("output_format", "mp3_22050_32")
        rate = int(output_format.split("_")[1])
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        rec.outcome = "drop" if fault is not None else "ok"  # a faulted socket never speaks
        pending: dict[str, list[str]] = {}  # context_id -> text not yet spoken
        spoken: set[str] = set()  # contexts that already sent audio

        async def speak(context_id: str) -> None:
            text = "".join(pending.get(context_id, [])).strip()
            pending[context_id] = []
            if not text:
                return
            flushed = time.monotonic()
            audio = await asyncio.to_thread(encode, tone(text, rate), output_format)
            if context_id not in spoken:  # a provider's first-byte latency (bench overhead)
                spoken.add(context_id)
                if (wait := self.behaviour.first_audio_delay_s - (time.monotonic() - flushed)) > 0:
                    await asyncio.sleep(wait)
            rec.texts.append(text)
            # several messages per chunk, as the real server streams audio as it is made
            step = max(1, len(audio) // 3)
            for i in range(0, len(audio), step):
                msg: dict[str, Any] = {
                    "audio": base64.b64encode(audio[i : i + step]).decode(),
                    "context_id": context_id,
                }
                if i == 0:
                    msg["normalizedAlignment"] = _alignment(text)
                await ws.send_json(msg)

        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            if fault is not None:  # mode="drop"
                if request.transport is not None:
                    request.transport.abort()  # no close frame: the connection just dies
                break
            data = json.loads(msg.data)
            context_id = str(data.get("context_id") or "")
            if data.get("close_context"):
                await speak(context_id)
                pending.pop(context_id, None)
                await ws.send_json({"isFinal": True, "context_id": context_id})
                continue
            if context_id not in pending:  # the context's opening packet: text is " "
                pending[context_id] = []
            pending[context_id].append(str(data.get("text") or ""))
            if data.get("flush"):
                await speak(context_id)
        return ws

    async def _http_stream(self, request: web.Request) -> web.StreamResponse:
        rec = self._record(request, "http")
        if (denied := self._denied(request, rec)) is not None:
            return denied
        body = await request.json()
        fault = self._fault()
        if fault is not None and fault.mode == "error":
            rec.outcome = f"error {fault.status}"
            return _error(fault.status, "internal_error", "The server had an error.")
        if fault is not None and fault.mode == "drop":
            rec.outcome = "drop"
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        output_format = request.query.get("output_format", "mp3_22050_32")
        text = str(body.get("text") or "").strip()
        audio = await asyncio.to_thread(encode, tone(text, int(output_format.split("_")[1])), output_format)
        rec.texts.append(text)
        rec.outcome = "ok"
        mime = "audio/mpeg" if output_format.startswith("mp3") else "audio/pcm"
        return web.Response(body=audio, content_type=mime)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"detail": {"status": code, "message": message}}, status=status)


running_fake_elevenlabs = FakeElevenLabs.running


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8912)
    p.add_argument("--api-key", default=None)
    p.add_argument("--mode", default="ok", choices=["ok", "error", "drop"])
    p.add_argument("--fail-times", type=int, default=None)
    p.add_argument("--status", type=int, default=500)
    p.add_argument("--first-audio-delay", type=float, default=0.0, help="seconds to a context's first audio")
    a = p.parse_args()
    fake = FakeElevenLabs(a.host, a.port, api_key=a.api_key)
    fake.configure(
        mode=a.mode, fail_times=a.fail_times, status=a.status, first_audio_delay_s=a.first_audio_delay
    )
    try:
        asyncio.run(fake.serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
