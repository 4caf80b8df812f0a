"""Bad input inside a real DAG run fails with a clear error before any unblock call, and an empty source is a
green run that still reports. The hook's and operator's own checks are in tests/emulator/test_bad_input.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, ZohoCRMEmulator, seed_demo_org
from tests.conftest import dag_run_state, emulator_conn_env, run_dag_test
from tests.emulator.test_bad_input import total_requests

pytestmark = pytest.mark.usefixtures("leak_audit")


@pytest.mark.airflow_run
def test_bad_module_param_in_a_dag_run_fails_in_the_operator_before_any_unblock_call(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    seed_demo_org(emulator.backend, n_bounced=20)
    conf = {
        "coql_query": "select id from Leads where Email_Bounce_Status = 'Temporary'",
        "module": "Leads/../org",
    }
    proc = run_dag_test(airflow_home, conf, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)})
    output = proc.stdout + proc.stderr
    leak_audit.add_output(output)
    assert dag_run_state(output) == "failed", output[-5000:]
    # refused in the DAG's first task (module check, or the COQL query's module disagreeing with it)
    assert re.search(r"AirflowFailException: .*'Leads/\.\./org'", output), output[-5000:]
    requests = emulator.backend.stats["requests"]
    assert requests["unblock_bulk"] == requests["unblock_single"] == 0


@pytest.mark.airflow_run
def test_a_misspelled_dry_run_key_fails_the_run_before_any_zoho_call(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    """``dryrun`` (for ``dry_run``) at the top level used to be ignored: the run went live and unblocked."""
    seed_demo_org(emulator.backend, n_bounced=5)
    proc = run_dag_test(
        airflow_home,
        {"cvid": BOUNCED_VIEW_ID, "dryrun": True},
        {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)},
    )
    output = proc.stdout + proc.stderr
    leak_audit.add_output(output)
    assert dag_run_state(output) == "failed", output[-5000:]
    assert "unknown key(s) 'dryrun' (did you mean 'dry_run'?)" in output, output[-5000:]
    assert total_requests(emulator) == 0  # not even a token


@pytest.mark.airflow_run
def test_batch_size_over_zohos_limit_is_refused_by_the_dag_before_any_task(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    proc = run_dag_test(
        airflow_home,
        {"cvid": BOUNCED_VIEW_ID, "batch_size": 501},
        {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)},
    )
    output = proc.stdout + proc.stderr
    leak_audit.add_output(output)
    assert proc.returncode != 0
    assert "Invalid input for param batch_size: 501 is greater than the maximum of 500" in output
    assert total_requests(emulator) == 0


@pytest.mark.airflow_run
def test_empty_view_is_a_green_run_with_nothing_to_do(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    seed_demo_org(emulator.backend, n_bounced=0)
    proc = run_dag_test(
        airflow_home, {"cvid": BOUNCED_VIEW_ID}, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)}
    )
    output = proc.stdout + proc.stderr
    leak_audit.add_output(output)
    assert dag_run_state(output) == "success", output[-5000:]
    assert "Found 0 candidate Leads record(s) from source #1 Leads view" in output
    assert "0 ids → 0 mapped task(s)." in output
    assert "0 candidate record(s) found, 0 reported, 0 unblock call(s)," in output  # the report still runs
    requests = emulator.backend.stats["requests"]
    assert requests["unblock_bulk"] == requests["unblock_single"] == 0
    assert requests["records"] == 1
