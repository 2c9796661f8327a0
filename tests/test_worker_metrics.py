"""The agent worker serves its own Prometheus metrics, fallbacks included.

Calls run in the worker's job processes; livekit-agents' Prometheus server in the worker's main
process reads every process's metric files (prometheus_client's multiprocess mode) from the
directory `WorkerConfig.metrics_dir`. Here: the real `callcenter worker start` (no LiveKit server
to register with, so it keeps retrying; its metrics endpoint is up meanwhile), and a job process
of the same worker environment whose cloud STT fails over to the local whisper against
tests/support/fake_openai.py. The worker's /metrics must then show the switch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent.worker import WorkerConfig, server_options
from core.settings import REPO_ROOT
from tests.support.workers import free_port

JOB = """
import asyncio, numpy as np
from livekit import rtc
from tests.support.fake_openai import running_fake_openai
import os

async def main():
    from agent.providers import build_providers
    from core.settings import Settings
    from agent.sim.caller_voice import synthesize_caller
    pcm = synthesize_caller("What are your opening hours?", 16000)
    frame = rtc.AudioFrame((np.clip(pcm, -1, 1) * 32767).astype(np.int16).tobytes(), 16000, 1, len(pcm))
    stt = build_providers("cloud", Settings()).stt
    try:
        ev = await stt.recognize([frame])
        print("heard:", ev.alternatives[0].text)
    finally:
        await stt.aclose()

with running_fake_openai(api_key="dummy") as fake:
    fake.configure(stt_status=500)
    os.environ.update(OPENAI_API_KEY="dummy", OPENAI_BASE_URL=fake.base_url, CALLCENTER_STT_REALTIME="false")
    asyncio.run(main())
"""


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return None


def test_server_options_expose_prometheus_for_every_job_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCENTER_WORKER_METRICS_PORT", "9555")
    config = WorkerConfig.from_env()
    opts = server_options(config)
    assert opts.prometheus_port == 9555
    assert opts.prometheus_multiproc_dir == str(config.metrics_dir)
    monkeypatch.setenv("CALLCENTER_WORKER_METRICS_PORT", "0")
    assert server_options(WorkerConfig.from_env()).prometheus_multiproc_dir is None  # off


@pytest.mark.slow
def test_worker_metrics_endpoint_shows_a_forced_fallback(redis_url: str, tmp_path: Path) -> None:
    port, closed = free_port(), free_port()
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    env = {
        **os.environ,
        "LIVEKIT_URL": f"ws://127.0.0.1:{closed}",  # nothing listens: the worker keeps retrying
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "a-secret-that-is-long-enough-for-hs256",
        "CALLCENTER_WORKER_PROFILE": "instant",
        "CALLCENTER_WORKER_METRICS_PORT": str(port),
        "CALLCENTER_DATA_DIR": str(data),
        "REDIS_URL": redis_url,
        "CALLCENTER_CALLS_DIR": str(tmp_path / "calls"),
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(REPO_ROOT / ".venv" / "bin" / "callcenter"), "worker", "start"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # hang guard: the worker imports and prewarms first
        while scrape(port) is None:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker's metrics endpoint never answered"
            time.sleep(0.5)
        assert "callcenter_provider_fallbacks_total" not in (scrape(port) or "")
        # A job process of this worker: same environment, including the metrics directory the
        # worker exported to its children.
        job_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(data / "worker-metrics")}
        job = subprocess.run(
            [sys.executable, "-c", JOB], cwd=REPO_ROOT, env=job_env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert job.returncode == 0, job.stderr[-3000:]
        assert "opening" in job.stdout.lower(), job.stdout  # whisper answered after the fallback
        text = scrape(port) or ""
        line = [ln for ln in text.splitlines() if ln.startswith("callcenter_provider_fallbacks_total{")]
        assert line and 'kind="stt"' in line[0] and 'provider="openai"' in line[0], text[-2000:]
        assert float(line[0].rsplit(" ", 1)[1]) == 1.0
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
