"""Provider profiles: one setting picks STT, LLM, TTS, VAD and turn detection for a call."""

from agent.providers.profiles import Providers, build_providers

__all__ = ["Providers", "build_providers"]
