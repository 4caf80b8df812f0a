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
    assert "Need a person (permanently_blocked, 1 record(s), tagged 'Needs person'):" in text
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


def _table(text: str) -> dict[str, dict[str, int]]:
    """The printed module table: row → column → number."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("outcome "))
    columns = [c.strip() for c in lines[head].split("|")[1:]]
    rows: dict[str, dict[str, int]] = {}
    for line in lines[head + 2 :]:
        if set(line) <= set("-+ "):
            continue
        if "|" not in line:
            break
        name, *cells = (c.strip() for c in line.split("|"))
        rows[name] = {col: int(cell.replace(",", "")) for col, cell in zip(columns, cells, strict=True)}
    return rows


def test_a_dry_run_table_adds_up_with_a_pending_row() -> None:
    """Issue 27 row 9: a dry run (or an approval plan) reports the records it would send as pending; the module
    table shows them in a row of their own, so every column adds up to the records found."""
    found = [*FOUND, {"source": 2, "module": "Contacts", "ids": ["7"], "repeated": 0}]
    report = build_run_report(
        found,
        [
            result("Leads", not_blocked=["1"], pending=["2", "3"]),
            result("Contacts", deferred=["1"], pending=["9", "7"]),
        ],
    )
    assert accounting_errors(report) == []
    rows = _table(format_run_report(report, dry_run=True))
    assert rows["pending"] == {"Leads": 2, "Contacts": 2, "total": 4}
    for column, found_ids in (("Leads", 3), ("Contacts", 3), ("total", 6)):
        assert sum(r[column] for name, r in rows.items() if name != "total") == rows["total"][column]
        assert rows["total"][column] == found_ids
    # a live run with nothing pending keeps its table as it was
    live = build_run_report(FOUND[:1], [result("Leads", unblocked=["1", "2", "3"])])
    assert "pending" not in _table(format_run_report(live))


def test_need_a_person_headings_count_records_and_show_field_pairs_as_such() -> None:
    """Issue 27 row 9: with two fields a record can need a person in both; the heading counts it once, and says
    how many (record, field) pairs are listed."""
    two = {
        "module": "Leads",
        "unblock_fields": ["Email", "Secondary_Email"],
        "ids": {o.value: [] for o in Outcome} | {"permanently_blocked": ["1", "2"], "error": ["3"]},
        "pending": [],
        "fields": {
            "1": {"Email": "permanently_blocked", "Secondary_Email": "permanently_blocked"},
            "2": {"Email": "permanently_blocked", "Secondary_Email": "not_blocked"},
            "3": {"Email": "error", "Secondary_Email": "permanently_blocked"},
        },
    }
    report = build_run_report(FOUND[:1], [two])
    assert accounting_errors(report) == []
    text = format_run_report(report)
    assert "Need a person (permanently_blocked, 3 record(s), 4 (record, field) pair(s)):" in text
    assert "  Leads 1 Secondary_Email" in text and "  Leads 3 Secondary_Email" in text
    # with a one-field module beside it (the demo: Leads with two fields, Contacts with one)
    report = build_run_report(FOUND, [two, result("Contacts", permanently_blocked=["1"], not_blocked=["9"])])
    assert accounting_errors(report) == []
    assert (
        "Need a person (permanently_blocked, 4 record(s), listed as 4 (record, field) pair(s) + 1 record(s)):"
        in format_run_report(report)
    )


def test_the_report_says_when_check_domain_stopped_asking_dns() -> None:
    """Issue 27 row 5: after consecutive DNS timeouts a task stops querying; the run's report says so."""
    stopped = result("Leads", unblocked=["1", "2", "3"]) | {
        "dns_stopped": "DNS lookups stopped after 3 consecutive timeouts (5 s each)",
        "dns_unchecked": 7,
    }
    report = build_run_report(FOUND[:1], [stopped])
    text = format_run_report(report)
    assert (
        "check_domain: 1 task(s) stopped asking DNS (DNS lookups stopped after 3 consecutive timeouts" in text
    )
    assert "7 domain(s) not looked up" in text
    assert "check_domain:" not in format_run_report(
        build_run_report(FOUND[:1], [result("Leads", unblocked=["1"])])
    )
