"""`callcenter sip ...` end to end: Typer app -> real livekit-api client -> fake Twirp server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sip.cli import app
from tests.support.fake_livekit import FakeLiveKit

EXAMPLE = str(Path(__file__).resolve().parent.parent / "deploy" / "telephony.yaml")
SECRETS = {
    "SIP_INBOUND_USERNAME": "in-user",
    "SIP_INBOUND_PASSWORD": "in-pass-s3cret",
    "SIP_OUTBOUND_USERNAME": "out-user",
    "SIP_OUTBOUND_PASSWORD": "out-pass-s3cret",
}
runner = CliRunner()


@pytest.fixture
def server() -> Iterator[tuple[FakeLiveKit, dict[str, str]]]:
    with FakeLiveKit().running() as fake:
        env = {
            "LIVEKIT_URL": fake.url,
            "LIVEKIT_API_KEY": fake.api_key,
            "LIVEKIT_API_SECRET": fake.api_secret,
        }
        yield fake, {**env, **SECRETS, "COLUMNS": "200"}


def run(env: dict[str, str], *args: str):  # noqa: ANN201
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def test_plan_apply_list_delete_dial(server) -> None:  # noqa: ANN001
    fake, env = server
    r = run(env, "plan", EXAMPLE)
    assert r.exit_code == 0, r.output
    assert "Plan: 4 to create, 0 to update, 0 to delete, 0 unchanged." in r.output
    r = run(env, "apply", EXAMPLE)
    assert r.exit_code == 0 and "Applied: 4 to create" in r.output
    r = run(env, "apply", EXAMPLE)
    assert "0 to create, 0 to update, 0 to delete, 4 unchanged" in r.output
    r = run(env, "list")
    assert r.exit_code == 0 and "twilio-inbound" in r.output and "acme-inbound" in r.output
    r = run(env, "dial", "+14155550123", "--trunk", "twilio-outbound", "--tenant", "globex")
    assert r.exit_code == 0 and "tenant=globex" in r.output
    assert len(fake.calls("CreateSIPParticipant")) == 1
    r = run(env, "delete", "globex-inbound")
    assert r.exit_code == 0 and "deleted dispatch_rule globex-inbound" in r.output
    # credentials never appear in anything we print
    for cmd in (("plan", EXAMPLE), ("list",)):
        out = run(env, *cmd).output
        assert not any(secret in out for secret in SECRETS.values())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("plan", "/nonexistent.yaml"), "no such file"),
        (("dial", "12345", "--trunk", "x"), "not E.164"),
        (("dial", "+14155550123", "--trunk", "nope"), "no outbound trunk named 'nope'"),
        (("delete", "ghost"), "nothing named 'ghost'"),
        (("delete", "x", "--kind", "phone"), "--kind must be one of"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(server, args: tuple[str, ...], expected: str) -> None:  # noqa: ANN001
    _, env = server
    r = run(env, *args)
    assert r.exit_code != 0
    assert expected in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output


def test_bad_yaml_path_in_error(server, tmp_path: Path) -> None:  # noqa: ANN001
    _, env = server
    f = tmp_path / "t.yaml"
    f.write_text(
        "inbound_trunks:\n  - name: a\n    numbers: ['+15550001111']\n  - name: b\n    numbers: ['12']\n"
    )
    r = run(env, "apply", str(f))
    assert r.exit_code != 0 and "inbound_trunks[1].numbers[0]: not E.164" in r.stderr


def test_auth_failure_and_connection_refused(server) -> None:  # noqa: ANN001
    _, env = server
    r = run({**env, "LIVEKIT_API_SECRET": "x" * 40}, "list")
    assert r.exit_code != 0 and "rejected the API key" in r.stderr and r.stderr.count("\n") == 1
    r = run({**env, "LIVEKIT_URL": "http://127.0.0.1:9"}, "list")
    assert r.exit_code != 0 and "cannot reach LiveKit" in r.stderr and r.stderr.count("\n") == 1
    r = run({**env, "LIVEKIT_URL": ""}, "list")
    assert r.exit_code != 0 and "LIVEKIT_URL is not set" in r.stderr


def test_missing_secret_env_is_reported(server) -> None:  # noqa: ANN001
    _, env = server
    env = {k: v for k, v in env.items() if k != "SIP_OUTBOUND_PASSWORD"}
    r = runner.invoke(app, ["plan", EXAMPLE], env={**env, "SIP_OUTBOUND_PASSWORD": ""})
    assert r.exit_code != 0
    assert (
        "outbound_trunks[0].auth_password_env: environment variable SIP_OUTBOUND_PASSWORD is not set"
        in r.stderr
    )
