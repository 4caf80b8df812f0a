"""Real processes: the LocalExecutor runs each task instance in its own process, talking to an api-server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, ZohoCRMEmulator, seed_demo_org
from tests.conftest import BIN, REPO, airflow_env, dag_run_state, emulator_conn_env

pytestmark = pytest.mark.airflow_run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def executor_env(airflow_home: Path) -> Iterator[dict[str, str]]:
    """An api-server for the Task Execution API, and the env that points LocalExecutor tasks at it."""
    port = free_port()
    env = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__API_AUTH__JWT_SECRET": "zohocrm-tests-jwt-secret-0123456789",
        "AIRFLOW__API__SECRET_KEY": "zohocrm-tests-secret-key-0123456789",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }
    log = open(airflow_home / "api-server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(BIN / "airflow"), "api-server", "--port", str(port)],
        env=airflow_env(airflow_home, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, (airflow_home / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "api-server did not become healthy"
            time.sleep(0.5)  # readiness polling, not synchronisation of the code under test
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def dags_test(home: Path, dag_id: str, conf: dict, env: dict[str, str], dags_folder: Path | None = None):
    extra = {"AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder)} if dags_folder else {}
    return subprocess.run(
        [str(BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf), "--use-executor"],
        env=airflow_env(home, **env, **extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


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
    airflow_home: Path, executor_env: dict[str, str], emulator: ZohoCRMEmulator, tmp_path: Path,
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
