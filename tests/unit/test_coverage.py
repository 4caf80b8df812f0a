"""Rolling coverage (issue 18, part 2), pure: the state, the plan, the verdicts, the report's numbers."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_zohocrm.zoho.coverage import (
    DONE,
    CoverageState,
    RunCheckpoint,
    RunPlan,
    Verdict,
    apply_outcomes,
    plan_run,
    reset,
    summarize,
)

DAY = 86_400.0
BASE = 4_876_876_000_000_100_001


def ids(n: int, step: int = 7) -> list[str]:
    return [str(BASE + step * i) for i in range(n)]


def night(
    state: CoverageState,
    candidates: list[str],
    budget: int | None,
    now: float,
    fail: frozenset[str] = frozenset(),
) -> tuple[RunPlan, dict[str, Verdict], CoverageState]:
    plan = plan_run(state, candidates, budget, now)
    verdicts = {rid: DONE for rid in plan.ids if rid not in fail}
    after = apply_outcomes(state, plan, verdicts, now)
    return plan, verdicts, after


def test_three_runs_at_1000_over_2520_records_cover_the_module_without_rereading() -> None:
    module = ids(2520)
    state = reset(0.0)
    plans = []
    for n in range(3):
        plan, _verdicts, state = night(state, module, 1000, n * DAY)
        plans.append(plan)
    assert all(len(p.ids) <= 1000 for p in plans)
    assert not set(plans[0].ids) & set(plans[1].ids)
    assert set(plans[0].fresh) | set(plans[1].fresh) | set(plans[2].fresh) == set(module)
    assert plans[2].completes_cycle and len(plans[2].wrapped) == 1000 - 520  # the budget left starts cycle 2
    assert state.cycle == 2 and state.read_this_cycle == 480
    summary = summarize(state, state, plans[2], {r: DONE for r in plans[2].ids}, 3 * DAY)
    assert summary.runs_per_cycle == 3 and summary.module_size == 2520 and summary.read_this_run == 1000


def test_a_failed_run_never_marks_unread_records_read() -> None:
    module = ids(3000)
    state = reset(0.0)
    plan, _v, state = night(state, module, 1000, 0.0, fail=frozenset(ids(3000)[200:400]))
    assert state.cursor == module[199]  # the cursor stops before the gap
    plan2, _v, state = night(state, module, 1000, DAY)
    assert plan2.fresh[:200] == tuple(module[200:400])  # the unread ones first
    assert not set(plan2.ids) & (set(plan.ids) - set(module[200:400]))  # nothing read twice in the cycle
    assert state.read_this_cycle == 800 + 1000


def test_a_retry_reuses_the_verdicts_of_its_earlier_try() -> None:
    planned = ids(10)
    checkpoint = RunCheckpoint()
    for rid in planned[:6]:  # the first try read six, then failed
        checkpoint.record(rid, DONE)
    saved = json.loads(json.dumps(checkpoint.to_json()))
    retry = RunCheckpoint.from_json(saved)
    assert retry.pending(planned) == planned[6:]
    retry.record(planned[6], Verdict("deferred", 5.0))
    merged = RunCheckpoint.merged([retry, RunCheckpoint.from_json({"done": planned[7:]})])
    assert merged.pending(planned) == [] and merged.verdicts[planned[6]] == Verdict("deferred", 5.0)


def test_deferred_records_come_first_once_due_and_are_not_read_again_in_the_cycle() -> None:
    module = ids(5000)
    state = reset(0.0)
    plan = plan_run(state, module, 1000, 0.0)
    young = plan.fresh[10]
    verdicts = {rid: DONE for rid in plan.ids} | {young: Verdict("deferred", 1.5 * DAY)}
    state = apply_outcomes(state, plan, verdicts, 0.0)
    assert state.deferred == {young: 1.5 * DAY}
    plan = plan_run(state, module, 1000, 1 * DAY)  # not due yet
    assert young not in plan.ids
    state = apply_outcomes(state, plan, dict.fromkeys(plan.ids, DONE), 1 * DAY)
    plan = plan_run(state, module, 1000, 2 * DAY)  # due: checked first, before the slice
    assert plan.due == (young,) and plan.ids[0] == young and len(plan.ids) == 1000
    state = apply_outcomes(state, plan, dict.fromkeys(plan.ids, DONE), 2 * DAY)
    assert state.deferred == {}
    # a deferred record ahead of the cursor, rechecked when due, is not read again by the slice in this cycle
    ahead = module[4500]
    state = CoverageState(cycle=1, covered=((int(module[0]), int(module[999])),), deferred={ahead: 0.0})
    plan = plan_run(state, module, 1000, DAY)
    assert plan.due == (ahead,)
    state = apply_outcomes(state, plan, dict.fromkeys(plan.ids, DONE), DAY)
    later = [plan_run(state, module, 5000, 2 * DAY)]
    assert ahead not in later[0].fresh


def test_state_is_small_json() -> None:
    module = ids(100_000)
    state = reset(0.0)
    for n in range(30):
        _plan, _v, state = night(state, module, 20_000, n * DAY, fail=frozenset(module[n * 10 : n * 10 + 3]))
    text = json.dumps(state.to_json())
    assert len(text) < 4_000
    assert CoverageState.from_json(json.loads(text)) == state


def test_no_budget_reads_everything_once_per_run() -> None:
    module = ids(50)
    state = reset(0.0)
    for n in range(3):
        plan, _v, state = night(state, module, None, n * DAY)
        assert sorted(plan.ids, key=int) == module
    assert state.cycle == 4


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 300),
    budgets=st.lists(st.integers(1, 120), min_size=1, max_size=25),
    failures=st.lists(st.sets(st.integers(0, 299), max_size=40), min_size=25, max_size=25),
)
def test_over_many_nights_every_record_is_read_once_per_cycle_never_twice(
    size: int, budgets: list[int], failures: list[set[int]]
) -> None:
    """Whatever the budgets and whichever reads fail: within one cycle no record is read twice, and a cycle
    ends only when every record was read in it."""
    module = ids(size)
    state = reset(0.0)
    reads: dict[int, list[str]] = defaultdict(list)
    for n, budget in enumerate(budgets):
        fail = frozenset(module[i] for i in failures[n] if i < size)
        before = state
        plan, verdicts, state = night(state, module, budget, n * DAY, fail)
        assert len(plan.ids) <= budget and len(set(plan.ids)) == len(plan.ids)
        reads[before.cycle] += [r for r in plan.fresh if r in verdicts]
        reads[before.cycle + 1] += [r for r in plan.wrapped if r in verdicts]
        for cycle, got in reads.items():
            assert len(got) == len(set(got)), f"cycle {cycle} read a record twice"
        for cycle in range(1, state.cycle):
            assert set(reads[cycle]) == set(module), f"cycle {cycle} ended without reading every record"


def test_deferred_records_the_source_no_longer_lists_are_forgotten() -> None:
    module = ids(100)
    state = CoverageState(deferred={module[5]: 0.0, str(BASE - 1): 0.0})
    plan = plan_run(state, module, 10, DAY)
    assert plan.due == (module[5],) and plan.gone == (str(BASE - 1),)
    assert apply_outcomes(state, plan, dict.fromkeys(plan.ids, DONE), DAY).deferred == {}


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(60, 400),
    deferrals=st.lists(
        st.lists(st.tuples(st.integers(0, 49), st.floats(0.2, 3.5)), max_size=5), min_size=12, max_size=12
    ),
)
def test_a_deferred_record_is_checked_on_the_first_run_after_it_is_due(
    size: int, deferrals: list[list[tuple[int, float]]]
) -> None:
    module = ids(size)
    state = reset(0.0)
    due_at: dict[str, float] = {}
    for n, chosen in enumerate(deferrals):
        now = n * DAY
        plan = plan_run(state, module, 50, now)
        for rid, at in list(due_at.items()):
            if at <= now:
                assert rid in plan.due, f"{rid} was due at {at / DAY:.1f} d, not checked on night {n}"
                del due_at[rid]
            else:
                assert rid not in plan.ids  # not before it is due
        verdicts = dict.fromkeys(plan.ids, DONE)
        fresh = list(plan.fresh) + list(plan.wrapped)
        for position, days in chosen:
            if position < len(fresh) and fresh[position] not in due_at:
                verdicts[fresh[position]] = Verdict("deferred", now + days * DAY)
                due_at[fresh[position]] = now + days * DAY
        state = apply_outcomes(state, plan, verdicts, now)


# -- issue 30: tests that kill the coverage mutations of scripts/mutation_check.py --------------------------------


def test_ranges_with_one_unread_id_between_them_stay_apart() -> None:
    """Ids 10 and 12 read, 11 planned but not read: 11 is not covered, and the next run reads it first."""
    module = ["10", "11", "12", "13", "20"]
    _plan, _v, state = night(reset(0.0), module, 4, 0.0, fail=frozenset({"11"}))
    assert state.covered == ((10, 10), (12, 13)) and not state.is_covered(11)
    plan = plan_run(state, module, 4, DAY)
    assert plan.fresh == ("11", "20")


def test_a_budget_below_one_is_refused() -> None:
    for budget in (0, -1):
        with pytest.raises(ValueError, match="budget must be at least 1"):
            plan_run(reset(0.0), ids(10), budget, 0.0)


def test_due_records_take_half_an_odd_budget_rounded_down() -> None:
    """⌊B/2⌋: at B = 5 two due records and three of the slice; at B = 1 the slice's record, no due one (C2)."""
    module = ids(40)
    state = CoverageState(
        covered=((int(module[0]), int(module[9])),),
        read_this_cycle=10,
        deferred={rid: -1.0 for rid in module[:10]},
    )
    plan = plan_run(state, module, 5, 0.0)
    assert (len(plan.due), plan.fresh) == (2, tuple(module[10:13]))
    plan = plan_run(state, module, 1, 0.0)
    assert (plan.due, plan.fresh) == ((), (module[10],))
