"""The many-nights simulation of rolling coverage (``coverage_sim.py``): 1,000 seeded histories of 60 nights keep
C1-C6 (docs/large-orgs.md), and for each invariant a deliberately broken variant of the real code (a mutant,
monkeypatched in) is caught by the simulation under that invariant's name (issue 30: a simulation that stops
catching it fails here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from airflow_provider_zohocrm.hooks import coverage_run, coverage_store
from airflow_provider_zohocrm.zoho import coverage
from airflow_provider_zohocrm.zoho.coverage import DONE
from tests.conftest import simulation_count
from tests.unit.coverage_sim import InvariantBroken, run_history

HISTORIES = simulation_count(1_000)
NIGHTS = 60


def test_a_thousand_histories_of_sixty_nights_keep_every_invariant() -> None:
    started = time.process_time()
    for seed in range(HISTORIES):
        run_history(seed, NIGHTS)  # raises InvariantBroken with the replayable history
    print(f"{HISTORIES} histories of {NIGHTS} nights: {time.process_time() - started:.1f} s of CPU")


def first_broken(seeds: int = 400) -> str:
    for seed in range(seeds):
        try:
            run_history(seed, NIGHTS)
        except InvariantBroken as exc:
            return str(exc)
    return "nothing broken"


# -- one mutant per invariant --------------------------------------------------------------------------------


def _slow_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """C1: the slice reads one record a run whatever the budget (the cycle takes N runs)."""
    real = coverage_run.plan_run
    monkeypatch.setattr(
        coverage_run,
        "plan_run",
        lambda state, ids, budget, now: real(state, ids, 1 if budget else budget, now),
    )


def _due_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """C2: due deferred records may take the whole budget (before issue 26)."""
    monkeypatch.setattr(coverage, "due_share", lambda budget: budget)


def _release_rewrites(monkeypatch: pytest.MonkeyPatch) -> None:
    """C3: a release writes the state back instead of restoring the Variable's exact text (before issue 26)."""

    def release(self: coverage_store.CoverageStore, claim: coverage_store.Claim) -> None:
        if not claim.leased:
            return
        state, lease = self._read()
        if lease is not None and lease.get("token") == claim.token:
            self._write(state, None)

    monkeypatch.setattr(coverage_store.CoverageStore, "release", release)


def _unread_marked_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """C4: every planned record counts as read, verdict or not."""
    real = coverage_run.apply_outcomes

    def apply(state: Any, plan: Any, verdicts: Any, now: float) -> Any:
        return real(state, plan, {**dict.fromkeys(plan.ids, DONE), **verdicts}, now)

    monkeypatch.setattr(coverage_run, "apply_outcomes", apply)


def _forgets_the_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """C5: the plan ignores what the cycle already read (re-reads from the lowest id)."""
    real = coverage_run.plan_run
    monkeypatch.setattr(
        coverage_run,
        "plan_run",
        lambda state, ids, budget, now: real(replace(state, covered=()), ids, budget, now),
    )


def _keeps_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """C6: a run that commits nothing (rejected, dry) keeps its lease."""
    monkeypatch.setattr(
        coverage_run,
        "discard_source",
        lambda store, info, run_id, indexes: store.delete_checkpoints(run_id, list(indexes), ("", "plan")),
    )


MUTANTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "C1": _slow_slice,
    "C2": _due_first,
    "C3": _release_rewrites,
    "C4": _unread_marked_read,
    "C5": _forgets_the_cursor,
    "C6": _keeps_the_lease,
}


@pytest.mark.parametrize("invariant", sorted(MUTANTS))
def test_the_simulation_catches_a_broken_variant(invariant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    MUTANTS[invariant](monkeypatch)
    broken = first_broken()
    assert broken.startswith(f"{invariant} broken"), broken[:2000]
