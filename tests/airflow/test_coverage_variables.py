"""The coverage store on real Airflow Variables (a migrated SQLite metadata DB, Fernet-encrypted values): a
scheduled and a manual run of one DAG racing for one source's cursor, in two processes. Of each race exactly the
run whose claim landed last may commit, and the state counts exactly one advance per successful commit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, airflow_env

SCRIPT = r"""
import json, multiprocessing as mp, sys
from dataclasses import replace

def run(run_id, barrier, results):
    from airflow_provider_zohocrm.hooks.coverage_store import CoverageStore, CoverageBusyError, CoverageLostError
    store = CoverageStore("zoho_unblock", "0-Leads-all", settle_seconds=0.05)
    outcomes = []
    for round_ in range(ROUNDS):
        barrier.wait()
        try:
            claim = store.claim(f"{run_id}-{round_}")
        except CoverageBusyError as exc:
            outcomes.append(("busy", str(exc)[:60]))
        else:
            barrier.wait()  # both claims are in before either commits
            try:
                store.commit(claim, replace(claim.state, read_this_cycle=claim.state.read_this_cycle + 1))
                outcomes.append(("committed", ""))
            except CoverageLostError as exc:
                outcomes.append(("lost", str(exc)[:60]))
            barrier.wait()
            continue
        barrier.wait()
        barrier.wait()
    results.put((run_id, outcomes))

if __name__ == "__main__":
    ROUNDS = int(sys.argv[1])
    from airflow_provider_zohocrm.hooks.coverage_store import CoverageStore, CoverageBusyError
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=run, args=(name, barrier, results)) for name in ("scheduled", "manual")]
    for p in procs: p.start()
    got = dict(results.get(timeout=300) for _ in procs)
    for p in procs: p.join(timeout=60)
    store = CoverageStore("zoho_unblock", "0-Leads-all")
    # a plain second run while one holds it
    claim = store.claim("holder")
    try:
        store.claim("intruder")
        intruder = "claimed"
    except CoverageBusyError as exc:
        intruder = str(exc)
    store.release(claim)
    print(json.dumps({"outcomes": got, "state": store.read().to_json(), "intruder": intruder}))
""".replace("ROUNDS = int(sys.argv[1])", "ROUNDS = int(sys.argv[1]); globals()['ROUNDS'] = ROUNDS")


@pytest.mark.airflow_run
def test_two_runs_never_advance_one_cursor_on_real_variables(airflow_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "race.py"
    script.write_text(SCRIPT)
    env = airflow_env(airflow_home, PYTHONPATH=str(REPO))
    rounds = 12
    out = subprocess.run(
        [sys.executable, str(script), str(rounds)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    outcomes = result["outcomes"]
    committed = [sum(1 for o, _ in outcomes[r] if o == "committed") for r in ("scheduled", "manual")]
    per_round = [
        sum(1 for r in ("scheduled", "manual") if outcomes[r][i][0] == "committed") for i in range(rounds)
    ]
    assert all(n <= 1 for n in per_round), per_round  # never two advances from one race
    assert result["state"]["read_this_cycle"] == sum(committed)  # every advance is one commit, none lost
    assert "has held the coverage" in result["intruder"]
