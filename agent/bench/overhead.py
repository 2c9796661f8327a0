"""What our pipeline adds on top of the cloud providers' own latencies (issue 23 item 5).

Runs simulated calls on the `cloud` profile against OpenAI- and ElevenLabs-compatible endpoints
that answer with known latencies (`scripts/bench-cloud-overhead` starts the test suite's fake
servers with them: STT final `--stt` s after the upload, LLM first token `--ttft` s after the
request, TTS first audio `--tts` s after the first text) and splits each answered turn's
voice-to-voice on its timeline (`core.call_report.TurnTimeline`):

    voice_to_voice = vad_wait + (stt + ttft + tts) + overhead

`vad_wait` (the caller's last sample -> the VAD's end of speech) is the turn-taking decision,
reported beside the rest, not counted as overhead: it is the same for every provider. The
overhead is everything else the caller waits for: uploads and HTTP, the cache lookup and the
prompt, waiting for a clause to speak, resampling and playout. Per stage:

- stt: final transcript - VAD end - stt
- llm: LLM first token - final transcript - ttft (cache lookup, prompt, request)
- tts: first TTS frame - LLM first token - tts (first clause, request, decode)
- playout: first agent sample on the line - first TTS frame

The fakes stream a reply's tokens without delay, so waiting for the first clause costs here only
what our pipeline adds. Run: `scripts/bench-cloud-overhead [--runs N] [--out FILE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCENARIO = ROOT / "scenarios" / "opening-hours.yaml"
PARTS = ("vad_wait", "stt", "llm", "tts", "playout", "overhead", "voice_to_voice")


def split_turn(tl: Any, v2v: float, latency: dict[str, float]) -> dict[str, float] | None:
    """One answered miss's voice-to-voice split into the turn-taking wait, the providers' time
    and what our pipeline adds; None when a stage is missing (a cache hit, an unanswered turn).

    Args:
        tl: the turn's `TurnTimeline`.
        v2v: its voice_to_voice (s).
        latency: the providers' latencies, keys "stt", "ttft", "tts" (s).
    """
    need = ("caller_last_sample", "vad_end", "final_transcript", "llm_first_token", "tts_first_frame")
    if any(getattr(tl, k) is None for k in (*need, "agent_first_sample")):
        return None
    vad_wait = tl.vad_end - tl.caller_last_sample
    stt = tl.final_transcript - tl.vad_end - latency["stt"]
    llm = tl.llm_first_token - tl.final_transcript - latency["ttft"]
    tts = tl.tts_first_frame - tl.llm_first_token - latency["tts"]
    playout = tl.agent_first_sample - tl.tts_first_frame
    overhead = v2v - vad_wait - sum(latency.values())
    return {  # v2v = vad_wait + latencies + stt + llm + tts + playout (the stages in between)
        "vad_wait": vad_wait,
        "stt": stt,
        "llm": llm,
        "tts": tts,
        "playout": playout,
        "overhead": overhead,
        "voice_to_voice": v2v,
    }


def _p50(xs: list[float]) -> float | None:
    from agent.call.report import percentile

    return percentile(xs, 50)


async def measure(scenario: Path, runs: int, latency: dict[str, float], console: Console) -> dict[str, Any]:
    """`runs` calls of `scenario` on the cloud profile without the cache (every turn a miss)."""
    from agent.sim.run import run_call

    turns: list[dict[str, float]] = []
    skipped = 0
    for r in range(runs):
        with tempfile.TemporaryDirectory() as d:
            res = await run_call(scenario, Path(d), profile="cloud", use_cache=False)
        if res.error:
            raise RuntimeError(f"run {r} failed: {res.error}")
        for t in res.turns:
            parts = None
            if t.timeline is not None and t.voice_to_voice is not None:
                parts = split_turn(t.timeline, t.voice_to_voice, latency)
            if parts is None:
                skipped += 1
            else:
                turns.append(parts)
        console.print(f"[dim]run {r + 1}/{runs}: {len(res.turns)} turns[/]")
    server = _fake_stt_times()
    if len(server) == len(turns) and skipped == 0:
        # one transcription per turn, in order: where the fake's own whisper outlasted the
        # latency it was told to answer with, that time was the provider's, not ours
        for split, took in zip(turns, server, strict=True):
            extra = max(0.0, took - latency["stt"])
            split["stt"] -= extra
            split["overhead"] -= extra
            split["provider_stt_s"] = max(took, latency["stt"])
    elif server and max(server) > latency["stt"] * 1.1:
        console.print(
            f"[yellow]the fake's own whisper took up to {max(server) * 1000:.0f} ms (> {latency['stt'] * 1000:.0f} "
            "ms) and its requests do not match the turns one to one: the stt overhead is overstated[/]"
        )
    summary = {f"{k}_p50": _p50([t[k] for t in turns]) for k in PARTS}
    return {
        "what": "cloud profile against fake providers with fixed latencies (framework + our pipeline)",
        "scenario": scenario.name,
        "runs": runs,
        "provider_latency_s": latency,
        "turns": turns,
        "turns_skipped": skipped,
        "summary": summary,
        "goal_overhead_s": 0.05,
        "fake_stt_server_s": server,
    }


def _fake_stt_times() -> list[float]:
    """The fake OpenAI server's time per transcription (empty if the endpoint is not the fake)."""
    import httpx

    try:
        r = httpx.get(os.environ["OPENAI_BASE_URL"].rstrip("/") + "/_fake/stats", timeout=5)
        return [float(x) for x in r.json()["stt_server_s"]]
    except (httpx.HTTPError, ValueError, KeyError):
        return []


def print_table(doc: dict[str, Any], console: Console) -> None:
    lat = doc["provider_latency_s"]
    table = Table(
        title=f"cloud overhead — providers: STT {lat['stt'] * 1000:.0f} ms, LLM TTFT {lat['ttft'] * 1000:.0f} ms, "
        f"TTS {lat['tts'] * 1000:.0f} ms; p50 in ms over {len(doc['turns'])} turns"
    )
    for k in PARTS:
        table.add_column(k, justify="right")
    s = doc["summary"]
    table.add_row(*("—" if s[f"{k}_p50"] is None else f"{s[f'{k}_p50'] * 1000:.0f}" for k in PARTS))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--stt", type=float, default=0.1, help="STT final after the upload (s)")
    p.add_argument("--ttft", type=float, default=0.4, help="LLM first token (s)")
    p.add_argument("--tts", type=float, default=0.3, help="TTS first audio (s)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results" / "cloud-overhead.json")
    a = p.parse_args(argv)
    err = Console(stderr=True)
    if not os.environ.get("OPENAI_BASE_URL") or not os.environ.get("CALLCENTER_ELEVENLABS_BASE_URL"):
        err.print(
            "overhead: OPENAI_BASE_URL and CALLCENTER_ELEVENLABS_BASE_URL must point at endpoints with known "
            "latencies (run scripts/bench-cloud-overhead)"
        )
        return 2
    if a.runs < 1 or not a.scenario.is_file():
        err.print(f"overhead: need --runs >= 1 and an existing --scenario (got {a.runs}, {a.scenario})")
        return 2
    latency = {"stt": a.stt, "ttft": a.ttft, "tts": a.tts}
    doc = asyncio.run(measure(a.scenario, a.runs, latency, err))
    print_table(doc, Console())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2))
    err.print(f"[dim]wrote {a.out}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
