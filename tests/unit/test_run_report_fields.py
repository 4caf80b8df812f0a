"""The DAG's report with two fields: each record once, under its most actionable field outcome, the per-field
detail kept beside it, and the accounting check covering every (record, field) pair."""

from __future__ import annotations

from typing import Any

from airflow_provider_zohocrm.zoho.run_report import accounting_errors, build_run_report, format_run_report
from airflow_provider_zohocrm.zoho.unblock import Outcome

FIELDS = ["Email", "Secondary_Email"]


def result(ids: dict[str, list[str]], fields: dict[str, dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "module": "Leads",
        "unblock_fields": FIELDS,
        "ids": {o.value: ids.get(o.value, []) for o in Outcome},
        "pending": extra.pop("pending", []),
        "fields": fields,
        "field_details": extra.pop("field_details", {}),
        **extra,
    }


FOUND = [{"module": "Leads", "ids": ["1", "2", "3"], "source": 0}]
GOOD = result(
    {"unblocked": ["1"], "permanently_blocked": ["2"], "error": ["3"]},
    {
        "1": {"Email": "unblocked", "Secondary_Email": "not_blocked"},
        "2": {"Email": "unblocked", "Secondary_Email": "permanently_blocked"},
        "3": {"Email": "error", "Secondary_Email": "limit_reached"},
    },
    field_details={"2 Secondary_Email": {"category": "Permanently blocked", "reason": "No such user"}},
)


def test_records_counted_under_their_most_actionable_field_add_up() -> None:
    merged = build_run_report(FOUND, [GOOD])
    assert accounting_errors(merged) == []
    assert merged["counts"]["Leads"]["permanently_blocked"] == 1
    # needs a person, per field, whatever the record is counted under (3 is an error, its Secondary at limit)
    assert [(r["id"], r["field"]) for r in merged["needs_person"]["permanently_blocked"]] == [
        ("2", "Secondary_Email")
    ]
    assert [(r["id"], r["field"]) for r in merged["needs_person"]["limit_reached"]] == [
        ("3", "Secondary_Email")
    ]
    text = format_run_report(merged)
    assert "Leads per field (each record above is counted once, under its most actionable field):" in text
    assert "  Leads 2 Secondary_Email: Permanently blocked" in text


def test_a_record_counted_under_a_less_actionable_outcome_is_an_accounting_error() -> None:
    bad = result(
        {"unblocked": ["1", "2"], "error": ["3"]},  # 2 has a permanently blocked field
        GOOD["fields"],
    )
    (problem,) = accounting_errors(build_run_report(FOUND, [bad]))
    assert "2 (counted unblocked, its fields say permanently_blocked)" in problem


def test_a_field_without_outcome_is_an_accounting_error() -> None:
    fields = {**GOOD["fields"], "1": {"Email": "unblocked"}}
    (problem,) = accounting_errors(build_run_report(FOUND, [result(GOOD["ids"] | {}, fields)]))
    assert "1 (fields ['Email'], not ['Email', 'Secondary_Email'])" in problem


def test_a_pending_field_makes_the_record_pending() -> None:
    fields = {**GOOD["fields"], "1": {"Email": "unblocked", "Secondary_Email": "pending"}}
    ok = result({"permanently_blocked": ["2"], "error": ["3"]}, fields, pending=["1"])
    assert accounting_errors(build_run_report(FOUND, [ok])) == []
    wrong = result({"unblocked": ["1"], "permanently_blocked": ["2"], "error": ["3"]}, fields)
    assert accounting_errors(build_run_report(FOUND, [wrong]))


def test_one_field_results_need_no_per_field_detail() -> None:
    one = {
        "module": "Leads",
        "unblock_fields": ["Email"],
        "ids": {"unblocked": ["1", "2", "3"]},
        "pending": [],
    }
    merged = build_run_report(FOUND, [one])
    assert accounting_errors(merged) == []
    assert "per field" not in format_run_report(merged)
