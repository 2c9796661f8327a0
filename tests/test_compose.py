"""docker-compose.yml sanity: no docker engine runs here, so check the file and what it mounts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / "deploy" / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.split("#")[0].strip()
    return out


def test_services_and_images() -> None:
    assert set(SERVICES) == {
        "redis", "livekit", "sip", "agent", "celery-worker", "mcp-docs", "dashboard", "llm-model", "llm"
    }  # fmt: skip
    assert SERVICES["livekit"]["image"].startswith("livekit/livekit-server")
    assert SERVICES["sip"]["image"].startswith("livekit/sip")
    assert SERVICES["redis"]["image"].startswith("redis/redis-stack-server")
    for name in ("agent", "celery-worker", "mcp-docs", "dashboard"):
        assert SERVICES[name]["build"] == "." and SERVICES[name]["image"] == "callcenter:latest"
    assert (ROOT / "Dockerfile").is_file()
    assert SERVICES["dashboard"]["profiles"] == ["dashboard"]  # optional


def test_commands() -> None:
    assert SERVICES["agent"]["command"] == ["worker", "start"]
    assert SERVICES["celery-worker"]["command"] == ["worker", "celery"]
    mcp = SERVICES["mcp-docs"]["command"]
    assert mcp[:2] == ["mcp", "serve"] and mcp[mcp.index("--transport") + 1] == "streamable-http"
    assert SERVICES["dashboard"]["command"][0] == "dashboard"
    assert (
        "ENTRYPOINT" in (ROOT / "Dockerfile").read_text()
        and "callcenter" in (ROOT / "Dockerfile").read_text()
    )
    assert "replicas" in SERVICES["agent"]["deploy"]


def _published(service: str) -> list[str]:
    return [str(p) for p in SERVICES[service].get("ports", [])]


def test_ports_match_the_mounted_configs() -> None:
    lk = yaml.safe_load((ROOT / "deploy" / "livekit.yaml").read_text())
    sip = yaml.safe_load((ROOT / "deploy" / "sip.yaml").read_text())
    assert f"{lk['port']}:{lk['port']}" in _published("livekit")
    udp = f"{lk['rtc']['port_range_start']}-{lk['rtc']['port_range_end']}"
    assert f"{udp}:{udp}/udp" in _published("livekit")
    assert f"{sip['sip_port']}:{sip['sip_port']}/udp" in _published("sip")
    assert f"{sip['rtp_port']}:{sip['rtp_port']}/udp" in _published("sip")
    # livekit and the SIP bridge must share the same Redis
    assert lk["redis"]["address"] == sip["redis"]["address"] == "redis:6379"
    assert not any(k in sip for k in ("api_key", "api_secret")) and "keys" not in lk  # secrets via env


def test_every_mounted_file_exists_and_parses() -> None:
    mounts = []
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                mounts.append((name, ROOT / src))
    assert mounts, "expected config mounts"
    for name, path in mounts:
        assert path.is_file(), f"{name} mounts missing {path}"
        if path.suffix in (".yaml", ".yml"):
            assert isinstance(yaml.safe_load(path.read_text()), dict), path
    # named volumes are declared; redis data persists
    for svc in SERVICES.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if not src.startswith((".", "/")):
                assert src in COMPOSE["volumes"]
    assert any(v.startswith("redis-data:") for v in SERVICES["redis"]["volumes"])


def test_env_files_are_documented() -> None:
    example = env_example()
    for name, svc in SERVICES.items():
        for f in svc.get("env_file", []):
            assert (ROOT / f).with_name(".env.example").is_file(), f"{name}: no example for {f}"
    # every ${VAR} the compose file interpolates is in the example
    for var in set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text())):
        assert var in example, f"{var} missing from deploy/.env.example"
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_WS_URL", "REDIS_URL"):
        assert var in example
    # the trunk credentials telephony.yaml names are documented
    text = (ROOT / "deploy" / "telephony.yaml").read_text()
    for var in re.findall(r"auth_\w+_env:\s*(\w+)", text):
        assert var in example
    assert ".env" in (ROOT / "deploy" / ".gitignore").read_text().split()


@pytest.mark.parametrize("svc", ["redis", "livekit", "agent", "celery-worker", "mcp-docs", "dashboard"])
def test_healthchecks(svc: str) -> None:
    hc = SERVICES[svc]["healthcheck"]
    assert hc["test"][0] in ("CMD", "CMD-SHELL") and hc["retries"] >= 1


def test_startup_order() -> None:
    assert SERVICES["sip"]["depends_on"]["livekit"]["condition"] == "service_healthy"
    assert SERVICES["agent"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["agent"]["stop_grace_period"]  # time to drain calls on SIGTERM


def test_example_telephony_file_is_valid() -> None:
    from sip.config import load_config

    cfg = load_config(ROOT / "deploy" / "telephony.yaml")
    assert cfg.agent_name == env_example()["CALLCENTER_AGENT_NAME"]


def test_documents_live_on_a_named_volume_the_app_can_write() -> None:
    """Edits (and their .versions/) must survive `docker compose up` re-creating the container."""
    mcp = SERVICES["mcp-docs"]
    cmd = mcp["command"]
    docs = cmd[cmd.index("--docs") + 1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mcp["volumes"]}
    assert docs in mounts and mounts[docs] in COMPOSE["volumes"]  # a named volume, not the image
    assert mounts.get("/data") == "app-data"  # the service still gets the shared data volume
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"chown -R callcenter /app/documents", dockerfile)  # the volume is writable


def test_selfhosted_llm_is_opt_in_and_serves_the_projects_model() -> None:
    """`--profile selfhosted-llm`: llama.cpp's server on the compose network, serving the GGUF
    `llm-model` assembles into app-data (the path core.local_llm.model_path() writes)."""
    from core.local_llm import MODEL_FILE

    llm, init = SERVICES["llm"], SERVICES["llm-model"]
    assert llm["profiles"] == init["profiles"] == ["selfhosted-llm"]  # the default stack is unchanged
    assert llm["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")
    cmd = llm["command"]
    assert cmd[cmd.index("-m") + 1] == f"/data/models/{MODEL_FILE}"
    assert "app-data:/data:ro" in llm["volumes"] and "model_path()" in init["entrypoint"][-1]
    assert llm["depends_on"]["llm-model"]["condition"] == "service_completed_successfully"
    assert "ports" not in llm and llm["expose"] == [cmd[cmd.index("--port") + 1]]  # not published
    assert llm["healthcheck"]["test"][-1].endswith("/health")
    # the agent's stage settings for it are documented next to the agent, commented out
    text = (ROOT / "docker-compose.yml").read_text()
    port = cmd[cmd.index("--port") + 1]
    assert f"#   CALLCENTER_LLM_BASE_URL=http://llm:{port}/v1" in text
    assert f"#   CALLCENTER_LLM_MODEL={cmd[cmd.index('--alias') + 1]}" in text
    assert not any(k.startswith("CALLCENTER_LLM") for k in SERVICES["agent"].get("environment", {}))
