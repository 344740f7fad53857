#!/usr/bin/env bash
# Installs the project, starts the local services and runs the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/services.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
