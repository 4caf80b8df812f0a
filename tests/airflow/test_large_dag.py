"""The example DAG on 150,000 Leads in real Airflow (``airflow dags test``): a sweep unblocks every blocked record
exactly once, and no task's XCom grows with the org beyond its share of 5 MB per 1,000,000 records (the mapped
tasks' list holds no ids: each task pulls only its own, packed). The emulator's record states and the metadata DB's
XCom table are the oracle. The run's time is printed (``-s``); it is not asserted."""

from __future__ import annotations

import random
import re
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from tests.conftest import assert_no_secrets, dag_run_state, emulator_conn_env, run_dag_test

pytestmark = pytest.mark.airflow_run

DAG_ID = "zoho_unblock_bounced_emails"
N = 150_000
#: 5 MB of XCom per task at 1,000,000 records, pro rata.
XCOM_LIMIT = 5_000_000 * N // 1_000_000
STDOUT_RE = re.compile(r"^\S+ \[\w+\s*\] (.*?) \[task\.stdout\]$", re.MULTILINE)


def xcom_bytes(home: Path) -> dict[tuple[str, int, str], int]:
    """``{(task_id, map_index, key): bytes}`` of the newest run of the DAG, from the metadata DB."""
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (DAG_ID,)
        ).fetchone()[0]
        rows = db.execute(
            "select task_id, map_index, key, length(value) from xcom where dag_id=? and run_id=?",
            (DAG_ID, run_id),
        ).fetchall()
    return {(t, int(i), k): int(n or 0) for t, i, k, n in rows}


def test_a_sweep_of_150000_leads_unblocks_each_blocked_record_once_with_bounded_xcom(
    airflow_home: Path, tmp_path: Path, emulator: ZohoCRMEmulator
) -> None:
    backend = emulator.backend
    backend.add_many_records("Leads", N, first_id=4_876_876_000_000_100_001, step=3)
    ids = sorted(backend.records("Leads"), key=int)
    blocked = random.Random(18).sample(ids, 600)
    for rid in blocked:
        backend.set_email_state("Leads", rid, blocked="temporary")
    conf = {"sources": [{"module": "Leads", "all": True, "verify": "sweep"}]}
    proc = run_dag_test(airflow_home, conf, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)})
    output = STDOUT_RE.sub(r"\1", proc.stdout + proc.stderr)
    assert_no_secrets(output, emulator)
    print(f"\n150,000-Lead sweep: dags test took {proc.seconds:.1f} s")
    assert dag_run_state(output) == "success", output[-4000:]
    assert f"{N:,} candidate record(s) found, {N:,} reported" in output
    for rid in blocked:
        assert len(backend.unblock_events("Leads", rid)) == 1, rid
    assert sum(len(backend.unblock_events("Leads", rid)) for rid in ids) == len(blocked)
    sizes = xcom_bytes(airflow_home)
    per_task: dict[tuple[str, int], int] = {}
    for (task, index, _key), size in sizes.items():
        per_task[(task, index)] = per_task.get((task, index), 0) + size
    print("XCom bytes per task:", sorted(per_task.items()))
    assert all(size <= XCOM_LIMIT for size in per_task.values()), per_task
    # the list every mapped task resolves before taking its item holds no ids
    assert sizes[("make_groups", -1, "return_value")] <= 10_000
