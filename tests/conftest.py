"""Shared fixtures: one real embedded Redis Stack server for the whole test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from cache.redis_server import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-data")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(embedded_redis) -> str:  # type: ignore[no-untyped-def]
    return embedded_redis.url


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001 - pytest hook signature
    """After the run, asyncio's "Task exception was never retrieved" notes from streams the
    fallback tests abandoned on purpose (a dropped ElevenLabs websocket) are garbage-collected at
    interpreter exit and would print after pytest's summary line, which CI reads last."""
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[object]:
    """The fake OpenAI server (tests/support/fake_openai.py), one per test module that asks."""
    from tests.support.fake_openai import running_fake_openai

    with running_fake_openai() as f:
        yield f


@pytest.fixture
def no_scope_step(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Calls whose questions all reach the LLM (CALLCENTER_SCOPE_CHECK=false): for tests of the
    context and the LLM path, not of the scope step (tests/test_scope*.py)."""
    from core.settings import get_settings

    monkeypatch.setenv("CALLCENTER_SCOPE_CHECK", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
