"""A dry run is the real plan (issue 21, part 2): it makes every read the live run makes and no write, and each
record's dry-run outcome is the live run's, except the records it would send, whose outcome only Zoho's answer
can tell (they are ``pending`` with "dry run: would be sent", and ``would_send`` lists them per field set).

Each test runs the dry run, then the live run, on the same emulator, and compares them record by record (and
field by field with two fields).
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator
from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import (
    ADDRESS_MIN_HOURS,
    EMAIL_KINDS,
    seed_address_cases,
    seed_email_org,
)
from airflow_provider_zohocrm.zoho.run_report import accounting_errors, build_run_report, format_run_report

WRITES = ("unblock_bulk", "unblock_single", "add_tags")
TAG = "Needs person"


class RecordingTI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def run(**kwargs: Any) -> dict[str, Any]:
    op = UnblockEmailOperator(task_id="unblock", module="Leads", fail_on=[], needs_person_tag=TAG, **kwargs)
    return op.execute({"ti": RecordingTI()})  # type: ignore[arg-type]


@pytest.fixture
def em(conn_env: ZohoCRMEmulator, tmp_path, monkeypatch) -> ZohoCRMEmulator:
    monkeypatch.setenv("ZOHOCRM_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    return conn_env


def requests(em: ZohoCRMEmulator) -> dict[str, int]:
    return {k: int(v) for k, v in em.backend.stats["requests"].items()}


def by_record(result: dict[str, Any]) -> dict[str, str]:
    out = {rid: o for o, ids in result["ids"].items() for rid in ids}
    out.update(dict.fromkeys(result["pending"], "pending"))
    return out


def dry_then_live(
    em: ZohoCRMEmulator, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """The dry run (checked to write nothing), then the live run; returns both and the dry run's requests."""
    before = requests(em)
    dry = run(dry_run=True, **kwargs)
    after = requests(em)
    spent = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k: spent.get(k, 0) for k in WRITES} == dict.fromkeys(WRITES, 0)  # no write call
    live = run(dry_run=False, **kwargs)
    return dry, live, spent


def assert_plan_predicts(dry: dict[str, Any], live: dict[str, Any]) -> None:
    """Record by record: a final dry-run outcome is the live one; a record the plan sends got Zoho's answer.
    The plan's calls are the live run's calls, and the dry run's report is a partition too."""
    ids = sorted(by_record(live))
    assert sorted(by_record(dry)) == ids and dry["total"] == live["total"] == len(ids)
    planned = {rid for key_ids in dry["would_send"].values() for rid in key_ids}
    for rid, outcome in by_record(dry).items():
        if outcome == "pending":
            assert rid in planned and dry["pending_reasons"][rid].startswith("dry run: would be sent"), rid
            assert by_record(live)[rid] != "pending", rid
        else:
            assert rid not in planned
            assert by_record(live)[rid] == outcome, rid
    if "fields" in live:  # per (record, field) too: a field the plan does not send ends as the dry run says
        sent = {
            (rid, f) for key, key_ids in dry["would_send"].items() for f in key.split("+") for rid in key_ids
        }
        for rid, slot in dry["fields"].items():
            for name, outcome in slot.items():
                if (rid, name) in sent:
                    assert outcome == "pending"
                else:
                    assert live["fields"][rid][name] == outcome, (rid, name)
    assert dry["planned_calls"] == live["calls"]
    assert dry["calls"] == 0 and dry["tag_calls"] == 0 and dry["tagged"] == []
    found = [{"module": "Leads", "ids": ids, "source": 0}]
    assert accounting_errors(build_run_report(found, [dry])) == []


def test_verify_emails_one_field_the_plan_is_the_live_run(em: ZohoCRMEmulator) -> None:
    seeded = seed_email_org(em.backend, "Leads", counts=dict.fromkeys(EMAIL_KINDS, 3))
    ids = seeded.all_ids()
    dry, live, spent = dry_then_live(em, record_ids=ids, verify="emails", min_hours_since_bounce=24)
    # the dry run made the reads: the addresses and every Emails list, as the live run does
    assert spent["emails"] == dry["email_checks"] == live["email_checks"] == len(ids)
    assert spent.get("coql", 0) == dry["read_calls"] == 1
    assert_plan_predicts(dry, live)
    # the plan is the real one: deferred, not_blocked, permanently_blocked known before any write
    assert {o for o, got in dry["ids"].items() if got} == {"not_blocked", "deferred", "permanently_blocked"}
    assert sorted(dry["would_send"]["Email"]) == sorted(dry["pending"])
    assert dry["planned_calls"] == 1
    text = format_run_report(build_run_report([{"module": "Leads", "ids": ids}], [dry]), dry_run=True)
    assert f"dry run: {len(dry['pending'])} record(s) would be sent; nothing was changed." in text
    assert "plan: 1 unblock call(s) (Leads Email " in text


def test_verify_emails_two_fields_the_plan_is_the_live_run(em: ZohoCRMEmulator) -> None:
    seeded = seed_address_cases(em.backend)
    both = seeded.by_fields()[("Email", "Secondary_Email")]
    dry, live, spent = dry_then_live(
        em,
        record_ids=both,
        unblock_fields=["Email", "Secondary_Email"],
        verify="emails",
        min_hours_since_bounce=ADDRESS_MIN_HOURS,
    )
    assert spent["emails"] == dry["email_checks"] == live["email_checks"] == len(both)
    assert_plan_predicts(dry, live)
    assert set(dry["would_send"]) == {"Email", "Secondary_Email"}  # one field per call with two in play


@pytest.mark.parametrize("verify", ["none", "sweep"])
def test_trusting_modes_plan_every_record_with_no_call(em: ZohoCRMEmulator, verify: str) -> None:
    """verify none/sweep decide nothing before Zoho answers: the plan is every record, per field set, and the
    calls it would make; it needs no call at all (not even a token)."""
    seeded = seed_email_org(em.backend, "Leads", counts=dict.fromkeys(EMAIL_KINDS, 2))
    ids = seeded.all_ids()
    dry, live, spent = dry_then_live(em, record_ids=ids, verify=verify, batch_size=7)
    assert sum(spent.values()) == 0
    assert dry["pending"] == ids and dry["would_send"] == {"Email": ids}
    assert_plan_predicts(dry, live)
    assert live["calls"] == -(-len(ids) // 7)


def test_sweep_two_fields_plans_one_call_per_field(em: ZohoCRMEmulator) -> None:
    seeded = seed_address_cases(em.backend)
    both = seeded.by_fields()[("Email", "Secondary_Email")]
    dry, live, _ = dry_then_live(
        em, record_ids=both, unblock_fields=["Email", "Secondary_Email"], verify="sweep"
    )
    assert dry["would_send"] == {"Email": both, "Secondary_Email": both}
    assert_plan_predicts(dry, live)
    # Zoho's answer per field: a field that was never blocked reads not_blocked, the other its own answer
    a = seeded.ids["A"]
    assert live["fields"][a]["Secondary_Email"] == "not_blocked"
