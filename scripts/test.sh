#!/usr/bin/env bash
# The test suite: installs what it needs (first run), then pytest against the emulator and real Airflow.
# In parallel by default: pytest-xdist with one process per core (nproc), --dist loadfile, so each test file runs
# whole in one process and keeps that process's Airflow home, api-server and emulators to itself (every session
# fixture lives in the process's own basetemp). PYTEST_WORKERS=N sets the number of processes; PYTEST_WORKERS=0
# runs everything in this one process (serially).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
workers=${PYTEST_WORKERS:-$(nproc)}
if [ "$workers" = "0" ] || [ "$workers" = "1" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
