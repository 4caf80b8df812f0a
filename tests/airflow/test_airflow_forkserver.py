"""``airflow dags test`` through the fork server (``testing/airflow_forkserver.py``) is the run a fresh ``airflow``
process makes: same state, exit code and output, and each run sees its own environment (connections, TMPDIR,
working directory), however many runs one server has forked. A stopped run ends with its process group."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import airflow_cli, airflow_forkserver

pytestmark = pytest.mark.airflow_run

_DAG = """
import json, os, signal, sys, tempfile
from pathlib import Path

import pendulum
from airflow.sdk import BaseHook, dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def forkserver_probe():
    @task
    def probe(**context):
        conf = context["dag_run"].conf
        seen = {
            "host": BaseHook.get_connection("probe").host,
            "tmpdir": tempfile.gettempdir(),
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "pgid": os.getpgid(0),
            "argv0": Path(sys.argv[0]).name,
        }
        Path(conf["out"]).write_text(json.dumps(seen))
        print("probe saw host", seen["host"])
        if conf.get("block"):
            signal.pause()  # until the test stops the run
        if conf.get("fail"):
            raise RuntimeError("the probe was asked to fail")

    probe()


forkserver_probe()
"""


@pytest.fixture(scope="module")
def probe_env(airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The probe DAG's folder, one for the module: its runs share one fork server, as a suite's runs do."""
    dags = tmp_path_factory.mktemp("forkserver-dags")
    (dags / "forkserver_probe.py").write_text(_DAG)
    env = airflow_cli.airflow_env(airflow_home, dags)
    env.pop(airflow_forkserver.FORKSERVER_ENV, None)  # each test says which it wants
    return env


def _run(
    env: dict[str, str], tmp_path: Path, name: str, host: str, **conf: Any
) -> tuple[Any, dict[str, Any]]:
    tmpdir = tmp_path / f"tmp-{name}"
    tmpdir.mkdir()
    cwd = tmp_path / f"cwd-{name}"
    cwd.mkdir()
    run_env = {
        **env,
        "TMPDIR": str(tmpdir),
        "AIRFLOW_CONN_PROBE": json.dumps({"conn_type": "http", "host": host}),
    }
    out = tmp_path / f"{name}.json"
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = airflow_cli.dags_test("forkserver_probe", {"out": str(out), **conf}, run_env, timeout=300)
    finally:
        os.chdir(old)
    seen = json.loads(out.read_text()) if out.exists() else {}
    if seen:
        assert seen["tmpdir"] == str(tmpdir), seen
        assert seen["cwd"] == str(cwd), seen
    return result, seen


def test_forked_runs_match_a_fresh_process_and_each_sees_its_own_environment(
    probe_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(airflow_forkserver.FORKSERVER_ENV, "1")  # even where the suite runs with it off
    # the first run also adds the DAG to the metadata DB, which the fresh run's output would otherwise show
    one, one_seen = _run(probe_env, tmp_path, "one", "one.example")
    monkeypatch.setenv(airflow_forkserver.FORKSERVER_ENV, "0")
    fresh, fresh_seen = _run(probe_env, tmp_path, "fresh", "fresh.example")
    monkeypatch.setenv(airflow_forkserver.FORKSERVER_ENV, "1")
    two, two_seen = _run(probe_env, tmp_path, "two", "two.example")

    assert (fresh.state, fresh.returncode, fresh.note) == ("success", 0, "exited"), fresh.output[-3000:]
    for result, seen, host in ((one, one_seen, "one.example"), (two, two_seen, "two.example")):
        assert (result.state, result.returncode, result.note) == ("success", 0, "exited"), result.output[
            -3000:
        ]
        assert seen["host"] == host  # its own AIRFLOW_CONN_*, not the first run's
        assert f"probe saw host {host}" in result.output
        assert seen["argv0"] == "airflow"
        assert seen["pgid"] == seen["pid"]  # its own process group, which DagTestRun.stop ends
    # one server forked both (its pid is their parent); a fresh process is a child of this one
    server = airflow_forkserver.server_for(probe_env)
    assert one_seen["ppid"] == two_seen["ppid"] == server.proc.pid
    assert fresh_seen["ppid"] == os.getpid()
    # the same events as the fresh process logged (import warnings included, which the server replays), but for
    # times, ids and the host; the order of import warnings may differ (the server imports first)
    assert Counter(_shape(two.output, "two.example")) == Counter(_shape(fresh.output, "fresh.example"))


def _shape(output: str, host: str) -> list[str]:
    """The output's log events (what was logged, by whom) without times, ids and values."""
    lines = []
    for line in output.splitlines():
        if "[info     ]" in line or "[error    ]" in line or "[warning  ]" in line:
            event = line.split("]", 1)[1].split("[", 1)[0].strip()
            lines.append(event.replace(host, "HOST").split(":", 1)[0].split(" ", 3)[:3])
    return [" ".join(words) for words in lines]


def test_a_failing_run_fails_as_in_a_fresh_process(
    probe_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(airflow_forkserver.FORKSERVER_ENV, "1")
    forked, _ = _run(probe_env, tmp_path, "forked", "x.example", fail=True)
    monkeypatch.setenv(airflow_forkserver.FORKSERVER_ENV, "0")
    fresh, _ = _run(probe_env, tmp_path, "fresh", "x.example", fail=True)
    assert fresh.state == forked.state == "failed"
    assert fresh.returncode == forked.returncode == 1
    assert "the probe was asked to fail" in forked.output
    # an unknown DAG: Airflow's own error and exit code
    unknown = airflow_cli.dags_test("no_such_dag", {}, probe_env, timeout=120)
    monkeypatch.setenv(airflow_forkserver.FORKSERVER_ENV, "1")
    unknown_forked = airflow_cli.dags_test("no_such_dag", {}, probe_env, timeout=120)
    assert unknown_forked.returncode == unknown.returncode != 0
    last = unknown_forked.output.strip().splitlines()[-1]
    assert last == unknown.output.strip().splitlines()[-1]  # the traceback's last line: Airflow's error
    assert "'no_such_dag' could not be found" in last


def test_stopping_a_forked_run_ends_its_process_group(probe_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "blocked.json"
    env = {
        **probe_env,
        "AIRFLOW_CONN_PROBE": json.dumps({"conn_type": "http", "host": "blocked.example"}),
        airflow_forkserver.FORKSERVER_ENV: "1",
    }
    with airflow_cli.start_dags_test("forkserver_probe", {"out": str(out), "block": True}, env) as run:
        deadline = time.monotonic() + 300
        while not out.exists() and run.proc.poll() is None:  # the task has started (or the run died)
            assert time.monotonic() < deadline, run.output()[-3000:]
            time.sleep(0.1)  # waiting for a file another process writes
        seen = json.loads(out.read_text())
        assert isinstance(run.proc, airflow_forkserver.ForkedProcess)
        assert seen["pid"] == run.pid
        run.stop()  # SIGTERM to the group: the task runner's handler fails the task, and the run ends
        assert run.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(seen["pgid"], 0)  # nothing of the group is left


def test_servers_are_bounded_a_busy_one_is_kept_and_a_dead_one_does_not_hang_its_run(
    probe_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(airflow_forkserver, "MAX_SERVERS", 1)
    env_a = {**probe_env, "AIRFLOW__CORE__PARALLELISM": "31", airflow_forkserver.FORKSERVER_ENV: "1"}
    env_b = {**probe_env, "AIRFLOW__CORE__PARALLELISM": "32", airflow_forkserver.FORKSERVER_ENV: "1"}
    a = airflow_forkserver.server_for(env_a)
    b = airflow_forkserver.server_for(env_b)
    assert not a.alive()  # idle, and one server is the bound: ended for b
    out = tmp_path / "blocked.json"
    env_b["AIRFLOW_CONN_PROBE"] = json.dumps({"conn_type": "http", "host": "blocked.example"})
    with airflow_cli.start_dags_test("forkserver_probe", {"out": str(out), "block": True}, env_b) as run:
        deadline = time.monotonic() + 300
        while not out.exists() and run.proc.poll() is None:  # the task has started (or the run died)
            assert time.monotonic() < deadline, run.output()[-3000:]
            time.sleep(0.1)  # waiting for a file another process writes
        assert isinstance(run.proc, airflow_forkserver.ForkedProcess)
        airflow_forkserver.server_for(env_a)
        assert b.alive()  # busy (its child runs): kept beyond the bound
        b.proc.kill()  # the server dies while its child runs: nobody can report the child's exit status
        b.proc.wait()
        os.killpg(run.pid, signal.SIGTERM)
        assert run.proc.wait(timeout=60) == airflow_forkserver.LOST_STATUS  # ended, though nobody said so
    with pytest.raises(ProcessLookupError):
        os.killpg(run.pid, 0)
