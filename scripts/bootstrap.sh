#!/usr/bin/env bash
# Create .venv with the pinned Airflow and this provider (editable). Idempotent: a later run only checks a stamp.
# --no-compile: Python writes the bytecode of what is imported on first import (pip would compile all of Airflow, ~18 s of CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.zohocrm-installed
want=$(cat pyproject.toml constraints/airflow-3.3.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing apache-airflow (constraints/airflow-3.3.txt) and this provider into .venv …"
  log=.venv/pip.log
  { .venv/bin/python -m pip install --upgrade pip \
    && .venv/bin/python -m pip install --no-compile -c constraints/airflow-3.3.txt -e ".[dev,deployment,docs]"; } > "$log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$log" | tail -40; echo "[bootstrap] pip failed (log: $log)"; exit 1; }
  echo "$want" > "$stamp"
fi
