# The callcenter application image: agent worker, Celery worker, MCP docs server, dashboard.
# Models ship inside Python packages (see pyproject.toml), so the image runs offline.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 CALLCENTER_DATA_DIR=/data
# libgomp1: onnxruntime/ctranslate2; libsndfile1: soundfile; tini: signal forwarding so the
# agent worker gets SIGTERM and drains calls before exiting.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 libsndfile1 tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first and pinned (CPU wheel) so no dependency pulls a CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && echo "torch==2.13.0" > /tmp/torch-constraint.txt
COPY pyproject.toml ./
COPY core ./core
COPY agent ./agent
COPY cache ./cache
COPY tasks ./tasks
COPY sip ./sip
RUN pip install -c /tmp/torch-constraint.txt . \
    && pip install --no-deps "pipecat-ai==1.14.0"  # Smart Turn v3.2's model file only (agent/call/audio_turn.py)
COPY tenants ./tenants
COPY documents ./documents
COPY deploy/telephony.yaml ./deploy/telephony.yaml

# documents/ is writable by the app user: the MCP server edits it (a named volume in compose).
RUN useradd --create-home --uid 1000 callcenter && mkdir -p /data && chown callcenter /data \
    && chown -R callcenter /app/documents
USER callcenter
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/tini", "--", "callcenter"]
CMD ["worker", "start"]
