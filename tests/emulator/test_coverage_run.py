"""Rolling coverage driven over HTTP against the emulator, without Airflow (``hooks/coverage_run.py``): a retried
job does not read an Emails list twice, the cursor moves only over records with an outcome, and a deferred record
is checked on the first run after it is due (the emulator's clock). The emulator's per-record Emails-read log and
record states are the oracle."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from airflow_provider_zohocrm.hooks.coverage_run import run_source_once, task_checkpoint
from airflow_provider_zohocrm.hooks.coverage_store import CoverageStore
from airflow_provider_zohocrm.testing import Fault, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import EMAIL_EXPECTED, EMAIL_KINDS, seed_email_org
from airflow_provider_zohocrm.zoho.unblock_job import UnblockJobFailed, UnblockPlan, run_unblock
from tests.emulator.test_unblock_job import client_for
from tests.unit.test_coverage_store import DictVariables

HOUR = 3600.0


def store_of(variables: DictVariables) -> CoverageStore:
    return CoverageStore("dag", "Leads.all", variables, settle_seconds=0.0)


def all_ids(em: ZohoCRMEmulator) -> list[str]:
    return sorted(em.backend.records("Leads"), key=int)


def test_a_retried_job_reads_no_emails_list_twice(emulator: ZohoCRMEmulator) -> None:
    org = seed_email_org(emulator.backend, counts=dict.fromkeys(EMAIL_KINDS, 3))
    ids = all_ids(emulator)
    variables = DictVariables()
    coverage = {"dag_id": "dag", "key": "Leads.all", "now": 0.0, "min_hours_since_bounce": 24.0}
    checkpoint = task_checkpoint(coverage, "run-1", 0, variables)
    plan = UnblockPlan.build("Leads", ids, ["Email"], 5, verify="emails", min_hours_since_bounce=24)
    emulator.backend.add_fault(Fault(endpoint="unblock_bulk", action="500", on_call=1))
    with pytest.raises(UnblockJobFailed):
        run_unblock(client_for(emulator, attempts=1), plan, checkpoint=checkpoint)
    assert set(emulator.backend.email_list_reads()) == {("Leads", rid) for rid in ids}
    report = run_unblock(client_for(emulator, attempts=1), plan, checkpoint=checkpoint)  # the retry
    reads = emulator.backend.email_list_reads()
    assert Counter(reads.values()) == {1: len(ids)}, "a retry read an Emails list again"
    outcomes = {rid: o for o, rids in report.ids.items() for rid in rids}
    for kind, kind_ids in org.ids.items():
        for rid in kind_ids:
            assert outcomes[rid] == EMAIL_EXPECTED[kind]["emails"], (kind, rid)
    for rid in org.ids["old_soft"]:
        assert len(emulator.backend.unblock_events("Leads", rid)) == 1
    saved = json.loads(variables.data[checkpoint.key])
    assert sorted(saved["deferred"]) == sorted(org.ids["recent_soft"])
    assert len(saved["done"]) == len(ids) - len(org.ids["recent_soft"])


def test_a_failed_run_leaves_its_unread_records_for_the_next_run(emulator: ZohoCRMEmulator) -> None:
    emulator.backend.add_many_records("Leads", 60)
    ids = all_ids(emulator)
    variables = DictVariables()
    store = store_of(variables)
    # the 11th Emails read fails for good: records 1-10 have an outcome, 11-20 do not
    emulator.backend.add_fault(Fault(endpoint="emails", action="500", on_call=11, times=100))
    client = client_for(emulator, attempts=1)
    first = run_source_once(client, store, "r1", ids, module="Leads", budget=20)
    assert first.failed is not None and first.ids == ids[:20]
    assert first.summary.read_this_run == 10
    emulator.backend.clear_faults()
    emulator.backend.email_list_reads(clear=True)
    second = run_source_once(client_for(emulator), store, "r2", ids, module="Leads", budget=20)
    assert second.failed is None
    assert second.ids == ids[10:30]  # the unread ones first, none of the ten read before
    assert set(emulator.backend.email_list_reads()) == {("Leads", rid) for rid in ids[10:30]}
    assert second.state.read_this_cycle == 30


def test_a_deferred_record_is_checked_on_the_first_run_after_it_is_due(emulator: ZohoCRMEmulator) -> None:
    org = seed_email_org(emulator.backend, counts={"recent_soft": 2, "never_bounced": 8})  # bounced 2 h ago
    ids = all_ids(emulator)
    young = org.ids["recent_soft"]
    store = store_of(DictVariables())

    def night(run_id: str) -> set[str]:
        emulator.backend.email_list_reads(clear=True)
        client = client_for(emulator)  # a fresh task: Zoho's clock comes from the candidates' answers
        candidates = [str(r["id"]) for r in client.iter_coql("select id from Leads where Email is not null")]
        run_source_once(
            client, store, run_id, candidates, module="Leads", budget=4, min_hours_since_bounce=24
        )
        return {rid for _m, rid in emulator.backend.email_list_reads()}

    read = night("n1") | night("n2") | night("n3")
    assert read == set(ids)  # a full cycle in three runs of 4
    assert all(not emulator.backend.unblock_events("Leads", rid) for rid in young)
    emulator.backend.advance(20 * HOUR)  # 22 h since the bounce: not due yet
    assert not night("n4") & set(young)
    emulator.backend.advance(3 * HOUR)  # 25 h: due
    fourth = night("n5")
    assert set(young) <= fourth
    assert all(len(emulator.backend.unblock_events("Leads", rid)) == 1 for rid in young)
    assert store.read().deferred == {}
