"""`callcenter bench context`: a 50-turn text-level call with and without the context manager.

Runs the real AgentSession and the configured local LLM; the managed run uses a real Celery
worker (started here on a private queue) for summaries. Reports the prompt tokens the LLM
received per turn (its own count) and the per-turn LLM latency (llm_node TTFT).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from livekit.agents import llm

from agent.call.assemble import CallOptions, CallServices, build_call
from agent.call.jobs import JobClient
from agent.call.prompt import instructions_for
from agent.providers import build_providers
from agent.providers.local_llm import LocalLLM
from core.call_report import percentile
from core.local_llm import LocalLLMEngine
from core.settings import REPO_ROOT, get_settings
from core.tenants import load_tenant
from sip.behaviours import SimCallControl

OPENING = "Hi, my name is Maria Lopez and my order number is A-483920. The drill I bought is broken."
FILLERS = [
    "Do you sell paint?",
    "Do you have hammers?",
    "Is parking free?",
    "Do you sell gift cards?",
    "Can I pay by card?",
    "Do you cut keys?",
    "Are you open on Saturday?",
    "Do you deliver?",
]


async def _run(turns: int, services: CallServices, pace_s: float, *, bounded: bool) -> dict[str, Any]:
    """One text-level call through the assembled product (no audio: the caller's lines are typed
    into the session), on the local LLM; `bounded=False` is the unmanaged reference."""
    base = build_providers("instant", get_settings())
    providers = dataclasses.replace(base, name="local", llm=LocalLLM(max_tokens=24))
    with tempfile.TemporaryDirectory() as d:
        call = build_call(
            load_tenant(None),
            providers,
            SimCallControl(),
            services,
            out_dir=Path(d),
            options=CallOptions(bounded_context=bounded),
        )
        await call.start()
        ttft: list[float] = []
        try:
            script = (
                [OPENING]
                + [FILLERS[i % len(FILLERS)] for i in range(turns - 2)]
                + ["What is my order number?"]
            )
            for text in script:
                # a real caller takes seconds to listen and speak: the summarizer works meanwhile
                await asyncio.sleep(pace_s)
                result: Any = await call.session.run(user_input=text)
                for ev in result.events:
                    item = getattr(ev, "item", None)
                    if isinstance(item, llm.ChatMessage) and item.role == "assistant":
                        if (v := (item.metrics or {}).get("llm_node_ttft")) is not None:
                            ttft.append(float(v))
        finally:
            await call.aclose()
    tokens = [g.context_tokens or 0 for g in call.turn_log.generations]
    summaries = call.context.stats.summaries if call.context else 0
    return {"tokens": tokens, "ttft": ttft, "summaries": summaries}


def _start_worker(redis_url: str, queue: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": redis_url, "CALLCENTER_CELERY_QUEUE": queue}
    return subprocess.Popen(
        [sys.executable, "-m", "tasks", "worker", "celery", "--pool", "solo", "--queues", queue],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def bench_context(turns: int = 50, pace_s: float = 2.0) -> dict[str, Any]:
    from cache.redis_server import ensure_redis

    s = get_settings()
    url = ensure_redis(s)
    # Both runs start with the model loaded and the system prompt read (else the first run's
    # first turn alone pays for it).
    await asyncio.to_thread(
        LocalLLMEngine.shared().prefill, [{"role": "system", "content": instructions_for(load_tenant(None))}]
    )
    queue = f"bench-context-{uuid.uuid4().hex[:6]}"
    worker = _start_worker(url, queue)
    try:
        time.sleep(3)  # let the worker connect; jobs queued before that simply wait
        services = CallServices(
            jobs=JobClient(url, queue), keep_recent=s.context_keep_recent, max_messages=s.context_max_messages
        )
        managed = await _run(turns, services, pace_s, bounded=True)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    unmanaged = await _run(turns, CallServices(), pace_s, bounded=False)
    return {
        "turns": turns,
        "pace_s": pace_s,
        "max_context_tokens": max(managed["tokens"]),
        "max_context_tokens_unmanaged": max(unmanaged["tokens"]),
        "turn_latency_p50_managed": percentile(managed["ttft"], 50),
        "turn_latency_p50_unmanaged": percentile(unmanaged["ttft"], 50),
        "turn_latency_p95_managed": percentile(managed["ttft"], 95),
        "turn_latency_p95_unmanaged": percentile(unmanaged["ttft"], 95),
        "summaries": managed["summaries"],
        "per_turn": {
            "context_tokens_managed": managed["tokens"],
            "context_tokens_unmanaged": unmanaged["tokens"],
            "latency_managed": managed["ttft"],
            "latency_unmanaged": unmanaged["ttft"],
        },
    }
