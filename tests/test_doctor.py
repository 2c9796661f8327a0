"""`callcenter doctor` (issue 24 item 4): real checks against fake wire-protocol servers, a real
Redis and closed ports; the CLI's exit code, JSON and that no secret is ever printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.doctor import DOWN, OK, check_celery, check_livekit, check_redis, check_remote_stage
from core.ports import free_port
from core.settings import REPO_ROOT, Settings, get_settings
from tests.support.fake_livekit import FakeLiveKit
from tests.support.fake_openai import FakeOpenAI

SECRET = "sk-doctor-SECRET-4242-never-printed"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.running(api_key=SECRET) as fake:
        yield fake


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    return Settings()


def test_llm_stage_ok_then_down_on_closed_port(
    monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI
) -> None:
    s = _settings(monkeypatch, CALLCENTER_LLM_BASE_URL=fake_openai.base_url, CALLCENTER_LLM_API_KEY=SECRET)
    row = check_remote_stage("llm", s, "gpt-4o-mini", 5, "local")
    assert row.status == OK, row
    assert fake_openai.chat_requests()[-1].body["max_tokens"] == 1
    closed = f"http://127.0.0.1:{free_port()}/v1"
    s = _settings(monkeypatch, CALLCENTER_LLM_BASE_URL=closed)
    row = check_remote_stage("llm", s, "gpt-4o-mini", 2, "local")
    assert row.status == DOWN and "llm" in row.component
    assert "connection refused" in row.reason and closed in row.reason and SECRET not in row.reason


def test_llm_stage_wrong_key_is_named(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI) -> None:
    s = _settings(
        monkeypatch, CALLCENTER_LLM_BASE_URL=fake_openai.base_url, CALLCENTER_LLM_API_KEY="wrong-key"
    )
    row = check_remote_stage("llm", s, "gpt-4o-mini", 5, "local")
    assert row.status == DOWN and "401" in row.reason and "CALLCENTER_LLM_API_KEY" in row.reason


def test_livekit_ok_and_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLiveKit()
    with fake.running():
        monkeypatch.setenv("LIVEKIT_URL", fake.url)
        monkeypatch.setenv("LIVEKIT_API_KEY", fake.api_key)
        monkeypatch.setenv("LIVEKIT_API_SECRET", fake.api_secret)
        assert check_livekit(5).status == OK
    monkeypatch.setenv("LIVEKIT_URL", f"http://127.0.0.1:{free_port()}")
    row = check_livekit(2)
    assert row.status == DOWN and "connection refused" in row.reason


def test_redis_ok_and_celery_without_worker(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    s = _settings(monkeypatch, REDIS_URL=redis_url)
    row, url = check_redis(s, 2)
    assert row.status == OK and url == redis_url
    password = redis_url.split(":")[2].split("@")[0]
    assert password not in row.reason
    row = check_celery(url, 1)
    assert row.status == DOWN and "no worker" in row.reason


def test_cli_json_exit_1_no_secret(
    monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI, redis_url: str
) -> None:
    env = {
        **os.environ,
        "CALLCENTER_DOCUMENTS": "false",
        "CALLCENTER_STT_PROVIDER": "openai",
        "CALLCENTER_STT_REALTIME": "false",
        "CALLCENTER_STT_BASE_URL": fake_openai.base_url,
        "CALLCENTER_STT_API_KEY": SECRET,
        "CALLCENTER_LLM_PROVIDER": "openai",
        "CALLCENTER_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "CALLCENTER_LLM_API_KEY": SECRET,
        "REDIS_URL": redis_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.pop("LIVEKIT_URL", None)
    from agent.providers.whisper_stt import load_whisper

    load_whisper()  # the fake transcribes with the real whisper (slow on a loaded machine: 15 s)
    p = subprocess.run(
        [sys.executable, "-m", "agent.cli", "doctor", "--json", "--timeout", "15"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "Traceback" not in out and SECRET not in out
    assert redis_url.split("@")[0].split(":")[-1] not in out
    rows = {r["component"]: r for r in json.loads(p.stdout)}
    assert rows["llm (openai)"]["status"] == DOWN and "connection refused" in rows["llm (openai)"]["reason"]
    assert rows["stt (openai)"]["status"] == OK, rows["stt (openai)"]
    assert fake_openai.transcription_requests(), "the STT check uploads a WAV"
    assert rows["redis"]["status"] == OK


def test_cli_bad_setting_exit_2_one_line() -> None:
    env = {**os.environ, "CALLCENTER_LLM_PROVIDER": "vllm"}
    p = subprocess.run(
        [sys.executable, "-m", "agent.cli", "doctor"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
