"""The example DAG end to end in real Airflow (``airflow dags test``) against the emulator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    Fault,
    ZohoCRMEmulator,
    expected_outcome,
    seed_demo_org,
)
from airflow_provider_zohocrm.zoho.unblock import Outcome
from tests.conftest import RECORD_OUTCOMES, assert_no_secrets, dag_run_state, emulator_conn_env, run_dag_test

pytestmark = pytest.mark.airflow_run

REPORT_RE = re.compile(r"(\d[\d,]*) bounced record\(s\) found, (\d[\d,]*) reported, (\d[\d,]*) unblock call")
ROW_RE = re.compile(r"^(\w+)\s+\|\s+([\d,]+)\s*$", re.MULTILINE)


def report_of(output: str) -> tuple[tuple[int, int, int], dict[str, int]]:
    match = REPORT_RE.search(output)
    assert match, output[-4000:]
    head = tuple(int(g.replace(",", "")) for g in match.groups())
    table = output[match.end() :]
    rows = {name: int(n.replace(",", "")) for name, n in ROW_RE.findall(table)[:8]}
    return head, rows  # type: ignore[return-value]


def test_mixed_org_past_2000_records_every_record_accounted(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    backend = emulator.backend
    seeded = seed_demo_org(backend, n_bounced=2600, n_clean=300)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    deleted = tuple(seeded.of("temporary")[i] for i in (3, 700, 1500))  # deleted by a user mid-run
    backend.add_fault(Fault(endpoint="unblock_bulk", action="delete_records", on_call=1, ids=deleted))
    expected = {rid: expected_outcome(backend, "Leads", rid, ["Email"]) for rid in found}
    expected.update({rid: Outcome.INVALID_RECORD.value for rid in deleted})
    before = {rid: backend.record("Leads", rid) for rid in seeded.of("clean")}

    proc = run_dag_test(
        airflow_home, {"cvid": BOUNCED_VIEW_ID}, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)}
    )
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "success", output[-5000:]

    (n_found, n_reported, n_calls), rows = report_of(output)
    assert n_found == n_reported == len(found) == 2600
    want = {o.value: sum(1 for v in expected.values() if v == o.value) for o in Outcome}
    assert rows == {**want, "total": 2600}
    assert all(want[o] > 0 for o in RECORD_OUTCOMES)
    # the emulator's final state, record by record
    for rid, outcome in expected.items():
        if rid in deleted:
            continue
        events = backend.unblock_events("Leads", rid)
        assert len(events) == (1 if outcome == Outcome.UNBLOCKED.value else 0), (rid, outcome)
    assert all(backend.record("Leads", rid) == before[rid] for rid in before), (
        "a record outside the view changed"
    )
    stats = backend.stats
    assert n_calls == stats["requests"]["unblock_bulk"] == -(-2600 // 500)
    assert stats["requests"]["unblock_single"] == 0
    assert stats["ids_sent"] == 2600
    assert stats["requests"]["records"] == 13  # 2,600 / 200 per page, past 2,000 by page token
    assert stats["token_requests"] == 1
    assert_no_secrets(output, emulator)


def test_coql_source_and_grouping_beyond_max_map_length(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    backend = emulator.backend
    seeded = seed_demo_org(backend, n_bounced=1300)
    query = "select id from Leads where Email_Bounce_Status = 'Temporary'"
    temporary = [
        r
        for r in seeded.bounced()
        if backend.record("Leads", r)["fields"].get("Email_Bounce_Status") == "Temporary"
    ]
    proc = run_dag_test(
        airflow_home,
        {"coql_query": query, "batch_size": 100},
        {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path), "AIRFLOW__CORE__MAX_MAP_LENGTH": "4"},
    )
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "success", output[-5000:]
    assert "→ 4 mapped task(s)" in output
    (n_found, n_reported, n_calls), _ = report_of(output)
    assert n_found == n_reported == len(temporary)
    assert n_calls == backend.stats["requests"]["unblock_bulk"] == -(-len(temporary) // 100)
    assert backend.stats["requests"]["coql"] == 1


def test_dry_run_changes_nothing(airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path) -> None:
    seeded = seed_demo_org(emulator.backend, n_bounced=700)
    proc = run_dag_test(
        airflow_home,
        {"cvid": BOUNCED_VIEW_ID, "dry_run": True},
        {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)},
    )
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "success", output[-5000:]
    assert "dry run: 700 record(s) would be sent" in output
    stats = emulator.backend.stats
    assert stats["requests"]["unblock_bulk"] == stats["requests"]["unblock_single"] == 0
    assert all(not emulator.backend.unblock_events("Leads", r) for r in seeded.bounced())


def test_missing_source_fails_loudly(airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path) -> None:
    proc = run_dag_test(airflow_home, {}, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)})
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "failed"
    assert "Set the 'cvid' param" in output
    assert emulator.backend.stats["requests"]["token"] == 0
