"""The shared plumbing of the fake provider servers: an aiohttp app on its own thread and loop.

Subclasses add their routes in `_routes`; tests call `start()` / `stop()` from any thread, the
command-line entry points run `serve_forever()` on the current loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from aiohttp import web


class ThreadedServer:
    name = "fake"
    client_max_size = 1024**2

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None  # set on stop: releases handlers that hang on purpose

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def configure(self, **behaviour: Any) -> None:
        raise NotImplementedError

    @classmethod
    @contextmanager
    def running(cls, *, api_key: str | None = None, **behaviour: Any) -> Iterator[Self]:
        """Start a fake on a free local port; yields the server (`.base_url` ends in `/v1`)."""
        fake = cls(api_key=api_key)  # type: ignore[call-arg]
        fake.configure(**behaviour)
        fake.start()
        try:
            yield fake
        finally:
            fake.stop()

    def start(self) -> Self:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_app())
            except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop_app())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop = self._loop

        def halt() -> None:
            assert self._stop is not None
            self._stop.set()
            loop.stop()

        loop.call_soon_threadsafe(halt)
        self._thread.join(15)
        self._loop = self._thread = None

    async def _start_app(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=self.client_max_size)
        self._routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _stop_app(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def serve_forever(self) -> None:
        """Run in the current loop (command-line use)."""
        await self._start_app()
        print(f"{self.name} server on {self.base_url}", flush=True)
        assert self._stop is not None
        try:
            await self._stop.wait()
        finally:
            await self._stop_app()
