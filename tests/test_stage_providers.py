"""Per-stage providers (issue 24): `CALLCENTER_<STAGE>_PROVIDER` over the local / cloud presets.

Real providers are built (nothing is mocked; building loads no model). Only the chosen engine of
each stage exists, so a stage that is not configured can never be tried or fail over. Bad settings
end as one line (UserError, or one `error:` line and a non-zero exit from the CLI).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit.agents import stt
from livekit.agents.utils import is_given
from livekit.plugins import openai

from agent.observability import safe_label
from agent.providers import build_providers
from agent.providers.hibari_tts import LocalVoice
from agent.providers.local_llm import LocalLLM
from agent.providers.profiles import BatchFallbackSTT, VoiceFallbackTTS
from agent.providers.whisper_stt import WhisperSTT
from core.errors import UserError
from core.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
ENV = [
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVEN_API_KEY", "CALLCENTER_PROFILE",
    *(f"CALLCENTER_{s}_{k}" for s in ("STT", "LLM", "TTS", "EMBEDDINGS")
      for k in ("PROVIDER", "BASE_URL", "API_KEY", "MODEL", "TOOLS", "MAX_TOKENS")),
]  # fmt: skip
SECRET = "sk-very-secret-value-1234"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    return get_settings()


def test_local_preset_is_local_everywhere(clean_env: pytest.MonkeyPatch) -> None:
    p = build_providers("local", _settings(clean_env))
    assert p.name == "local"
    assert type(p.stt) is WhisperSTT and type(p.llm) is LocalLLM and type(p.tts) is LocalVoice
    assert p.standby == () and p.llm_tools is False and p.embeddings.provider == "local"


def test_local_stt_remote_llm_local_voice(clean_env: pytest.MonkeyPatch) -> None:
    s = _settings(
        clean_env,
        CALLCENTER_LLM_PROVIDER="openai",
        CALLCENTER_LLM_BASE_URL="http://127.0.0.1:8080/v1/",
        CALLCENTER_LLM_API_KEY=SECRET,
        CALLCENTER_LLM_MODEL="qwen2.5-0.5b-instruct",
    )
    p = build_providers("local", s)
    # no adapter anywhere: the local whisper and voice are the only engines, nothing to fail over
    assert type(p.stt) is WhisperSTT and type(p.tts) is LocalVoice and p.standby == ()
    assert isinstance(p.llm, openai.LLM) and p.llm.model == "qwen2.5-0.5b-instruct"
    assert str(p.llm._client.base_url).rstrip("/") == "http://127.0.0.1:8080/v1"
    assert p.llm._client.api_key == SECRET
    assert p.name == "local.llm-openai" and safe_label(p.name) == p.name
    assert p.llm_tools is False  # a self-hosted model picked per stage gets no tools by default


def test_cloud_preset_keeps_its_fallbacks(clean_env: pytest.MonkeyPatch) -> None:
    s = _settings(
        clean_env,
        OPENAI_API_KEY=SECRET,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        CALLCENTER_STT_REALTIME="false",
        ELEVEN_API_KEY="eleven-secret",
    )
    p = build_providers("cloud", s)
    assert p.name == "cloud" and p.llm_tools is True
    assert isinstance(p.stt, BatchFallbackSTT) and isinstance(p.tts, VoiceFallbackTTS)
    assert [type(x).__name__ for x in p.standby] == ["WhisperSTT", "HibariTTS"]
    assert isinstance(p.llm, openai.LLM) and p.llm.model == "gpt-4o-mini"
    assert p.voice.startswith("elevenlabs-")
    # without an ElevenLabs key the preset speaks with the local voice, as it always did
    clean_env.delenv("ELEVEN_API_KEY")
    p = build_providers("cloud", _settings(clean_env))
    assert p.name == "cloud" and type(p.tts) is LocalVoice


def test_cloud_preset_with_local_stt(clean_env: pytest.MonkeyPatch) -> None:
    s = _settings(clean_env, OPENAI_API_KEY=SECRET, CALLCENTER_STT_PROVIDER="local")
    p = build_providers("cloud", s)
    assert type(p.stt) is WhisperSTT and not isinstance(p.stt, stt.FallbackAdapter)
    assert p.standby == () and isinstance(p.llm, openai.LLM)
    assert p.name == "cloud.stt-local" and p.llm_tools is True


def test_explicit_stage_equal_to_the_preset_keeps_the_name(clean_env: pytest.MonkeyPatch) -> None:
    p = build_providers("local", _settings(clean_env, CALLCENTER_STT_PROVIDER=" Local "))
    assert p.name == "local"


def test_tools_follow_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    s = _settings(
        clean_env,
        CALLCENTER_LLM_PROVIDER="openai",
        CALLCENTER_LLM_BASE_URL="https://api.groq.com/openai/v1",
        CALLCENTER_LLM_API_KEY=SECRET,
        CALLCENTER_LLM_TOOLS="true",
    )
    assert build_providers("local", s).llm_tools is True
    s = _settings(clean_env, OPENAI_API_KEY=SECRET, CALLCENTER_LLM_TOOLS="false")
    assert build_providers("cloud", s).llm_tools is False
    clean_env.delenv("CALLCENTER_LLM_PROVIDER")
    with pytest.raises(UserError, match="CALLCENTER_LLM_TOOLS=true needs CALLCENTER_LLM_PROVIDER=openai"):
        build_providers("local", _settings(clean_env, CALLCENTER_LLM_TOOLS="true"))


def test_max_tokens_reaches_the_remote_llm_only_when_set(clean_env: pytest.MonkeyPatch) -> None:
    env = {"CALLCENTER_LLM_PROVIDER": "openai", "CALLCENTER_LLM_API_KEY": SECRET}
    uncapped = build_providers("local", _settings(clean_env, **env)).llm
    assert isinstance(uncapped, openai.LLM) and not is_given(uncapped._opts.max_completion_tokens)
    capped = build_providers("local", _settings(clean_env, **env, CALLCENTER_LLM_MAX_TOKENS="60")).llm
    assert isinstance(capped, openai.LLM) and capped._opts.max_completion_tokens == 60


def test_own_base_url_never_gets_the_openai_key(clean_env: pytest.MonkeyPatch) -> None:
    s = _settings(
        clean_env,
        OPENAI_API_KEY=SECRET,
        CALLCENTER_LLM_PROVIDER="openai",
        CALLCENTER_LLM_BASE_URL="https://api.together.xyz/v1",
    )
    with pytest.raises(UserError) as e:
        build_providers("local", s)
    msg = str(e.value)
    assert msg.startswith("CALLCENTER_LLM_PROVIDER=openai needs CALLCENTER_LLM_API_KEY"), msg
    assert "\n" not in msg and SECRET not in msg


def test_stage_without_own_url_uses_the_openai_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    s = _settings(
        clean_env,
        OPENAI_API_KEY=SECRET,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        CALLCENTER_STT_PROVIDER="openai",
        CALLCENTER_STT_REALTIME="false",
    )
    p = build_providers("local", s)
    assert isinstance(p.stt, BatchFallbackSTT) and [type(x).__name__ for x in p.standby] == ["WhisperSTT"]
    assert p.name == "local.stt-openai" and type(p.llm) is LocalLLM


@pytest.mark.parametrize(
    ("profile", "env", "expected"),
    [
        ("local", {"CALLCENTER_LLM_PROVIDER": "openai"}, "CALLCENTER_LLM_PROVIDER=openai needs OPENAI_API_KEY or CALLCENTER_LLM_API_KEY"),
        ("local", {"CALLCENTER_STT_PROVIDER": "openai"}, "CALLCENTER_STT_PROVIDER=openai needs OPENAI_API_KEY or CALLCENTER_STT_API_KEY"),
        ("cloud", {}, "cloud profile (openai STT) needs OPENAI_API_KEY or CALLCENTER_STT_API_KEY"),
        ("cloud", {"CALLCENTER_STT_PROVIDER": "local"}, "cloud profile (openai LLM) needs OPENAI_API_KEY or CALLCENTER_LLM_API_KEY"),
        ("local", {"CALLCENTER_TTS_PROVIDER": "elevenlabs"}, "CALLCENTER_TTS_PROVIDER=elevenlabs needs ELEVEN_API_KEY"),
        ("local", {"CALLCENTER_EMBEDDINGS_PROVIDER": "openai"}, "CALLCENTER_EMBEDDINGS_PROVIDER=openai needs OPENAI_API_KEY or CALLCENTER_EMBEDDINGS_API_KEY"),
    ],
)  # fmt: skip
def test_missing_key_is_one_line_naming_the_setting(
    clean_env: pytest.MonkeyPatch, profile: str, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(UserError) as e:
        build_providers(profile, _settings(clean_env, **env))
    assert str(e.value) == expected


def test_embeddings_stage_is_passed_through(clean_env: pytest.MonkeyPatch) -> None:
    s = _settings(
        clean_env,
        CALLCENTER_EMBEDDINGS_PROVIDER="openai",
        CALLCENTER_EMBEDDINGS_BASE_URL="http://127.0.0.1:8080/v1",
        CALLCENTER_EMBEDDINGS_API_KEY=SECRET,
    )
    p = build_providers("local", s)
    assert p.embeddings.provider == "openai" and p.embeddings.endpoint is not None
    assert p.embeddings.endpoint.base_url == "http://127.0.0.1:8080/v1"
    assert p.embeddings.endpoint.model == "text-embedding-3-small"
    assert SECRET not in repr(p.embeddings)
    assert p.name == "local.emb-openai"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CALLCENTER_STT_PROVIDER": "deepgram"}, "setting CALLCENTER_STT_PROVIDER='deepgram': Input should be 'local' or 'openai'"),
        ({"CALLCENTER_TTS_PROVIDER": "openai"}, "setting CALLCENTER_TTS_PROVIDER='openai': Input should be 'local' or 'elevenlabs'"),
        ({"CALLCENTER_LLM_PROVIDER": "groq"}, "setting CALLCENTER_LLM_PROVIDER='groq': Input should be 'local' or 'openai'"),
        ({"CALLCENTER_EMBEDDINGS_PROVIDER": "x"}, "setting CALLCENTER_EMBEDDINGS_PROVIDER='x': Input should be 'local' or 'openai'"),
        ({"CALLCENTER_LLM_BASE_URL": "ftp://host/v1"}, "setting CALLCENTER_LLM_BASE_URL='ftp://host/v1': expected http(s)://host[:port]/v1 (an OpenAI-compatible API)"),
        ({"CALLCENTER_STT_BASE_URL": "http://u:pw@host:99999/v1"}, "setting CALLCENTER_STT_BASE_URL="),
    ],
)  # fmt: skip
def test_bad_stage_values_are_one_line(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(UserError) as e:
        _settings(clean_env, **env)
    msg = str(e.value)
    assert msg.startswith(expected) and "\n" not in msg, msg
    assert "pw" not in msg  # credentials in a URL are masked


def test_cli_rejects_a_bad_stage_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "CALLCENTER_LLM_PROVIDER": "vllm"}
    env["CALLCENTER_LLM_API_KEY"] = SECRET
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "call", "-s", "scenarios/opening-hours.yaml", "--no-cache", "-o", str(tmp_path / "c")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = (r.stdout + r.stderr).strip()
    assert r.returncode != 0, out
    assert out.splitlines() == [
        "error: setting CALLCENTER_LLM_PROVIDER='vllm': Input should be 'local' or 'openai'"
    ], out
    assert "Traceback" not in out and SECRET not in out


def test_cli_names_a_missing_key_in_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(ROOT), "CALLCENTER_LLM_PROVIDER": "openai",
        "CALLCENTER_LLM_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": SECRET,
    }  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "call", "-s", "scenarios/opening-hours.yaml", "--no-cache", "-o", str(tmp_path / "c")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = (r.stdout + r.stderr).strip()
    assert r.returncode != 0, out
    assert len(out.splitlines()) == 1 and "CALLCENTER_LLM_API_KEY" in out, out
    assert "Traceback" not in out and SECRET not in out
