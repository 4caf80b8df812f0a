#!/usr/bin/env bash
# The test suite: installs what it needs (first run), then pytest against the emulator and real Airflow.
# Tests run in 2 processes (pytest-xdist, one test file per process: module fixtures stay whole), which halves
# the wall time on 2 cores. PYTEST_WORKERS=0 runs in this process (pytest's own output, e.g. the deployment
# test's table, is shown only then); any other number sets the processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
workers=${PYTEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
