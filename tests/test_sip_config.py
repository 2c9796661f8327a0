"""telephony.yaml validation: every error names its YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import UserError
from sip.config import load_config, parse_config

TENANTS = ["acme", "globex"]


def err(data: object) -> str:
    with pytest.raises(UserError) as e:
        parse_config(data, known_tenants=TENANTS)
    return str(e.value)


def test_example_file_is_valid() -> None:
    cfg = load_config(Path(__file__).resolve().parent.parent / "deploy" / "telephony.yaml")
    assert [r.tenant for r in cfg.dispatch_rules] == ["acme", "globex"]


def test_number_not_e164_points_at_path() -> None:
    msg = err(
        {
            "inbound_trunks": [
                {"name": "a", "numbers": ["+15550001111"]},
                {"name": "b", "numbers": ["555-1234"]},
            ]
        }
    )
    assert "inbound_trunks[1].numbers[0]: not E.164" in msg


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"inbound_trunks": [{"name": "a", "auth_password": "hunter2"}]},
            "inbound_trunks[0].auth_password: literal",
        ),
        ({"inbound_trunks": [{"name": "a", "auth_username_env": "U"}]}, "inbound_trunks[0]: set both"),
        (
            {"inbound_trunks": [{"name": "a", "allowed_addresses": ["10.0.0.0/8", "nope"]}]},
            "allowed_addresses[1]",
        ),
        (
            {"outbound_trunks": [{"name": "o", "address": "sip:x.example.com", "numbers": ["+15550001111"]}]},
            "outbound_trunks[0]: address is a bare host",
        ),
        (
            {"outbound_trunks": [{"name": "o", "address": "x.example.com", "numbers": []}]},
            "outbound_trunks[0].numbers",
        ),
        (
            {"dispatch_rules": [{"name": "r", "type": "direct"}]},
            "dispatch_rules[0]: type 'direct' needs room_name",
        ),
        ({"dispatch_rules": [{"name": "r", "type": "lottery"}]}, "dispatch_rules[0].type"),
        (
            {"dispatch_rules": [{"name": "r", "type": "callee", "trunks": ["ghost"]}]},
            "dispatch_rules[0].trunks[0]: unknown",
        ),
        (
            {"dispatch_rules": [{"name": "r", "type": "individual", "tenant": "initech"}]},
            "dispatch_rules[0].tenant",
        ),
        (
            {"dispatch_rules": [{"name": "r", "type": "individual", "colour": "red"}]},
            "dispatch_rules[0].colour",
        ),
        (
            {
                "inbound_trunks": [{"name": "x", "numbers": ["+15550001111"]}],
                "dispatch_rules": [{"name": "x", "type": "individual"}],
            },
            "dispatch_rules[0].name: duplicate",
        ),
    ],
)
def test_validation_errors(data: object, expected: str) -> None:
    assert expected in err(data)


def test_all_errors_on_one_line() -> None:
    msg = err({"inbound_trunks": [{"name": "a", "numbers": ["1", "2"]}]})
    assert "numbers[0]" in msg and "numbers[1]" in msg and "\n" not in msg


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("inbound_trunks: [\n")
    with pytest.raises(UserError, match="invalid YAML"):
        load_config(bad)


def test_dispatch_rule_maps_onto_livekit_objects() -> None:
    cfg = parse_config(
        {
            "dispatch_rules": [
                {
                    "name": "r",
                    "type": "callee",
                    "room_prefix": "c-",
                    "randomize": True,
                    "tenant": "acme",
                    "pin": "1234",
                }
            ]
        },
        known_tenants=TENANTS,
    )
    info = cfg.dispatch_rules[0].to_proto([], "callcenter")
    assert info.rule.WhichOneof("rule") == "dispatch_rule_callee"
    assert info.rule.dispatch_rule_callee.randomize and info.rule.dispatch_rule_callee.pin == "1234"
    direct = parse_config(
        {"dispatch_rules": [{"name": "d", "type": "direct", "room_name": "lobby"}]}
    ).dispatch_rules[0]
    assert direct.to_proto([], "x").rule.dispatch_rule_direct.room_name == "lobby"
