#!/usr/bin/env bash
# Re-measure every "how long does it take" that README.md and docs/ state, and print them as a table with what
# each includes. Run it on a quiet machine (nothing else running: the numbers are wall times) from the checkout:
#
#   bash benchmarks/doc_timings.sh                 # demo (fresh clone, twice), test groups, emulator, Airflow start/stop
#   WITH_BENCHMARK=1 bash benchmarks/doc_timings.sh   # + `python -m benchmarks.run` (about 6 more minutes)
#   WITH_DEPLOYMENT=1 bash benchmarks/doc_timings.sh  # + the Celery deployment test (about 3.5 more minutes)
#
# Everything runs in a fresh clone of HEAD under a temporary directory (its own .venv, HOME and TMPDIR for the
# Airflow runs), so nothing of this checkout or of other users is touched; pip's download cache is the machine's.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zohocrm-doc-timings.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROWS=()

# timed LABEL INCLUDES CMD…: run CMD (its output to a log), add a row with its wall time
timed() {
  local label=$1 includes=$2 start end rc=0
  shift 2
  echo "-- $label: $*" >&2
  start=$(date +%s.%N)
  "$@" > "$WORK/last.log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  if [ "$rc" != 0 ]; then
    tail -30 "$WORK/last.log" >&2
    echo "FAILED ($rc): $label" >&2
    exit "$rc"
  fi
  ROWS+=("| $label | $(printf '%.1f' "$(echo "$end - $start" | bc)") s | $includes |")
  grep -E "passed|failed" "$WORK/last.log" | tail -1 >&2 || true
}

git clone -q "$ROOT" "$WORK/clone"
cd "$WORK/clone"
echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)" >&2

timed "bash scripts/demo.sh, first run" "creates .venv (pip, from the machine's download cache) + the demo" \
  bash scripts/demo.sh
timed "bash scripts/demo.sh, again" ".venv reused: seed, db migrate, one dags test, checks" bash scripts/demo.sh
timed "bash scripts/test.sh tests/unit" "pytest-xdist, nproc + 1 processes; .venv built" \
  bash scripts/test.sh -q -p no:cacheprovider tests/unit
timed "bash scripts/test.sh tests/emulator" "pytest-xdist, nproc + 1 processes; .venv built" \
  bash scripts/test.sh -q -p no:cacheprovider tests/emulator
timed "bash scripts/test.sh tests/airflow" "pytest-xdist, nproc + 1 processes; Chromium installed" \
  bash scripts/test.sh -q -p no:cacheprovider tests/airflow
timed "tests/unit/test_token_simulation.py" "one process" \
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_token_simulation.py
timed "test_1000000_records_are_each_read_once" "one process (the test's seeding included)" \
  .venv/bin/python -m pytest -q -p no:cacheprovider \
  "tests/emulator/test_large_reads.py::test_1000000_records_are_each_read_once"
timed "seed_demo_org(backend, n_bounced=100_000)" "in process, after the imports" \
  .venv/bin/python -c "
import time
from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, seed_demo_org
t = time.perf_counter(); seed_demo_org(EmulatorBackend(EmulatorConfig()), n_bounced=100_000)
print(f'{time.perf_counter() - t:.2f} s')"
ROWS+=("| (seed, in process) | $(tail -1 "$WORK/last.log") | the seeding alone |")

# docs/first-night.md, step 3 and 8: airflow standalone until healthy, then the stop of its whole process group
export AIRFLOW_HOME=$WORK/airflow-home AIRFLOW__CORE__LOAD_EXAMPLES=False PYTHONUNBUFFERED=1
export AIRFLOW__API__PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$AIRFLOW_HOME/dags" "$WORK/home"
export AIRFLOW__CORE__DAGS_FOLDER=$AIRFLOW_HOME/dags HOME=$WORK/home PATH=$PWD/.venv/bin:$PATH
url=http://127.0.0.1:$AIRFLOW__API__PORT/api/v2/monitor/health
standalone_up() {
  setsid bash -c 'echo $$ > "$AIRFLOW_HOME/airflow.pgid"; exec airflow standalone' \
    > "$AIRFLOW_HOME/standalone.log" 2>&1 &
  until curl -sf "$url" > /dev/null; do sleep 1; done
}
group_down() {
  kill -TERM -- "-$(cat "$AIRFLOW_HOME/airflow.pgid")"
  while pgrep -g "$(cat "$AIRFLOW_HOME/airflow.pgid")" > /dev/null; do sleep 1; done
}
timed "airflow standalone, first start, until healthy" "creates and migrates the SQLite DB" standalone_up
timed "stop: kill -TERM the group, until no process is left" "scheduler, dag-processor, triggerer, api-server" \
  group_down
four_up() {
  airflow db migrate > "$AIRFLOW_HOME/db-migrate.log"
  setsid bash -c 'echo $$ > "$AIRFLOW_HOME/airflow.pgid"
    airflow api-server & airflow scheduler & airflow dag-processor & airflow triggerer & wait' \
    > "$AIRFLOW_HOME/airflow.log" 2>&1 &
  until curl -sf "$url" > /dev/null; do sleep 1; done
}
rm -rf "$AIRFLOW_HOME/airflow.db"
timed "db migrate + the four processes by hand, until healthy" "a new SQLite DB" four_up
group_down
unset AIRFLOW_HOME AIRFLOW__CORE__LOAD_EXAMPLES AIRFLOW__API__PORT AIRFLOW__CORE__DAGS_FOLDER

if [ -n "${WITH_DEPLOYMENT:-}" ]; then
  timed "deployment test (Celery, PostgreSQL, Redis)" "one process; the cluster's start" \
    env CI=true PYTEST_WORKERS=0 bash scripts/test.sh -q -p no:cacheprovider -m deployment tests/deployment
fi
if [ -n "${WITH_BENCHMARK:-}" ]; then
  timed ".venv/bin/python -m benchmarks.run" "1,000 / 10,000 / 100,000 bounced; results to a temp dir" \
    .venv/bin/python -m benchmarks.run --out "$WORK/bench"
fi

echo
echo "| what | wall | includes |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
