"""The per-turn timeline and its waterfall (issue 23 item 4), on a real simulated call.

One call through the real `AgentSession` (instant profile: the framework, VAD and endpointing are
real, the models answer at once) against the real semantic cache in the embedded Redis Stack,
warmed with the tenant's FAQ: two FAQ questions (hits) around one in no FAQ entry (a miss). Its
report must give every answered turn a complete, ordered timeline whose gaps add up to the
turn's voice_to_voice, a valid waterfall.png, and the dashboard must show the chart only with the
read token. The worker's way of building turns (`agent.worker.turn_metrics`, agent clock) is run
on the same call's chat history.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from agent.call.assemble import CallServices, prewarm_cache
from agent.call.session import TurnTuning
from agent.call.timeline import agent_timelines
from agent.call.waterfall import MAX_ROWS, render
from agent.providers import build_providers
from agent.sim.call import CallResult, SimulatedCall
from agent.sim.scenario import Scenario
from core.call_report import TIMELINE, WATERFALL, TurnMetrics, TurnTimeline, turn_timeline
from core.settings import get_settings
from core.tenants import load_tenant
from tests.test_dashboard_security import READ, app_for, bearer, serve

# two FAQ questions (hits) around one in the facts but in no FAQ entry (a miss the LLM answers)
LINES = ["What are your opening hours?", "Is delivery free on a sixty dollar order?", "Where is the store?"]
CALL_ID = "20261202-sim-timeline"
PNG = b"\x89PNG\r\n\x1a\n"
_done: dict[str, CallResult] = {}


@pytest.fixture(scope="module")
def call(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> CallResult:
    """The call, run once for this module's tests (about 15 s)."""
    if "result" not in _done:
        from cache.admin import CacheAdmin
        from cache.semantic import ResponseCache

        ns = f"timeline-{uuid.uuid4().hex[:8]}"
        CacheAdmin(redis_url, namespace=ns).warm(tenant="acme")
        out = tmp_path_factory.mktemp("calls") / CALL_ID

        async def go() -> CallResult:
            cache = ResponseCache(redis_url, namespace=ns, budget_ms=5000)
            # as open_cache does before any call: a cold embedder can miss the first lookup's
            # deadline on a busy machine, and that turn would be a bypass
            await asyncio.to_thread(prewarm_cache, cache)
            tenant = load_tenant("acme")
            providers = build_providers("instant", get_settings())
            turns: list[dict[str, Any]] = []
            for line in LINES:
                turns += [{"say": line}, {"pause": 0.5}]
            sim = SimulatedCall(
                Scenario(tenant="acme", turns=turns),
                tenant,
                providers,
                out,
                services=CallServices(cache=cache),
            )
            try:
                return await asyncio.wait_for(sim.run(), 120)  # a hang guard, not a latency limit
            finally:
                await cache.close()

        _done["result"] = asyncio.run(go())
    return _done["result"]


def _answered(result: CallResult) -> list[TurnMetrics]:
    return [t for t in result.turns if t.voice_to_voice is not None]


def test_every_answered_turn_has_an_ordered_timeline(call: CallResult) -> None:
    assert call.error is None
    answered = _answered(call)
    assert len(answered) == len(LINES), [(t.user_text, t.voice_to_voice) for t in call.turns]
    outcomes = [t.cache_outcome for t in answered]
    assert outcomes.count("hit") == 2 and outcomes.count("miss") == 1, outcomes
    for t in answered:
        tl = t.timeline
        assert tl is not None and tl.clock == "line", t
        missing = [s for s in TIMELINE if getattr(tl, s) is None]
        # a hit never calls the LLM: its first-token time is null, not invented
        assert missing == (["llm_first_token"] if t.cache_hit else []), (t.index, missing)
        times = [v for _, v in tl.stages()]
        assert times == sorted(times), (t.index, tl.stages())
        assert tl.ordered()
        # the VAD decides after its minimum silence (livekit's event is back-dated; not used)
        assert tl.vad_end is not None and tl.caller_last_sample is not None
        assert tl.vad_end - tl.caller_last_sample >= TurnTuning().vad_min_silence, tl


def test_the_gaps_add_up_to_voice_to_voice(call: CallResult) -> None:
    """voice_to_voice is read off the call's audio timeline (caller's last sample -> agent's
    first sample); the timeline places both samples on the wall clock at the same tick, so its
    gaps, which run from the first to the last of them, sum to it."""
    for t in _answered(call):
        assert t.timeline is not None and t.voice_to_voice is not None
        gaps = t.timeline.gaps()
        assert gaps[0].start == "caller_last_sample" and gaps[-1].end == "agent_first_sample"
        assert sum(g.seconds for g in gaps) == pytest.approx(t.voice_to_voice, abs=1e-4)
        assert t.timeline.span() == pytest.approx(t.voice_to_voice, abs=1e-4)
        # a hit's lookup runs straight on to the first TTS frame; a miss waits for the LLM
        ends = [g.end for g in gaps]
        assert ("llm_first_token" in ends) is (not t.cache_hit)


def test_metrics_json_holds_the_timeline_and_older_reports_still_read(call: CallResult) -> None:
    doc = json.loads((call.out_dir / "metrics.json").read_text())
    rows = [r for r in doc["turns"] if r["voice_to_voice"] is not None]
    assert rows and all(set(TIMELINE) <= set(r["timeline"]) for r in rows)
    for row, t in zip(rows, _answered(call), strict=True):
        assert turn_timeline(row) == t.timeline  # the gaps are derivable from the file alone
        assert TurnMetrics.model_validate(row) == t
    old = {k: v for k, v in rows[0].items() if k != "timeline"}  # a report from before timelines
    assert TurnMetrics.model_validate(old).timeline is None and turn_timeline(old) is None
    assert turn_timeline({"timeline": {"vad_end": "soon"}}) is None


def test_the_worker_convention_times_the_same_turns_on_the_agent_clock(call: CallResult) -> None:
    """`agent.worker.turn_metrics` (one turn per user message, e2e_latency as voice_to_voice) with
    the timelines `Call.write_report` gives the worker's turns: the agent clock's span is the
    framework's e2e latency, and every stage is still in order."""
    from agent.worker import turn_metrics

    assert call.call is not None and call.clock is not None
    messages = call.call.messages()
    turns = turn_metrics(messages, call.call.turn_log)
    agent_timelines(turns, messages, call.call.turn_log, call.clock)
    timed = [t for t in turns if t.voice_to_voice is not None]
    assert len(timed) == len(LINES)
    for t in timed:
        assert t.timeline is not None and t.timeline.clock == "agent"
        assert t.timeline.ordered(), t.timeline.stages()
        assert t.timeline.span() == pytest.approx(t.voice_to_voice, abs=1e-6)
        assert (t.timeline.llm_first_token is None) is t.cache_hit


def test_the_waterfall_is_a_png_beside_metrics_json(call: CallResult) -> None:
    path = call.out_dir / WATERFALL
    data = path.read_bytes()
    assert data.startswith(PNG)
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.width >= 600 and img.height >= 150
        # drawn, not blank: the segments' colours are in it
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 10
    assert path.stat().st_mode & 0o077 == 0  # beside the caller's PII: owner-only
    # a call with no timeline still gets a chart saying so, never an exception
    assert render([TurnMetrics(index=0)]).startswith(PNG)
    # a long call draws its MAX_ROWS slowest turns: the chart's height stops growing
    many = [TurnMetrics(index=i, timeline=TurnTimeline(caller_last_sample=0.0, agent_first_sample=i / 100))
            for i in range(3 * MAX_ROWS)]  # fmt: skip
    with Image.open(io.BytesIO(render(many))) as img, Image.open(io.BytesIO(render(many[:MAX_ROWS]))) as cap:
        assert img.height == cap.height


def test_the_call_page_shows_the_waterfall_behind_the_read_token(call: CallResult) -> None:
    calls_dir = call.out_dir.parent
    png = (call.out_dir / WATERFALL).read_bytes()
    url = f"/calls/{CALL_ID}/{WATERFALL}"
    with serve(app_for(calls_dir)) as base, httpx.Client(base_url=base) as c:
        assert c.get(url).status_code == 401
        assert c.get(url, headers=bearer("wrong-token")).status_code == 403
        r = c.get(url, headers=bearer(READ))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == png
        page = c.get(f"/calls/{CALL_ID}", headers=bearer(READ))
        assert page.status_code == 200
        assert f'<img id="waterfall" src="{url}"' in page.text
        assert page.text.count("<tr><td>") >= 2 * len(LINES)  # the turns table and the gaps table
        assert c.get(f"/calls/{CALL_ID}").status_code == 401
        assert c.get(f"/calls/..%2F{CALL_ID}/{WATERFALL}", headers=bearer(READ)).status_code == 404


def test_a_symlinked_or_malformed_waterfall_is_never_served(call: CallResult, tmp_path: Path) -> None:
    calls_dir = tmp_path / "calls"
    d = calls_dir / "linked"
    d.mkdir(parents=True)
    for name in ("metrics.json", "transcript.json"):
        (d / name).write_bytes((call.out_dir / name).read_bytes())
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG + b"not yours")
    os.symlink(secret, d / WATERFALL)
    bad = calls_dir / "bad-timeline"
    bad.mkdir()
    doc = json.loads((call.out_dir / "metrics.json").read_text())
    doc["turns"][0]["timeline"] = {"vad_end": "soon"}
    (bad / "transcript.json").write_text("{}")
    (bad / "metrics.json").write_text(json.dumps(doc))
    with serve(app_for(calls_dir)) as base, httpx.Client(base_url=base, headers=bearer(READ)) as c:
        assert c.get(f"/calls/linked/{WATERFALL}").status_code == 404
        page = c.get("/calls/linked")
        assert page.status_code == 200 and 'id="waterfall"' not in page.text
        assert 'id="timeline"' in page.text  # the gaps table still comes from metrics.json
        assert c.get("/calls/bad-timeline").status_code == 404  # skipped as malformed, not a 500


def test_timeline_helpers_skip_what_did_not_happen() -> None:
    tl = TurnTimeline(caller_last_sample=10.0, vad_end=10.3, final_transcript=10.5, reply_started=10.55,
                      cache_decision=10.6, tts_first_frame=10.7, agent_first_sample=10.72)  # fmt: skip
    assert [g.end for g in tl.gaps()] == [
        "vad_end", "final_transcript", "reply_started", "cache_decision", "tts_first_frame", "agent_first_sample"
    ]  # fmt: skip
    assert sum(g.seconds for g in tl.gaps()) == pytest.approx(tl.span() or 0)
    assert tl.ordered()
    assert TurnTimeline.model_validate_json(tl.model_dump_json()) == tl
    assert not TurnTimeline(caller_last_sample=2.0, vad_end=1.0).ordered()
    assert TurnTimeline(vad_end=1.0).span() is None and TurnTimeline().gaps() == []
