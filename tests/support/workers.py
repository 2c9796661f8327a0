"""Real worker / MCP server processes for tests (ours and the agent's): start, wait ready, stop.

Each helper runs the real entry point (`python -m tasks ...`) in a subprocess with an explicit
environment, logs to a file (read it when a test fails) and always cleans up in `stop()`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery

from core.ports import free_port
from core.settings import REPO_ROOT


def client_app(redis_url: str, queue: str) -> Celery:
    """A producer-only Celery app (what the agent uses): sends tasks by name, reads results."""
    app = Celery("callcenter-client", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue=queue)
    return app


class _Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tasks", *self.args],
                cwd=REPO_ROOT,
                env={**os.environ, **self.env},
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a test's Ctrl-C does not hit it; we stop it ourselves
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: simulates a crash (no warm shutdown, no ack, no requeue by the process itself)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class WorkerProcess(_Proc):
    """`python -m tasks worker celery` on one queue (solo pool by default: one process to kill)."""

    def __init__(
        self, redis_url: str, queue: str, log_dir: Path, env: dict[str, str] | None = None, pool: str = "solo"
    ) -> None:
        self.name = f"w{uuid.uuid4().hex[:8]}@%h"
        full_env = {"REDIS_URL": redis_url, "CALLCENTER_CELERY_QUEUE": queue, **(env or {})}
        args = ["worker", "celery", "--pool", pool, "--queues", queue, "--hostname", self.name]
        super().__init__(args, full_env, log_dir / f"worker-{self.name.split('@')[0]}.log")

    def start(self, timeout: float = 60) -> WorkerProcess:
        mark = len(self.log_text())
        self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log_text()[mark:]:
                return self
            if self.proc and self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"celery worker did not start:\n{self.log_text()[-3000:]}")


class McpHttpServer(_Proc):
    """`python -m tasks mcp serve --transport streamable-http` on a free loopback port."""

    def __init__(self, docs: Path, log_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        args = [
            "mcp",
            "serve",
            "--docs",
            str(docs),
            "--transport",
            "streamable-http",
            "--port",
            str(self.port),
        ]
        super().__init__(args, env, log_dir / f"mcp-http-{self.port}.log")
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def start(self, timeout: float = 30) -> McpHttpServer:
        self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                if self.proc and self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"MCP server did not start:\n{self.log_text()[-3000:]}")


def stdio_params(docs: Path, env: dict[str, str]) -> Any:
    """Parameters for `mcp.client.stdio` / `mcp.Client`: the client spawns the server itself."""
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "tasks", "mcp", "serve", "--docs", str(docs), "--transport", "stdio"],
        env={**os.environ, **env},
        cwd=str(REPO_ROOT),
    )
