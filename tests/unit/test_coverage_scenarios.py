"""Issue 26's pure scenarios of rolling coverage: dead-domain deferrals back off and never starve the slice (2),
and a record half-read when the budget ran out stays unread (4). The report → verdict → plan → apply chain is the
real one (``verdicts_of``, ``plan_run``, ``apply_outcomes``); the run wiring's scenarios are in
tests/emulator/test_coverage_scenarios.py."""

from __future__ import annotations

import itertools
import json

from airflow_provider_zohocrm.hooks.coverage_run import verdicts_of
from airflow_provider_zohocrm.zoho.coverage import (
    RETRY_BASE_SECONDS,
    CoverageState,
    Verdict,
    apply_outcomes,
    plan_run,
    retry_due,
)
from airflow_provider_zohocrm.zoho.emails import BUDGET_REASON
from airflow_provider_zohocrm.zoho.unblock import Outcome, UnblockReport

DAY = 86_400.0
T0 = 1_800_000_000.0


def report_of(outcomes: dict[str, tuple[Outcome, str | None]]) -> UnblockReport:
    report = UnblockReport(module="Leads", unblock_fields=["Email"], dry_run=False, verify="emails")
    for rid, (outcome, reason) in outcomes.items():
        details = {"category": "Temporary", "sub_category": None, "reason": None, "bounced_time": None}
        report.add(rid, outcome, details=details if outcome is Outcome.DEFERRED else None, reason=reason)
    return report


def test_scenario_2_dead_domains_back_off_and_never_starve_the_slice() -> None:
    """25 records, 5 of them on dead domains (``check_domain`` defers them every time), B = 5: the other 20 are
    all read within ⌈25/⌈5/2⌉⌉ + 1 runs (C1 when due records take their whole half of the budget; before the
    fix they were read 0 times in 8 nights), and a dead-domain record waits 1, 2, 4 … days between reads."""
    ids = [str(1000 + i) for i in range(25)]
    dead = set(ids[::5])
    state = CoverageState()
    reads: dict[str, list[float]] = {rid: [] for rid in ids}
    for night in range(14):
        now = T0 + night * DAY
        plan = plan_run(state, ids, 5, now)
        assert len(plan.due) <= 2  # C2: at most half the budget
        report = report_of(
            {
                rid: (Outcome.DEFERRED, "check_domain: no mail host for dead.example")
                if rid in dead
                else (Outcome.NOT_BLOCKED, None)
                for rid in plan.ids
            }
        )
        verdicts = verdicts_of(report, min_hours=24, now=now).verdicts
        for rid in plan.ids:
            reads[rid].append(now)
        state = apply_outcomes(state, plan, verdicts, now)
    live_reads = {rid: times for rid, times in reads.items() if rid not in dead}
    assert all(times and times[0] < T0 + 10 * DAY for times in live_reads.values()), {
        rid: len(t) for rid, t in live_reads.items()
    }
    for rid in dead:
        gaps = [b - a for a, b in zip(reads[rid], reads[rid][1:], strict=False)]
        assert all(later >= earlier for earlier, later in itertools.pairwise(gaps)), (rid, gaps)
        assert not gaps or gaps[0] >= DAY
    assert any(len(reads[rid]) >= 2 for rid in dead)


def test_the_back_off_doubles_and_is_capped() -> None:
    assert [retry_due(n, 0.0) / RETRY_BASE_SECONDS for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 16, 16]


def test_due_records_take_at_most_half_the_budget_and_the_slice_advances() -> None:
    ids = [str(i) for i in range(1, 41)]
    state = CoverageState(
        covered=((1, 10),), read_this_cycle=10, deferred={str(i): T0 - 1 for i in range(1, 11)}
    )
    plan = plan_run(state, ids, 8, T0)
    assert len(plan.due) == 4 and plan.fresh == ("11", "12", "13", "14")
    # at the cycle's end the slice's unused budget goes to the other due records
    end = CoverageState(
        covered=((1, 38),), read_this_cycle=38, deferred={str(i): T0 - 1 for i in range(1, 11)}
    )
    plan = plan_run(end, ids, 8, T0)
    assert plan.fresh == ("39", "40") and len(plan.due) == 6


def test_scenario_4_a_record_half_read_when_the_budget_ran_out_is_not_read() -> None:
    """Both fields verified; the budget ran out before Email was judged, Secondary_Email is permanently blocked:
    the record has no verdict (it stays unread), and a record whose fields were all judged does."""
    report = UnblockReport(
        module="Leads", unblock_fields=["Email", "Secondary_Email"], dry_run=False, verify="emails"
    )
    report.add("1", Outcome.PERMANENTLY_BLOCKED)
    report.fields["1"] = {"Email": "deferred", "Secondary_Email": "permanently_blocked"}
    report.field_reasons["1 Email"] = BUDGET_REASON
    report.add("2", Outcome.PERMANENTLY_BLOCKED)
    report.fields["2"] = {"Email": "not_blocked", "Secondary_Email": "permanently_blocked"}
    report.add("3", Outcome.DEFERRED, reason="bounced 2.0 h ago")
    report.fields["3"] = {"Email": "deferred", "Secondary_Email": "deferred"}
    report.field_reasons["3 Email"] = "bounced 2.0 h ago"
    report.field_reasons["3 Secondary_Email"] = "check_domain: no mail host"
    verdicts = verdicts_of(report, min_hours=24, now=T0).verdicts
    assert "1" not in verdicts
    assert verdicts["2"] == Verdict("done")
    assert verdicts["3"].kind == "deferred"  # a young bounce has a known end: it wins over the back-off
    state = apply_outcomes(CoverageState(), plan_run(CoverageState(), ["1", "2", "3"], 3, T0), verdicts, T0)
    assert not state.is_covered(1) and state.is_covered(2)


def test_an_error_outcome_counts_as_read() -> None:
    verdicts = verdicts_of(report_of({"7": (Outcome.ERROR, None)}), min_hours=0, now=T0).verdicts
    assert verdicts["7"] == Verdict("done")


def test_a_dead_domain_waits_longer_after_each_read_and_the_stored_state_keeps_the_count() -> None:
    """A record ``check_domain`` defers run after run is read again after 1, 2, then 4 days (the count of reads in
    a row survives the state's JSON, as the Variable stores it), and a ``done`` verdict ends its back-off."""
    ids = [str(i) for i in range(1, 101)]
    dead = "7"
    state = CoverageState()
    now = T0
    reads: list[float] = []
    for _ in range(4):
        plan = plan_run(state, ids, 10, now)
        assert dead in plan.ids
        reads.append(now)
        report = report_of(
            {
                rid: (Outcome.DEFERRED, "check_domain: no mail host for dead.example")
                if rid == dead
                else (Outcome.NOT_BLOCKED, None)
                for rid in plan.ids
            }
        )
        state = apply_outcomes(state, plan, verdicts_of(report, min_hours=24, now=now).verdicts, now)
        state = CoverageState.from_json(json.loads(json.dumps(state.to_json())))
        now = state.deferred[dead]
    assert [(b - a) / DAY for a, b in itertools.pairwise(reads)] == [1, 2, 4]
    assert state.deferred[dead] - reads[-1] == 8 * DAY
    plan = plan_run(state, ids, 10, now)
    assert plan.due == (dead,)
    state = apply_outcomes(state, plan, dict.fromkeys(plan.ids, Verdict("done")), now)
    assert dead not in state.deferred and dict(state.strikes) == {}
