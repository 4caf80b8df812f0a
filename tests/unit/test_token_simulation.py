"""The token protocol under every schedule (issue 20): the real TokenManager, client and stores, driven by the
deterministic simulation in ``token_sim``. A failure prints the scenario and the schedule (a list of choices) or
the seed; ``token_sim.replay`` / ``token_sim.search`` run it again.

Numbers (schedules, time) are printed; run with ``-s`` to see them. Nothing here waits on wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit import token_sim as ts


@pytest.fixture(autouse=True)
def _quiet_provider_logs() -> Iterator[None]:
    with ts.quiet_provider_logs():
        yield


C = ts.CALL

#: Exhaustive: every schedule (up to swaps of independent steps) of 3 tasks on 2 machines.
EXHAUSTIVE = {
    "cold start": ts.Scenario("cold", plans=[[C]] * 3),
    "cold start, 2 calls each": ts.Scenario("cold-2", plans=[[C, C]] * 3),
    "early refresh": ts.Scenario("early", plans=[[C, C]] * 3, initial_left=200.0),
    "grant answer lost": ts.Scenario("lost", plans=[[C]] * 3, grants=["timeout"]),
    "grant HTTP 500": ts.Scenario("500", plans=[[C]] * 3, grants=["500"]),
    "early refresh throttled": ts.Scenario(
        "throttled", plans=[[C]] * 3, grants=["throttle"], initial_left=200.0
    ),
    "token revoked": ts.Scenario(
        "revoke", plans=[[C], [C], [C], [("wait", 0.01), ("revoke",)]], initial_left=3000.0
    ),
    "persistent 401": ts.Scenario("401", plans=[[C, C], [C]], api_rejects=True),
    "use_cache": ts.Scenario("cache", plans=[[C], [C], [("wait", 1.0), C]], cache_ttl=30.0),
}


@pytest.mark.parametrize("name", list(EXHAUSTIVE))
def test_every_schedule_keeps_every_invariant(name: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    report = ts.explore(EXHAUSTIVE[name], tmp_path, max_pauses=0)
    print(
        f"\n{name}: {report.schedules} schedules ({report.pruned} cut as equivalent),"
        f" {time.perf_counter() - started:.1f} s"
    )
    assert report.schedules > 1
    assert report.failures == [], "\n".join(report.failures[:3])


def test_every_schedule_with_a_pause_keeps_every_invariant(tmp_path: Path) -> None:
    """One pause of a ready task (a GC pause, a slow machine) anywhere: the cold race of 2 tasks."""
    report = ts.explore(ts.Scenario("cold-pause", plans=[[C]] * 2), tmp_path, max_pauses=1)
    print(f"\ncold start with one pause: {report.schedules} schedules ({report.pruned} cut)")
    assert report.failures == [], "\n".join(report.failures[:3])


KNOWN_GAP = pytest.mark.xfail(
    reason="known gap (issue 20): when several tasks get a persistent 401 at once, each may replace the token"
    " once before one records the rejection (writes outside the lease, no compare-and-set): it can cost more"
    " than one extra grant in a few % of random schedules",
    strict=False,
)


RANDOM_SEEDS = range(2000)


def test_seeded_random_schedules_keep_every_invariant(tmp_path: Path) -> None:
    """2-5 tasks on 1-3 machines, faults of the accounts server and the Variable API, use_cache, revocations,
    pauses: scenario and schedule both drawn from the seed (persistent 401s: the test below)."""
    started = time.perf_counter()
    failures = []
    for seed in RANDOM_SEEDS:
        try:
            ts.run_seed(seed, tmp_path / str(seed))
        except ts.Violation as exc:
            failures.append(f"seed {seed} ({ts.random_scenario(seed)}): {exc}")
    print(f"\n{len(RANDOM_SEEDS)} random schedules, {time.perf_counter() - started:.1f} s")
    assert failures == [], "\n".join(failures[:3])


@KNOWN_GAP
def test_seeded_random_schedules_with_persistent_401s(tmp_path: Path) -> None:
    failures = []
    for seed in range(300):
        try:
            ts.run_seed(seed, tmp_path / str(seed), rejections=True)
        except ts.Violation as exc:
            failures.append(f"seed {seed}: {exc}")
    assert failures == [], f"{len(failures)} of 300: " + "\n".join(failures[:3])


#: The first failing schedule each hole of issue 20 had before its fix (seed of ``ts.search`` with the pauses
#: given, or a schedule of ``ts.explore``), and what broke.
BEFORE_THE_FIX = {
    "stale-lease-read": (93, 4, "I1: a1 grants while a fresh token (from a0) is in a place it reads"),
    "early-refresh-500": (
        0,
        1,
        "I2: a0 failed (ZohoServerError: ... HTTP 500 ...) while a usable token is ...",
    ),
    "early-refresh-nonjson": (
        0,
        1,
        "I2: a0 failed (ZohoResponseError: ... without JSON) while a usable token ...",
    ),
    "early-refresh-unanswered": (
        0,
        1,
        "I3: a0 POSTs 0.2 s after a0's grant failed (timeout); the window is 60 s",
    ),
    "lost-answer": (0, 4, "I3: a2 POSTs 0.4 s after a1's grant failed (timeout); the window is 60 s"),
    "invalidate-under-lease": (
        0,
        1,
        "I4: a0 ended a1's live lease with a write based on a read that showed it",
    ),
    "grant-outlives-lease": (0, 4, "I1: a0 grants while a1's grant is in flight, without interleaved claims"),
    "persistent-401": (0, 2, "I5: a1's error does not name the first 401 (... and a grant per task try)"),
    "use-cache": (6, 4, "I1: a1 grants while a0's grant is in flight, without interleaved claims"),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=KNOWN_GAP) if n == "persistent-401" else n for n in ts.HOLES]
)
def test_each_hole_of_issue_20_stays_closed(name: str, tmp_path: Path) -> None:
    """Every hole's scenario, under the seed that broke it and 99 more schedules."""
    seed, pauses, _broke = BEFORE_THE_FIX[name]
    report = ts.search(ts.HOLES[name], tmp_path, range(seed, seed + 100), max_pauses=pauses)
    assert report.failures == [], "\n".join(report.failures[:3])


def test_a_persistent_401_costs_one_grant_and_names_the_first_answer(tmp_path: Path) -> None:
    """issue 20 hole 6: the API rejects every token (another org's api_domain). Three tasks, two tries each."""
    scenario = ts.Scenario("401-retries", plans=[[C, C]] * 3, machines=2, api_rejects=True)
    sim = ts.replay(scenario, [], tmp_path)
    grants = [p for p in sim.posts if p.behaviour == "ok"]
    assert 1 <= len(grants) <= 2, f"{len(grants)} grants: the first token, then at most one more"
    errors = [text for actor in sim.actors for kind, text in actor.outcomes if kind == "error"]
    assert len(errors) == 6
    assert all("invalid oauth token (API at t+" in text for text in errors), errors
    assert not any("Throttled" in text for text in errors)


def test_the_harness_sees_a_second_grant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle is not blind: with the machine lock and the lease made no-ops, the cold race grants more than
    once and the simulation says so."""
    monkeypatch.setattr(ts.SimStore, "lease", lambda self, key, **kw: _held())
    monkeypatch.setattr(ts.SimFiles, "lock", lambda self, key: _held())
    monkeypatch.setattr(ts.SimFiles, "wait_unlocked", lambda self, key: False)
    report = ts.search(ts.Scenario("no-lease", plans=[[C]] * 3), tmp_path, range(20))
    assert report.failures and "I1" in report.failures[0], report.failures[:1]


def _held() -> object:
    import contextlib

    return contextlib.nullcontext("held")
