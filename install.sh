#!/usr/bin/env bash
# Installs callcenter into .venv/ at the repository root. Idempotent: a second run is fast.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "install.sh: Python >= 3.11 is required (found: $("$PY" --version 2>&1))" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    # Debian ships venv separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    else
      echo "install.sh: python3 -m venv failed; install python3-venv (sudo apt-get install python3-venv)" >&2; exit 1
    fi
    rm -rf .venv; "$PY" -m venv .venv
  fi
fi
PIP=".venv/bin/pip"
stamp=".venv/.callcenter-installed"
want="$(sha256sum pyproject.toml install.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
"$PIP" install -q --upgrade pip
# torch first and pinned, so nothing pulls another (CUDA) build.
.venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null \
  || "$PIP" install -q "torch==2.13.0"
echo "torch==2.13.0" > .venv/torch-constraint.txt
"$PIP" install -q -c .venv/torch-constraint.txt -e ".[test]"
# Smart Turn v3.2's model file (agent/call/audio_turn.py): only the file is used, not the
# framework, so none of pipecat's own dependencies are installed.
"$PIP" install -q --no-deps "pipecat-ai==1.14.0"
echo "$want" > "$stamp"
