"""Issue 25 (asset events): a downstream DAG scheduled on ``zohocrm://<conn id>/unblocked`` runs after an unblock
run under a real scheduler (scheduler + dag-processor + api-server, LocalExecutor) and reads the unblocked ids
from the event. ``airflow dags test`` cannot show this: it runs one DAG run and schedules nothing downstream."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, ZohoCRMEmulator, airflow_cli, seed_demo_org
from tests.conftest import assert_no_secrets, emulator_conn_env

pytestmark = pytest.mark.airflow_run

UNBLOCK_DAG = "asset_unblock"
DOWNSTREAM_DAG = "asset_downstream"
#: Bound on each wait (parsing, the unblock run, the downstream run); every wait polls the metadata DB.
DEADLINE = 300.0

DAG_FILE = """
import json
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Asset, task

from airflow_provider_zohocrm import unblock_bounced_emails_dag

unblock = unblock_bounced_emails_dag({unblock!r}, conn_id="zohocrm_default", schedule=None)

with DAG({downstream!r}, schedule=[Asset("zohocrm://zohocrm_default/unblocked")],
         start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def read_unblocked_ids(triggering_asset_events=None):
        got = []
        for events in triggering_asset_events.values():
            for event in events:
                for module, ids in event.extra["unblocked"].items():
                    got.extend([module, i] for i in ids)
        Path({out!r}).write_text(json.dumps(got))

    read_unblocked_ids()
"""


def _poll(what: str, check: Callable[[], object], log_dir: Path) -> object:
    """Poll ``check()`` (a metadata-DB read) until it returns something truthy, for at most DEADLINE s."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)  # polling Airflow's state, bounded by the deadline
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(log_dir.glob("*.log"))
    )
    pytest.fail(f"{what}: not within {DEADLINE:.0f} s\n{logs}")


def _query(db_path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path, timeout=30) as db:
        return db.execute(sql, args).fetchall()


def _finished_run(db_path: Path, dag_id: str) -> str | None:
    rows = _query(db_path, "select state from dag_run where dag_id=? order by id desc limit 1", dag_id)
    return str(rows[0][0]) if rows and rows[0][0] in ("success", "failed") else None


def test_a_dag_scheduled_on_the_asset_runs_after_an_unblock_run_and_reads_the_ids(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    started = time.monotonic()
    seeded = seed_demo_org(emulator.backend, n_bounced=20)
    dags, home, out = tmp_path / "dags", tmp_path / "home", tmp_path / "downstream-got.json"
    dags.mkdir()
    (dags / "asset_dags.py").write_text(
        DAG_FILE.format(unblock=UNBLOCK_DAG, downstream=DOWNSTREAM_DAG, out=str(out))
    )
    env = airflow_cli.airflow_env(
        home,
        dags,
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",  # the downstream DAG must be unpaused
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        **emulator_conn_env(emulator),
    )
    airflow_cli.migrate(env)
    db_path = home / "airflow.db"
    with airflow_cli.api_server(env, parallelism=4) as server, airflow_cli.scheduler(env, server):
        _poll(
            "both DAGs parsed and unpaused",
            lambda: (
                len(
                    _query(
                        db_path,
                        "select dag_id from dag where dag_id in (?, ?) and not is_paused",
                        UNBLOCK_DAG,
                        DOWNSTREAM_DAG,
                    )
                )
                == 2
            ),
            home,
        )
        subprocess.run(
            [
                *airflow_cli.AIRFLOW_COMMAND,
                "dags",
                "trigger",
                UNBLOCK_DAG,
                "-c",
                json.dumps({"cvid": BOUNCED_VIEW_ID}),
            ],
            env={**env, **server.executor_env},
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert (
            _poll("the unblock run finished", lambda: _finished_run(db_path, UNBLOCK_DAG), home) == "success"
        )
        assert (
            _poll("the downstream run finished", lambda: _finished_run(db_path, DOWNSTREAM_DAG), home)
            == "success"
        )
    for log in home.glob("*.log"):
        assert_no_secrets(log.read_text(errors="replace"), emulator)
    got = json.loads(out.read_text())
    # the oracle: exactly the records the emulator shows unblocked, each once
    shown = sorted(
        [module, rid]
        for module in ("Leads", "Contacts")
        for rid in emulator.backend.records(module)
        if emulator.backend.unblock_events(module, rid)
    )
    assert shown, "the run unblocked something"
    assert set(seeded.of("temporary")) <= {rid for module, rid in shown if module == "Leads"}
    assert sorted(got) == shown
    assert len(got) == len(shown)  # no id twice
    print(f"asset downstream test: {time.monotonic() - started:.1f} s, {len(shown)} ids read downstream")
