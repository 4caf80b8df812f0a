"""The unblock job (zoho/unblock_job.py) on a protocol client alone, over HTTP to the emulator, with no Airflow.

The emulator's own model (its record states, its seed's expected outcomes, its request counts) is the oracle.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_zohocrm.testing import Fault, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import EMAIL_KINDS, Seeded, seed_email_org
from airflow_provider_zohocrm.zoho.auth import OAuthCredentials, TokenManager
from airflow_provider_zohocrm.zoho.client import RetryPolicy, ZohoCRMClient
from airflow_provider_zohocrm.zoho.datacenters import resolve_endpoints
from airflow_provider_zohocrm.zoho.emails import BUDGET_REASON
from airflow_provider_zohocrm.zoho.unblock_job import UnblockJobFailed, UnblockPlan, run_unblock

REPO = Path(__file__).resolve().parents[2]

#: Run in a fresh interpreter: the job on a client built from the protocol package alone. Prints the report and
#: the Airflow modules the process imported (there must be none).
_NO_AIRFLOW_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import requests
    from airflow_provider_zohocrm.zoho.auth import OAuthCredentials, TokenManager
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient
    from airflow_provider_zohocrm.zoho.datacenters import resolve_endpoints
    from airflow_provider_zohocrm.zoho.unblock_job import UnblockPlan, run_unblock

    args = json.load(sys.stdin)
    creds = OAuthCredentials(args["client_id"], args["client_secret"], args["refresh_token"])
    endpoints = resolve_endpoints("us", args["url"], args["url"])
    client = ZohoCRMClient(TokenManager(creds, endpoints, requests.Session()))
    plan = UnblockPlan.build("Leads", args["ids"], ["Email"], 500, verify="emails", min_hours_since_bounce=24,
                             needs_person_tag="Bounce: fix")
    report = run_unblock(client, plan, max_parallel=4)
    airflow = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
    print(json.dumps({"report": report.to_dict(), "airflow_modules": airflow}))
    """
)


def client_for(em: ZohoCRMEmulator, attempts: int = 6) -> ZohoCRMClient:
    b = em.backend
    creds = OAuthCredentials(b.client_id, b.client_secret, b.refresh_token)
    tokens = TokenManager(creds, resolve_endpoints("us", em.url, em.url), requests.Session())
    return ZohoCRMClient(
        tokens, retry=RetryPolicy(max_attempts=attempts, backoff_base=0.01, backoff_max=0.05)
    )


def outcome_of(report: dict[str, Any]) -> dict[str, str]:
    """{id: outcome}, each id once."""
    found: dict[str, str] = {}
    for outcome, ids in [*report["ids"].items(), ("pending", report["pending"])]:
        for rid in ids:
            assert rid not in found, rid
            found[rid] = outcome
    return found


def requests_to(em: ZohoCRMEmulator, endpoint: str) -> int:
    return int(em.backend.stats["requests"].get(endpoint, 0))


@pytest.fixture
def org(emulator: ZohoCRMEmulator) -> Seeded:
    return seed_email_org(emulator.backend, "Leads", counts=dict.fromkeys(EMAIL_KINDS, 3))


def test_the_job_runs_with_no_airflow_import(emulator: ZohoCRMEmulator, org: Seeded) -> None:
    ids = org.all_ids()
    expected = org.expected_outcomes("emails")
    b = emulator.backend
    args = {
        "client_id": b.client_id,
        "client_secret": b.client_secret,
        "refresh_token": b.refresh_token,
        "url": emulator.url,
        "ids": ids,
    }
    done = subprocess.run(
        [sys.executable, "-c", _NO_AIRFLOW_SCRIPT],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["airflow_modules"] == []
    assert outcome_of(out["report"]) == expected
    # the emulator's record state: one unblock on each record that needed one, none elsewhere
    for rid in ids:
        assert len(b.unblock_events("Leads", rid)) == (1 if expected[rid] == "unblocked" else 0), rid
    needs_person = {rid for rid, o in expected.items() if o in ("permanently_blocked", "limit_reached")}
    assert (
        needs_person and {rid for rid in ids if "Bounce: fix" in b.record_tags("Leads", rid)} == needs_person
    )
    # calls at the minimum: one Emails page per record (only mail the CRM sent is read, so the received mails
    # that once buried a bounce on page 2 are not listed), one address read, one unblock call, one tag call
    assert requests_to(emulator, "emails") == len(ids)
    assert requests_to(emulator, "coql") == 1
    assert requests_to(emulator, "unblock_bulk") == 1 and requests_to(emulator, "add_tags") == 1
    assert b.stats["ids_sent"] == sum(1 for o in expected.values() if o in ("unblocked", "limit_reached"))


@pytest.mark.parametrize("mode", ["none", "sweep"])
def test_trusting_modes_send_every_record_in_batches(
    emulator: ZohoCRMEmulator, org: Seeded, mode: str
) -> None:
    ids = org.all_ids()
    plan = UnblockPlan.build("Leads", ids, ["Email"], 7, verify=mode)
    report = run_unblock(client_for(emulator), plan, max_parallel=3).to_dict()
    assert outcome_of(report) == org.expected_outcomes(mode)
    assert requests_to(emulator, "emails") == 0
    assert requests_to(emulator, "unblock_bulk") == report["calls"] == -(-len(ids) // 7)
    assert emulator.backend.stats["ids_sent"] == len(ids)


def test_one_email_check_budget_is_shared_by_every_thread(emulator: ZohoCRMEmulator, org: Seeded) -> None:
    single_page = [rid for rid in org.all_ids() if rid not in org.of("buried_soft")]
    plan = UnblockPlan.build(
        "Leads", single_page, verify="emails", min_hours_since_bounce=24, max_email_checks=5
    )
    report = run_unblock(client_for(emulator), plan, max_parallel=4).to_dict()
    assert requests_to(emulator, "emails") == report["email_checks"] == 5
    unchecked = [rid for rid, why in report["reasons"].items() if why == BUDGET_REASON]
    assert len(unchecked) == len(single_page) - 5
    assert all(not emulator.backend.unblock_events("Leads", rid) for rid in unchecked)


def test_a_failed_unblock_call_leaves_every_id_accounted_for(emulator: ZohoCRMEmulator, org: Seeded) -> None:
    ids = org.all_ids()
    emulator.backend.add_fault(Fault(endpoint="unblock_bulk", action="500", on_call=2))
    plan = UnblockPlan.build("Leads", ids, ["Email"], 5)
    with pytest.raises(UnblockJobFailed) as failed:
        run_unblock(client_for(emulator, attempts=1), plan)
    report = failed.value.report.to_dict()
    outcomes = outcome_of(report)
    assert sorted(outcomes) == sorted(ids)
    first, second = ids[:5], ids[5:10]
    assert all(outcomes[rid] != "pending" for rid in first)
    assert all(report["pending_reasons"][rid].startswith("unblock call failed") for rid in second)
    assert all(report["pending_reasons"][rid].startswith("not sent") for rid in ids[10:])
    assert requests_to(emulator, "unblock_bulk") == 2  # nothing was sent after the failure
