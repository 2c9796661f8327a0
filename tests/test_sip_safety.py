"""Operator mistakes with `callcenter sip`: nothing on the server is lost, no credential is printed.

The real `callcenter` CLI (a subprocess) and the real livekit-api client against the fake Twirp
LiveKit server (tests/support/fake_livekit.py) running in a background thread.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit import api
from livekit.protocol import sip as pb_sip

from core.settings import REPO_ROOT
from tests.support.fake_livekit import FakeLiveKit

CLI = str(Path(sys.executable).with_name("callcenter"))
EXAMPLE = REPO_ROOT / "deploy" / "telephony.yaml"
SECRETS = {
    "SIP_INBOUND_USERNAME": "in-user",
    "SIP_INBOUND_PASSWORD": "in-pass-s3cret",
    "SIP_OUTBOUND_USERNAME": "out-user",
    "SIP_OUTBOUND_PASSWORD": "out-pass-s3cret",
}
PARTIAL = """
inbound_trunks:
  - name: twilio-inbound
    numbers: ["+15550100100"]
    allowed_addresses: ["54.172.60.0/30", "54.244.51.0/30"]
    auth_username_env: SIP_INBOUND_USERNAME
    auth_password_env: SIP_INBOUND_PASSWORD
    krisp_enabled: true
    max_call_duration: 1800
dispatch_rules:
  - name: acme-inbound
    type: individual
    room_prefix: call-acme-
    trunks: [twilio-inbound]
    numbers: ["+15550100100"]
    tenant: acme
"""


@pytest.fixture
def lk() -> Iterator[tuple[FakeLiveKit, dict[str, str]]]:
    with FakeLiveKit().running() as fake:
        env = {
            "LIVEKIT_URL": fake.url,
            "LIVEKIT_API_KEY": fake.api_key,
            "LIVEKIT_API_SECRET": fake.api_secret,
        }
        yield fake, {**env, **SECRETS}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "sip", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO_ROOT), "COLUMNS": "250", **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr
    return lines[0]


def objects(fake: FakeLiveKit) -> set[str]:
    return {t.name for t in [*fake.inbound.values(), *fake.outbound.values(), *fake.rules.values()]}


ALL = {"twilio-inbound", "twilio-outbound", "acme-inbound", "globex-inbound"}


@pytest.mark.parametrize(
    "text", ["", "# all commented out\n# inbound_trunks: []\n", "{}\n", "agent_name: x\n"]
)
def test_an_empty_plan_is_refused_and_deletes_nothing(lk, tmp_path: Path, text: str) -> None:  # noqa: ANN001
    fake, env = lk
    assert cli(env, "apply", str(EXAMPLE)).returncode == 0 and objects(fake) == ALL
    f = tmp_path / "empty.yaml"
    f.write_text(text)
    runs = [("apply", str(f), "--prune")] + ([("apply", str(f)), ("plan", str(f))] if not text else [])
    for args in runs:
        assert "refusing an empty plan" in one_line_error(cli(env, *args))
    assert objects(fake) == ALL
    assert not fake.calls("DeleteSIPTrunk") and not fake.calls("DeleteSIPDispatchRule")


def test_apply_keeps_what_the_file_does_not_mention_unless_pruned(lk, tmp_path: Path) -> None:  # noqa: ANN001
    fake, env = lk
    assert cli(env, "apply", str(EXAMPLE)).returncode == 0
    f = tmp_path / "partial.yaml"
    f.write_text(PARTIAL)
    r = cli(env, "apply", str(f))
    assert r.returncode == 0, r.stderr
    assert "0 to delete" in r.stdout and objects(fake) == ALL
    assert "Left alone" in r.stdout and "twilio-outbound" in r.stdout and "globex-inbound" in r.stdout
    plan = cli(env, "plan", str(f), "--prune")
    assert "2 to delete" in plan.stdout and objects(fake) == ALL  # plan never writes
    r = cli(env, "apply", str(f), "--prune")
    assert r.returncode == 0 and "2 to delete" in r.stdout
    assert objects(fake) == {"twilio-inbound", "acme-inbound"}


@pytest.mark.parametrize(
    ("yaml_text", "secret"),
    [
        (
            "inbound_trunks:\n  - name: a\n    numbers: ['+15550001111']\n"
            "    auth_username_env: SIP_USER\n    auth_password_env: Hunter2LiteralSecret\n",
            "Hunter2LiteralSecret",
        ),
        (
            "outbound_trunks:\n  - name: o\n    address: 'admin:secret@sip.example.com'\n"
            "    numbers: ['+15550001111']\n",
            "admin:secret",
        ),
        (
            "outbound_trunks:\n  - name: o\n    address: 'secret@sip.example.com'\n    numbers: ['+15550001111']\n",
            "secret@",
        ),
    ],
)
def test_credentials_in_the_file_are_refused_without_echoing_them(
    lk,
    tmp_path: Path,
    yaml_text: str,
    secret: str,  # noqa: ANN001
) -> None:
    fake, env = lk
    f = tmp_path / "t.yaml"
    f.write_text(yaml_text)
    for cmd in ("plan", "apply"):
        r = cli({**env, "SIP_USER": "u"}, cmd, str(f))
        line = one_line_error(r)
        assert secret not in r.stdout + r.stderr, line
    assert not objects(fake)


def test_list_masks_credentials_in_a_server_side_address(lk) -> None:  # noqa: ANN001
    """A trunk made by another tool with user:password@host in its address."""
    fake, env = lk

    async def make() -> None:
        lkapi = api.LiveKitAPI(fake.url, fake.api_key, fake.api_secret)
        try:
            trunk = pb_sip.SIPOutboundTrunkInfo(
                name="legacy", address="admin:secret@sip.example.com", numbers=["+15550001111"]
            )
            await lkapi.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=trunk))
        finally:
            await lkapi.aclose()

    asyncio.run(make())
    r = cli(env, "list")
    assert r.returncode == 0, r.stderr
    assert "***@sip.example.com" in r.stdout and "secret" not in r.stdout and "admin" not in r.stdout


@pytest.mark.parametrize(
    ("url", "says", "secret"),
    [
        ("http://user:hunter2@127.0.0.1:7880", "must not contain credentials", "hunter2"),
        ("https://:hunter2@lk.example.com", "must not contain credentials", "hunter2"),
        ("http://127.0.0.1:99999", "not a valid URL", "\x00"),
        ("http://", "no host", "\x00"),
        ("ftp://user:hunter2@lk.example.com", "must start with http", "hunter2"),
    ],
)
def test_a_bad_livekit_url_is_one_line_without_the_password(lk, url: str, says: str, secret: str) -> None:  # noqa: ANN001
    _, env = lk
    r = cli({**env, "LIVEKIT_URL": url}, "list")
    assert says in one_line_error(r)
    assert secret not in r.stderr + r.stdout


def test_unreachable_livekit_error_hides_the_password(lk) -> None:  # noqa: ANN001
    """The --url flag passes the same check as LIVEKIT_URL."""
    _, env = lk
    r = cli(env, "list", "--url", "http://u:pw-s3cret@127.0.0.1:9")
    one_line_error(r)
    assert "pw-s3cret" not in r.stderr


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\x00\x01binary\x89PNG", b"inbound_trunks:\n  - name: caf\xe9\n", b"\x00\x00\x00"],
)
def test_a_binary_plan_file_is_one_line(lk, tmp_path: Path, data: bytes) -> None:  # noqa: ANN001
    fake, env = lk
    f = tmp_path / "binary.yaml"
    f.write_bytes(data)
    line = one_line_error(cli(env, "plan", str(f)))
    assert str(f) in line and ("UTF-8" in line or "invalid YAML" in line)
    assert not fake.requests  # refused before contacting LiveKit
