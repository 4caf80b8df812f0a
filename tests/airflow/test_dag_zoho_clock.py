"""The bounce-age policy on Zoho's clock in every mapped task of the example DAG (issue 27 row 4), with and
without rolling coverage: Zoho's clock (the emulator's) runs 10 h behind the worker's, every bounce is 20 h old on
Zoho's clock (30 h on the worker's), the policy is 24 h, so every record must end ``deferred`` with no unblock."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.testing.emails import bounced, sent
from tests.airflow.test_dag_e2e import mapped_results
from tests.conftest import dag_run_state, emulator_conn_env, run_dag_test

pytestmark = pytest.mark.airflow_run

HOUR = 3_600.0


def test_every_mapped_task_measures_bounce_age_on_zohos_clock(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    backend = emulator.backend
    backend.advance(-10 * HOUR)
    ids: dict[str, list[str]] = {"Leads": [], "Contacts": []}
    for module, n in (("Leads", 3), ("Contacts", 3)):
        for i in range(n):
            address = f"p{i}@{module.lower()}.example.org"
            rid = backend.add_record(
                module, fields={"Last_Name": f"P{i}", "Email": address}, email_blocked="temporary"
            )
            now = backend.now()
            backend.add_email(
                module, rid, sent_at=now - 20 * HOUR, status=[sent(), bounced(now - 20 * HOUR)], to=address
            )
            ids[module].append(rid)
    conf = {
        "sources": [
            # no rolling coverage: each mapped task reads Zoho's clock itself
            {"module": "Leads", "all": True, "verify": "emails", "min_hours_since_bounce": 24},
            # rolling coverage: the candidates task reads the run's "now" on Zoho's clock
            {
                "module": "Contacts",
                "all": True,
                "verify": "emails",
                "min_hours_since_bounce": 24,
                "max_email_checks": 10,
            },
        ],
    }
    proc = run_dag_test(airflow_home, conf, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)})
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "success", output[-5000:]
    results = list(mapped_results(airflow_home).values())
    deferred = {(r["module"], rid) for r in results for rid in r["ids"]["deferred"]}
    assert deferred == {(m, rid) for m, rids in ids.items() for rid in rids}
    assert all("20." in r["reasons"][rid] for r in results for rid in r["ids"]["deferred"])
    assert (
        backend.stats["requests"].get("unblock_bulk", 0) + backend.stats["requests"].get("unblock_single", 0)
        == 0
    )
    for module, rids in ids.items():
        for rid in rids:
            assert backend.record(module, rid)["email"]["Email"]["blocked"] is not None
