"""Job bookkeeping in Redis, shared by the MCP server (producer) and the worker (consumer).

Celery alone cannot tell an unknown job id from a queued one (both are PENDING), cannot stop a
running task on a solo/prefork child (revoke only reaches the worker's main loop) and keeps a dead
worker's last PROGRESS forever. So we keep three small things next to Celery's own result:
a job record (kind, documents, submitted_at), a cancel flag the task polls, and a heartbeat
timestamp inside every PROGRESS update.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks.celery_app import redis_url

JOB_TTL_S = 24 * 3600
_PREFIX = "callcenter:job:"


def stale_after_s() -> float:
    """A running job without a heartbeat for this long is reported as worker_lost."""
    from core.settings import get_settings

    return get_settings().job_stale_after_s


@lru_cache(maxsize=1)
def client() -> redis.Redis:
    # Fail within ~2 s when Redis is down: a tool call must answer the agent, not hang a turn.
    return redis.Redis.from_url(
        redis_url(),
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 1),
    )


def ping() -> None:
    """Raises redis.ConnectionError quickly when Redis is unreachable (checked before Celery is)."""
    client().ping()


def record(job_id: str, info: dict[str, Any]) -> None:
    client().set(_PREFIX + job_id, json.dumps({**info, "submitted_at": time.time()}), ex=JOB_TTL_S)


def lookup(job_id: str) -> dict[str, Any] | None:
    raw = client().get(_PREFIX + job_id)
    return json.loads(raw) if raw else None


def request_cancel(job_id: str) -> None:
    client().set(_PREFIX + job_id + ":cancel", "1", ex=JOB_TTL_S)


def cancel_requested(job_id: str) -> bool:
    return bool(client().exists(_PREFIX + job_id + ":cancel"))


def next_attempt(job_id: str) -> int:
    """1 on the first run, 2 after a redelivery (worker died), ... — counted in Redis, not memory."""
    key = _PREFIX + job_id + ":attempts"
    n = int(client().incr(key))
    client().expire(key, JOB_TTL_S)
    return n
