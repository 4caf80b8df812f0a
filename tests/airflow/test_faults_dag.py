"""Fault injection in REAL DAG runs (``airflow dags test`` of the example DAG against the emulator).

Invariant checked in every run: every found id ends in exactly one reported outcome (the report task's header
and table, and id by id in the mapped tasks' XComs read back from the metadata DB), no record is unblocked
twice (the emulator's ``unblock_events``), and the run is green or fails loudly with the reason in its output.

``AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY=1``: the example DAG's mapped task has ``retries=2`` and no
``retry_delay`` of its own, so Airflow's default (300 s) applies; ``dags test`` waits it out like the scheduler
(``up_for_retry`` is not schedulable before), so the tests shorten Airflow's default, not the DAG.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    Fault,
    ZohoCRMEmulator,
    airflow_cli,
    expected_outcome,
    seed_demo_org,
)
from airflow_provider_zohocrm.zoho.unblock import Outcome
from tests.airflow.test_dag_e2e import report_of
from tests.conftest import (
    airflow_env,
    dag_run_state,
    emulator_conn_env,
    run_dag_test,
)

pytestmark = [pytest.mark.airflow_run, pytest.mark.usefixtures("leak_audit")]

DAG_ID = "zoho_unblock_bounced_emails"
FAST_RETRY = {"AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1"}
OUTCOMES = [o.value for o in Outcome]


# -- helpers ----------------------------------------------------------------------------------------------------


def run_dag(
    home: Path,
    em: ZohoCRMEmulator,
    tmp_path: Path,
    conf: dict[str, Any],
    leak_audit: Any = None,
    conn_extra: dict[str, Any] | None = None,
    **env: str,
) -> str:
    proc = run_dag_test(
        home,
        conf,
        {**emulator_conn_env(em, **(conn_extra or {})), "TMPDIR": str(tmp_path), **FAST_RETRY, **env},
    )
    output = proc.stdout + proc.stderr
    if leak_audit is not None:
        leak_audit.add_output(output)
    return output


def expectations(em: ZohoCRMEmulator, ids: list[str], fields: tuple[str, ...] = ("Email",)) -> dict[str, str]:
    return {rid: expected_outcome(em.backend, "Leads", rid, fields) for rid in ids}


def latest_run_xcoms(home: Path) -> tuple[str, dict[int, dict[str, Any]], dict[str, Any] | None]:
    """(run_id, {map_index: unblock_emails return_value}, report return_value) of the newest run of the DAG."""
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (DAG_ID,)
        ).fetchone()[0]
        rows = db.execute(
            "select task_id, map_index, value from xcom where dag_id=? and run_id=? and key='return_value'",
            (DAG_ID, run_id),
        ).fetchall()
    mapped: dict[int, dict[str, Any]] = {}
    report = None
    for task_id, map_index, value in rows:
        data = json.loads(value) if isinstance(value, (str, bytes)) else value
        if task_id == "unblock_emails":
            mapped[int(map_index)] = data
        elif task_id == "report":
            report = data
    return run_id, mapped, report


def report_task_stdout(home: Path, run_id: str) -> str:
    """What the report task printed, from its log file (under an executor, task stdout goes to the log)."""
    logs = sorted(
        (home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=report").glob("attempt=*.log")
    )
    assert logs, "the report task wrote no log"
    lines = [json.loads(line) for line in logs[-1].read_text().splitlines() if line.startswith("{")]
    return "\n".join(str(rec.get("event", "")) for rec in lines if rec.get("logger") == "task.stdout")


def task_states(home: Path, run_id: str) -> dict[tuple[str, int], tuple[str, int]]:
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "select task_id, map_index, state, try_number from task_instance where dag_id=? and run_id=?",
            (DAG_ID, run_id),
        ).fetchall()
    return {(t, m): (s, n) for t, m, s, n in rows}


def assert_green_and_accounted(
    output: str, home: Path, em: ZohoCRMEmulator, expected: dict[str, str], *, retried_done: int = 0
) -> dict[str, int]:
    """The run is green; the report's header and table, and the mapped tasks' XComs id by id, give every found
    id exactly one outcome equal to what the org's state predicted; no record was unblocked twice.

    ``retried_done``: how many ids may show ``already_unblocked`` instead of ``unblocked`` (done on a try that
    was cut off, then counted as done by Airflow's retry)."""
    assert dag_run_state(output) == "success", output[-6000:]
    run_id, mapped, report = latest_run_xcoms(home)
    (n_found, n_reported, n_calls), rows = report_of(output)
    if "total" not in rows:  # run by an executor: the report task printed its table into its log file
        (n_found, n_reported, n_calls), rows = report_of(report_task_stdout(home, run_id))
    assert n_found == n_reported == len(expected), (n_found, n_reported, len(expected))
    assert rows.pop("total") == len(expected)
    assert sum(rows.values()) == len(expected)
    assert report is not None and report["found"] == report["total"] == len(expected)
    reported = Counter(rid for r in mapped.values() for ids in r["ids"].values() for rid in ids)
    assert set(reported) == set(expected), "an id was lost or invented"
    assert all(n == 1 for n in reported.values()), "an id got more than one outcome"
    assert n_calls == sum(r["calls"] for r in mapped.values())
    outcome_of = {rid: o for r in mapped.values() for o, ids in r["ids"].items() for rid in ids}
    moved = [rid for rid, want in expected.items() if outcome_of[rid] != want]
    assert all(expected[r] == "unblocked" and outcome_of[r] == "already_unblocked" for r in moved), moved[:5]
    assert len(moved) <= retried_done, (len(moved), retried_done)
    assert rows == {o: sum(1 for v in outcome_of.values() if v == o) for o in OUTCOMES}
    for rid, want in expected.items():
        events = em.backend.unblock_events("Leads", rid) if want != "invalid_record" else []
        assert len(events) == (1 if want == "unblocked" else 0), (rid, want, events)
    return rows


def assert_never_twice(em: ZohoCRMEmulator, ids: list[str]) -> None:
    for rid in ids:
        assert len(em.backend.unblock_events("Leads", rid)) <= 1, rid


# -- transient faults: retried inside the task, run green --------------------------------------------------------


def test_transient_faults_on_paging_and_unblock_are_retried_and_nothing_is_lost(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    """429 bursts, 500, HTML 502/503, connection resets, a 200 HTML page, an empty 200, an answer slower than
    the timeout (processed by Zoho after the client gave up), a page token expiring mid-scan and the access
    token revoked mid-scan, all in one run: every call is retried within the task, the run is green."""
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=1200, n_clean=40)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    expected = expectations(emulator, found)
    # records endpoint, request by request (retries included); 1,200 records = 6 pages of 200
    for n, action in [(1, "429"), (3, "500"), (4, "502"), (6, "reset"), (8, "503")]:
        backend.add_fault(Fault(endpoint="records", action=action, on_call=n))
    backend.add_fault(Fault(endpoint="records", action="expire_page_tokens", on_call=10))  # page 4 → rescan
    backend.add_fault(Fault(endpoint="records", action="delay", delay=4.0, on_call=12))  # > timeout
    backend.add_fault(Fault(endpoint="records", action="revoke_access_tokens", on_call=14))
    # unblock endpoint: 6 mapped tasks, one call each when nothing fails
    backend.add_fault(Fault(endpoint="unblock_bulk", action="delay", delay=4.0, on_call=1))  # processed late
    for n, action in [
        (3, "429"),
        (4, "429"),
        (5, "429"),
        (7, "500"),
        (8, "503"),
        (10, "html200"),
        (12, "empty200"),
        (14, "reset"),
        (15, "502"),
    ]:
        backend.add_fault(Fault(endpoint="unblock_bulk", action=action, on_call=n))

    output = run_dag(
        airflow_home,
        emulator,
        tmp_path,
        {"cvid": BOUNCED_VIEW_ID, "batch_size": 200},
        leak_audit,
        conn_extra={"timeout": 1.5},
    )
    assert_green_and_accounted(output, airflow_home, emulator, expected)
    stats = backend.stats
    assert stats["faults_pending"] == 0, "a scripted fault never fired: the test did not test it"
    assert stats["requests"]["unblock_bulk"] == 6 + 10
    assert stats["token_requests"] == 2, "one token, and one refresh after the revocation"
    assert "gave up" not in output


# -- answers the task cannot use: the try fails, Airflow retries the mapped task ---------------------------------


def test_unusable_answers_fail_the_try_and_airflows_retry_finishes_the_job(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    """A 200 without ``data`` (not retried in-task: Zoho may have acted) and per-item codes nobody knows (→
    ``error``, the task fails by the default ``fail_on``, naming the code) each fail one try of a mapped task;
    Airflow's retry of that task finishes it and the run is green with every id accounted once."""
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=600, n_clean=10)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    expected = expectations(emulator, found)
    backend.add_fault(Fault(endpoint="unblock_bulk", action="missing_data", on_call=2))
    backend.add_fault(Fault(endpoint="unblock_bulk", action="unknown_code", on_call=3))

    output = run_dag(
        airflow_home, emulator, tmp_path, {"cvid": BOUNCED_VIEW_ID, "batch_size": 200}, leak_audit
    )
    assert_green_and_accounted(output, airflow_home, emulator, expected)
    assert "bulk unblock answer (HTTP 200) has no 'data' list" in output
    assert "SOMETHING_NEW" in output and "fail_on" in output
    run_id, _, _ = latest_run_xcoms(airflow_home)
    tries = sorted(n for (t, _), (s, n) in task_states(airflow_home, run_id).items() if t == "unblock_emails")
    assert tries == [1, 2, 2], "exactly the two tasks that got an unusable answer were retried, once each"
    assert backend.stats["requests"]["unblock_bulk"] == 5
    assert backend.stats["faults_pending"] == 0


def test_unknown_codes_on_every_try_fail_the_run_loudly_and_lose_nothing(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=60, n_clean=5)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    backend.add_fault(Fault(endpoint="unblock_bulk", action="unknown_code", times=99))

    output = run_dag(airflow_home, emulator, tmp_path, {"cvid": BOUNCED_VIEW_ID}, leak_audit)
    assert dag_run_state(output) == "failed", output[-6000:]
    assert "Unblock Email finished with outcomes listed in fail_on: {'error': 60}" in output
    assert "SOMETHING_NEW: An outcome this client has never seen" in output
    run_id, _, _ = latest_run_xcoms(airflow_home)
    states = task_states(airflow_home, run_id)
    assert states[("unblock_emails", 0)] == ("failed", 3), "retries=2: three tries, then failed"
    assert states[("report", -1)][0] == "failed", (
        "the report runs after a failed group and fails the run (issue 25)"
    )
    assert backend.stats["requests"]["unblock_bulk"] == 3
    # nothing lost: the failed try's partial report (XCom ``unblock_report``) names every id, as ``error``
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        value = db.execute(
            "select value from xcom where dag_id=? and run_id=? and key='unblock_report'", (DAG_ID, run_id)
        ).fetchone()[0]
    partial = json.loads(value)
    assert sorted(partial["ids"]["error"]) == sorted(found)
    assert partial["total"] == len(found)
    assert_never_twice(emulator, found)
    assert all(not backend.unblock_events("Leads", r) for r in found)


def test_rate_limit_that_never_clears_fails_loudly_after_bounded_retries(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=30, n_clean=5)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    backend.add_fault(Fault(endpoint="unblock_bulk", action="429", times=99))
    output = run_dag(
        airflow_home,
        emulator,
        tmp_path,
        {"cvid": BOUNCED_VIEW_ID},
        leak_audit,
        conn_extra={"max_attempts": 2},
    )
    assert dag_run_state(output) == "failed", output[-6000:]
    assert "Zoho's API limit was hit on POST Leads/actions/unblock_email" in output
    assert "gave up after 2 attempts" in output
    assert "0 of 30 ids had an outcome before this, 30 are pending with the reason in the report" in output
    assert backend.stats["requests"]["unblock_bulk"] == 3 * 2, "3 Airflow tries x 2 attempts, then stop"
    assert all(not backend.unblock_events("Leads", r) for r in found)


# -- credentials failing mid-run --------------------------------------------------------------------------------


def test_refresh_token_revoked_mid_run_is_a_clear_final_failure(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=600, n_clean=10)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    expected = expectations(emulator, found)
    backend.add_fault(Fault(endpoint="unblock_bulk", action="revoke_refresh_token", on_call=2))

    output = run_dag(
        airflow_home, emulator, tmp_path, {"cvid": BOUNCED_VIEW_ID, "batch_size": 200}, leak_audit
    )
    assert dag_run_state(output) == "failed", output[-6000:]
    assert "Zoho rejected the connection's refresh token (invalid_code)" in output
    assert "Fix: Generate a new refresh token" in output
    run_id, mapped, _ = latest_run_xcoms(airflow_home)
    states = task_states(airflow_home, run_id)
    # ``dags test`` runs mapped tasks in no fixed order: the one that made call 1 succeeded; the two that met
    # the revoked token failed on their first try (final: no Airflow retry)
    unblock_states = sorted(v for (t, _), v in states.items() if t == "unblock_emails")
    assert unblock_states == [("failed", 1), ("failed", 1), ("success", 1)]
    stats = backend.stats
    # 1 grant that worked, 1 refused refresh; the refusal is remembered in the shared store, so the other task
    # that needed a token fails the same way without asking Zoho — no retry loop, no request per task
    assert stats["token_requests"] == 2
    assert (
        stats["requests"]["unblock_bulk"] == 2
    )  # the first task's call, the second's that met the revocation
    # the successful task's records got their outcome and were unblocked once; the rest untouched
    assert len(mapped) == 1
    first_batch = {r for ids in next(iter(mapped.values()))["ids"].values() for r in ids}
    assert len(first_batch) == 200 and first_batch <= set(found)
    for rid in found:
        want = expected[rid] == "unblocked" and rid in first_batch
        assert len(backend.unblock_events("Leads", rid)) == (1 if want else 0), rid


def test_token_throttling_mid_run_fails_fast_with_wait_time_and_no_hot_retry(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, leak_audit: Any
) -> None:
    """Other tools of the same refresh token used 9 of Zoho's 10 tokens per 10 minutes. The run gets the 10th;
    the access token is revoked mid-run, the refresh is throttled: the task fails with the wait time, and its
    Airflow retries (and the other mapped task) fail fast from the shared throttle memory without asking
    Zoho again (a hot retry would extend the throttle)."""
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=600, n_clean=10)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    grant = {
        "grant_type": "refresh_token",
        "client_id": backend.client_id,
        "client_secret": backend.client_secret,
        "refresh_token": backend.refresh_token,
    }
    for _ in range(9):
        assert "access_token" in backend.grant_token(grant, emulator.url)
    backend.add_fault(Fault(endpoint="unblock_bulk", action="revoke_access_tokens", on_call=2))

    output = run_dag(
        airflow_home, emulator, tmp_path, {"cvid": BOUNCED_VIEW_ID, "batch_size": 200}, leak_audit
    )
    assert dag_run_state(output) == "failed", output[-6000:]
    assert "Zoho is throttling access-token requests for this refresh token" in output
    assert "Wait about 10 minute(s) before running again" in output
    stats = backend.stats
    assert stats["token_requests"] == 2, "the run's one grant, and the one throttled refresh: no hot retry"
    assert stats["token_throttled"] == 1
    assert stats["requests"]["unblock_bulk"] == 2
    run_id, _, _ = latest_run_xcoms(airflow_home)
    states = task_states(airflow_home, run_id)
    unblock_states = sorted(v for (t, _), v in states.items() if t == "unblock_emails")
    assert unblock_states == [("failed", 3), ("failed", 3), ("success", 1)]
    assert_never_twice(emulator, found)


# -- a task killed in the middle of its batches, retried by Airflow (LocalExecutor: one process per task) -------


def wait_until(
    condition: Callable[[], bool], what: str, run: airflow_cli.DagTestRun, timeout: float = 240
) -> None:
    """Until ``condition()`` holds (an event: a counter of the emulator), failing with the run's output if the run
    ends first or ``timeout`` passes (a bound for a broken run, not a wait)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert run.proc.poll() is None, f"the run ended before {what}:\n" + run.output()[-5000:]
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s:\n" + run.output()[-5000:]
        time.sleep(0.05)  # polling the emulator's counter for the event


def test_task_killed_mid_batches_is_retried_and_every_record_unblocked_once(
    airflow_home: Path,
    executor_env: dict[str, str],
    emulator: ZohoCRMEmulator,
    tmp_path: Path,
    leak_audit: Any,
) -> None:
    """One mapped task holds 6 batches (``max_map_length=1``). While its 3rd call is in flight (Zoho acts on
    it, slowly), the task's process is killed with SIGKILL (as the kernel's OOM killer does). Airflow retries the
    task: batches 1-3 come back ``already_unblocked`` and count as done, 4-6 are unblocked; every record is
    unblocked exactly once.

    What Airflow 3.3 does (issue 28; docs/celery-kubernetes.md, "A task process killed mid-task"): the task's
    supervisor (the LocalExecutor worker that forked it) sees exit code -9 at once and reports the try
    ``up_for_retry`` through the Execution API (retries are left); no heartbeat timeout is involved. The retry is
    schedulable ``retry_delay`` later (here 1 s, ``FAST_RETRY``): it started 3-8 s after the kill in every run
    measured, also in the runs that "stalled". Nothing of ours is held across the kill: no token lease is open
    between calls, the token cache's ``flock`` ends with the process, the coverage lease belongs to the run.

    The stall (this test waited 300 s for ``dags test`` to exit: 1 of 4 serial runs before; 2 of 28 instrumented
    runs on a loaded machine while this was studied, both caught with py-spy) came
    after the run had finished green: ``LocalExecutor.end()`` of Airflow 3.3.2 puts one shutdown message per
    worker it finds alive, one worker after another, while the idle workers already take those messages and
    exit; a worker that takes one and exits before ``end()`` checks it is skipped, so one message too few is
    sent, a worker waits on the queue forever and ``end()`` joins it forever (py-spy: ``dags test`` in
    ``LocalExecutor.end`` → ``join``, the worker in ``SimpleQueue.get``). A slow (loaded) main process makes it
    likely. ``airflow_cli.DagTestRun.wait`` ends such a run ``exit_grace`` seconds after ``DagRun Finished``, as
    for every other executor test; this test now runs through it and waits on events (the emulator's fault
    firing, ``DagRun Finished``), not on time. A scheduler, unlike ``dags test``, does not call ``end()`` after
    each run, so a deployment does not meet this hang."""
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=600, n_clean=10)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    expected = expectations(emulator, found)
    backend.add_fault(Fault(endpoint="unblock_bulk", action="delay", delay=2.0, on_call=3))
    env = {
        **executor_env,
        **emulator_conn_env(emulator),
        "TMPDIR": str(tmp_path),
        **FAST_RETRY,
        "AIRFLOW__CORE__MAX_MAP_LENGTH": "1",
    }
    conf = {"cvid": BOUNCED_VIEW_ID, "batch_size": 100}
    with airflow_cli.start_dags_test(
        DAG_ID, conf, airflow_env(airflow_home, **env), use_executor=True, log_path=tmp_path / "dags-test.log"
    ) as run:
        # the 3rd unblock call is now being held by "Zoho"
        wait_until(lambda: backend.stats["faults_fired"] >= 1, "3rd unblock call", run)
        killed: list[int] = []
        for child in psutil.Process(run.pid).children(recursive=True):  # only processes this test started
            try:
                talks_to_zoho = any(
                    c.raddr and c.raddr.port == emulator.port and c.status == psutil.CONN_ESTABLISHED
                    for c in child.net_connections(kind="tcp")
                )
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if talks_to_zoho:
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)
        assert len(killed) == 1, f"expected exactly the task process to be talking to Zoho, got {killed}"
        result = run.wait(timeout=300)
    output = result.output
    leak_audit.add_output(output)
    assert not result.note.startswith("timed out"), result.note + "\n" + output[-5000:]
    assert "exit_code=<Negsignal.SIGKILL: -9> final_state=up_for_retry" in output, (
        "the supervisor saw the kill"
    )

    first_three = set(found[:300])
    rows = assert_green_and_accounted(
        output,
        airflow_home,
        emulator,
        expected,
        retried_done=sum(1 for r in first_three if expected[r] == "unblocked"),
    )
    _, mapped, _ = latest_run_xcoms(airflow_home)
    assert list(mapped) == [0]
    done_again = set(mapped[0]["ids"]["already_unblocked"]) - {
        r for r, o in expected.items() if o == "already_unblocked"
    }
    assert done_again and done_again <= first_three, "the retry found the killed try's work done"
    assert rows["unblocked"] + len(done_again) == sum(1 for o in expected.values() if o == "unblocked")
    run_id, _, _ = latest_run_xcoms(airflow_home)
    assert task_states(airflow_home, run_id)[("unblock_emails", 0)] == ("success", 2)
    assert backend.stats["requests"]["unblock_bulk"] == 3 + 6
