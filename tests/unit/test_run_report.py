"""The example DAG's report (zoho/run_report.py): per module and in total, and the check that every candidate of
every module ends in exactly one outcome. Pure logic; the DAG runs are in tests/airflow/test_dag_e2e.py."""

from __future__ import annotations

from typing import Any

from airflow_provider_zohocrm.zoho.run_report import (
    accounting_errors,
    build_run_report,
    format_module_table,
    format_run_report,
)
from airflow_provider_zohocrm.zoho.unblock import Outcome


def result(module: str, **ids: list[str]) -> dict[str, Any]:
    pending = ids.pop("pending", [])
    return {
        "module": module,
        "ids": {o.value: ids.get(o.value, []) for o in Outcome},
        "pending": pending,
        "calls": 1,
        "email_checks": 2,
        "tag_calls": 1 if ids.get("permanently_blocked") else 0,
        "details": {
            rid: {"category": "Permanently blocked", "reason": "Mailbox does not exist"}
            for rid in ids.get("permanently_blocked", [])
        },
    }


FOUND = [
    {"source": 0, "module": "Leads", "ids": ["1", "2", "3"], "repeated": 0},
    {"source": 1, "module": "Contacts", "ids": ["1", "9"], "repeated": 0},  # ids are per module
]


def test_every_module_adds_up_and_the_total_column_sums_them() -> None:
    report = build_run_report(
        FOUND,
        [
            result("Leads", unblocked=["1"], permanently_blocked=["2"]),
            result("Leads", not_blocked=["3"]),
            result("Contacts", unblocked=["9"], deferred=["1"]),
            None,  # a skipped mapped task instance
        ],
    )
    assert accounting_errors(report) == []
    assert report["found"] == {"Leads": 3, "Contacts": 2} and report["found_total"] == report["total"] == 5
    assert (report["calls"], report["email_checks"], report["tag_calls"], report["tasks"]) == (3, 6, 1, 3)
    assert report["needs_person"]["permanently_blocked"] == [
        {"module": "Leads", "id": "2", "category": "Permanently blocked", "reason": "Mailbox does not exist"}
    ]
    table = format_module_table(report["counts"], report["modules"])
    assert table.splitlines()[0].split("|")[1:] == ["    Leads ", " Contacts ", "    total"]
    row = {line.split("|")[0].strip(): line.split("|")[1:] for line in table.splitlines()[2:]}
    assert [c.strip() for c in row["unblocked"]] == ["1", "1", "2"]
    assert [c.strip() for c in row["total"]] == ["3", "2", "5"]
    text = format_run_report(report, tag="Needs person")
    assert (
        "5 candidate record(s) found, 5 reported, 3 unblock call(s), 6 email check(s), 1 tag call(s)." in text
    )
    assert "Need a person (permanently_blocked, 1, tagged 'Needs person'):" in text
    assert '  Leads 2: Permanently blocked: "Mailbox does not exist"' in text


def test_a_lost_id_an_invented_one_and_a_repeat_are_named_per_module() -> None:
    report = build_run_report(
        FOUND,
        [
            result("Leads", unblocked=["1", "2"], error=["2"]),  # 3 lost, 2 twice
            result("Contacts", unblocked=["1", "9", "77"]),  # 77 never found
            result("Deals", unblocked=["5"]),  # a module nobody searched
        ],
    )
    problems = accounting_errors(report)
    assert "Leads: 1 id(s) without outcome (e.g. 3)" in problems
    assert "Leads: 1 id(s) reported twice (e.g. 2)" in problems
    assert "Contacts: 1 id(s) reported but never found (e.g. 77)" in problems
    assert "Deals: 1 id(s) reported but never found (e.g. 5)" in problems


def test_the_same_id_in_two_modules_is_two_records() -> None:
    """Ids are checked per module: Leads 1 and Contacts 1 are different records."""
    report = build_run_report(
        FOUND, [result("Leads", unblocked=["1", "2", "3"]), result("Contacts", unblocked=["1", "9"])]
    )
    assert accounting_errors(report) == []


def test_pending_ids_count_once_and_a_dry_run_says_so() -> None:
    report = build_run_report(FOUND[:1], [result("Leads", pending=["1", "2", "3"])])
    assert accounting_errors(report) == [] and report["total"] == 3
    assert "dry run: 3 record(s) would be sent; nothing was changed." in format_run_report(
        report, dry_run=True
    )


def test_nothing_found_still_reports() -> None:
    report = build_run_report([], [])
    assert accounting_errors(report) == []
    assert "0 candidate record(s) found, 0 reported, 0 unblock call(s)" in format_run_report(report)
