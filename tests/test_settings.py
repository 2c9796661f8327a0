"""Bad environment settings end as one line and exit 2 through the real `callcenter` CLI: no
traceback, no secret printed, and a mistyped data directory never starts a new empty Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.redact import redact_text, redact_url
from core.settings import DEFAULT_DATA_DIR, REPO_ROOT, Settings

CLI = str(Path(sys.executable).with_name("callcenter"))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any of our settings, plus `extra`."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CALLCENTER_", "REDIS_", "LIVEKIT_", "OPENAI_", "ELEVEN_"))
    }
    return {**keep, **extra}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        env=clean_env(**env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,  # a stdio MCP server that did start would exit at EOF (rc 0)
    )


def assert_one_line(r: subprocess.CompletedProcess[str], *says: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for s in says:
        assert s in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def a_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    f = tmp_path_factory.mktemp("s") / "not-a-dir"
    f.write_text("x")
    return str(f)


MCP = ["mcp", "serve", "--transport", "stdio"]
CASES = [
    ({"REDIS_URL": "notaurl"}, ["REDIS_URL", "redis://"]),
    ({"REDIS_URL": "redis://:s3cret-pw@localhost:99999/0"}, ["REDIS_URL", "not a valid URL"]),
    ({"REDIS_URL": "http://:s3cret-pw@localhost:6379"}, ["REDIS_URL"]),
    ({"CALLCENTER_DATA_DIR": "/proc/nope"}, ["CALLCENTER_DATA_DIR", "no such directory"]),
    ({"CALLCENTER_EMBED_THREADS": "abc"}, ["CALLCENTER_EMBED_THREADS", "integer"]),
    ({"CALLCENTER_EMBED_THREADS": "0"}, ["CALLCENTER_EMBED_THREADS", "greater than or equal to 1"]),
    ({"CALLCENTER_DOCS_MAX_BYTES": "abc"}, ["CALLCENTER_DOCS_MAX_BYTES", "integer"]),
    ({"CALLCENTER_DOCS_KEEP_VERSIONS": "0"}, ["CALLCENTER_DOCS_KEEP_VERSIONS"]),
    ({"CALLCENTER_MCP_LOG_LEVEL": "LOUD"}, ["CALLCENTER_MCP_LOG_LEVEL", "WARNING"]),
    ({"CALLCENTER_MCP_TOKEN": "s3cret-pw"}, ["CALLCENTER_MCP_TOKEN", "(hidden)", "too short"]),
    ({"CALLCENTER_JOB_STALE_AFTER_S": "soon"}, ["CALLCENTER_JOB_STALE_AFTER_S"]),
    ({"CALLCENTER_DOCS_JOB_MIN_DURATION_S": "-1"}, ["CALLCENTER_DOCS_JOB_MIN_DURATION_S"]),
    ({"CALLCENTER_TASKS_LLM": "maybe"}, ["CALLCENTER_TASKS_LLM", "boolean"]),
]


@pytest.mark.parametrize(
    ("env", "says"), CASES, ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, _ in CASES]
)
def test_bad_setting_is_one_line_without_secrets(env: dict[str, str], says: list[str]) -> None:
    r = run(MCP, **env)
    line = assert_one_line(r, *says)
    assert "s3cret-pw" not in r.stderr + r.stdout, line


def test_data_dir_that_is_a_file(a_file: str) -> None:
    assert_one_line(run(MCP, CALLCENTER_DATA_DIR=a_file), "CALLCENTER_DATA_DIR", "not a directory")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--transport", "streamable-http", "--port", "99999"], "1-65535"),
        (["--transport", "streamable-http", "--port", "0"], "1-65535"),
        (["--transport", "carrier-pigeon"], "unknown transport"),
        (["--docs", "/no/such/docs"], "no such directory"),
        (["--max-bytes", "0"], "--max-bytes"),
    ],
)
def test_bad_mcp_serve_options_are_one_line(args: list[str], says: str) -> None:
    assert_one_line(run(["mcp", "serve", *args]), says)


def test_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert_one_line(
            run(["mcp", "serve", "--transport", "streamable-http", "--port", str(port)]), "cannot listen"
        )


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_URL": "notaurl"},
        {"CALLCENTER_DATA_DIR": "/proc/nope"},
        {"CALLCENTER_CELERY_VISIBILITY_TIMEOUT": "abc"},
        {"CALLCENTER_CELERY_RESTORE_THROTTLE": "0"},
    ],
    ids=["redis-url", "data-dir", "visibility", "throttle"],
)
def test_the_celery_worker_refuses_bad_settings_before_starting(env: dict[str, str]) -> None:
    assert_one_line(run(["worker", "celery", "--pool", "solo"], **env), next(iter(env)))


def test_a_mistyped_data_dir_does_not_start_a_new_redis(tmp_path: Path) -> None:
    """`callcenter redis start` would start an empty embedded Redis in the mistyped directory."""
    missing = tmp_path / "dat"  # meant: an existing data dir
    assert_one_line(run(["redis", "start"], CALLCENTER_DATA_DIR=str(missing)), "no such directory")
    assert not missing.exists()


def test_data_dir_rules_in_process(tmp_path: Path) -> None:
    assert Settings(data_dir=DEFAULT_DATA_DIR).data_dir == DEFAULT_DATA_DIR  # created on first use
    assert Settings(data_dir=tmp_path).data_dir == tmp_path
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path / "missing")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
        ("rediss://user:pw@h/1?password=pw&db=1", "rediss://***@h/1?password=***&db=1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("http://[broken", "http://[broken"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_urls_inside_messages() -> None:
    msg = "Error connecting to redis://:hunter2@10.0.0.5:6379/0: refused"
    assert redact_text(msg) == "Error connecting to redis://***@10.0.0.5:6379/0: refused"
