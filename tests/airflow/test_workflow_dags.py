"""The workflow (airflow_provider_zohocrm.workflows) in real Airflow against the emulator: the state machine's
guarantees (a failed group, a dry run, templates, addresses), the operator's XCom input, and the two extra
examples. Issues 25, 27 (rows 1 and 7) and 31 (rows 1–3)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import Fault, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import seed_email_org
from tests.conftest import REPO, assert_no_secrets, dag_run_state, emulator_conn_env, run_dag_test

pytestmark = pytest.mark.airflow_run

TEST_DAGS = REPO / "tests" / "dags" / "workflow"
EXAMPLES = REPO / "airflow_provider_zohocrm" / "example_dags"
STDOUT_RE = re.compile(r"^\S+ \[\w+\s*\] (.*?) \[task\.stdout\]$", re.MULTILINE)


def run(
    home: Path,
    em: ZohoCRMEmulator,
    tmp_path: Path,
    conf: dict[str, Any],
    *,
    dag_id: str,
    dags: Path = TEST_DAGS,
    conn_env: dict[str, str] | None = None,
    **env: str,
) -> str:
    proc = run_dag_test(
        home,
        conf,
        {
            **(conn_env or emulator_conn_env(em)),
            "TMPDIR": str(tmp_path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            **env,
        },
        dag_id=dag_id,
    )
    output = STDOUT_RE.sub(r"\1", proc.stdout + proc.stderr)
    assert_no_secrets(output, em)
    return output


def task_states(home: Path, dag_id: str) -> dict[tuple[str, int], str]:
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (dag_id,)
        ).fetchone()[0]
        rows = db.execute(
            "select task_id, map_index, state from task_instance where dag_id=? and run_id=?", (dag_id, run_id)
        ).fetchall()
    return {(t, int(i)): str(s) for t, i, s in rows}


def test_operator_addresses_from_an_upstream_xcomarg_resolve_at_run_time(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Issue 27 row 7: ``addresses=<task>.output`` failed with "addresses must be an object …, not
    PlainXComArg". It resolves at run time and sets the dependency (the operator's ``addresses`` data is
    resolved in execute, outside its template fields)."""
    org = seed_email_org(emulator.backend, counts={"old_soft": 2})
    ids = org.ids["old_soft"]
    addresses = {rid: {"Email": emulator.backend.record("Leads", rid)["fields"]["Email"]} for rid in ids}
    output = run(
        airflow_home,
        emulator,
        tmp_path,
        {"addresses": addresses, "record_ids": ids},
        dag_id="wf_operator_xcom_addresses",
    )
    assert dag_run_state(output) == "success", output[-5000:]
    assert "PlainXComArg" not in output
    for rid in ids:
        assert len(emulator.backend.unblock_events("Leads", rid)) == 1
    # the addresses came from the upstream task: the job read no address itself (no COQL call)
    assert emulator.backend.stats["requests"]["coql"] == 0
