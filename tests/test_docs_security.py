"""The MCP document server's HTTP transport: bearer token, refusal to run open off loopback.

Real server processes (`python -m tasks mcp serve --transport streamable-http`), the real MCP
client (and livekit's `MCPServerHTTP`, what the agent's document desk uses) and raw HTTP.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from core.settings import REPO_ROOT
from tests.support.workers import McpHttpServer, free_port

TOKEN = "test-token-0123456789abcdef"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("docs") / "docs"
    shutil.copytree(REPO_ROOT / "documents", d)
    return d


def _server(docs: Path, logs: Path, host: str, **env: str) -> McpHttpServer:
    s = McpHttpServer(docs, logs, {"CALLCENTER_MCP_LOG_LEVEL": "INFO", **env})
    s.args += ["--host", host]
    return s


@pytest.fixture(scope="module")
def public(docs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpHttpServer]:
    """Bound to 0.0.0.0 (what docker-compose does), with a token."""
    s = _server(docs, tmp_path_factory.mktemp("logs"), "0.0.0.0", CALLCENTER_MCP_TOKEN=TOKEN).start()
    yield s
    s.stop()


def _post(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, json=INIT, headers={**HEADERS, **headers}, timeout=10)


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"authorization": "Bearer wrong-token-0123456789"},
        {"authorization": TOKEN},
        {"authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_requests_without_the_token_are_refused(public: McpHttpServer, auth: dict[str, str]) -> None:
    r = _post(public.url, auth)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"] == "invalid_token" and "CALLCENTER_MCP_TOKEN" in r.json()["error_description"]


def test_a_cross_origin_browser_request_is_refused_even_with_the_token(public: McpHttpServer) -> None:
    r = _post(public.url, {"authorization": f"Bearer {TOKEN}", "origin": "http://evil.example"})
    assert r.status_code == 403
    ok = _post(public.url, {"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.text


async def test_mcp_clients_with_the_token_work(public: McpHttpServer) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    async with http, Client(streamable_http_client(public.url, http_client=http)) as c:
        r = await c.call_tool("read_document", {"name": "policy.md", "start_line": 1, "end_line": 1})
    assert not r.is_error and r.structured_content and r.structured_content["text"].startswith("#")
    assert TOKEN not in public.log_text()  # never logged


async def test_livekit_mcp_client_passes_the_token_as_a_header(public: McpHttpServer) -> None:
    """The agent's desk uses livekit's MCPServerHTTP: `headers=` is how it sends the token."""
    from livekit.agents.llm.mcp import MCPServerHTTP

    for headers, ok in (({"Authorization": f"Bearer {TOKEN}"}, True), ({}, False)):
        server = MCPServerHTTP(
            public.url, transport_type="streamable_http", headers=headers, client_session_timeout_seconds=5
        )
        names: set[str] = set()
        try:
            await server.initialize()
            names = {t.info.name for t in await server.list_tools()}
        except Exception:  # noqa: BLE001, S110 - whatever the client raises on a 401
            pass
        finally:
            await server.aclose()
        assert ("restore_document" in names) is ok, (headers, names)


def test_loopback_with_a_token_set_requires_it_too(docs: Path, tmp_path: Path) -> None:
    """Any local user can reach 127.0.0.1: once a token is configured it is always checked."""
    s = _server(docs, tmp_path, "127.0.0.1", CALLCENTER_MCP_TOKEN=TOKEN).start()
    try:
        assert _post(s.url, {}).status_code == 401
        assert _post(s.url, {"authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        s.stop()


def _serve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("callcenter")), "mcp", "serve", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO_ROOT), **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("host", "env", "says"),
    [
        ("0.0.0.0", {}, "without a token"),
        ("::", {}, "without a token"),
        ("10.1.2.3", {"CALLCENTER_MCP_TOKEN": ""}, "without a token"),
        ("0.0.0.0", {"CALLCENTER_MCP_TOKEN": "short"}, "too short"),
    ],
)
def test_no_open_server_on_a_public_address(docs: Path, host: str, env: dict[str, str], says: str) -> None:
    port = str(free_port())
    r = _serve(["--docs", str(docs), "--transport", "streamable-http", "--host", host, "--port", port], env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert "short" not in lines[0].split("too short")[0]  # the token value itself is not echoed
    with pytest.raises(httpx.TransportError):
        httpx.post(f"http://127.0.0.1:{port}/mcp", json=INIT, timeout=2)


def test_compose_passes_the_token_to_the_public_server() -> None:
    import yaml

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mcp = compose["services"]["mcp-docs"]
    cmd = mcp["command"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # hence the token is required
    # The token reaches the container from deploy/.env; nothing in `environment` may blank it.
    assert "deploy/.env" in mcp["env_file"] and "CALLCENTER_MCP_TOKEN" not in mcp.get("environment", {})
    example = (REPO_ROOT / "deploy" / ".env.example").read_text()
    assert any(line.startswith("CALLCENTER_MCP_TOKEN=") for line in example.splitlines())
