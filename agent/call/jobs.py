"""Producer side of Celery for the agent: send tasks by name, poll results, revoke.

The agent never imports task code (tasks/ may not depend on agent/, and the agent should not
load the worker's models); it only knows the stable task names. Every broker call runs in a
thread so a slow or dead Redis never blocks the call's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from celery import Celery

from core.task_names import TASK_ANALYZE, TASK_COMPARE, TASK_SUMMARIZE

log = logging.getLogger("callcenter.jobs")
__all__ = ["TASK_ANALYZE", "TASK_COMPARE", "TASK_SUMMARIZE", "JobClient", "JobState"]


@dataclass
class JobState:
    state: str  # PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, RETRY, REVOKED
    result: Any = None
    progress: float | None = None

    @property
    def done(self) -> bool:
        return self.state in ("SUCCESS", "FAILURE", "REVOKED")


class JobClient:
    def __init__(self, redis_url: str, queue: str | None = None) -> None:
        self.queue = queue or os.environ.get("CALLCENTER_CELERY_QUEUE", "callcenter")
        self.app = Celery("callcenter-agent", broker=redis_url, backend=redis_url)
        self.app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            task_default_queue=self.queue,
            broker_connection_retry_on_startup=False,
            broker_connection_max_retries=1,
            redis_socket_timeout=2.0,
            redis_socket_connect_timeout=2.0,
        )

    async def submit(self, name: str, *, expires_s: float | None = None, **kwargs: Any) -> str:
        # `expires`: a job nobody picked up in time is dropped by the worker instead of piling up
        res = await asyncio.to_thread(
            self.app.send_task, name, kwargs=kwargs, queue=self.queue, expires=expires_s
        )
        return str(res.id)

    async def poll(self, job_id: str) -> JobState:
        def _read() -> JobState:
            r = self.app.AsyncResult(job_id)
            state = r.state
            info = r.info
            progress = info.get("progress") if isinstance(info, dict) else None
            return JobState(state, r.result if state in ("SUCCESS", "FAILURE") else info, progress)

        return await asyncio.to_thread(_read)

    async def revoke(self, job_id: str) -> None:
        await asyncio.to_thread(self.app.control.revoke, job_id, terminate=True)
