"""A wrong client secret in a real DAG run (``airflow dags test``): the first task that calls Zoho fails, and the
task log's first word on it is one ERROR line with the cause and the fix; Airflow's traceback follows, cut at the
hook's client, and ends in the same cause and fix. No call reached the CRM API, and no secret reached the output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, ZohoCRMEmulator, seed_demo_org
from tests.conftest import assert_no_secrets, dag_run_state, emulator_conn_env, run_dag_test

pytestmark = pytest.mark.airflow_run

CAUSE = "rejected the connection's client ID or secret (invalid_client)"
FIX = "Fix: Copy the client ID and secret of your Self Client from the Zoho API console"


def test_a_wrong_client_secret_fails_the_run_with_the_cause_and_the_fix_first(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    seed_demo_org(emulator.backend, n_bounced=5)
    env = emulator_conn_env(emulator)
    conn = json.loads(env["AIRFLOW_CONN_ZOHOCRM_DEFAULT"])
    conn["password"] = "not-the-client-secret"
    env = {"AIRFLOW_CONN_ZOHOCRM_DEFAULT": json.dumps(conn), "TMPDIR": str(tmp_path)}

    proc = run_dag_test(airflow_home, {"cvid": BOUNCED_VIEW_ID}, env)
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "failed", output[-5000:]
    assert_no_secrets(output, emulator)
    assert "not-the-client-secret" not in output

    # find_candidates: the hook's ERROR line (cause, then fix) comes before Airflow's traceback
    task = output[output.index("starting task_id=find_candidates") :]
    error_line = re.search(r"^.*\[error\s*\] Zoho CRM connection 'zohocrm_default': (.*)$", task, re.M)
    assert error_line, task[-5000:]
    assert CAUSE in error_line.group(1) and FIX in error_line.group(1)
    assert error_line.group(1).index(CAUSE) < error_line.group(1).index(FIX)
    failed_at = task.index("Task failed with exception")
    assert error_line.start() < failed_at

    # the traceback: cut at the hook's client (no token manager, tenacity or requests frame), ending in the line
    traceback = task[failed_at:].split("\n20")[0]  # up to Airflow's next timestamped line
    assert "zoho/auth.py" not in traceback and "tenacity" not in traceback, traceback
    last = traceback.rstrip().splitlines()[-1]
    assert last.startswith("airflow_provider_zohocrm.zoho.errors.ZohoInvalidClientError: ")
    assert CAUSE in last and FIX in last, last

    requests = emulator.backend.stats["requests"]
    assert requests["token"] >= 1
    assert sum(n for endpoint, n in requests.items() if endpoint != "token") == 0, requests
