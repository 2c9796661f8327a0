"""The Celery app: Redis broker and result backend, at-least-once delivery for off-turn work.

Start a worker with `callcenter worker celery` or `celery -A tasks.celery_app worker`.
Producers (the agent, the MCP server) send tasks by their stable names (`core/task_names.py`) and never
import task code, so this package never depends on `agent/`.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

from core.settings import get_settings
from core.task_names import TASK_ANALYZE, TASK_COMPARE, TASK_SUMMARIZE

__all__ = ["TASK_ANALYZE", "TASK_COMPARE", "TASK_SUMMARIZE", "app"]

# Hard time limits per task; the visibility timeout must exceed the longest of them, otherwise Redis
# hands a still-running job to a second worker (duplicate work) before the first one finishes.
SUMMARIZE_TIME_LIMIT_S = 90
DOC_JOB_TIME_LIMIT_S = 16 * 60


def redis_url() -> str:
    """REDIS_URL when set, otherwise the embedded Redis Stack (started or reused)."""
    url = get_settings().redis_url
    if url:
        return url
    from cache.redis_server import ensure_redis  # deferred: only workers/producers need a server

    return ensure_redis()


def _transport_options() -> dict[str, Any]:
    # Unacked (acks_late) messages of a worker that died are restored to the queue after
    # visibility_timeout, checked every restore_interval * restore_throttle seconds by any live
    # worker. Tests shrink all three (env) so a killed job is redelivered in seconds.
    s = get_settings()
    return {
        "visibility_timeout": s.celery_visibility_timeout,
        "unacked_restore_interval": s.celery_restore_interval,
        "unacked_restore_throttle": s.celery_restore_throttle,
    }


# Producers (agent, MCP server) give up after ~1 s when Redis is down instead of the default
# 20 retries: a turn or a tool call must not hang on Celery. Workers reconnect on their own loop.
_FAST_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def _lazy_config() -> dict[str, Any]:
    """Evaluated on first use of the connection, so importing this module starts no Redis."""
    url = redis_url()
    opts = _transport_options()
    return {
        "broker_url": url,
        "result_backend": url,
        "broker_transport_options": opts,
        "result_backend_transport_options": {
            "visibility_timeout": opts["visibility_timeout"],
            "retry_policy": _FAST_RETRY,
        },
    }


app = Celery("callcenter", include=["tasks.summarize", "tasks.doc_jobs"])
app.add_defaults(_lazy_config)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # At-least-once: ack only after the task finished; a worker that dies mid-task leaves the
    # message unacked so it is redelivered instead of silently lost.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A worker reserves one message at a time: long document jobs must not queue behind each other
    # inside one worker while another worker is idle.
    worker_prefetch_multiplier=1,
    task_track_started=True,
    task_publish_retry_policy=_FAST_RETRY,
    result_extended=True,  # job_status can show the task name and args
    result_expires=24 * 3600,
    task_soft_time_limit=DOC_JOB_TIME_LIMIT_S - 60,
    task_time_limit=DOC_JOB_TIME_LIMIT_S,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # One queue name per deployment (or per test module), so separate stacks sharing a Redis
    # never take each other's jobs.
    task_default_queue=os.environ.get("CALLCENTER_CELERY_QUEUE", "callcenter"),
)


@worker_init.connect
def _lower_priority(**_: Any) -> None:
    """Run the worker (and the pool children it forks) below the agent's CPU priority.

    A summary on the local LLM or a document job keeps both cores busy for seconds; where the
    worker shares a machine with agent processes, a caller's turn should get the CPU first (Linux
    gives a nice-10 process ~1/10 of the CPU share of a nice-0 one while both want it). The slow
    managed turns once seen in `callcenter bench context` were not CPU: the summary sat after
    the caller's question, so the prompt was re-read every turn (agent/call/context.py). A no-op on
    a dedicated worker machine.
    """
    want = get_settings().worker_nice
    current = os.nice(0)
    if want > current:
        os.nice(want - current)
