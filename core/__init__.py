"""Shared, dependency-free building blocks used by agent/, cache/, tasks/ and sip/.

Nothing here imports livekit-agents or any of the other packages, so every process
(agent worker, Celery worker, MCP server, admin CLI) can use it without a cycle.
"""
