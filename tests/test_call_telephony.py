"""Phone behaviours inside a simulated call: DTMF 0 -> transfer, failures handled, events recorded."""

from __future__ import annotations

import json
from pathlib import Path

from agent.providers import build_providers
from agent.sim.call import SimulatedCall
from agent.sim.scenario import load_scenario
from core.settings import get_settings
from core.tenants import load_tenant

ROOT = Path(__file__).resolve().parent.parent


async def _call(tmp_path: Path, outcome: str):
    sc = load_scenario(ROOT / "scenarios" / "press-zero.yaml")
    call = SimulatedCall(
        sc,
        load_tenant(sc.tenant),
        build_providers("instant", get_settings()),
        tmp_path,
        transfer_outcome=outcome,
    )
    result = await call.run()
    return result, json.loads((tmp_path / "transcript.json").read_text())


async def test_dtmf_zero_transfers_to_a_human(tmp_path):
    result, transcript = await _call(tmp_path, "completed")
    kinds = [e["type"] for e in transcript["events"]]
    assert "dtmf" in kinds and "transfer" in kinds, kinds
    transfer = next(e for e in transcript["events"] if e["type"] == "transfer")
    assert transfer["to"] == load_tenant("acme").transfer_number and transfer["ok"] is True
    # a completed transfer ends our side of the call: no caller hang-up, last line never spoken
    assert not any(e["type"] == "hangup" and e.get("by") == "caller" for e in transcript["events"])
    assert result.error is None


async def test_busy_transfer_is_told_and_the_call_goes_on(tmp_path):
    result, transcript = await _call(tmp_path, "busy")
    transfer = next(e for e in transcript["events"] if e["type"] == "transfer")
    assert not transfer.get("ok", False)
    said = " ".join(i["text"] or "" for i in transcript["items"] if i["role"] == "assistant").lower()
    assert "busy" in said or "colleague" in said
    # the caller's next line was still heard and the caller hung up normally
    assert any(e["type"] == "hangup" and e.get("by") == "caller" for e in transcript["events"])
    assert result.error is None
