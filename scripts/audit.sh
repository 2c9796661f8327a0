#!/usr/bin/env bash
# Dependency audit of the installed set (pip-audit against PyPI's advisory data).
# Reports; blocks only when an advisory is marked critical/high in its aliases' text.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
if ! timeout 300 .venv/bin/pip-audit --progress-spinner off -f json -o "$out" >/dev/null 2>&1; then
  if [ ! -s "$out" ]; then echo "audit: pip-audit could not run (offline?) - skipped"; exit 0; fi
fi
.venv/bin/python - "$out" <<'PY'
import json, sys
deps = json.load(open(sys.argv[1]))["dependencies"]
vuln = [(d["name"], d["version"], v["id"], v.get("description", "")) for d in deps for v in d.get("vulns", [])]
print(f"audit: {len(deps)} packages, {len(vuln)} known vulnerabilities")
for name, ver, vid, desc in vuln:
    print(f"  {name} {ver}: {vid} {desc[:100]}")
high = [v for v in vuln if any(w in v[3].lower() for w in ("critical", "remote code execution"))]
sys.exit(1 if high else 0)
PY
