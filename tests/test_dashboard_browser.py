"""The dashboard in a real headless browser (Debian chromium + Playwright for Python), served by
uvicorn on a loopback port, with a real simulated call and real cache entries in the embedded Redis."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from agent.dashboard import create_app
from agent.observability import Experiment
from cache.admin import CacheAdmin
from core.ports import free_port
from tests.test_dashboard_support import CALL_ID, NS, ROOT, simulated_call

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "test-admin-token-7f3a"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: run scripts/install-chromium.sh"
)


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    calls_dir, _ = simulated_call(redis_url, tmp_path_factory.mktemp("dash"))
    exp = Experiment("threshold", {"a": {"cache_threshold": 0.15}, "b": {"cache_threshold": 0.25}})
    app = create_app(calls_dir, redis_url, TOKEN, open_readonly_on_localhost=True, experiment=exp,
                     cache_namespace=NS)  # fmt: skip
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", calls_dir
    srv.should_exit = True
    t.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def login(page, base: str, next_path: str = "/") -> None:  # type: ignore[no-untyped-def]
    """Caller data needs the token even on loopback: the login form sets the session cookie."""
    page.goto(f"{base}/login?next={next_path}")
    page.fill("#login-token", TOKEN)
    with page.expect_navigation():
        page.click("#login-form button")
    assert page.url == base + next_path


def test_overview_shows_the_call(server, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, calls_dir = server
    turns = json.loads((calls_dir / CALL_ID / "metrics.json").read_text())["turns"]
    v2v = [t["voice_to_voice"] for t in turns if t["voice_to_voice"] is not None]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/")  # the aggregates are open on loopback; the recent calls are not
    assert page.locator("#v2v-p50").count() == 1 and page.locator(f'tr[data-call="{CALL_ID}"]').count() == 0
    assert page.locator("#recent-locked").count() == 1
    resp = page.goto(f"{base}/calls/{CALL_ID}")
    assert resp is not None and resp.status == 401 and page.locator("#login-form").count() == 1
    login(page, base, "/")
    assert page.locator("#v2v-p50").inner_text() == f"{np.percentile(v2v, 50) * 1000:.0f} ms"
    assert page.locator("#v2v-p95").inner_text() == f"{np.percentile(v2v, 95) * 1000:.0f} ms"
    assert page.locator("#calls-total").inner_text() == f"1 / {len(turns)}"
    hits = sum(t["cache_hit"] for t in turns)
    assert page.locator("#hit-rate").inner_text() == f"{hits / len(turns):.0%}"
    assert page.locator(f'tr[data-call="{CALL_ID}"]').count() == 1
    assert page.locator('tr[data-alert="voice_to_voice_p95"] .state').inner_text() in ("ok", "pending")
    assert page.locator("#ab tr").count() == 3  # header + two arms
    page.wait_for_selector("#chart-p95 canvas")
    assert page.locator(".uplot").count() == 3  # the vendored chart library drew all three charts
    assert not errors, errors
    # the README's screenshot: refreshed with UPDATE_SCREENSHOTS=1, else kept out of the work tree
    shot = (
        ROOT / "docs" / "dashboard.png"
        if os.environ.get("UPDATE_SCREENSHOTS")
        else tmp_path / "dashboard.png"
    )
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000

    page.click(f'tr[data-call="{CALL_ID}"] a')
    page.wait_for_selector("#turns")
    assert page.locator("#turns tr").count() == len(turns) + 1
    assert turns[0]["user_text"] in page.locator("#turns").inner_text()
    items = json.loads((calls_dir / CALL_ID / "transcript.json").read_text())["items"]
    shown = page.locator("#transcript li").all_inner_texts()
    assert len(shown) == len(items) and all(it["text"] in li for it, li in zip(items, shown, strict=True))
    page.wait_for_function("document.getElementById('recording').readyState >= 1")  # wav header decoded
    assert page.evaluate("document.getElementById('recording').duration") > 3
    page.close()


def test_cache_search_invalidate_and_auth(server, browser, redis_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = server
    page = browser.new_page()
    login(page, base, "/cache")
    n_entries = page.locator("#entries tr[data-id]").count()
    assert n_entries == len(CacheAdmin(redis_url, namespace=NS).list(limit=0)) >= 4
    page.fill("#q", "what time do you open on saturday")
    page.click("#search-form button")
    page.wait_for_selector("#results")
    first = page.locator("#results tr[data-id]").first
    assert "opening hours" in first.inner_text()
    target = first.get_attribute("data-id")
    dist = float(first.locator("td.num").inner_text())
    assert 0 <= dist < 0.5

    api = page.request.get(base + "/api/cache/search?q=when+are+you+open&tenant=acme")
    rows = api.json()
    assert api.ok and rows[0]["id"] == target and set(rows[0]) >= {"id", "question", "distance"}

    # without the token, and with a wrong one: refused; nothing deleted
    status = page.evaluate("id => fetch('/api/cache/' + id, {method: 'DELETE'}).then(r => r.status)", target)
    assert status == 401
    status = page.evaluate(
        "id => fetch('/api/cache/' + id, {method: 'DELETE', headers: {Authorization: 'Bearer nope'}})"
        ".then(r => r.status)", target)  # fmt: skip
    assert status == 403
    page.click(f'#entries button.invalidate[data-id="{target}"]')  # no token typed yet
    page.wait_for_selector("#toast.bad")
    assert "401" in page.locator("#toast").inner_text()
    assert page.locator(f'#entries tr[data-id="{target}"]').count() == 1

    # with the token: the row goes, and stays gone after a reload and in the API
    page.fill("#admin-token", TOKEN)
    page.dispatch_event("#admin-token", "change")
    page.click(f'#entries button.invalidate[data-id="{target}"]')
    page.wait_for_selector(f'#entries tr[data-id="{target}"]', state="detached")
    page.reload()
    assert page.locator(f'#entries tr[data-id="{target}"]').count() == 0
    assert page.locator("#entries tr[data-id]").count() == n_entries - 1
    ids = [r["id"] for r in page.request.get(base + "/api/cache/search?q=when+are+you+open").json()]
    assert target not in ids

    # warm by uploading a FAQ file (the token is kept for the session)
    faq = tmp_path / "faq.yaml"
    faq.write_text(
        '- question: "Do you sell gift cards?"\n  answer: "Yes, gift cards from 10 to 200 dollars."\n'
    )
    page.set_input_files("#warm-file", str(faq))
    page.click("#warm-form button")
    page.wait_for_selector("#entries td:has-text('Do you sell gift cards?')")
    page.close()


def test_http_guards(server) -> None:  # type: ignore[no-untyped-def]
    base, calls_dir = server
    with httpx.Client(base_url=base) as c:
        assert c.delete("/api/cache/x").status_code == 401
        assert c.delete("/api/cache/x", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert c.post("/api/cache/warm").status_code == 401
        # read-only views are open to loopback clients only with a loopback Host (no DNS rebinding)
        assert c.get("/", headers={"Host": "evil.example"}).status_code == 401
        assert (
            c.get("/", headers={"Host": "evil.example", "Authorization": f"Bearer {TOKEN}"}).status_code
            == 200
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for bad in ("/calls/..%2F..%2Fetc", "/calls/%2e%2e/audio", "/calls/.hidden", "/calls/nope/audio"):
            assert c.get(bad, headers=auth).status_code == 404, bad
        # caller data needs the token even from loopback
        assert c.get(f"/calls/{CALL_ID}/audio").status_code == 401
        r = c.get(f"/calls/{CALL_ID}/audio", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"
        part = c.get(f"/calls/{CALL_ID}/audio", headers={**auth, "Range": "bytes=0-3"})
        assert part.status_code == 206 and part.content == b"RIFF"
        turns = json.loads((calls_dir / CALL_ID / "metrics.json").read_text())["turns"]
        page = c.get(f"/calls/{CALL_ID}", headers=auth)
        assert page.status_code == 200 and turns[0]["user_text"] in page.text
        assert c.get("/api/overview").json()["overview"]["bad_reports"] == 0  # the real report is valid
        assert "default-src 'self'" in c.get("/").headers["content-security-policy"]
        fams = c.get("/metrics").text
        assert 'callcenter_calls_total{experiment="' in fams and TOKEN not in fams
