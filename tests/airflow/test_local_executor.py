"""Real processes: the LocalExecutor runs each task instance in its own process, talking to an api-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, ZohoCRMEmulator, seed_demo_org
from tests.conftest import REPO, dag_run_state, dags_test, emulator_conn_env

pytestmark = pytest.mark.airflow_run


def run_sharing_dag(
    home: Path, env: dict[str, str], em: ZohoCRMEmulator, tmp_path: Path, **conf: object
) -> list[dict]:
    report = tmp_path / "report.json"
    proc = dags_test(
        home,
        "zoho_token_sharing",
        {"report_path": str(report), **conf},
        {**env, **emulator_conn_env(em), "TMPDIR": str(tmp_path)},
        dags_folder=REPO / "tests" / "dags",
    )
    assert dag_run_state(proc.stdout + proc.stderr) == "success", (proc.stdout + proc.stderr)[-5000:]
    return json.loads(report.read_text())


def test_mapped_tasks_downstream_of_a_hook_task_ask_for_no_token(
    airflow_home: Path, executor_env: dict[str, str], emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    results = run_sharing_dag(airflow_home, executor_env, emulator, tmp_path, warm=True, n=20)
    assert len(results) == 20
    assert len({r["pid"] for r in results}) == 20, "each task instance ran in its own process"
    assert sum(r["refreshes"] for r in results) == 0
    assert emulator.backend.stats["token_requests"] == 1  # the upstream task's, and no other
    assert emulator.backend.stats["requests"]["org"] == 21


@pytest.mark.parametrize("isolate_machines", [False, True], ids=["one-machine", "machine-per-task"])
def test_cold_parallel_start_stays_well_under_zoho_token_limit(
    airflow_home: Path,
    executor_env: dict[str, str],
    emulator: ZohoCRMEmulator,
    tmp_path: Path,
    isolate_machines: bool,
) -> None:
    results = run_sharing_dag(
        airflow_home, executor_env, emulator, tmp_path, warm=False, n=20, isolate_machines=isolate_machines
    )
    token_requests = emulator.backend.stats["token_requests"]
    print(f"cold start, 20 tasks, isolate_machines={isolate_machines}: {token_requests} token request(s)")
    assert token_requests == sum(r["refreshes"] for r in results)
    assert 1 <= token_requests <= (1 if not isolate_machines else 3)
    assert emulator.backend.stats["token_throttled"] == 0


def test_example_dag_under_local_executor(
    airflow_home: Path, executor_env: dict[str, str], emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    seeded = seed_demo_org(emulator.backend, n_bounced=2100)
    proc = dags_test(
        airflow_home,
        "zoho_unblock_bounced_emails",
        {"cvid": BOUNCED_VIEW_ID, "batch_size": 100},
        {**executor_env, **emulator_conn_env(emulator), "TMPDIR": str(tmp_path)},
    )
    assert dag_run_state(proc.stdout + proc.stderr) == "success", (proc.stdout + proc.stderr)[-5000:]
    stats = emulator.backend.stats
    assert stats["requests"]["unblock_bulk"] == 21
    assert stats["ids_sent"] == 2100
    assert stats["token_requests"] == 1
    assert stats["rejected_429"] == 0
    for rid in seeded.of("temporary"):
        assert len(emulator.backend.unblock_events("Leads", rid)) == 1
