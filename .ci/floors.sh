#!/usr/bin/env bash
# The dependency floors really work: a fresh venv with the LOWEST version of every direct dependency
# (constraints/floors.txt, which must match the ">=" bounds in pyproject.toml) on Airflow 3.0, everything else
# from constraints/airflow-3.0.txt, then the fast test suite (no real Airflow processes, no browser).
#
#   bash .ci/floors.sh                 # exit code 0 when the floors match pyproject.toml and the tests pass
#   KEEP_WORKDIR=1 bash .ci/floors.sh  # keep the work dir (constraints used, source copy) for a look
#   FLOORS_PYTEST_ARGS="tests/emulator/test_hook.py" bash .ci/floors.sh   # run fewer tests
#   FRESH=1 bash .ci/floors.sh         # rebuild the cached venv ($ZOHOCRM_CI_CACHE, default ~/.cache/zohocrm-ci)
#   bash .ci/floors.sh --prepare       # everything but the tests: the venv, the floor check, the build floor (CI runs
#                                      # it in the background during the suite: pip is network and disk bound)
#   bash .ci/floors.sh --tests-only    # the tests on the venv --prepare left (building it if it is missing)
#   FLOORS_WORKERS=0 bash .ci/floors.sh  # the tests in one process (default: pytest-xdist, one per core)
#
# Needs python3.11 (or $PYTHON) and PyPI; pip's cache is reused between runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3.11}
FLOORS=$ROOT/constraints/floors.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/zohocrm-floors.XXXXXX")
START=$SECONDS
PHASE=all
case "${1:-}" in
    --prepare) PHASE=prepare ;;
    --tests-only) PHASE=tests ;;
    "") ;;
    *) echo "usage: $0 [--prepare | --tests-only]" >&2; exit 2 ;;
esac
cleanup() {
    if [[ -n "${KEEP_WORKDIR:-}" ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
step() { echo "== [$((SECONDS - START))s] $*"; }
pipq() { "$VPY" -m pip "$@" > "$WORK/pip.log" 2>&1 || { grep -v "is ignored: it is neither" "$WORK/pip.log"; return 1; }; }

step "floors.txt matches pyproject.toml, and the constraints for everything else"
# Writes the constraints file to use: airflow-3.0.txt without the floors' distributions, without Airflow's
# bundled providers, and (when the Airflow floor is not the version that file was frozen with) without Airflow's
# own core and task SDK; then the floors themselves as pins.
"$PYTHON" - "$ROOT/pyproject.toml" "$FLOORS" "$ROOT/constraints/airflow-3.0.txt" "$WORK/constraints.txt" <<'PY'
import re
import sys
import tomllib

pyproject, floors_path, constraints_path, out_path = sys.argv[1:]
deps = tomllib.load(open(pyproject, "rb"))["project"]["dependencies"]
declared = {}
for dep in deps:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)(.*)", dep)
    if not match:
        sys.exit(f"pyproject.toml dependency {dep!r} has no '>=' floor")
    declared[match[1].lower()] = match[2]
floors = {}
for line in open(floors_path):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, version = line.partition("==")
        floors[name.strip().lower()] = version.strip()
if declared != floors:
    sys.exit(f"constraints/floors.txt {floors} does not match the floors in pyproject.toml {declared}")
drop = set(floors)
pinned = {}
for line in open(constraints_path):
    if "==" in line and not line.startswith("#"):
        name, _, version = line.strip().partition("==")
        pinned[name.lower()] = version
if pinned.get("apache-airflow") != floors["apache-airflow"]:
    drop |= {"apache-airflow-core", "apache-airflow-task-sdk"}
# Airflow's bundled providers (common-io, common-sql, smtp, standard) were frozen with the newest common-compat;
# their pins would veto its floor, so pip picks versions that work with the floors.
drop |= {name for name in pinned if name.startswith("apache-airflow-providers-")}
with open(out_path, "w") as out:
    for line in open(constraints_path):
        name = line.partition("==")[0].strip().lower()
        if not line.startswith("#") and name not in drop:
            out.write(line)
    for name, version in floors.items():
        out.write(f"{name}=={version}\n")
print("floors:", ", ".join(f"{n}=={v}" for n, v in floors.items()))
PY

# The dependencies' venv is kept between runs under a key of everything that decides its contents (Airflow's
# install is most of this step's time); the provider is reinstalled from the tree on every run.
CACHE=${ZOHOCRM_CI_CACHE:-$HOME/.cache/zohocrm-ci}
KEY=$(cat "$FLOORS" "$WORK/constraints.txt" "$ROOT/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
VENV=$CACHE/floors-$KEY
VPY=$VENV/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$WORK/src"
# The tree's own files only (tracked, or new and not ignored): CI runs this beside other steps that write into the
# checkout (docs, build, the suite's caches), and a tar of the whole folder fails on "file changed as we read it".
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -f "$f" ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -C "$WORK/src" -xf -
if [[ -x "$VPY" && -f "$VENV/.complete" && -z "${FRESH:-}" ]]; then
    step "reuse the floors venv $VENV (FRESH=1 builds it anew)"
    # The provider from a copy of the tree (others work in the tree; build writes next to the sources).
    pipq install --no-compile --no-deps --force-reinstall "$WORK/src"
else
    step "fresh venv ($("$PYTHON" --version)) in $VENV"
    rm -rf "$VENV" && mkdir -p "$CACHE"
    "$PYTHON" -m venv "$VENV"
    mapfile -t FLOOR_REQS < <(grep -vE '^\s*(#|$)' "$FLOORS")
    # fastapi<0.132: see .ci/compat-3.0.sh (newer FastAPI breaks Airflow 3.0's in-process Execution API).
    step "install the floors (+ fastapi<0.132 and wtforms, as .ci/compat-3.0.sh)"
    # pytest-xdist: a test runner only (no dependency of the provider), so the fast tests run on every core
    pipq install --no-compile -c "$WORK/constraints.txt" "${FLOOR_REQS[@]}" "fastapi[standard]<0.132" wtforms \
        pytest-xdist
    step "install the provider and its test extra (no dependency may move off its floor)"
    pipq install --no-compile -c "$WORK/constraints.txt" "$WORK/src[test]"
    touch "$VENV/.complete"
fi
"$VPY" - "$FLOORS" <<'PY'
import sys
from importlib.metadata import version

wrong = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, floor = line.partition("==")
        if version(name.strip()) != floor.strip():
            wrong.append(f"{name.strip()} {version(name.strip())} (floor {floor.strip()})")
if wrong:
    sys.exit("not on the floor: " + ", ".join(wrong))
from airflow.providers.common.compat.sdk import mask_secret  # noqa: F401  the reason for the compat floor
print("every direct dependency is on its floor; mask_secret imports")
PY

if [[ "$PHASE" != tests ]]; then
step "the build-system floor builds the wheel (pyproject [build-system] requires, lowest versions, no isolation)"
# setuptools below 77 rejects the PEP 639 license string (project.license = "Apache-2.0"), so the floor is checked.
mapfile -t BUILD_FLOORS < <("$PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import re
import sys
import tomllib

for req in tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:>=\s*([0-9][^,;\s]*))?", req)
    if not match:
        sys.exit(f"build requirement {req!r}: expected 'name' or 'name>=version'")
    print(f"{match[1]}=={match[2]}" if match[2] else match[1])
PY
)
"$PYTHON" -m venv "$WORK/build-venv"
BPY=$WORK/build-venv/bin/python
"$BPY" -m pip install -q "${BUILD_FLOORS[@]}" > "$WORK/pip-build.log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$WORK/pip-build.log"; exit 1; }
cp -a "$WORK/src" "$WORK/build-src"
"$BPY" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/build-dist" "$WORK/build-src" \
    > "$WORK/pip-build.log" 2>&1 || { grep -v "is ignored: it is neither" "$WORK/pip-build.log" | tail -30; exit 1; }
echo "built $(basename "$WORK"/build-dist/*.whl) with ${BUILD_FLOORS[*]}"
fi
if [[ "$PHASE" == prepare ]]; then
    step "prepared in $((SECONDS - START))s (the tests: --tests-only)"
    exit 0
fi

step "fast tests on the floors: pytest ${FLOORS_PYTEST_ARGS:--m 'not airflow_run and not browser and not docs'}"
mkdir -p "$WORK/tmp" "$WORK/home"
# The seeded simulations (tests/unit/test_*_simulation.py) run a tenth of their histories here: on the floors they
# must run and hold; their depth (1,000 coverage histories, 2,000 token schedules) is the main suite's.
export ZOHOCRM_SIMULATION_SCALE=${ZOHOCRM_SIMULATION_SCALE:-0.1}
cd "$WORK/src"  # the copy: tests import the installed provider's tree, and write nothing into $ROOT
workers=${FLOORS_WORKERS:-$(nproc)}
XDIST=()
if [[ "$workers" != 0 && "$workers" != 1 ]]; then XDIST=(-n "$workers" --dist loadfile); fi
rc=0
if [[ -n "${FLOORS_PYTEST_ARGS:-}" ]]; then
    # shellcheck disable=SC2086
    TMPDIR=$WORK/tmp HOME=$WORK/home "$VPY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" $FLOORS_PYTEST_ARGS || rc=$?
else
    TMPDIR=$WORK/tmp HOME=$WORK/home "$VPY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" --durations=10 \
        -m "not airflow_run and not browser and not docs" \
        --ignore=tests/unit/test_docs_roles.py || rc=$?  # the docs extra's test: its module imports griffe
fi
if [[ "$rc" == 5 ]]; then echo "pytest collected no tests: the floors were not tested"; fi
step "done in $((SECONDS - START))s, exit $rc"
exit "$rc"
