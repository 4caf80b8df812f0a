"""The example DAG with two addresses per record, in real Airflow (``airflow dags test``) against the emulator:
the source reads the addresses with the ids, each field is judged by its own address's history (with
``check_domain`` against a DNS server on 127.0.0.1), and the emulator's per-field unblock events equal the
seed's truth (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.testing.dns_server import SEED_ZONE, LocalDNSServer
from airflow_provider_zohocrm.testing.seed import ADDRESS_CASES, ADDRESS_MIN_HOURS, seed_address_cases
from tests.airflow.test_dag_e2e import mapped_results
from tests.conftest import assert_no_secrets, dag_run_state, emulator_conn_env, run_dag_test

pytestmark = pytest.mark.airflow_run

DAG_ID = "zoho_unblock_bounced_emails"
TAG = "Needs person"
BOTH = ("Email", "Secondary_Email")


def test_two_address_records_end_as_each_fields_own_history_says(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    backend = emulator.backend
    names = [n for n, case in ADDRESS_CASES.items() if case.unblock_fields == BOTH]
    seeded = seed_address_cases(backend, names=names)
    conf = {
        "sources": [
            {
                "module": "Leads",
                "all": True,
                "unblock_fields": list(BOTH),
                "verify": "emails",
                "min_hours_since_bounce": ADDRESS_MIN_HOURS,
            }
        ],
        "needs_person_tag": TAG,
        "check_domain": True,
    }
    with LocalDNSServer(SEED_ZONE) as dns:
        # the resolver is the deployment's (issue 31 row 2): the connection's extra, not the run's conf
        resolver = {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 5}
        conn_env = emulator_conn_env(emulator, dns_options=resolver)
        proc = run_dag_test(airflow_home, conf, {**conn_env, "TMPDIR": str(tmp_path)})
        queries = dns.count()
    output = proc.stdout + proc.stderr
    assert_no_secrets(output, emulator)
    assert dag_run_state(output) == "success", output[-5000:]

    truth = {rid: ADDRESS_CASES[name].expected_with_check_domain() for name, rid in seeded.ids.items()}
    results = list(mapped_results(airflow_home).values())
    fields = {rid: slot for r in results for rid, slot in r["fields"].items()}
    assert fields == {rid: {f: t.outcome for f, t in want.items()} for rid, want in truth.items()}
    # the addresses came with the ids: one COQL read, no address read by the unblock tasks
    assert backend.stats["requests"]["coql"] == 1 and sum(r["read_calls"] for r in results) == 0
    assert queries == sum(r["dns_queries"] for r in results) > 0
    for name, rid in seeded.ids.items():
        events = backend.field_unblock_events("Leads", rid)
        for field_name, t in truth[rid].items():
            assert len(events.get(field_name, [])) == (1 if t.outcome == "unblocked" else 0), (
                name,
                field_name,
            )
        needs = any(t.outcome in ("permanently_blocked", "limit_reached") for t in truth[rid].values())
        assert (TAG in backend.record_tags("Leads", rid)) == needs, name
    assert "Leads per field (each record above is counted once, under its most actionable field):" in output
    assert "Outcome accounting mismatch" not in output
