#!/usr/bin/env bash
# Regenerates requirements.lock: every Python dependency of the project (with the dev extra), direct and
# transitive, pinned to the exact version pip resolves today from the ranges in pyproject.toml.
# Run it after changing pyproject.toml's dependencies, then `bash scripts/install.sh` and the tests.
# The lock is for CPython 3.11 on Linux x86_64 (the CUDA build of torch brings its nvidia-* wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
report=$(mktemp)
trap 'rm -f "$report"' EXIT
"$python" -m pip install --dry-run --ignore-installed --quiet --report "$report" '.[dev]' 2>&1 \
  | grep -v "^WARNING: Location" || true
"$python" - "$report" > requirements.lock <<'PY'
import json, sys
from packaging.utils import canonicalize_name
report = json.load(open(sys.argv[1]))
pins = sorted(
    (canonicalize_name(item["metadata"]["name"]), item["metadata"]["version"])
    for item in report["install"]
    if canonicalize_name(item["metadata"]["name"]) != "flexselect-agent"
)
print("# Exact versions of every dependency, direct and transitive: scripts/install.sh installs these.")
print("# Regenerate with `bash scripts/lock.sh` after changing pyproject.toml (CPython 3.11, Linux x86_64).")
for name, version in pins:
    print(f"{name}=={version}")
PY
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) packages)"
