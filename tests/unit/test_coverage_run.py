"""Pure parts of the DAG-side coverage steps (``hooks/coverage_run.py``): which records count as read, and the
name a source's coverage is kept under."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_zohocrm.hooks.coverage_run import (
    decision_from_json,
    decision_to_json,
    finish_source,
    finish_sources,
    group_reference,
    plan_sources,
    runs_per_cycle,
    source_key,
    task_checkpoint,
    uses_coverage,
    verdicts_of,
)
from airflow_provider_zohocrm.hooks.coverage_store import CoverageStore
from airflow_provider_zohocrm.zoho.emails import BUDGET_REASON
from airflow_provider_zohocrm.zoho.sources import sources_from_params
from airflow_provider_zohocrm.zoho.unblock import Outcome, UnblockReport
from airflow_provider_zohocrm.zoho.unblock_job import Decision
from tests.unit.test_coverage_store import DictVariables

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


# -- issue 30: the run wiring's steps without HTTP (kill the coverage mutations of scripts/mutation_check.py) ------

DAG = "zoho_unblock_bounced_emails"
CONN = "zohocrm_default"
FAST = {"settle_seconds": 0.0}
IDS = [str(100 + i) for i in range(10)]


class FailingVariables(DictVariables):
    """Variables whose next coverage-state write with the lease cleared (a commit) raises once."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_commit = False

    def set(self, key: str, value: str) -> None:
        if self.fail_commit and "ckpt" not in key and '"lease":null' in value:
            self.fail_commit = False
            raise OSError(f"the metadata DB refused the write of {key}")
        super().set(key, value)


def rolling(**extra: Any) -> dict[int, dict[str, Any]]:
    settings = sources_from_params(
        {"sources": [{"module": "Leads", "all": True, "verify": "emails", **extra}]}
    )
    return {s.index: s.to_dict() for s in settings.sources}


def plan(v: DictVariables, run_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    found = [{"source": 0, "module": "Leads", "ids": list(IDS)}]
    sources = kwargs.pop("sources", None) or rolling(max_email_checks=3)
    return plan_sources(
        found, sources, DAG, run_id, NOW, conn_id=CONN, variables=v, store_options=FAST, **kwargs
    )


def task_reads_everything(
    v: DictVariables, run_id: str, planned: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One mapped task of the source reads every planned id (not blocked) and saves its checkpoint."""
    groups = [{"coverage": group_reference(planned[0]["coverage"])}]
    report = UnblockReport(module="Leads", unblock_fields=["Email"], dry_run=False, verify="emails")
    for rid in planned[0]["ids"]:
        report.add(rid, Outcome.NOT_BLOCKED)
    task_checkpoint(groups[0]["coverage"], run_id, 0, v).save({}, report)
    return groups


def stored(v: DictVariables) -> CoverageStore:
    return CoverageStore(DAG, "Leads.all", v, conn_id=CONN, settle_seconds=0.0)


def test_a_source_without_a_budget_has_no_rolling_coverage() -> None:
    assert not uses_coverage({"verify": "emails"})
    assert not uses_coverage({"verify": "none", "max_email_checks": 5})
    assert uses_coverage({"verify": "emails", "max_email_checks": 5})
    v = DictVariables()
    planned = plan(v, "n1", sources=rolling())
    assert planned == [{"source": 0, "module": "Leads", "ids": IDS}]  # every id, no plan, no claim
    assert v.data == {}


def test_runs_per_cycle_rounds_up() -> None:
    assert [runs_per_cycle(n, 1000) for n in (2520, 2000, 2001, 5, 0)] == [3, 2, 3, 1, 1]


def test_a_dry_run_plans_without_writing_even_while_another_run_holds_the_lease() -> None:
    v = DictVariables()
    planned = plan(v, "dry-1", dry_run=True)
    assert planned[0]["ids"] == IDS[:3] and v.data == {}
    stored(v).claim("scheduled__night")  # the nightly run is under way
    before = dict(v.data)
    planned = plan(v, "dry-2", dry_run=True)
    assert planned[0]["ids"] == IDS[:3] and v.data == before


def test_the_report_finds_the_verdicts_the_task_saved_under_the_connection() -> None:
    v = DictVariables()
    planned = plan(v, "n1")
    groups = task_reads_everything(v, "n1", planned)
    finish_sources(
        planned, groups, [{"credits_spent": 0}], "n1", conn_id=CONN, variables=v, store_options=FAST
    )
    state = stored(v).read()
    assert state.read_this_cycle == 3 and state.cursor == IDS[2]
    assert [k for k in v.data if "ckpt" in k] == []


def test_a_failed_commit_leaves_the_checkpoints_for_the_retried_report() -> None:
    """Scenario 6 without HTTP: the commit's write fails; the retried report step (the plural wiring, then the
    single-source step) still finds the task's verdicts and applies them."""
    v = FailingVariables()
    planned = plan(v, "n1")
    groups = task_reads_everything(v, "n1", planned)
    v.fail_commit = True
    with pytest.raises(OSError, match="refused"):
        finish_sources(planned, groups, [None], "n1", conn_id=CONN, variables=v, store_options=FAST)
    finish_sources(planned, groups, [None], "n1", conn_id=CONN, variables=v, store_options=FAST)
    assert stored(v).read().read_this_cycle == 3
    planned = plan(v, "n2")
    task_reads_everything(v, "n2", planned)
    v.fail_commit = True
    with pytest.raises(OSError, match="refused"):
        finish_source(stored(v), planned[0]["coverage"], "n2", [0])
    finish_source(stored(v), planned[0]["coverage"], "n2", [0])
    assert stored(v).read().read_this_cycle == 6 and [k for k in v.data if "ckpt" in k] == []
