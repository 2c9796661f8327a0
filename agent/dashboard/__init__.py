"""The `callcenter dashboard` web app (see app.py)."""

from agent.dashboard.app import create_app, run_dashboard

__all__ = ["create_app", "run_dashboard"]
