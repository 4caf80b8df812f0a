#!/usr/bin/env bash
# The test suite: installs what it needs (first run), then pytest against the emulator and real Airflow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
