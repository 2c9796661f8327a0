"""A real OpenAI-compatible LLM server for tests and benchmarks: llama.cpp's HTTP server.

`xllamacpp` (already a dependency) contains llama.cpp's server; this module runs it in a child
process serving the project's Qwen2.5-0.5B GGUF (`core.local_llm.model_path()`) on 127.0.0.1, so
the real `livekit-plugins-openai` code talks HTTP to a real server (`/v1/chat/completions`
streaming with usage, `/v1/models`, `/health`, `/metrics`, `/slots`), the same server the
compose `llm` service runs (docker-compose.yml, profile `selfhosted-llm`).

A child process, not a thread: it can be stopped and restarted on the same port (a server
restart mid-call), and its threads are not the test process's.

    with LlamaServer(threads=1) as srv:   # blocks until /health answers (a few seconds)
        srv.base_url                      # http://127.0.0.1:PORT/v1
        srv.stop(); srv.start()           # same port

Standalone (benchmarks, manual checks): `python -m tests.support.llama_server --port 8080`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

MODEL_ALIAS = "qwen2.5-0.5b-instruct"
# A key the server checks (`--api-key`): clients must send it, so a test proves the key is used.
DEFAULT_API_KEY = "test-llama-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gguf_path() -> Path:
    from core.local_llm import model_path

    return model_path()


class LlamaServer:
    def __init__(
        self,
        *,
        port: int | None = None,
        threads: int = 1,
        api_key: str = DEFAULT_API_KEY,
        n_ctx: int = 4096,
        model: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.threads, self.api_key, self.n_ctx = threads, api_key, n_ctx
        self.model = model or gguf_path()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 60.0) -> Self:
        if self.proc is not None and self.proc.poll() is None:
            return self
        cmd = [
            sys.executable, "-m", "tests.support.llama_server", "--port", str(self.port),
            "--threads", str(self.threads), "--n-ctx", str(self.n_ctx), "--model", str(self.model),
        ]  # fmt: skip
        env = {**os.environ, "LLAMA_SERVER_API_KEY": self.api_key}  # not on the command line
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"llama.cpp server not healthy after {timeout} s")

    def stop(self) -> None:
        """Stop the server process (SIGTERM, then SIGKILL) and wait until the port is closed."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metric(self, name: str) -> float:
        """A counter from llama.cpp's Prometheus `/metrics` (e.g. `prompt_tokens_total`)."""
        r = httpx.get(self.url + "/metrics", headers=self.headers, timeout=5)
        r.raise_for_status()
        m = re.search(rf"^llamacpp:{re.escape(name)} ([0-9.eE+-]+)$", r.text, re.M)
        if m is None:
            raise KeyError(name)
        return float(m.group(1))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(port: int, model: str, threads: int, n_ctx: int, api_key: str | None) -> None:
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = model
    p.model_alias = {MODEL_ALIAS}  # what /v1/models lists and responses name
    p.port = port
    p.hostnames = ["127.0.0.1"]
    p.n_ctx = n_ctx
    p.n_parallel = 1  # one slot, like the in-process engine: a request queues behind another
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.endpoint_metrics = True
    p.verbosity = -1
    if api_key:
        p.api_keys = [api_key]
    server = xlc.Server(p)
    print(f"llama.cpp server at {server.listening_address}", flush=True)

    def on_term(*_: object) -> None:
        os._exit(0)  # no interpreter teardown around llama.cpp's threads

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while True:
        signal.pause()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--model", default=None, help="GGUF path (default: the project's Qwen2.5-0.5B)")
    a = ap.parse_args()
    model = a.model or str(gguf_path())
    serve(a.port, model, a.threads, a.n_ctx, os.environ.get("LLAMA_SERVER_API_KEY"))


if __name__ == "__main__":
    main()
