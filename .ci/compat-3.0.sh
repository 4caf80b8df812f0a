#!/usr/bin/env bash
# Airflow 3.0 compatibility of the provider as users install it: the built wheel (not editable) in a fresh venv
# with apache-airflow 3.0.6, the lowest Airflow we support. Checks (tests/compat/check_airflow.py): every module
# imports, provider discovery, the 3.0 connection form, the example DAG parses, the hook and a whole
# `airflow dags test` run against the Zoho emulator.
#
#   bash .ci/compat-3.0.sh                     # install with -c constraints/airflow-3.0.txt
#   REFRESH_CONSTRAINTS=1 bash .ci/compat-3.0.sh   # resolve afresh and rewrite constraints/airflow-3.0.txt
#   KEEP_WORKDIR=1 bash .ci/compat-3.0.sh      # keep the venv, wheel and AIRFLOW_HOME for a look afterwards
#   COMPAT_VENV=DIR bash .ci/compat-3.0.sh --prepare   # only build the Airflow 3.0 venv in DIR (pip: network and
#                                                      # disk bound; CI runs it in the background during the suite)
#   COMPAT_VENV=DIR bash .ci/compat-3.0.sh     # reuse the venv DIR holds (built anew when it is not complete)
#
# Needs python3.11 (or $PYTHON) and PyPI. Exit code: 0 when every check passed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3.11}
AIRFLOW_VERSION=3.0.6
CONSTRAINTS=$ROOT/constraints/airflow-3.0.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zohocrm-compat-3.0.XXXXXX")
START=$SECONDS

cleanup() {
    if [[ -n "${KEEP_WORKDIR:-}" ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
step() { echo "== [$((SECONDS - START))s] $*"; }
# pip's output goes to a log, shown only when pip fails (this machine's pip.conf makes it very noisy).
pipq() { "$VPY" -m pip "$@" > "$WORK/pip.log" 2>&1 || { grep -v "is ignored: it is neither" "$WORK/pip.log"; return 1; }; }

# The distributions besides the provider's: Airflow 3.0.6 and the providers pip resolves with it; wtforms
# because a 3.0/3.1 api-server only renders provider connection fields when wtforms is importable (the
# official images have it through the FAB provider); pytest because the package's pytest plugin imports it;
# build to build the wheel. fastapi<0.132: with a newer FastAPI, Airflow 3.0.6's in-process Execution API rejects
# the task SDK's request bodies (422 "Input should be a valid dictionary") and every task of `airflow dags test`
# fails before any provider code runs (seen with fastapi 0.165.0; 0.131.0 works). Airflow's own 3.0.6 constraints
# pin an older FastAPI; this is what a bare `pip install apache-airflow==3.0.6` misses.
REQUIREMENTS=(
    "apache-airflow==$AIRFLOW_VERSION"
    "fastapi[standard]<0.132"
    apache-airflow-providers-http
    apache-airflow-providers-common-compat
    wtforms
    pytest
    build
)

PREPARE_ONLY=""
if [[ "${1:-}" == "--prepare" ]]; then PREPARE_ONLY=1; fi
VENV=${COMPAT_VENV:-$WORK/venv}
VPY=$VENV/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ -x "$VPY" && -f "$VENV/.complete" && -z "${REFRESH_CONSTRAINTS:-}" ]]; then
    step "reuse the Airflow $AIRFLOW_VERSION venv $VENV"
else
    step "fresh venv ($("$PYTHON" --version)) in $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    if [[ -n "${REFRESH_CONSTRAINTS:-}" || ! -f "$CONSTRAINTS" ]]; then
        step "install ${REQUIREMENTS[*]} (resolving afresh)"
        pipq install "${REQUIREMENTS[@]}"
        {
            echo "# pip freeze of the Airflow $AIRFLOW_VERSION compat venv (.ci/compat-3.0.sh; REFRESH_CONSTRAINTS=1 rewrites it)"
            "$VPY" -m pip freeze --exclude-editable | grep -viE '^(airflow-provider-zohocrm|pip|setuptools|wheel)[= @]'
        } > "$CONSTRAINTS"
        step "wrote $CONSTRAINTS"
    else
        step "install ${REQUIREMENTS[*]} with -c constraints/airflow-3.0.txt"
        pipq install --no-compile -c "$CONSTRAINTS" "${REQUIREMENTS[@]}"  # bytecode is written on first import
    fi
    touch "$VENV/.complete"
fi
if [[ -n "$PREPARE_ONLY" ]]; then
    step "prepared $VENV in $((SECONDS - START))s"
    exit 0
fi

# Build from a copy of the tree: `build` writes build/ and *.egg-info next to the sources, and others work there.
step "build the wheel"
mkdir -p "$WORK/src" "$WORK/dist"
tar -C "$ROOT" --exclude=.git --exclude=.venv --exclude=build --exclude=dist --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude=.hypothesis --exclude=airflow-home --exclude=.artifacts -cf - . | tar -C "$WORK/src" -xf -
"$VPY" -m build --wheel --outdir "$WORK/dist" "$WORK/src" > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$WORK"/dist/airflow_provider_zohocrm-*.whl)
step "install $(basename "$WHEEL") (not editable)"
"$VPY" -m pip uninstall -y -q airflow-provider-zohocrm > /dev/null 2>&1 || true  # a reused venv may hold an older build
pipq install -c "$CONSTRAINTS" "$WHEEL"

step "checks (tests/compat/check_airflow.py)"
mkdir -p "$WORK/run"
cd "$WORK/run"  # not the source tree: the import must find the installed wheel
rc=0
"$VPY" "$ROOT/tests/compat/check_airflow.py" \
    --dag-file "$ROOT/dags/zoho_unblock_bounced_emails.py" --workdir "$WORK/run" --source-root "$ROOT" || rc=$?
step "done in $((SECONDS - START))s, exit $rc"
exit "$rc"
