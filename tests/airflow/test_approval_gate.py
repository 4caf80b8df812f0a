"""The approval gate (``require_approval``, Airflow 3.1+ human-in-the-loop) in real Airflow: ``airflow dags test``
parks approve_plan in AWAITING_INPUT and waits; an api-server on the same metadata DB answers it through
Airflow's REST API (``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/approve_plan/-1/hitlDetails``), as a
person's click in the UI does. The emulator's final record state is the oracle: approved → the plan's records
unblocked; rejected → nothing written, and the report prints the plan. Without the param the planning tasks are
skipped and the run writes what it always wrote."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, ZohoCRMEmulator, airflow_cli, seed_demo_org
from airflow_provider_zohocrm.testing.seed import SeedResult, seed_email_org
from tests.airflow.test_workflow_dags import emails_source, variables
from tests.conftest import (
    airflow_env,
    assert_no_secrets,
    dag_run_state,
    emulator_conn_env,
    run_dag_test,
)

pytestmark = pytest.mark.airflow_run

DAG_ID = "zoho_unblock_bounced_emails"
N_BOUNCED = 20
#: How long the approval may take to appear (a cold `airflow dags test` parses the DAG and runs four tasks).
APPEAR_DEADLINE = 240.0


class Api:
    """Airflow's REST API on an api-server that shares the session's metadata DB (all users admins)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = self._call("GET", "/auth/token")["access_token"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if getattr(self, "token", None):
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def waiting_approval(self) -> dict[str, Any] | None:
        """The approve_plan request of this DAG that waits for an answer, once its task is parked."""
        found = self._call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails?limit=100")
        for detail in found["hitl_details"]:
            ti = detail["task_instance"]
            if (
                ti["task_id"] == "approve_plan"
                and not detail["response_received"]
                and ti["state"] == "awaiting_input"
            ):
                return dict(detail)
        return None

    def answer(self, detail: dict[str, Any], option: str) -> dict[str, Any]:
        ti = detail["task_instance"]
        path = (
            f"/api/v2/dags/{DAG_ID}/dagRuns/{ti['dag_run_id']}/taskInstances/approve_plan/"
            f"{ti['map_index']}/hitlDetails"
        )
        return dict(self._call("PATCH", path, {"chosen_options": [option]}))


@pytest.fixture(scope="module")
def api(airflow_home: Path) -> Iterator[Api]:
    env = airflow_env(airflow_home, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True")
    with airflow_cli.api_server(env) as server:
        yield Api(server.url)


def wait_for_approval(api: Api, run: Future[airflow_cli.DagTestResult]) -> dict[str, Any]:
    """Poll until approve_plan is parked, with a bounded deadline; fail at once if the run ended instead."""
    deadline = time.monotonic() + APPEAR_DEADLINE
    while time.monotonic() < deadline:
        if run.done():
            result = run.result()
            pytest.fail(f"the run ended before asking for approval:\n{result.output[-5000:]}")
        detail = api.waiting_approval()
        if detail is not None:
            return detail
        time.sleep(0.5)  # polling Airflow's state, bounded by the deadline
    pytest.fail(f"no approval request within {APPEAR_DEADLINE:.0f} s")


def run_and_answer(
    home: Path,
    api: Api,
    em: ZohoCRMEmulator,
    tmp_path: Path,
    option: str,
    conf: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any], dict[str, Any], float]:
    """Run the DAG with require_approval (and ``conf``, default: the bounced view), answer ``option`` once it
    waits; (output, the approval request, the emulator's stats while it waited, seconds from start to the run's
    end)."""
    conf = {**(conf or {"cvid": BOUNCED_VIEW_ID}), "require_approval": True}
    env = {**emulator_conn_env(em), "TMPDIR": str(tmp_path)}
    start = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(run_dag_test, home, conf, env, timeout=420)
        detail = wait_for_approval(api, run)
        waiting = em.backend.stats
        api.answer(detail, option)
        result = run.result(timeout=420)
    seconds = time.monotonic() - start
    print(f"approval test ({option}): {seconds:.1f} s from start to the run's end")
    assert_no_secrets(result.output, em)
    return result.output, detail, waiting, seconds


def task_states(home: Path) -> dict[str, list[str]]:
    """``{task_id: [state of each (mapped) instance]}`` of the newest run of the DAG."""
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (DAG_ID,)
        ).fetchone()[0]
        rows = db.execute(
            "select task_id, state from task_instance where dag_id=? and run_id=? order by map_index",
            (DAG_ID, run_id),
        ).fetchall()
    states: dict[str, list[str]] = {}
    for task_id, state in rows:
        states.setdefault(task_id, []).append(state)
    return states


def writes(em: ZohoCRMEmulator) -> dict[str, int]:
    requests = em.backend.stats["requests"]
    return {k: requests[k] for k in ("unblock_bulk", "unblock_single", "add_tags")}


def unblocked(em: ZohoCRMEmulator, seeded: SeedResult) -> list[str]:
    return [r for r in seeded.bounced() if em.backend.unblock_events("Leads", r)]


def test_approved_plan_unblocks_the_records_only_after_the_answer(
    airflow_home: Path, api: Api, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    seeded = seed_demo_org(emulator.backend, n_bounced=N_BOUNCED)
    output, detail, waiting, _ = run_and_answer(airflow_home, api, emulator, tmp_path, "Approve")
    # while it waited: the plan read the view, and nothing was written
    assert waiting["requests"]["records"] >= 1
    assert waiting["ids_sent"] == 0 and waiting["requests"]["unblock_bulk"] == 0, waiting["requests"]
    assert f"Unblock {N_BOUNCED:,} email address(es)" in detail["subject"], detail["subject"]
    assert f"dry run: {N_BOUNCED:,} record(s) would be sent" in detail["body"], detail["body"]
    assert dag_run_state(output) == "success", output[-5000:]
    assert "Approved by" in output
    # the emulator's final state: every temporary bounce unblocked once, the rest left as Zoho judged them
    temporary = seeded.of("temporary")
    assert temporary
    assert [len(emulator.backend.unblock_events("Leads", r)) for r in temporary] == [1] * len(temporary)
    assert emulator.backend.stats["ids_sent"] == N_BOUNCED
    states = task_states(airflow_home)
    assert states["approve_plan"] == ["success"] and set(states["unblock_emails"]) == {"success"}


def test_rejected_plan_writes_nothing_and_the_report_is_the_plan(
    airflow_home: Path, api: Api, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    seeded = seed_demo_org(emulator.backend, n_bounced=N_BOUNCED)
    output, _, _, _ = run_and_answer(airflow_home, api, emulator, tmp_path, "Reject")
    assert dag_run_state(output) == "success", output[-5000:]
    assert writes(emulator) == {"unblock_bulk": 0, "unblock_single": 0, "add_tags": 0}
    assert emulator.backend.stats["ids_sent"] == 0
    assert unblocked(emulator, seeded) == []
    assert "Rejected in approve_plan: nothing was written to Zoho" in output, output[-5000:]
    assert f"dry run: {N_BOUNCED:,} record(s) would be sent" in output
    states = task_states(airflow_home)
    assert states["report"] == ["success"]
    assert set(states["unblock_emails"]) == {"skipped"}, states


def test_a_rejected_plan_with_reset_leaves_every_stored_variable_byte_identical(
    airflow_home: Path, api: Api, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Issue 25: a rejected plan changes no stored state. A rolling-coverage source (``max_email_checks``) with
    ``reset_coverage`` (the example allows it) is planned, claimed and rejected: every Airflow Variable is
    byte-identical before and after (no reset, no cursor, no checkpoint, no lease left)."""
    started = time.monotonic()
    seed_email_org(emulator.backend, counts={"old_soft": 6, "recent_soft": 4})
    emulator.backend.add_many_records("Leads", 30)
    env = {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)}
    first = run_dag_test(airflow_home, {"sources": [emails_source(15)]}, env, timeout=420)
    assert dag_run_state(first.output) == "success", first.output[-5000:]
    before = variables(airflow_home)
    coverage = [k for k in before if k.startswith("zohocrm_coverage_") and DAG_ID in k and "ckpt" not in k]
    assert coverage, sorted(before)  # the first run stored a cursor: there is something a reset would wipe
    calls_before = writes(emulator)
    output, _, _, _ = run_and_answer(
        airflow_home,
        api,
        emulator,
        tmp_path,
        "Reject",
        {"sources": [emails_source(15)], "reset_coverage": True},
    )
    assert dag_run_state(output) == "success", output[-5000:]
    after = variables(airflow_home)
    changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
    assert changed == [], changed
    assert "Rejected in approve_plan: nothing was written to Zoho" in output, output[-5000:]
    assert "the plan was rejected: nothing committed" in output, output[-5000:]  # the source was claimed
    assert writes(emulator) == calls_before
    print(f"rejected plan with reset: {time.monotonic() - started:.1f} s (two runs)")


def test_without_the_param_nothing_is_planned_and_the_run_is_unchanged(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    seeded = seed_demo_org(emulator.backend, n_bounced=N_BOUNCED)
    proc = run_dag_test(
        airflow_home, {"cvid": BOUNCED_VIEW_ID}, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)}
    )
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "success", output[-5000:]
    states = task_states(airflow_home)
    assert states["groups_to_plan"] == ["success"]  # the one small task the gate adds to every run
    for planning in ("plan_emails", "summarize_plan", "approve_plan"):
        assert states[planning] == ["skipped"], states
    assert set(states["unblock_emails"]) == {"success"}
    assert emulator.backend.stats["requests"]["records"] == 1, "the view was read once: no plan"
    assert emulator.backend.stats["ids_sent"] == N_BOUNCED
    assert "Approved by" not in output and "Rejected" not in output
    temporary = seeded.of("temporary")
    assert [len(emulator.backend.unblock_events("Leads", r)) for r in temporary] == [1] * len(temporary)


def test_require_approval_with_dry_run_is_refused_before_any_call(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    seed_demo_org(emulator.backend, n_bounced=N_BOUNCED)
    conf = {"cvid": BOUNCED_VIEW_ID, "require_approval": True, "dry_run": True}
    proc = run_dag_test(airflow_home, conf, {**emulator_conn_env(emulator), "TMPDIR": str(tmp_path)})
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) in ("failed", None), output[-5000:]
    assert "require_approval and dry_run together" in output
    assert sum(emulator.backend.stats["requests"].values()) == 0
