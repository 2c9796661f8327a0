"""Long document jobs on the worker: "callcenter.analyze_document" and "callcenter.compare_documents".

Both report PROGRESS (`progress` 0..1, `stage`, `heartbeat`, `attempt`) so `job_status` can speak
progress and spot a dead worker, poll the cancel flag between steps and stop, and can be stretched
to `min_duration_s` (env CALLCENTER_DOCS_JOB_MIN_DURATION_S) to simulate minutes-long jobs in tests.
The documents' text travels in the message, so a worker needs no access to the documents directory.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from core.settings import get_settings
from tasks import doc_analysis as da
from tasks import jobs
from tasks.celery_app import TASK_ANALYZE, TASK_COMPARE, app
from tasks.summarize import use_llm_default

log = logging.getLogger(__name__)
_SLICE_S = 0.25  # how often a paced job wakes up to check the cancel flag
_HEARTBEAT_S = 1.0
MAX_LLM_PARTS = 8


def _llm(messages: list[dict[str, str]], max_tokens: int) -> str:
    from core.local_llm import complete_text  # loads the model on first use, once per worker process

    return complete_text(messages, max_tokens)


class Progress:
    """Progress reporting, pacing, heartbeat and cancellation for one job run (a context manager)."""

    def __init__(self, task: Task, min_duration_s: float | None) -> None:
        self.task = task
        # Celery's task.request is thread-local: keep this run's request for the heartbeat thread.
        self._request = task.request
        self._real = bool(task.request.id)  # False when the body is called directly (no worker)
        self.job_id: str = task.request.id or "local"
        env = get_settings().docs_job_min_duration_s or 0.0
        self.min_duration_s = env if min_duration_s is None else float(min_duration_s)
        self.t0 = time.monotonic()
        self.attempt = jobs.next_attempt(self.job_id) if self._real else 1
        self.stage = "starting"
        self.progress = 0.0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._beat = threading.Thread(target=self._beat_loop, name="job-heartbeat", daemon=True)

    def __enter__(self) -> Progress:
        if self._real:
            self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done.set()  # no PROGRESS may land after the final SUCCESS/FAILURE
        if self._beat.is_alive():
            self._beat.join(5)

    def _publish(self) -> None:
        if not self._real:
            return
        with self._lock:
            if self._done.is_set():
                return
            meta = {"progress": round(self.progress, 3), "stage": self.stage, "attempt": self.attempt}
            meta["heartbeat"] = time.time()
            self.task.backend.store_result(self.job_id, meta, "PROGRESS", request=self._request)

    def _beat_loop(self) -> None:
        # Beats even while a slow LLM call blocks the task thread: job_status reads a silent job as
        # a dead worker, so silence must mean exactly that.
        while not self._done.wait(_HEARTBEAT_S):
            try:
                self._publish()
            except Exception as e:  # Redis blip: the next beat retries
                log.warning("job %s heartbeat failed: %s", self.job_id, e)

    def report(self, progress: float, stage: str) -> None:
        self.progress, self.stage = max(self.progress, progress), stage
        self.check_cancel()
        self._publish()

    def pace(self, fraction_done: float) -> None:
        """Sleep until `fraction_done` of min_duration_s has elapsed, checking for cancellation."""
        until = self.t0 + self.min_duration_s * fraction_done
        while (now := time.monotonic()) < until:
            time.sleep(min(_SLICE_S, until - now))
            by_time = (time.monotonic() - self.t0) / self.min_duration_s * 0.99
            self.progress = max(self.progress, min(0.99, by_time))
            self.check_cancel()

    def check_cancel(self) -> None:
        if self._real and jobs.cancel_requested(self.job_id):
            with self._lock:
                self._done.set()  # stop beating first, so nothing overwrites REVOKED
            self.task.backend.mark_as_revoked(self.job_id, reason="cancelled", request=self._request)
            raise Ignore()  # the state stays REVOKED; the message is acked, never redelivered

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 3)


@app.task(bind=True, name=TASK_ANALYZE)
def analyze_document(
    self: Task, name: str, text: str, min_duration_s: float | None = None, use_llm: bool | None = None
) -> dict[str, Any]:
    with Progress(self, min_duration_s) as p:
        return _analyze(p, name, text, use_llm_default() if use_llm is None else use_llm)


def _analyze(p: Progress, name: str, text: str, llm: bool) -> dict[str, Any]:
    parts = da.chunks(text)
    # The small local model takes seconds per part: spread at most MAX_LLM_PARTS calls evenly over
    # the document so even a 2 MB file finishes well inside the time limit.
    step = max(1, -(-len(parts) // MAX_LLM_PARTS))
    p.report(0.0, f"reading {len(parts)} part(s)")
    summaries: list[str] = []
    for k, chunk in enumerate(parts):
        if llm and k % step == 0:
            summaries.append(da.llm_chunk_summary(_llm, chunk, name))
        done = (k + 1) / (len(parts) + 1)
        p.report(done * 0.95, f"summarized part {k + 1} of {len(parts)}")
        p.pace(done)
    summary = da.llm_merge(_llm, summaries, name) if llm else da.extractive_summary(text)
    p.report(0.97, "extracting facts and action items")
    result = {
        "kind": "analysis",
        "name": name,
        "summary": summary,
        "key_facts": da.key_facts(text),
        "action_items": da.action_items(text),
        "parts": len(parts),
        "llm": llm,
        "attempt": p.attempt,
    }
    p.pace(1.0)
    result["duration_s"] = p.elapsed()
    return result


@app.task(bind=True, name=TASK_COMPARE)
def compare_documents(
    self: Task,
    a_name: str,
    a_text: str,
    b_name: str,
    b_text: str,
    min_duration_s: float | None = None,
    use_llm: bool | None = None,
) -> dict[str, Any]:
    with Progress(self, min_duration_s) as p:
        llm = use_llm_default() if use_llm is None else use_llm
        return _compare(p, a_name, a_text, b_name, b_text, llm)


def _compare(p: Progress, a_name: str, a_text: str, b_name: str, b_text: str, llm: bool) -> dict[str, Any]:
    p.report(0.0, "diffing")
    diff, stats = da.unified_diff(a_text, b_text, a_name, b_name)
    pairs = da.changed_pairs(a_text, b_text)
    p.report(0.3, "diffed")
    p.pace(0.3)
    p.report(0.35, "describing the differences")
    if llm and diff:
        differences = da.llm_differences(_llm, diff, a_name, b_name)
    else:
        differences = da.extractive_differences(pairs)
    p.report(0.9, "done describing")
    p.pace(1.0)
    return {
        "kind": "comparison",
        "a": a_name,
        "b": b_name,
        "identical": not diff,
        "differences": differences,
        "changes": pairs,
        "diff": diff,
        **stats,
        "llm": llm,
        "attempt": p.attempt,
        "duration_s": p.elapsed(),
    }
