"""The coverage store's guard (issue 18, part 2): two runs never advance one cursor. A dict stands in for
Airflow's Variable API here; tests/airflow/test_coverage_variables.py runs the same protocol on a real metadata DB."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from airflow_provider_zohocrm.hooks.coverage_store import (
    Claim,
    CoverageBusyError,
    CoverageLostError,
    CoverageStore,
)
from airflow_provider_zohocrm.zoho.coverage import DONE, RunCheckpoint, Verdict


class DictVariables:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.on_sleep: list[object] = []

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store(variables: DictVariables, clock: Clock, **kwargs: object) -> CoverageStore:
    return CoverageStore(
        "zoho_unblock", "0-Leads-all", variables, clock=clock, sleep=lambda _s: None, **kwargs
    )  # type: ignore[arg-type]


def test_a_second_run_fails_clearly_while_the_first_holds_the_coverage() -> None:
    v, clock = DictVariables(), Clock()
    scheduled = store(v, clock).claim("scheduled__2026-12-05")
    with pytest.raises(CoverageBusyError, match=r"scheduled__2026-12-05.*has held the coverage"):
        store(v, clock).claim("manual__2026-12-05T10")
    store(v, clock).commit(scheduled, replace(scheduled.state, read_this_cycle=1000))
    manual = store(v, clock).claim("manual__2026-12-05T10")  # free again after the commit
    assert manual.state.read_this_cycle == 1000


def test_a_claim_that_loses_the_read_back_race_stops() -> None:
    v, clock = DictVariables(), Clock()
    other = store(v, clock)
    late = store(v, clock)
    # the other run read "free" before our write, and its claim lands between our write and our read-back
    lease = {"run_id": "manual", "token": "t", "claimed_at": clock.now, "until": clock.now + 60}
    late.sleep = lambda _s: other._write(other.read(), lease)
    with pytest.raises(CoverageBusyError, match=r"claimed the coverage .* at the same moment"):
        late.claim("scheduled")


def test_only_the_last_claim_can_commit_and_only_once() -> None:
    v, clock = DictVariables(), Clock()
    first = store(v, clock).claim("a")
    clock.now += 21 * 3600  # a's lease expired (the run died); b takes over
    second = store(v, clock).claim("b")
    with pytest.raises(CoverageLostError, match=r"lost the coverage lease .* to run 'b'"):
        store(v, clock).commit(first, replace(first.state, read_this_cycle=1))
    store(v, clock).commit(second, replace(second.state, read_this_cycle=2))
    # a commit ends the lease: the same claim's second commit (a retried report) is a no-op, not a second write
    before = dict(v.data)
    store(v, clock).commit(second, replace(second.state, read_this_cycle=3))
    assert v.data == before
    assert store(v, clock).read().read_this_cycle == 2
    with pytest.raises(CoverageLostError):  # and the lost claim still cannot commit after it
        store(v, clock).commit(first, replace(first.state, read_this_cycle=4))


def test_a_lease_of_a_run_that_ended_is_taken_over_at_once() -> None:
    v, clock = DictVariables(), Clock()
    store(v, clock).claim("dead")
    claim = store(v, clock, holder_is_alive=lambda run_id: run_id != "dead").claim("next")
    assert store(v, clock).holder()["run_id"] == "next" and claim.run_id == "next"


def test_reset_clears_state_and_lease_and_the_holder_cannot_commit() -> None:
    v, clock = DictVariables(), Clock()
    claim = store(v, clock).claim("a")
    store(v, clock).commit(claim, replace(claim.state, read_this_cycle=5, deferred={"1": 2.0}))
    claim = store(v, clock).claim("b")
    fresh = store(v, clock).reset()
    assert fresh.read_this_cycle == 0 and store(v, clock).holder() is None
    with pytest.raises(CoverageLostError, match="a reset"):
        store(v, clock).commit(claim, claim.state)


def test_claims_and_checkpoints_round_trip_as_json() -> None:
    v, clock = DictVariables(), Clock()
    s = store(v, clock)
    claim = s.claim("run-1")
    assert Claim.from_json(json.loads(json.dumps(claim.to_json()))) == claim
    for i in range(3):
        ckpt = RunCheckpoint()
        ckpt.record(str(100 + i), DONE)
        ckpt.record(str(200 + i), Verdict("deferred", 7.0))
        s.save_checkpoint("run-1", i, ckpt)
    assert s.load_checkpoint("run-1", 1).pending(["101", "102", "201"]) == ["102"]
    merged = s.collect_checkpoints("run-1", range(3))
    assert len(merged.verdicts) == 6
    assert len([k for k in v.data if k.startswith("zohocrm_coverage_ckpt_")]) == 3  # kept until the commit
    s.delete_checkpoints("run-1", range(3))
    assert [k for k in v.data if k.startswith("zohocrm_coverage_ckpt_")] == []  # deleted once merged


def test_keys_are_valid_variable_keys() -> None:
    s = store(DictVariables(), Clock())
    assert s.key == "zohocrm_coverage_zoho_unblock__0-Leads-all"
    long = CoverageStore("d" * 200, "s p a c e s/" * 20, DictVariables())
    assert (
        len(long.key) <= 250
        and long.key != CoverageStore("d" * 200, "s p a c e s/" * 21, DictVariables()).key
    )


def test_a_release_gives_the_variable_back_its_exact_text() -> None:
    v, clock = DictVariables(), Clock()
    claim = store(v, clock).claim("a")
    store(v, clock).release(claim)
    assert v.data == {}  # it did not exist before the claim
    first = store(v, clock).claim("b")
    store(v, clock).commit(first, replace(first.state, read_this_cycle=3))
    before = dict(v.data)
    claim = store(v, clock).claim("c")
    assert v.data != before
    store(v, clock).release(claim)
    assert v.data == before


def test_a_reset_claim_writes_nothing_until_its_commit_which_wins_over_a_live_lease() -> None:
    from airflow_provider_zohocrm.zoho.coverage import reset

    v, clock = DictVariables(), Clock()
    held = store(v, clock).claim("a")
    before = dict(v.data)
    resetting = store(v, clock).peek("r", fresh_state=reset(clock.now))
    assert v.data == before and not resetting.leased
    store(v, clock).commit(resetting, replace(resetting.state, read_this_cycle=5))
    assert store(v, clock).read().read_this_cycle == 5 and store(v, clock).holder() is None
    with pytest.raises(CoverageLostError):
        store(v, clock).commit(held, replace(held.state, read_this_cycle=9))
    after = dict(v.data)
    store(v, clock).commit(resetting, replace(resetting.state, read_this_cycle=7))  # a retried report
    assert v.data == after


def test_the_connection_is_part_of_the_key() -> None:
    v = DictVariables()
    a = CoverageStore("dag", "Leads.all", v, conn_id="org_a")
    b = CoverageStore("dag", "Leads.all", v, conn_id="org_b")
    assert a.key != b.key and "org_a" in a.key
    assert a.checkpoint_key("r", 0) != b.checkpoint_key("r", 0)
    assert CoverageStore("dag", "Leads.all", v).key == "zohocrm_coverage_dag__Leads.all"  # without: as before
