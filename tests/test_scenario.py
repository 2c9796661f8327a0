"""Scenario files: the stable format loads, bad input names the field."""

from pathlib import Path

import pytest

from agent.sim.scenario import load_scenario
from core.errors import UserError

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenarios_load(path):
    sc = load_scenario(path)
    assert sc.turns and sc.name == path.stem


def test_at_least_one_noisy_scenario_is_10db_babble():
    lines = [load_scenario(p).line for p in SCENARIOS]
    assert any(line.noise == "babble" and line.snr_db == 10 for line in lines)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("turns: [{say: hi}]\nline: {noise: pink}\n", "line.noise"),
        ("turns: [{say: hi}]\nline: {snr_db: 500}\n", "line.snr_db"),
        ("turns: [{say: hi, pause: 1}]\n", "turns[0]"),
        ("turns: []\n", "turns"),
        ("turns: [{pause: 1, text: hello}]\n", "text only applies to a play turn"),
        ("turns: [{play: a.wav, say: hi}]\n", "exactly one of"),
        ("turns: [{sya: hi}]\n", "turns[0].sya"),
        ("turns: [{pause: 1, barge_in_after: 2}]\n", "turns[0]"),
        ("turns: [{say: hi}\n", "invalid YAML"),
        ("- just a list\n", "mapping"),
    ],
)
def test_bad_scenarios_name_the_field(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(UserError) as e:
        load_scenario(p)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_scenario(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_scenario(tmp_path / "nope.yaml")
