"""Issue 21 items 3 and 17 through the installed `callcenter cache` CLI on the real Redis:
bad cache settings and TTLs are refused with one line before anything is touched, and the admin
token is taken from a file or the environment and cannot be switched off by an empty variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import Result

from cache.admin import CacheAdmin

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "callcenter")
TOKEN = "0123456789abcdef-admin-token"
FAQ = [
    {
        "id": "hours",
        "question": "What are your opening hours?",
        "answer": "Eight to six, Monday to Saturday.",
    },
    {"id": "gift", "question": "Do you sell gift cards?", "answer": "Yes, in the store."},
    {"question": "Do you deliver?", "answer": "Yes, Monday to Saturday."},
    {"question": "What is your return policy?", "answer": "Within thirty days with a receipt."},
]


def cli(*args: str, redis_url: str, env: dict | None = None, cwd: Path = ROOT) -> Result:
    """`callcenter cache ARGS` in this process (typer's runner on the real app, real Redis)."""
    from typer.testing import CliRunner

    from cache.cli import app
    from core.settings import get_settings

    e = {k: None for k in os.environ if k.startswith("CALLCENTER_")}
    e.update({"REDIS_URL": redis_url, **(env or {})})
    old = Path.cwd()
    os.chdir(cwd)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env=e)
    finally:
        get_settings.cache_clear()
        os.chdir(old)


def subprocess_cli(*args: str, redis_url: str, env: dict) -> subprocess.CompletedProcess[str]:
    """The installed entry point, for the exit code and stderr a shell user sees."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    e.update({"REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1", **env})
    return subprocess.run([CLI, "cache", *args], capture_output=True, text=True, env=e, cwd=ROOT, timeout=120)


def one_line_error(p: Result | subprocess.CompletedProcess[str], needle: str) -> None:
    code = p.returncode if isinstance(p, subprocess.CompletedProcess) else p.exit_code
    assert code == 2, (code, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr + p.stdout


@pytest.fixture
def warmed(redis_url: str, tmp_path: Path) -> tuple[str, Path, dict[str, float]]:
    """A namespace holding FAQ's 4 entries (TTL 1 day) and their TTLs left."""
    ns = f"cli-{uuid.uuid4().hex[:8]}"
    faq = tmp_path / "faq.jsonl"
    faq.write_text("".join(json.dumps(r) + "\n" for r in FAQ))
    p = cli("warm", str(faq), "--tenant", "acme", "--ttl", "86400", "--namespace", ns, redis_url=redis_url)
    assert p.exit_code == 0 and "stored 4 of 4" in p.stdout, p.stderr
    return ns, faq, ttls(redis_url, ns)


def ttls(redis_url: str, ns: str) -> dict[str, float]:
    return {r["id"]: r["ttl_left_s"] for r in CacheAdmin(redis_url, namespace=ns).list(limit=0)}


def assert_intact(redis_url: str, ns: str, before: dict[str, float]) -> None:
    after = ttls(redis_url, ns)
    assert set(after) == set(before) and len(after) == 4
    assert all(after[k] and after[k] > 86000 for k in after)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--ttl", "-100"], {}, "--ttl must be between 60"),
        (["--ttl", "0"], {}, "--ttl must be between 60"),
        (["--ttl", "999999999999"], {}, "--ttl must be between 60"),
        ([], {"CALLCENTER_CACHE_TTL_S": "0"}, "CALLCENTER_CACHE_TTL_S"),
        ([], {"CALLCENTER_CACHE_TTL_S": "-5"}, "CALLCENTER_CACHE_TTL_S"),
        ([], {"CALLCENTER_CACHE_MAX_ENTRIES": "1"}, "CALLCENTER_CACHE_MAX_ENTRIES"),
        ([], {"CALLCENTER_CACHE_THRESHOLD": "5"}, "CALLCENTER_CACHE_THRESHOLD"),
        ([], {"CALLCENTER_CACHE_THRESHOLD": "0"}, "CALLCENTER_CACHE_THRESHOLD"),
        ([], {"CALLCENTER_CACHE_LOOKUP_BUDGET_MS": "-1"}, "CALLCENTER_CACHE_LOOKUP_BUDGET_MS"),
    ],
)
def test_bad_settings_refused_and_nothing_lost(
    redis_url: str, warmed: tuple[str, Path, dict[str, float]], args: list[str], env: dict, needle: str
) -> None:
    ns, faq, before = warmed
    p = cli("warm", str(faq), "--tenant", "acme", *args, "--namespace", ns, redis_url=redis_url, env=env)
    one_line_error(p, needle)
    assert_intact(redis_url, ns, before)


def test_installed_cli_refuses_bad_settings_in_one_line(
    redis_url: str, warmed: tuple[str, Path, dict[str, float]]
) -> None:
    ns, faq, before = warmed
    for args, env in ((["--ttl", "-100"], {}), ([], {"CALLCENTER_CACHE_TTL_S": "0"})):
        p = subprocess_cli(
            "warm", str(faq), "-t", "acme", *args, "--namespace", ns, redis_url=redis_url, env=env
        )
        one_line_error(p, "TTL" if env else "--ttl")
    assert_intact(redis_url, ns, before)


def test_bad_distances_refused(redis_url: str, warmed: tuple[str, Path, dict[str, float]]) -> None:
    ns, _faq, before = warmed
    p = cli("invalidate", "--similar-to", "hours", "-t", "acme", "--max-distance", "5", "--yes",
            "--namespace", ns, redis_url=redis_url)  # fmt: skip
    one_line_error(p, "--max-distance must be a cosine distance")
    one_line_error(cli("search", "hours", "-t", "acme", "--threshold", "-1", "--namespace", ns,
                       redis_url=redis_url), "--threshold")  # fmt: skip
    assert_intact(redis_url, ns, before)


def test_warm_that_would_evict_is_refused(redis_url: str, tmp_path: Path) -> None:
    ns = f"cli-{uuid.uuid4().hex[:8]}"
    words = [
        "hammers",
        "nails",
        "screws",
        "paint",
        "brushes",
        "ladders",
        "drills",
        "saws",
        "glue",
        "tape",
        "rope",
    ]
    rows = [
        {"question": f"Do you sell {a} and {b}?", "answer": "Yes."} for a in words for b in words if a != b
    ]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in rows[:60]))
    second.write_text("".join(json.dumps(r) + "\n" for r in rows[60:]))
    env = {"CALLCENTER_CACHE_MAX_ENTRIES": "100"}
    p = cli("warm", str(first), "-t", "acme", "--namespace", ns, redis_url=redis_url, env=env)
    assert p.exit_code == 0 and "stored 60 of 60" in p.stdout, p.stderr
    one_line_error(cli("warm", str(second), "-t", "acme", "--namespace", ns, redis_url=redis_url, env=env),
                   "would evict 10 existing entries")  # fmt: skip
    assert len(CacheAdmin(redis_url, namespace=ns).list(limit=0)) == 60


# ---- admin token (item 17) ---------------------------------------------------------------
def test_token_from_file_or_environment(redis_url: str, warmed: tuple[str, Path, dict[str, float]],
                                        tmp_path: Path) -> None:  # fmt: skip
    ns, _faq, _before = warmed
    env = {"CALLCENTER_ADMIN_TOKEN": TOKEN}
    inv = ("invalidate", "--yes", "--namespace", ns)
    one_line_error(cli(*inv, "gift-nope", redis_url=redis_url, env=env), "needs the admin token")
    one_line_error(cli(*inv, "acme~gift", "--token", "wrong-wrong-wrong-wrong", redis_url=redis_url, env=env),
                   "does not match")  # fmt: skip
    tf = tmp_path / "token"
    tf.write_text(TOKEN + "\n")
    p = cli(*inv, "acme~gift", "--token-file", str(tf), redis_url=redis_url, env=env)
    assert p.exit_code == 0 and "invalidated 1" in p.stdout, p.stderr
    p = cli(*inv, "acme~hours", redis_url=redis_url, env={**env, "CALLCENTER_TOKEN": TOKEN})
    assert p.exit_code == 0 and "invalidated 1" in p.stdout, p.stderr
    one_line_error(cli(*inv, "x", "--token-file", str(tmp_path / "missing"), redis_url=redis_url, env=env),
                   "token file not found")  # fmt: skip
    assert len(ttls(redis_url, ns)) == 2


def test_empty_token_in_the_callers_environment_does_not_switch_the_check_off(
    redis_url: str, warmed: tuple[str, Path, dict[str, float]], tmp_path: Path
) -> None:
    ns, _faq, before = warmed
    (tmp_path / ".env").write_text(f"CALLCENTER_ADMIN_TOKEN={TOKEN}\n")  # the deployment's config
    inv = ("invalidate", "--all", "--yes", "--namespace", ns)
    one_line_error(cli(*inv, redis_url=redis_url, env={"CALLCENTER_ADMIN_TOKEN": ""}, cwd=tmp_path),
                   "needs the admin token")  # fmt: skip
    one_line_error(cli(*inv, redis_url=redis_url, env={"CALLCENTER_ADMIN_TOKEN": ""}), "set but empty")
    one_line_error(cli(*inv, redis_url=redis_url, env={"CALLCENTER_ADMIN_TOKEN": "change-me"}), "placeholder")
    assert_intact(redis_url, ns, before)


def test_warm_replacing_entries_needs_the_token(redis_url: str, warmed: tuple[str, Path, dict[str, float]],
                                               tmp_path: Path) -> None:  # fmt: skip
    ns, faq, before = warmed
    env = {"CALLCENTER_ADMIN_TOKEN": TOKEN}
    evil = tmp_path / "evil.jsonl"
    evil.write_text(json.dumps({"id": "hours", "question": "What are your opening hours?",
                                "answer": "We are closed for good."}) + "\n")  # fmt: skip
    one_line_error(cli("warm", str(evil), "-t", "acme", "--namespace", ns, redis_url=redis_url, env=env),
                   "needs the admin token")  # fmt: skip
    assert CacheAdmin(redis_url, namespace=ns).show("acme~hours")["answer"].startswith("Eight to six")
    # re-warming the same answers and adding new entries need no token
    p = cli("warm", str(faq), "-t", "acme", "--ttl", "86400", "--namespace", ns, redis_url=redis_url, env=env)
    assert p.exit_code == 0 and "stored 4 of 4" in p.stdout, p.stderr
    p = cli(
        "warm", str(evil), "-t", "acme", "--namespace", ns, "--token", TOKEN, redis_url=redis_url, env=env
    )
    assert p.exit_code == 0, p.stderr
    assert CacheAdmin(redis_url, namespace=ns).show("acme~hours")["answer"] == "We are closed for good."
    assert set(ttls(redis_url, ns)) == set(before)


def test_import_through_the_cli(
    redis_url: str, warmed: tuple[str, Path, dict[str, float]], tmp_path: Path
) -> None:
    ns, _faq, before = warmed
    out = tmp_path / "export.jsonl"
    assert cli("export", "--out", str(out), "--namespace", ns, redis_url=redis_url).exit_code == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in [*rows[:2], {**rows[2], "hits": "lots"}]))
    one_line_error(cli("import", str(bad), "--namespace", ns, redis_url=redis_url), "line 3: 'hits'")
    assert_intact(redis_url, ns, before)
    pii = tmp_path / "pii.jsonl"
    pii.write_text(json.dumps({**rows[0], "answer": "Ring Jane on 415 555 0134."}) + "\n")
    p = cli("import", str(pii), "--namespace", ns, redis_url=redis_url)
    assert p.exit_code == 0 and "imported 0 entries" in p.stdout and "pii_answer: 1" in p.stdout, p.stdout
    assert "0134" not in json.dumps(CacheAdmin(redis_url, namespace=ns).list(limit=0))
