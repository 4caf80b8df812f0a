"""No secret leaks from a real DAG run: not into its output, task log files, XComs, Variables, rendered templates
or the metadata DB (the ``leak_audit`` fixture scans them all). The audit's own tests, and reprs and exception
texts of every failure path, are in tests/emulator/test_secrets.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, Fault, ZohoCRMEmulator, seed_demo_org
from airflow_provider_zohocrm.zoho.auth import OAuthCredentials
from tests.conftest import (
    TOKEN_CACHE_VARIABLE_PREFIX,
    LeakAudit,
    _airflow_fernet,
    dag_run_state,
    emulator_conn_env,
    run_dag_test,
)

pytestmark = pytest.mark.usefixtures("leak_audit")


@pytest.mark.airflow_run
def test_dag_run_leaks_nothing_and_the_token_variable_is_ciphertext(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: LeakAudit
) -> None:
    """A run through retries and a token refresh after a revocation. The audit scans its output and the DB;
    here: it really saw XComs, rendered fields and the token-cache Variable, and that Variable (under Airflow's
    own Variable encryption) is the provider's ciphertext, which decrypts with the connection's own key to the
    token Zoho issued."""
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=300)
    backend.add_fault(Fault(endpoint="unblock_bulk", action="500", on_call=1))
    backend.add_fault(Fault(endpoint="unblock_bulk", action="revoke_access_tokens", on_call=2))
    proc = run_dag_test(
        airflow_home,
        {"cvid": BOUNCED_VIEW_ID},
        {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)},
    )
    output = proc.stdout + proc.stderr
    leak_audit.add_output(output)
    assert dag_run_state(output) == "success", output[-5000:]
    assert backend.stats["token_requests"] == 2 and len(backend.token_issue_times()) == 2
    leak_audit.sources()
    assert leak_audit.scanned["xcom"] > 0 and leak_audit.scanned["rendered_task_instance_fields"] > 0
    creds = OAuthCredentials(backend.client_id, backend.client_secret, backend.refresh_token)
    key = creds.cache_key(emulator.url)
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        row = db.execute(
            "select val from variable where key=?", (TOKEN_CACHE_VARIABLE_PREFIX + key,)
        ).fetchone()
        rendered = db.execute("select rendered_fields from rendered_task_instance_fields").fetchall()
    assert row is not None, "the mapped tasks shared their token through an Airflow Variable"
    blob = _airflow_fernet(airflow_home).decrypt(row[0].encode()).decode()  # Airflow's Variable encryption
    assert blob.startswith("gAAAAA")
    state = json.loads(creds.cipher().decrypt(blob.encode()))  # the provider's own
    assert state["access_token"] in backend.live_access_tokens()  # the newest token, encrypted
    assert state["access_token"] not in blob
    assert any("Leads" in str(r) for r in rendered)  # the operator's rendered fields were stored and scanned


@pytest.mark.airflow_run
@pytest.mark.xfail(
    strict=True,
    reason="Airflow 3.3.2's task SDK logs MaskSecret messages, secret values "
    "included, at DEBUG ('Sending request ... msg=MaskSecret(value=...)'): not the provider's doing",
)
def test_airflow_itself_prints_masked_secrets_at_debug_log_level(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Documents an Airflow leak: with ``logging_level = DEBUG`` every value passed to ``mask_secret`` (the
    connection's own extras, which Airflow masks itself, too) is printed in clear. Do not run tasks at DEBUG in
    production. This xfail turns into a failure (strict) once Airflow stops doing it."""
    seed_demo_org(emulator.backend, n_bounced=10)
    proc = run_dag_test(
        airflow_home,
        {"cvid": BOUNCED_VIEW_ID},
        {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path), "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"},
    )
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "success", output[-5000:]
    audit = LeakAudit()
    audit.watch(emulator)
    audit.add_output(output)
    audit.check()
