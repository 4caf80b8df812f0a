"""Pure parts of the DAG-side coverage steps (``hooks/coverage_run.py``): which records count as read, and the
name a source's coverage is kept under."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow_provider_zohocrm.hooks.coverage_run import (
    decision_from_json,
    decision_to_json,
    source_key,
    verdicts_of,
)
from airflow_provider_zohocrm.zoho.emails import BUDGET_REASON
from airflow_provider_zohocrm.zoho.unblock import Outcome, UnblockReport
from airflow_provider_zohocrm.zoho.unblock_job import Decision

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC).timestamp()


def test_only_records_with_an_outcome_count_as_read() -> None:
    report = UnblockReport(module="Leads", unblock_fields=["Email"], dry_run=False, verify="emails")
    report.add("1", Outcome.UNBLOCKED)
    report.add("2", Outcome.NOT_BLOCKED)
    report.add("3", Outcome.DEFERRED, reason=BUDGET_REASON)  # never read: the budget ran out
    bounced = "2026-12-05T10:00:00+00:00"
    report.add(
        "4",
        Outcome.DEFERRED,
        details={"category": "Temporary", "sub_category": None, "reason": None, "bounced_time": bounced},
        reason="bounced 2.0 h ago",
    )
    report.add_pending(["5"], "unblock call failed")
    verdicts = verdicts_of(report, min_hours=24, now=NOW).verdicts
    assert set(verdicts) == {"1", "2", "4"}
    assert verdicts["1"].kind == verdicts["2"].kind == "done"
    assert verdicts["4"].kind == "deferred"
    assert verdicts["4"].due == datetime.fromisoformat(bounced).timestamp() + 24 * 3600


def test_a_source_keeps_its_coverage_when_its_date_filter_moves() -> None:
    a = {
        "module": "Leads",
        "kind": "all",
        "query": "select id from Leads where Modified_Time >= '2026-12-01'",
    }
    b = {**a, "query": "select id from Leads where Modified_Time >= '2026-12-02'"}
    assert source_key(a) == source_key(b) == "Leads.all"
    c = {"module": "Leads", "kind": "coql", "query": "select id from Leads where Lead_Status = 'A'"}
    d = {**c, "query": "select id from Leads where Lead_Status = 'B'"}
    assert source_key(c) != source_key(d)
    assert source_key({"module": "Leads", "kind": "view", "view": "Bounced"}) != source_key(
        {"module": "Contacts", "kind": "view", "view": "Bounced"}
    )


def test_decisions_survive_the_checkpoint() -> None:
    for decision in (
        Decision("7", ("Email",), details={"reason": "full"}),
        Decision("8", outcome=Outcome.PERMANENTLY_BLOCKED, details={"reason": "no such user"}),
        Decision("9", outcome=Outcome.DEFERRED, reason="young"),
    ):
        assert decision_from_json(decision.record_id, decision_to_json(decision)) == decision
