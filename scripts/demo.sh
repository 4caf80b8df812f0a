#!/usr/bin/env bash
# The main job: the example DAG end to end against the Zoho CRM emulator, SQLite metadata DB, real Airflow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source scripts/env.sh
exec .venv/bin/python scripts/demo.py "$@"
