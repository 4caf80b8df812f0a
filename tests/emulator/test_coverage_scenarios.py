"""Issue 26's nine scenarios of rolling coverage, driven the way the example DAG drives them, against the emulator
(over HTTP) and an in-memory ``Variables``: ``plan_sources`` → ``dedupe_after_cut`` → ``plan_groups`` → one job per
mapped group (``for_task``'s checkpoint seam; an approval runs the same groups as a dry run first) →
``finish_sources``. The emulator's Emails-read log and record states, and the stored Variables, are the oracle.

The pure-model scenarios (2: due records and dead domains; 4: a record half-read) are in
tests/unit/test_coverage_scenarios.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_zohocrm.hooks.coverage_run import (
    CoverageConfigError,
    dedupe_after_cut,
    finish_sources,
    for_task,
    group_reference,
    plan_sources,
)
from airflow_provider_zohocrm.hooks.coverage_store import (
    CoverageBusyError,
    CoverageStore,
)
from airflow_provider_zohocrm.testing import Fault, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import seed_email_org
from airflow_provider_zohocrm.zoho.addresses import addresses_by_id
from airflow_provider_zohocrm.zoho.sources import Source, plan_groups, sources_from_params
from airflow_provider_zohocrm.zoho.unblock_job import UnblockJobFailed, UnblockPlan, run_unblock
from tests.emulator.test_unblock_job import client_for as _new_client
from tests.unit.test_coverage_store import DictVariables

DAG = "zoho_unblock_bounced_emails"
CONN = "zohocrm_default"
FAST = {"settle_seconds": 0.0}


_TOKENS: dict[int, Any] = {}


def client_for(em: ZohoCRMEmulator, attempts: int = 6) -> Any:
    """A fresh client (a task's own credit count) sharing one access token per emulator, as the tasks of a
    deployment share it through the token store: the emulator, like Zoho, throttles token grants."""
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient

    client = _new_client(em, attempts)
    key = hash((em.url, id(em.backend), em.backend.client_id))
    if key not in _TOKENS:
        _TOKENS[key] = client.tokens
    return ZohoCRMClient(_TOKENS[key], retry=client.retry)


class FailingVariables(DictVariables):
    """Variables whose ``set`` raises on chosen writes (a metadata DB that fails once)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_when: Callable[[str, str], bool] | None = None

    def set(self, key: str, value: str) -> None:
        if self.fail_when is not None and self.fail_when(key, value):
            self.fail_when = None
            raise OSError(f"the metadata DB refused the write of {key}")
        super().set(key, value)


@dataclass
class RunResult:
    planned: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    results: list[dict[str, Any] | None]
    lines: list[str] = field(default_factory=list)
    reads: dict[tuple[str, str], int] = field(default_factory=dict)


def settings_of(
    sources: list[dict[str, Any]], **params: Any
) -> tuple[dict[int, dict[str, Any]], list[Source]]:
    settings = sources_from_params({"sources": sources, **params})
    return {s.index: s.to_dict() for s in settings.sources}, list(settings.sources)


def read_sources(em: ZohoCRMEmulator, sources: list[Source]) -> list[dict[str, Any]]:
    """The candidates task's reads, before any de-duplication (the contract's ``found``)."""
    client = client_for(em)
    found = []
    for source in sources:
        rows = list(client.iter_coql(source.read_query()))
        entry: dict[str, Any] = {
            "source": source.index,
            "module": source.module,
            "ids": [str(r["id"]) for r in rows],
        }
        if source.reads_addresses:
            entry["addresses"] = addresses_by_id(rows, source.unblock_fields)
        found.append(entry)
    return found


def run_dag(
    em: ZohoCRMEmulator,
    variables: DictVariables,
    sources_raw: list[dict[str, Any]],
    run_id: str,
    *,
    reset: bool = False,
    dry_run: bool = False,
    approval: str | None = None,  # None, "approve" or "reject"
    fail_on_error: bool = True,
    kill: Sequence[int] = (),
    report_tries: int = 1,
) -> RunResult:
    """One run of the example DAG's steps (see the module docstring). ``kill``: map indexes whose task dies
    after its verify step (no outcome saved); a group with an ``error`` outcome fails its task (``fail_on``)."""
    by_index, sources = settings_of(sources_raw)
    client = client_for(em)
    found = read_sources(em, sources)
    now = client.server_time()
    planned = plan_sources(
        found,
        by_index,
        DAG,
        run_id,
        now,
        reset_first=reset,
        conn_id=CONN,
        dry_run=dry_run,
        variables=variables,
        store_options=FAST,
    )
    kept = dedupe_after_cut(planned)
    src = {s.index: s for s in sources}
    groups = plan_groups(
        [(src[int(e["source"])], e["ids"]) for e in kept],
        batch_size=5,
        max_groups=4,
        addresses={e["module"]: e.get("addresses") or {} for e in kept},
    )
    owner = {rid: e["coverage"] for e in kept if e.get("coverage") for rid in e["ids"]}
    for group in groups:
        info = owner.get(group["record_ids"][0]) if group["record_ids"] else None
        group["coverage"] = group_reference(info) if info else None
    em.backend.email_list_reads(clear=True)

    def task(i: int, group: dict[str, Any], dry: bool) -> dict[str, Any] | None:
        plan = UnblockPlan.build(
            group["module"],
            group["record_ids"],
            group["unblock_fields"],
            5,
            dry_run=dry,
            verify=group["verify"],
            min_hours_since_bounce=group["min_hours_since_bounce"],
            max_email_checks=group["max_email_checks"],
            addresses=group["addresses"],
            check_domain=group["check_domain"],
            strict=False,
        )
        checkpoint = None
        if group.get("coverage"):
            plan, checkpoint = for_task(group["coverage"], plan, run_id, i, variables)
        task_client = client_for(em)
        try:
            if i in kill and not dry:
                killed = _Killed(checkpoint)
                try:
                    run_unblock(task_client, plan, checkpoint=killed)
                except _Death:
                    return None
            report = run_unblock(task_client, plan, checkpoint=checkpoint)
        except UnblockJobFailed:
            return None
        if fail_on_error and report.ids.get("error") and not dry:
            return None  # fail_on=["error"]: the task fails after its checkpoint was saved
        return {**report.to_dict(), "credits_spent": task_client.credits_spent}

    plans: list[dict[str, Any] | None] = []
    if approval:
        plans = [task(i, g, True) for i, g in enumerate(groups)]
    results: list[dict[str, Any] | None] = []
    if approval != "reject":
        results = [task(i, g, dry_run) for i, g in enumerate(groups)]
    reads = em.backend.email_list_reads()
    out = RunResult(kept, groups, results, reads=reads)
    for attempt in range(report_tries):
        try:
            out.lines = finish_sources(
                kept,
                groups,
                results,
                run_id,
                planned=plans,
                conn_id=CONN,
                reset_first=reset,
                rejected=approval == "reject",
                dry_run=dry_run,
                variables=variables,
                store_options=FAST,
            )
            break
        except OSError:
            if attempt == report_tries - 1:
                raise
    return out


class _Death(BaseException):
    """A task killed (SIGKILL) right after its verify step's checkpoint write."""


class _Killed:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.saves = 0

    def load(self) -> Any:
        return self.inner.load()

    def spent(self) -> int:
        return int(self.inner.spent())

    def save(self, decisions: Any, report: Any) -> None:
        self.inner.save(decisions, report)
        raise _Death


def coverage_vars(variables: DictVariables) -> dict[str, str]:
    return {k: v for k, v in variables.data.items() if k.startswith("zohocrm_coverage_")}


def state_of(variables: DictVariables, key_part: str) -> dict[str, Any]:
    (key,) = [
        k for k in variables.data if k.startswith("zohocrm_coverage_") and "ckpt" not in k and key_part in k
    ]
    return dict(json.loads(variables.data[key]))


def all_ids(em: ZohoCRMEmulator) -> list[str]:
    return sorted(em.backend.records("Leads"), key=int)


ROLLING = {
    "module": "Leads",
    "all": True,
    "verify": "emails",
    "max_email_checks": 10,
    "min_hours_since_bounce": 24,
}


def read_ids(result: RunResult) -> set[str]:
    return {rid for (_m, rid) in result.reads}


# -- scenario 1: an `error` outcome fails its task, the other verdicts are committed -------------------------------


def test_scenario_1_a_failed_task_still_commits_every_verdict_it_reached(emulator: ZohoCRMEmulator) -> None:
    seed_email_org(emulator.backend, counts={"old_soft": 20, "never_bounced": 20})
    ids = all_ids(emulator)
    v = DictVariables()
    nights = []
    for night in range(4):
        # the first unblock call of every night answers a per-record code no client knows: outcome `error`
        emulator.backend.add_fault(Fault(endpoint="unblock_bulk", action="unknown_code", on_call=1))
        nights.append(run_dag(emulator, v, [ROLLING], f"n{night}"))
        emulator.backend.clear_faults()
    assert any(None in n.results for n in nights), "no task failed: the scenario did not happen"
    assert any("failed" in line for n in nights for line in n.lines)
    read = set().union(*(read_ids(n) for n in nights))
    assert read == set(ids), f"{len(set(ids) - read)} of {len(ids)} never read in 4 nights"
    state = state_of(v, "Leads.all")["state"]
    assert state["cycle"] == 2  # the cycle of 40 at 10 a night ended, error records counted as read
    assert not [k for k in v.data if "ckpt" in k]


# -- scenario 3: two `all` sources of one module: two cursors, or a clear refusal --------------------------------


def test_scenario_3_two_all_sources_of_one_module_keep_two_cursors(emulator: ZohoCRMEmulator) -> None:
    emulator.backend.add_many_records("Leads", 30)
    for record in emulator.backend.module("Leads").records.values():  # type: ignore[union-attr]
        record.fields["Modified_Time"] = "2026-12-01T10:00:00+00:00"
    v = DictVariables()
    dated = {**ROLLING, "date_field": "Modified_Time", "days": 3650}
    for night in range(3):
        result = run_dag(emulator, v, [ROLLING, dated], f"n{night}")
        assert not any("lost" in line for line in result.lines)
    keys = [k for k in v.data if "ckpt" not in k]
    assert len(keys) == 2 and all(CONN in k for k in keys)
    for key in keys:
        assert json.loads(v.data[key])["state"]["cycle"] == 2, key  # each source's cursor went round once


def test_scenario_3_two_identical_sources_are_refused_before_any_claim(emulator: ZohoCRMEmulator) -> None:
    emulator.backend.add_many_records("Leads", 5)
    v = DictVariables()
    with pytest.raises(CoverageConfigError, match=r"Sources #1 and #2 .* share one rolling-coverage cursor"):
        run_dag(emulator, v, [ROLLING, {**ROLLING, "unblock_fields": ["Email", "Secondary_Email"]}], "n1")
    assert v.data == {}


# -- scenario 5: a record outside the rolling slice stays with the module's sweep source ----------------------


def test_scenario_5_a_record_outside_the_slice_goes_to_the_sweep_source(emulator: ZohoCRMEmulator) -> None:
    org = seed_email_org(emulator.backend, counts={"old_soft": 10, "never_bounced": 20})
    v = DictVariables()
    sweep = {"module": "Leads", "all": True, "verify": "sweep"}
    result = run_dag(emulator, v, [ROLLING, sweep], "n1")
    rolling, swept = result.planned
    assert len(rolling["ids"]) == 10
    assert sorted(rolling["ids"] + swept["ids"], key=int) == all_ids(emulator)  # each record once
    for rid in org.ids["old_soft"]:  # known-blocked records are unblocked tonight by one source or the other
        assert len(emulator.backend.unblock_events("Leads", rid)) == 1, rid


def test_dedupe_after_cut_keeps_the_slice_with_its_rolling_source() -> None:
    planned = [
        {"source": 0, "module": "Leads", "ids": ["1", "2", "3"]},  # a view listed first
        {
            "source": 1,
            "module": "Leads",
            "ids": ["2", "4"],
            "coverage": {"key": "Leads.all"},
            "addresses": {"2": {"Email": "a@x"}, "4": {"Email": "b@x"}},
        },
        {"source": 2, "module": "Contacts", "ids": ["2"]},
    ]
    out = dedupe_after_cut(planned)
    assert [e["ids"] for e in out] == [["1", "3"], ["2", "4"], ["2"]]
    assert [e["repeated"] for e in out] == [1, 0, 0]
    assert out[1]["addresses"] == planned[1]["addresses"]


# -- scenario 6: the commit's write fails once; the retried report applies the run's verdicts ------------------


def test_scenario_6_a_retried_report_applies_the_verdicts_of_a_failed_commit(
    emulator: ZohoCRMEmulator,
) -> None:
    emulator.backend.add_many_records("Leads", 30)
    ids = all_ids(emulator)
    v = FailingVariables()
    v.fail_when = lambda key, value: "ckpt" not in key and '"lease":null' in value  # the commit's write
    first = run_dag(emulator, v, [ROLLING], "n1", report_tries=2)
    assert read_ids(first) == set(ids[:10])
    state = state_of(v, "Leads.all")
    assert state["state"]["read_this_cycle"] == 10 and state["lease"] is None
    second = run_dag(emulator, v, [ROLLING], "n2")
    assert read_ids(second) == set(ids[10:20]), "the next night re-read what the first night read"


def test_scenario_6_a_commit_stored_before_a_failed_cleanup_is_not_applied_twice(
    emulator: ZohoCRMEmulator,
) -> None:
    emulator.backend.add_many_records("Leads", 30)
    v = FailingVariables()
    run_dag(emulator, v, [ROLLING], "n1")
    stored = coverage_vars(v)
    ckpt = [k for k in stored if "ckpt" in k]
    assert ckpt == []
    # a report retried after its commit was stored: the same claim commits nothing a second time
    result = run_dag(emulator, v, [ROLLING], "n2", report_tries=1)
    claim_info = result.planned[0]["coverage"]
    store = CoverageStore(DAG, claim_info["key"], v, conn_id=CONN, settle_seconds=0.0)
    before = dict(v.data)
    finish_sources(result.planned, result.groups, result.results, "n2", variables=v, store_options=FAST)
    assert v.data == before
    assert store.read().read_this_cycle == 20


# -- scenario 7: under approval, at most B reads plus the plan's would-send records -----------------------------


def test_scenario_7_an_approved_run_rereads_only_the_records_it_would_send(emulator: ZohoCRMEmulator) -> None:
    org = seed_email_org(emulator.backend, counts={"old_soft": 3, "never_bounced": 7, "hard": 5})
    v = DictVariables()
    result = run_dag(emulator, v, [{**ROLLING, "max_email_checks": 15}], "n1", approval="approve")
    would_send = set(org.ids["old_soft"])
    reads = sum(result.reads.values())
    assert reads == 15 + len(would_send), result.reads
    assert {rid for (_m, rid), n in result.reads.items() if n == 2} == would_send
    for rid in would_send:
        assert len(emulator.backend.unblock_events("Leads", rid)) == 1
    assert state_of(v, "Leads.all")["state"]["cycle"] == 2  # the 15 records' cycle ended: all 15 read
    assert not [k for k in v.data if "ckpt" in k]


# -- scenario 8: a reset takes effect at the commit; a dry run or a rejection changes nothing -------------------


@pytest.mark.parametrize("how", ["reject", "dry_run"])
def test_scenario_8_a_reset_that_is_not_committed_changes_nothing(
    emulator: ZohoCRMEmulator, how: str
) -> None:
    emulator.backend.add_many_records("Leads", 30)
    v = DictVariables()
    run_dag(emulator, v, [ROLLING], "n1")
    run_dag(emulator, v, [ROLLING], "n2")
    before = dict(v.data)
    if how == "reject":
        result = run_dag(emulator, v, [ROLLING], "n3", reset=True, approval="reject")
    else:
        result = run_dag(emulator, v, [ROLLING], "n3", reset=True, dry_run=True)
    assert v.data == before, "a reset that was never committed changed the stored coverage"
    assert any("nothing committed" in line for line in result.lines)
    result = run_dag(emulator, v, [ROLLING], "n4", reset=True)  # committed: now it takes effect
    state = state_of(v, "Leads.all")["state"]
    assert state["read_this_cycle"] == 10 and state["cycle"] == 1
    assert state_of(v, "Leads.all")["lease"] is None
    assert read_ids(result) == set(all_ids(emulator)[:10])


def test_scenario_8_a_plain_dry_run_leaves_every_variable_byte_identical(emulator: ZohoCRMEmulator) -> None:
    emulator.backend.add_many_records("Leads", 30)
    v = DictVariables()
    run_dag(emulator, v, [ROLLING], "n1")
    before = dict(v.data)
    result = run_dag(emulator, v, [ROLLING], "n2", dry_run=True)
    assert v.data == before
    assert len(read_ids(result)) == 10  # it read what a live run would read


# -- scenario 9: every source claimed before any is changed; a failed claim releases what this run took ---------


def test_scenario_9_a_busy_source_releases_the_claims_this_run_took(emulator: ZohoCRMEmulator) -> None:
    emulator.backend.add_many_records("Leads", 10)
    emulator.backend.add_many_records("Contacts", 10)
    v = DictVariables()
    contacts = {**ROLLING, "module": "Contacts"}
    run_dag(emulator, v, [ROLLING, contacts], "n0")
    before = dict(v.data)
    CoverageStore(DAG, "Contacts.all", v, conn_id=CONN, settle_seconds=0.0).claim("earlier-run")
    held = dict(v.data)
    with pytest.raises(CoverageBusyError, match="earlier-run"):
        run_dag(emulator, v, [ROLLING, contacts], "n1")
    assert v.data == held  # Leads is as it was; Contacts still the earlier run's
    assert {k: v.data[k] for k in before if "Leads" in k} == {k: before[k] for k in before if "Leads" in k}


# -- the budget's one unit: Emails-list calls, a retry included ------------------------------------------------


def test_a_retried_task_reads_within_what_is_left_of_its_budget_in_calls(emulator: ZohoCRMEmulator) -> None:
    """deep_soft records (14 mails) listed oldest first need two Emails pages each. A task with a budget of 6
    calls reads three of them, then fails on its unblock call; its retry has 0 calls left, not 6 - 3 records."""
    org = seed_email_org(emulator.backend, counts={"deep_soft": 6})
    emulator.backend.email_store.order = "oldest_first"
    ids = org.all_ids()
    v = DictVariables()
    coverage = {"dag_id": DAG, "key": "Leads.all", "conn_id": CONN, "now": 0.0, "min_hours_since_bounce": 0.0}
    plan = UnblockPlan.build("Leads", ids, ["Email"], 5, verify="emails", max_email_checks=6)
    plan, checkpoint = for_task(coverage, plan, "r1", 0, v)
    plan = _with_now(plan, emulator)
    before = emulator.backend.stats["credits_by_endpoint"].get("emails", 0)
    emulator.backend.add_fault(Fault(endpoint="unblock_bulk", action="500", on_call=1))
    with pytest.raises(UnblockJobFailed):
        run_unblock(client_for(emulator, attempts=1), plan, checkpoint=checkpoint)
    run_unblock(client_for(emulator, attempts=1), plan, checkpoint=checkpoint)  # the retry
    calls = emulator.backend.stats["credits_by_endpoint"].get("emails", 0) - before
    assert calls == 6, f"{calls} Emails calls for a budget of 6"


def _with_now(plan: UnblockPlan, em: ZohoCRMEmulator) -> UnblockPlan:
    from dataclasses import replace

    return replace(plan, now=datetime.fromtimestamp(em.backend.now(), UTC).timestamp())
