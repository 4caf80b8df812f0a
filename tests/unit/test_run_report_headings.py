"""The printed run report puts every listed record under the heading of its own outcome: ``not_allowed`` and
``error`` records (listed with Zoho's message) used to print right after, and so under, the last
"Need a person (permanently_blocked, N)" heading."""

from __future__ import annotations

from typing import Any

from airflow_provider_zohocrm.zoho.run_report import LIST_LIMIT, build_run_report, format_run_report
from airflow_provider_zohocrm.zoho.unblock import Outcome


def _result(module: str, ids: dict[str, list[str]], messages: dict[str, str]) -> dict[str, Any]:
    return {
        "module": module,
        "ids": {o.value: ids.get(o.value, []) for o in Outcome},
        "pending": [],
        "calls": 1,
        "messages": messages,
        "details": {rid: {"category": "Permanently blocked"} for rid in ids.get("permanently_blocked", [])},
    }


def _sections(text: str) -> dict[str, list[str]]:
    """Indented lines under the unindented line before them (the report's headings)."""
    sections: dict[str, list[str]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith("  "):
            sections.setdefault(heading, []).append(line.strip())
        else:
            heading = line
    return sections


def test_each_listed_record_is_under_the_heading_of_its_outcome() -> None:
    found = [
        {"source": 0, "module": "Leads", "ids": ["1", "2", "3", "4"], "repeated": 0},
        {"source": 1, "module": "Contacts", "ids": ["5"], "repeated": 0},
    ]
    leads = _result(
        "Leads",
        {"permanently_blocked": ["1"], "limit_reached": ["4"], "not_allowed": ["2"], "error": ["3"]},
        {"2": "NOT_ALLOWED: the record is locked", "3": "INTERNAL_ERROR: try later"},
    )
    contacts = _result("Contacts", {"not_allowed": ["5"]}, {"5": "NOT_ALLOWED: in an approval process"})
    text = format_run_report(build_run_report(found, [leads, contacts]))
    sections = _sections(text)
    outcome_of = {
        line.split(":", 1)[0]: heading
        for heading, lines in sections.items()
        for line in lines
        if not line.startswith("…")
    }
    assert set(outcome_of) == {"Leads 1", "Leads 2", "Leads 3", "Leads 4", "Contacts 5"}, text
    assert "(permanently_blocked, 1 record(s))" in outcome_of["Leads 1"]
    assert "Need a person" in outcome_of["Leads 1"]
    assert "(limit_reached, 1 record(s))" in outcome_of["Leads 4"]
    assert "(not_allowed, 2)" in outcome_of["Leads 2"] == outcome_of["Contacts 5"]
    assert "Need a person" not in outcome_of["Leads 2"]
    assert "(error, 1)" in outcome_of["Leads 3"]
    assert "Leads 2: NOT_ALLOWED: the record is locked" in sections[outcome_of["Leads 2"]]


def test_a_long_message_list_is_cut_and_says_how_many_more() -> None:
    ids = [str(i) for i in range(1, LIST_LIMIT + 8)]
    found = [{"source": 0, "module": "Leads", "ids": ids, "repeated": 0}]
    result = _result("Leads", {"error": ids}, {rid: "INTERNAL_ERROR" for rid in ids})
    sections = _sections(format_run_report(build_run_report(found, [result])))
    (heading,) = [h for h in sections if "(error," in h]
    assert f"(error, {len(ids)})" in heading
    assert len(sections[heading]) == LIST_LIMIT + 1
    assert sections[heading][-1].startswith("… and 7 more")
