#!/usr/bin/env bash
# Create .venv with the pinned Airflow and this provider (editable). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.zohocrm-installed
want=$(cat pyproject.toml constraints/airflow-3.3.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints/airflow-3.3.txt -e ".[dev]"
  echo "$want" > "$stamp"
fi
