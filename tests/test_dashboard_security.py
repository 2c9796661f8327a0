"""The dashboard as a hostile local user, a careless operator and a bad report would meet it
(issue 21 items 6, 7, 9, 16, 17): the real Starlette app served by uvicorn on a loopback port,
spoken to over real HTTP, with call reports written to a real directory and the cache in the
real embedded Redis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from agent.dashboard import create_app
from cache.admin import CacheAdmin
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "admin-token-for-tests-9c1d2e"
READ = "read-token-for-tests-4b7a90"
CALL = "20261201-call-ok"
CALLER_SAYS = "my account number is 4242 and I need help"
NS = "dashsec"
STAGES = ("eou_delay", "stt_delay", "llm_ttft", "tts_ttfb", "voice_to_voice")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The app on a loopback port through uvicorn, as `callcenter dashboard` runs it."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        access_log=False))  # fmt: skip
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        t.join(10)


def turn(i: int, **kw: Any) -> dict[str, Any]:
    base = {"index": i, "user_text": CALLER_SAYS, "agent_text": "Sure, one moment.", "cache_hit": False,
            **{s: 0.1 * (k + 1) for k, s in enumerate(STAGES)}}  # fmt: skip
    return {**base, **kw}


def write_call(calls: Path, cid: str, metrics: Any = None, transcript: Any = None, wav: bool = True,
               mtime: float | None = None) -> Path:  # fmt: skip
    d = calls / cid
    d.mkdir(parents=True)
    if transcript is None:
        transcript = {"tenant": "acme", "items": [{"role": "user", "text": CALLER_SAYS},
                                                  {"role": "assistant", "text": "Sure."}],
                      "events": [{"type": "transfer", "t": 1.5}]}  # fmt: skip
    (d / "transcript.json").write_text(transcript if isinstance(transcript, str) else json.dumps(transcript))
    if metrics is None:
        metrics = {"turns": [turn(0), turn(1, cache_hit=True)], "profile": "instant", "scenario": "s"}
    # written last: its presence marks the call finished
    (d / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if wav:
        with wave.open(str(d / "call.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00\x01" * 8000)
    if mtime is not None:
        os.utime(d / "metrics.json", (mtime, mtime))
    return d


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    c = tmp_path / "calls"
    c.mkdir()
    write_call(c, CALL)
    return c


@pytest.fixture(scope="module")
def cache_ns(redis_url: str) -> str:
    admin = CacheAdmin(redis_url, namespace=NS)
    admin.warm(tenant="acme")
    return NS


def app_for(calls: Path, redis_url: str | None = None, **kw: Any) -> Any:
    kw.setdefault("admin_token", ADMIN)
    kw.setdefault("read_token", READ)
    return create_app(calls, redis_url, cache_namespace=NS, **kw)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CALLER_DATA = [f"/calls/{CALL}", f"/calls/{CALL}/audio", "/calls", "/cache", "/api/cache/entries",
               "/api/cache/search?q=when+are+you+open"]  # fmt: skip
OVERVIEW = ["/", "/api/overview", "/metrics", "/api/cache/stats"]


# ---------------------------------------------------------------- item 6: who may read caller data


def test_caller_data_needs_a_token_even_from_loopback(calls: Path, redis_url: str, cache_ns: str) -> None:
    with serve(app_for(calls, redis_url)) as base, httpx.Client(base_url=base) as c:
        for path in CALLER_DATA:
            r = c.get(path)
            assert r.status_code == 401, (path, r.status_code)
            assert CALLER_SAYS not in r.text and "opening hours" not in r.text.lower(), path
            assert c.get(path, headers=bearer("wrong-token")).status_code == 403, path
            for tok in (READ, ADMIN):
                assert c.get(path, headers=bearer(tok)).status_code == 200, (path, tok)
        assert CALLER_SAYS in c.get(f"/calls/{CALL}", headers=bearer(READ)).text
        assert c.get(f"/calls/{CALL}/audio", headers=bearer(READ)).content[:4] == b"RIFF"
        size = (calls / CALL / "call.wav").stat().st_size
        part = c.get(f"/calls/{CALL}/audio", headers={**bearer(READ), "Range": "bytes=4-7"})
        assert part.status_code == 206 and part.headers["content-range"] == f"bytes 4-7/{size}"
        assert part.content == (calls / CALL / "call.wav").read_bytes()[4:8]
        tail = c.get(f"/calls/{CALL}/audio", headers={**bearer(READ), "Range": "bytes=-10"})
        assert tail.status_code == 206 and len(tail.content) == 10
        assert (
            c.get(f"/calls/{CALL}/audio", headers={**bearer(READ), "Range": f"bytes={size}-"}).status_code
            == 416
        )
        entries = c.get("/api/cache/entries", headers=bearer(READ)).json()
        assert entries and all("question" in e for e in entries)


def test_overview_stays_open_on_loopback_without_caller_text(
    calls: Path, redis_url: str, cache_ns: str
) -> None:
    with serve(app_for(calls, redis_url)) as base, httpx.Client(base_url=base) as c:
        for path in OVERVIEW:
            r = c.get(path)
            assert r.status_code == 200, path
            assert CALLER_SAYS not in r.text, path
        page = c.get("/").text
        assert 'id="calls-total">1 / 2<' in page  # the aggregates are there
        assert CALL not in page  # call ids (room names may hold a caller's number) are not
        assert CALL in c.get("/", headers=bearer(READ)).text  # with the token, the recent calls
        # a loopback client sending another Host (DNS rebinding, a rewriting proxy) is not "local"
        assert c.get("/", headers={"Host": "evil.example"}).status_code == 401


def test_overview_needs_a_token_when_not_open_on_localhost(calls: Path) -> None:
    app = app_for(calls, open_readonly_on_localhost=False)
    with serve(app) as base, httpx.Client(base_url=base) as c:
        for path in ("/", "/api/overview", "/metrics"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=bearer(READ)).status_code == 200, path


def test_read_token_cannot_change_anything(calls: Path, redis_url: str, cache_ns: str) -> None:
    with serve(app_for(calls, redis_url)) as base, httpx.Client(base_url=base) as c:
        eid = c.get("/api/cache/entries", headers=bearer(READ)).json()[0]["id"]
        r = c.delete(f"/api/cache/{eid}", headers=bearer(READ))
        assert r.status_code == 403 and "admin" in r.json()["error"]
        r = c.post("/api/cache/warm", headers=bearer(READ), files={"file": ("f.yaml", b"- question: q\n")})
        assert r.status_code == 403
        ids = [e["id"] for e in c.get("/api/cache/entries", headers=bearer(ADMIN)).json()]
        assert eid in ids


def test_browser_login_sets_a_strict_httponly_cookie(calls: Path) -> None:
    with serve(app_for(calls)) as base, httpx.Client(base_url=base) as c:
        # a browser without the token gets the login form (still a 401)
        r = c.get(f"/calls/{CALL}", headers={"Accept": "text/html"})
        assert r.status_code == 401 and 'action="/login"' in r.text and CALLER_SAYS not in r.text
        r = c.post("/login", data={"token": "wrong", "next": f"/calls/{CALL}"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = c.post("/login", data={"token": READ, "next": f"/calls/{CALL}"})
        assert r.status_code == 303 and r.headers["location"] == f"/calls/{CALL}"
        cookie = r.headers["set-cookie"]
        low = cookie.lower()
        assert "httponly" in low and "samesite=strict" in low and "path=/" in low
        assert READ not in cookie  # the cookie proves the token, it is not the token
        assert CALLER_SAYS in c.get(f"/calls/{CALL}").text  # httpx keeps the cookie, like a browser
        assert c.get(f"/calls/{CALL}/audio").status_code == 200
        # the cookie opens reads only: changes still need the Bearer header (no CSRF by cookie)
        assert c.delete("/api/cache/x").status_code in (401, 403)
        assert c.post("/logout").status_code == 303
        assert c.get(f"/calls/{CALL}").status_code == 401


def test_login_refuses_open_redirects_and_cross_site_posts(calls: Path) -> None:
    with serve(app_for(calls)) as base, httpx.Client(base_url=base) as c:
        # what a browser sends for the dashboard's own form
        same = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
        r = c.post("/login", data={"token": READ, "next": "/calls"}, headers=same)
        assert r.status_code == 303 and r.headers["location"] == "/calls"
        c.cookies.clear()
        # Chromium sends `Origin: null` on its own form under a strict referrer policy
        r = c.post(
            "/login", data={"token": READ}, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        )
        assert r.status_code == 303 and "set-cookie" in r.headers
        c.cookies.clear()
        for site in ("cross-site", "same-site"):
            r = c.post("/login", data={"token": READ}, headers={"Origin": base, "Sec-Fetch-Site": site})
            assert r.status_code == 403 and "set-cookie" not in r.headers, site
        for nxt in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
            r = c.post("/login", data={"token": READ, "next": nxt})
            assert r.status_code == 303 and r.headers["location"] == "/", nxt
        c.cookies.clear()
        r = c.post("/login", data={"token": READ}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        # a cookie made for another token (the token was rotated) opens nothing
        r = c.post("/login", data={"token": READ})
        old = dict(c.cookies)
    with serve(app_for(calls, read_token="rotated-read-token-0a9b8c")) as base2:
        with httpx.Client(base_url=base2, cookies=old) as c2:
            assert c2.get(f"/calls/{CALL}").status_code == 401


def test_admin_token_not_configured_is_said_plainly(calls: Path) -> None:
    for token in (None, "", "   "):
        app = app_for(calls, admin_token=token, read_token=None)
        with serve(app) as base, httpx.Client(base_url=base) as c:
            for auth in ({}, {"Authorization": "Bearer"}, bearer("anything"), bearer(ADMIN)):
                r = c.delete("/api/cache/x", headers=auth)
                assert r.status_code == 403, (token, auth)
                assert (
                    r.json()["error"]
                    == "admin token not configured on the server (set CALLCENTER_ADMIN_TOKEN)"
                )
            assert c.post("/api/cache/warm").status_code == 403
            r = c.get(f"/calls/{CALL}")
            assert r.status_code == 403 and "not configured" in r.text and CALLER_SAYS not in r.text
            assert c.get("/").status_code == 200  # the aggregates stay available on loopback


@pytest.mark.parametrize(
    "token",
    ["change-me", "changeme", "CHANGE-ME", "x7Qp2wL", "change-me    # dashboard / admin endpoints",
     "please-change-me-before-production", "a-long-enough-token with-a-space"],
)  # fmt: skip
def test_placeholder_or_short_admin_token_is_refused(calls: Path, token: str) -> None:
    with pytest.raises(UserError) as e:
        app_for(calls, admin_token=token)
    assert token not in str(e.value)  # never echo a secret, not even a bad one
    with pytest.raises(UserError):
        app_for(calls, read_token=token)


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") and k != "REDIS_URL"}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**full, **(env or {})})  # fmt: skip


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_cli_dashboard_refuses_the_example_token(tmp_path: Path) -> None:
    line = one_line_error(cli("dashboard", "--calls", str(tmp_path), "--port", str(free_port()),
                              env={"CALLCENTER_ADMIN_TOKEN": "change-me"}))  # fmt: skip
    assert "CALLCENTER_ADMIN_TOKEN" in line and "change-me" not in line


def test_cli_dashboard_takes_both_tokens_from_the_environment(calls: Path) -> None:
    """`callcenter dashboard` as an operator starts it: tokens from the environment only."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_") and k != "REDIS_URL"}
    env |= {
        "CALLCENTER_ADMIN_TOKEN": ADMIN,
        "CALLCENTER_READ_TOKEN": READ,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    cmd = [sys.executable, "-m", "agent.cli", "dashboard", "--calls", str(calls), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(base + "/api/overview", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.time() < deadline, proc.stderr and proc.stderr.read()
                time.sleep(0.2)
        assert httpx.get(f"{base}/calls/{CALL}").status_code == 401
        assert httpx.get(f"{base}/calls/{CALL}", headers=bearer(READ)).status_code == 200
        assert httpx.delete(f"{base}/api/cache/x", headers=bearer(READ)).status_code == 403
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert READ not in out + err and ADMIN not in out + err
    line = one_line_error(cli("dashboard", "--calls", str(calls), env={"CALLCENTER_READ_TOKEN": "change-me"}))
    assert "CALLCENTER_READ_TOKEN" in line


def test_cli_dashboard_missing_or_bad_experiment_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(cli("dashboard", "--calls", str(tmp_path), "--experiment", "/missing.yaml"))
    assert "/missing.yaml" in line
    bad = tmp_path / "exp.yaml"
    for text in ("arms: 5\n", "name: x\narms: {a: 1, b: 2}\n", "arms: {only: {}}\n", "[: nope\n", "\x00\xff"):
        bad.write_text(text)
        line = one_line_error(cli("dashboard", "--calls", str(tmp_path), "--experiment", str(bad)))
        assert str(bad) in line, text


# ---------------------------------------------------------------- item 7: symlinks are never followed


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    s = tmp_path / "outside" / "secret.txt"
    s.parent.mkdir()
    s.write_text('{"turns": [], "items": [{"role": "user", "text": "TOP-SECRET-OUTSIDE"}]}')
    return s


def test_symlinked_recording_is_not_served(calls: Path, secret: Path) -> None:
    d = write_call(calls, "c-link", wav=False)
    (d / "call.wav").symlink_to(secret)
    os.symlink("/etc/passwd", write_call(calls, "c-passwd", wav=False) / "call.wav")
    with serve(app_for(calls)) as base, httpx.Client(base_url=base, headers=bearer(READ)) as c:
        for cid in ("c-link", "c-passwd"):
            r = c.get(f"/calls/{cid}/audio")
            assert r.status_code == 404, cid
            assert b"TOP-SECRET" not in r.content and b"root:" not in r.content
            page = c.get(f"/calls/{cid}")
            assert page.status_code == 200 and 'id="recording"' not in page.text
        assert c.get(f"/calls/{CALL}/audio").status_code == 200  # a real file still plays


def test_symlinked_transcript_and_metrics_are_not_read(calls: Path, secret: Path) -> None:
    d = write_call(calls, "c-tr")
    (d / "transcript.json").unlink()
    (d / "transcript.json").symlink_to(secret)
    m = calls / "c-metrics"
    m.mkdir()
    (m / "metrics.json").symlink_to(secret)
    with serve(app_for(calls)) as base, httpx.Client(base_url=base, headers=bearer(READ)) as c:
        for path in ("/calls/c-tr", "/calls", "/", "/calls/c-metrics", "/api/overview", "/metrics"):
            r = c.get(path)
            assert r.status_code in (200, 404), path
            assert "TOP-SECRET" not in r.text, path


def test_symlinked_call_directory_is_skipped(calls: Path, tmp_path: Path) -> None:
    elsewhere = write_call(tmp_path / "elsewhere", "real")
    (calls / "c-dirlink").symlink_to(elsewhere, target_is_directory=True)
    (calls / "c-inside").symlink_to(calls / CALL, target_is_directory=True)  # even one pointing inside
    with serve(app_for(calls)) as base, httpx.Client(base_url=base, headers=bearer(READ)) as c:
        listing = c.get("/calls").text
        assert CALL in listing and "c-dirlink" not in listing and "c-inside" not in listing
        for cid in ("c-dirlink", "c-inside"):
            assert c.get(f"/calls/{cid}").status_code == 404
            assert c.get(f"/calls/{cid}/audio").status_code == 404
        assert c.get("/api/overview").json()["overview"]["calls_total"] == 1


def test_a_fifo_or_directory_in_place_of_a_report_does_not_hang(calls: Path) -> None:
    d = calls / "c-fifo"
    d.mkdir()
    os.mkfifo(d / "metrics.json")
    w = write_call(calls, "c-dirwav", wav=False)
    (w / "call.wav").mkdir()
    with serve(app_for(calls)) as base, httpx.Client(base_url=base, headers=bearer(READ), timeout=10) as c:
        assert c.get("/calls").status_code == 200
        assert c.get("/calls/c-dirwav/audio").status_code == 404


# ---------------------------------------------------------------- item 9: bad reports are skipped


BAD_REPORTS: dict[str, tuple[Any, Any]] = {
    "turns-not-a-list": ({"turns": 5}, None),
    "events-not-a-list": (None, {"events": 7}),
    "nan-value": ('{"turns": [{"index": 0, "voice_to_voice": NaN}]}', None),
    "infinite-value": ('{"turns": [{"index": 0, "llm_ttft": Infinity}]}', None),
    "turn-not-an-object": ({"turns": [1, "two"]}, None),
    "stage-a-string": ({"turns": [{"index": 0, "voice_to_voice": "fast"}]}, None),
    "metrics-a-list": ("[1, 2]", None),
    "metrics-not-json": ("{not json", None),
    "error-an-object": ({"turns": [], "error": {"x": 1}}, None),
    "items-a-string": (None, {"items": "hello"}),
    "event-time-a-string": (None, {"events": [{"type": "transfer", "t": "soon"}]}),
    "tenant-a-list": (None, {"tenant": ["a"], "items": []}),
}


def metric(text: str, name: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                return float(s.value)
    raise AssertionError(f"{name} not in /metrics")


def test_malformed_reports_are_skipped_and_counted(calls: Path) -> None:
    for name, (metrics, transcript) in BAD_REPORTS.items():
        write_call(calls, f"bad-{name}", metrics=metrics, transcript=transcript)
    # a turn without llm_ttft (a cache hit never asks the LLM) is a valid report, not a bad one
    partial = turn(0, cache_hit=True)
    del partial["llm_ttft"]
    write_call(calls, "c-partial", metrics={"turns": [partial], "profile": "instant"})
    with serve(app_for(calls)) as base, httpx.Client(base_url=base, headers=bearer(READ)) as c:
        for path in ("/", "/calls", "/metrics", "/api/overview", "/calls/c-partial"):
            r = c.get(path)
            assert r.status_code == 200, (path, r.text[-300:])
        ov = c.get("/api/overview").json()
        assert ov["overview"]["calls_total"] == 2  # the good call and the partial one
        assert ov["overview"]["bad_reports"] == len(BAD_REPORTS)
        assert metric(c.get("/metrics").text, "callcenter_bad_reports") == len(BAD_REPORTS)
        listing = c.get("/calls").text
        assert CALL in listing and "c-partial" in listing and 'data-call="bad-' not in listing
        for name in BAD_REPORTS:
            r = c.get(f"/calls/bad-{name}")
            assert r.status_code == 404 and "unreadable" in r.text, name
        # fixing a report takes it off the count
        (calls / "bad-turns-not-a-list" / "metrics.json").write_text(json.dumps({"turns": [turn(0)]}))
        os.utime(calls / "bad-turns-not-a-list" / "metrics.json", (time.time() + 5, time.time() + 5))
        ov = c.get("/api/overview").json()["overview"]
        assert ov["bad_reports"] == len(BAD_REPORTS) - 1 and ov["calls_total"] == 3
