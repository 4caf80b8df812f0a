"""A misspelled module in the example DAG (``airflow dags test``): the run fails in its first Zoho task, naming
the module and its close match, before any COQL, record or unblock call."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import ZohoCRMEmulator, seed_demo_org
from tests.conftest import assert_no_secrets, dag_run_state, emulator_conn_env, run_dag_test

pytestmark = pytest.mark.airflow_run


def test_leeds_fails_the_run_naming_leads_before_any_coql_or_unblock_call(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    seed_demo_org(emulator.backend, n_bounced=20)
    conf = {"sources": [{"module": "Contacts", "all": True}, {"module": "Leeds", "all": True}]}
    proc = run_dag_test(airflow_home, conf, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)})
    output = proc.stdout + proc.stderr
    assert_no_secrets(output, emulator)
    assert dag_run_state(output) == "failed", output[-5000:]
    assert "Unknown module 'Leeds'" in output and "did you mean 'Leads'?" in output, output[-5000:]
    assert "INVALID_QUERY" not in output
    requests = emulator.backend.stats["requests"]
    assert requests["modules"] == 1
    assert requests["coql"] == requests["records"] == requests["emails"] == 0, requests
    assert requests["unblock_bulk"] == requests["unblock_single"] == requests["add_tags"] == 0, requests
