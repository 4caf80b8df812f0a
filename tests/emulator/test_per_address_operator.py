"""Per-address verification through UnblockEmailOperator, against the emulator (issue 19, the integration).

The seeded cases (A, B, C, their mirror images, two fields of different ages, an empty field, a changed address,
a user's own mail, capitals, dead domains) each know what every field must end in. The operator runs them with
``verify="emails"``; the emulator's per-field unblock events show which fields the unblock calls reached, its
tags which records were tagged, and the DAG's accounting check runs over the operator's result.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator
from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.testing.dns_server import SEED_ZONE, LocalDNSServer
from airflow_provider_zohocrm.testing.seed import (
    ADDRESS_CASES,
    ADDRESS_MIN_HOURS,
    AddressSeeded,
    FieldTruth,
    seed_address_cases,
)
from airflow_provider_zohocrm.zoho.per_field import PRECEDENCE
from airflow_provider_zohocrm.zoho.run_report import accounting_errors, build_run_report

TAG = "Needs person"
NEEDS_PERSON = ("permanently_blocked", "limit_reached")


class RecordingTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def run(**kwargs: Any) -> dict[str, Any]:
    op = UnblockEmailOperator(task_id="unblock", **kwargs)
    return op.execute({"ti": RecordingTI()})  # type: ignore[arg-type]


@pytest.fixture
def org(conn_env: ZohoCRMEmulator, tmp_path, monkeypatch) -> AddressSeeded:
    monkeypatch.setenv("ZOHOCRM_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    return seed_address_cases(conn_env.backend)


def requests_to(em: ZohoCRMEmulator, name: str) -> int:
    return int(em.backend.stats["requests"].get(name, 0))


def field_outcomes(result: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(record, field) → outcome: the per-field detail, or with one field the record's outcome."""
    if "fields" in result:
        return {(rid, f): o for rid, slot in result["fields"].items() for f, o in slot.items()}
    (name,) = result["unblock_fields"]
    return {(rid, name): o for o, ids in result["ids"].items() for rid in ids}


def record_outcomes(result: dict[str, Any]) -> dict[str, str]:
    out = {rid: o for o, ids in result["ids"].items() for rid in ids}
    out.update(dict.fromkeys(result["pending"], "pending"))
    return out


def most_actionable(outcomes: Iterable[str]) -> str:
    rank = {o.value: i for i, o in enumerate(PRECEDENCE)}
    return min(outcomes, key=lambda o: rank[o])


def run_cases(
    em: ZohoCRMEmulator,
    org: AddressSeeded,
    truth_of: Any,
    *,
    pass_addresses: bool,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """One operator run per field set the cases use; checks every (record, field) against ``truth_of(case)``."""
    results = []
    for fields, ids in org.by_fields().items():
        addresses = None
        if pass_addresses:  # as the DAG passes them: read with the ids by the source
            addresses = {
                rid: {f: em.backend.record("Leads", rid)["fields"].get(f) for f in fields} for rid in ids
            }
        result = run(
            module="Leads",
            record_ids=ids,
            unblock_fields=list(fields),
            verify="emails",
            min_hours_since_bounce=ADDRESS_MIN_HOURS,
            needs_person_tag=TAG,
            addresses=addresses,
            fail_on=[],
            **kwargs,
        )
        results.append(result)
        truth: dict[tuple[str, str], FieldTruth] = {
            (rid, f): t for rid in ids for f, t in truth_of(org.case(rid)).items()
        }
        got = field_outcomes(result)
        assert got == {pair: t.outcome for pair, t in truth.items()}, org.case(ids[0]).name
        # each record counted once, under its most actionable field
        records = record_outcomes(result)
        for rid in ids:
            assert records[rid] == most_actionable(o for (r, _), o in got.items() if r == rid), rid
        # one-field runs read as before: no per-field detail
        assert ("fields" in result) == (len(fields) > 1)
    # only the qualifying fields reached an unblock call: one per-field unblock event exactly where due
    for name, rid in org.ids.items():
        events = em.backend.field_unblock_events("Leads", rid)
        for field_name, t in truth_of(ADDRESS_CASES[name]).items():
            want = 1 if t.outcome == "unblocked" else 0
            assert len(events.get(field_name, [])) == want, (name, field_name, t.outcome)
        state = em.backend.record("Leads", rid)["email"]
        for field_name, t in truth_of(ADDRESS_CASES[name]).items():
            assert state[field_name]["blocked"] == t.blocked_after, (name, field_name)
        # tagged: any field that needs a person
        needs = any(t.outcome in NEEDS_PERSON for t in truth_of(ADDRESS_CASES[name]).values())
        assert (TAG in em.backend.record_tags("Leads", rid)) == needs, name
    # the DAG's accounting over the operator's results: a partition of records, and of (record, field) pairs
    found = [{"module": "Leads", "ids": ids, "source": 0} for ids in org.by_fields().values()]
    assert accounting_errors(build_run_report(found, results)) == []
    return results


@pytest.mark.parametrize("pass_addresses", [True, False], ids=["addresses-from-source", "read-by-task"])
def test_every_case_ends_in_its_own_fields_outcomes(
    conn_env: ZohoCRMEmulator, org: AddressSeeded, pass_addresses: bool
) -> None:
    results = run_cases(
        conn_env, org, lambda case: case.expected, pass_addresses=pass_addresses, max_parallel_calls=3
    )
    # the addresses cost nothing when the source passed them, one COQL call per field set run otherwise
    assert requests_to(conn_env, "coql") == (0 if pass_addresses else len(results))
    assert sum(r["read_calls"] for r in results) == requests_to(conn_env, "coql")
    assert sum(r["email_checks"] for r in results) == requests_to(conn_env, "emails")
    # the cases, by name: the field its own history says, the other left alone
    a = org.ids["A"]
    two = next(r for r in results if a in r.get("fields", {}))
    assert two["fields"][a] == {"Email": "unblocked", "Secondary_Email": "not_blocked"}
    # two fields in play: each unblock call carries one field, so each answer is that field's own
    assert sum(r["calls"] for r in results) == requests_to(conn_env, "unblock_bulk") + requests_to(
        conn_env, "unblock_single"
    )


def test_check_domain_defers_a_dead_domain_and_asks_only_the_local_server(
    conn_env: ZohoCRMEmulator, org: AddressSeeded
) -> None:
    with LocalDNSServer(SEED_ZONE) as dns:
        results = run_cases(
            conn_env,
            org,
            lambda case: case.expected_with_check_domain(),
            pass_addresses=True,
            check_domain=True,
            dns_options={"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 2},
        )
        queries = dns.count()
    assert queries == sum(r["dns_queries"] for r in results) > 0
    dead = org.ids["dead_domain"]
    deferred = {k: v for r in results for k, v in r.get("field_reasons", {}).items() if k.startswith(dead)}
    deferred.update((dead, r["reasons"][dead]) for r in results if dead in r["reasons"])
    assert any("check_domain" in why for why in deferred.values()), deferred


def test_one_field_keeps_todays_calls_and_report(conn_env: ZohoCRMEmulator, org: AddressSeeded) -> None:
    """Case B with Email only: Email's own soft bounce is unblocked (the later hard bounce of Secondary_Email
    no longer makes the record permanently_blocked), in one bulk call, and the report has no per-field part."""
    ids = [org.ids["B"], org.ids["user_mailbox"], org.ids["changed_address_silent"]]
    assert all(ADDRESS_CASES[org.case(r).name].unblock_fields == ("Email",) for r in ids)
    result = run(
        module="Leads",
        record_ids=ids,
        unblock_fields=["Email"],
        verify="emails",
        min_hours_since_bounce=ADDRESS_MIN_HOURS,
        fail_on=[],
    )
    assert {rid: o for o, got in result["ids"].items() for rid in got} == {
        rid: org.expected(rid)["Email"].outcome for rid in ids
    }
    assert result["ids"]["unblocked"][:1] == [org.ids["B"]]  # B: Email's own soft bounce, unblocked
    assert result["calls"] == requests_to(conn_env, "unblock_bulk") == 1
    assert not {"fields", "field_details", "field_reasons"} & set(result)
