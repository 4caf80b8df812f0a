"""Shared fixtures: an emulator per test, Airflow homes on SQLite, and helpers to run real Airflow commands."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator, airflow_cli
from airflow_provider_zohocrm.zoho.auth import FileTokenStore

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
BIN = Path(sys.executable).parent
#: Outcomes a mixed seeded org produces (all but ``error``, which needs a fault).
RECORD_OUTCOMES = (
    "unblocked",
    "already_unblocked",
    "permanently_blocked",
    "limit_reached",
    "invalid_record",
    "not_allowed",
)
ACCESS_TOKEN_RE = re.compile(r"1000\.[0-9a-f]{32}\.[0-9a-f]{32}")


# -- no test touches state shared with other checkouts or users (issue 9, finding 14) ---------------------------

#: The machine-wide token cache the provider uses by default (``<temp dir>/airflow-zohocrm-<uid>``), as it is
#: before any test redirects the temp dir. Tests must never read or write it: other checkouts and users share it.
SHARED_TOKEN_DIR = os.path.join(tempfile.gettempdir(), f"airflow-zohocrm-{os.getuid()}")
_shared_touches: list[str] = []


def _audit_shared_dir(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook (PEP 578): note every open/mkdir/rename/remove/chmod of a path inside the shared directory."""
    if event != "open" and not event.startswith(("os.", "shutil.")):
        return
    for arg in args[:2]:
        if isinstance(arg, (str, os.PathLike)):
            path = os.fspath(arg)
            if isinstance(path, str) and (
                path == SHARED_TOKEN_DIR or path.startswith(SHARED_TOKEN_DIR + os.sep)
            ):
                _shared_touches.append(f"{event} {path}")


sys.addaudithook(_audit_shared_dir)


@pytest.fixture(autouse=True)
def no_shared_temp_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Give every test its own temp dir (``tempfile.tempdir`` is cached at first use, so setting ``TMPDIR`` in
    a test is too late), also for subprocesses (``TMPDIR``), and fail a test that touched the shared token
    cache directory anyway."""
    private = tmp_path_factory.mktemp("tmpdir")
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    monkeypatch.setenv("TMPDIR", str(private))
    del _shared_touches[:]
    yield
    touched, _shared_touches[:] = list(_shared_touches), []
    assert not touched, f"the test touched the shared directory {SHARED_TOKEN_DIR}: {touched[:5]}"


@pytest.fixture
def emulator() -> Iterator[ZohoCRMEmulator]:
    """An empty org (no records) with the default OAuth client; tests seed what they need."""
    with ZohoCRMEmulator(EmulatorBackend(EmulatorConfig())) as em:
        yield em


@pytest.fixture
def token_store(tmp_path: Path) -> FileTokenStore:
    """A token store private to the test, so tests never share tokens through the machine's temp dir."""
    return FileTokenStore(tmp_path / "tokens")


@pytest.fixture
def conn_env(emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch) -> ZohoCRMEmulator:
    """``AIRFLOW_CONN_ZOHOCRM_DEFAULT`` pointing at the emulator, with fast retries for tests."""
    set_connection(monkeypatch, emulator)
    return emulator


def set_connection(
    monkeypatch: pytest.MonkeyPatch, emulator: ZohoCRMEmulator, conn_id: str = "zohocrm_default", **extra: Any
) -> dict[str, Any]:
    conn = emulator.connection(conn_id)
    conn["extra"].update({"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 5}, **extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn


def secrets_of(emulator: ZohoCRMEmulator) -> list[str]:
    """Every secret the emulator knows of: client secrets, refresh tokens, each access token it issued."""
    return emulator.backend.secrets()


def assert_no_secrets(text: str, emulator: ZohoCRMEmulator) -> None:
    for secret in secrets_of(emulator):
        assert secret not in text, "a secret leaked"
    assert not ACCESS_TOKEN_RE.search(text), "an access token leaked"


# -- simulations -----------------------------------------------------------------------------------------------


def simulation_count(full: int) -> int:
    """How many seeded histories or schedules a simulation test runs: ``full`` (the suite), or that times
    ``ZOHOCRM_SIMULATION_SCALE`` (at least 1). The dependency-floors run (.ci/floors.sh) sets 0.1: it checks that
    the simulations still run and hold on the lowest versions; the depth is the main suite's."""
    scale = float(os.environ.get("ZOHOCRM_SIMULATION_SCALE", "1"))
    return max(1, round(full * scale))


# -- real Airflow ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite Airflow home for the session's ``airflow`` subprocesses."""
    home = tmp_path_factory.mktemp("airflow-home")
    airflow_cli.migrate(airflow_env(home))
    return home


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """Env for ``airflow`` subprocesses on ``home`` with the repo's DAGs; its own TMPDIR keeps tokens of
    different tests from meeting in the machine-wide file cache."""
    return airflow_cli.airflow_env(home, DAGS, **extra)


def emulator_conn_env(emulator: ZohoCRMEmulator, **extra: Any) -> dict[str, str]:
    conn = emulator.connection()
    conn["extra"].update({"backoff_base": 0.01, "backoff_max": 0.1, "timeout": 10}, **extra)
    return {"AIRFLOW_CONN_ZOHOCRM_DEFAULT": json.dumps(conn)}


def run_dag_test(
    home: Path,
    conf: dict[str, Any],
    env: dict[str, str],
    *,
    dag_id: str = "zoho_unblock_bounced_emails",
    timeout: int = 600,
) -> airflow_cli.DagTestResult:
    """``airflow dags test DAG -c CONF`` in one process (tasks in-process)."""
    return airflow_cli.dags_test(dag_id, conf, airflow_env(home, **env), timeout=timeout)


def dags_test(
    home: Path, dag_id: str, conf: dict[str, Any], env: dict[str, str], dags_folder: Path | None = None
) -> airflow_cli.DagTestResult:
    """``airflow dags test … --use-executor``: every task in its own LocalExecutor process (needs executor_env)."""
    extra = {"AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder)} if dags_folder else {}
    return airflow_cli.dags_test(dag_id, conf, airflow_env(home, **env, **extra), use_executor=True)


def outcomes_of(results: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """``{(module, id): [outcome, …]}`` over the unblock tasks' results (a list, so a repeat would show)."""
    out: dict[tuple[str, str], list[str]] = {}
    for result in results:
        for outcome, ids in result["ids"].items():
            for rid in ids:
                out.setdefault((result["module"], rid), []).append(outcome)
    return out


def dag_run_state(output: str) -> str | None:
    match = re.findall(r"DagRun Finished: .*?state=(\w+)", output)
    return match[-1] if match else None


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture(scope="session")
def executor_env(airflow_home: Path) -> Iterator[dict[str, str]]:
    """An api-server for the Task Execution API, and the env that points LocalExecutor tasks at it."""
    with airflow_cli.api_server(airflow_env(airflow_home), parallelism=8) as server:
        yield server.executor_env


# ======== Added for issue 5 (fault-injection, bad-input and secrets suite): the leak audit ======================
# Used by tests/airflow/test_faults_dag.py, test_bad_input_dags.py, test_secrets_dags.py and tests/emulator/
# test_bad_input.py, test_secrets.py (``leak_audit`` fixture).

import sqlite3  # noqa: E402 - kept inside the issue-5 block

TOKEN_CACHE_VARIABLE_PREFIX = "zohocrm_token_cache_"


class LeakAudit:
    """Collects everything a test's runs produced that a person could read, and fails the test if a secret the
    emulator knows of (client secrets, refresh tokens, every access token it issued) or anything shaped like a
    Zoho token appears in it: DAG-run stdout/stderr, task log files under AIRFLOW_HOME/logs, and the metadata DB
    (XComs, Variables, rendered template fields, every other table) of the Airflow home."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.emulators: list[ZohoCRMEmulator] = []
        self.home: Path | None = None
        self.scanned: dict[str, int] = {}

    def watch(self, emulator: ZohoCRMEmulator) -> None:
        if emulator not in self.emulators:
            self.emulators.append(emulator)

    def add_output(self, text: str, label: str = "DAG run output") -> None:
        self.texts.append((label, text))

    def add_text(self, label: str, text: str) -> None:
        self.texts.append((label, text))

    def secrets(self) -> list[str]:
        return list(dict.fromkeys(secret for em in self.emulators for secret in em.backend.secrets()))

    def sources(self) -> list[tuple[str, str]]:
        sources = list(self.texts)
        if self.home is not None:
            logs = self.home / "logs"
            files = [p for p in logs.rglob("*") if p.is_file()] if logs.exists() else []
            self.scanned["log_files"] = len(files)
            for path in files:
                sources.append((f"log file {path.relative_to(self.home)}", path.read_text(errors="replace")))
            db_path = self.home / "airflow.db"
            if db_path.exists():
                with sqlite3.connect(db_path) as db:
                    dump = "\n".join(db.iterdump())
                    for table in ("xcom", "variable", "rendered_task_instance_fields"):
                        self.scanned[table] = db.execute(f"select count(*) from {table}").fetchone()[0]
                    variables = db.execute("select key, val, is_encrypted from variable").fetchall()
                sources.append(("metadata DB (all tables)", dump))
                # Airflow encrypts Variable values with its own fernet_key: look inside, or the scan is blind
                fernet = _airflow_fernet(self.home)
                for key, val, encrypted in variables:
                    plain = fernet.decrypt(str(val).encode()).decode() if encrypted and fernet else str(val)
                    sources.append((f"Variable {key} (decrypted with Airflow's fernet_key)", plain))
                    if key.startswith(TOKEN_CACHE_VARIABLE_PREFIX):
                        assert plain.startswith("gAAAAA"), f"Variable {key} is not Fernet ciphertext"
        return sources

    def check(self) -> None:
        secrets = self.secrets()
        for label, text in self.sources():
            for secret in secrets:
                assert secret not in text, f"a secret ({len(secret)} chars) leaked into {label}"
            match = ACCESS_TOKEN_RE.search(text)
            assert match is None, f"a Zoho-token-shaped value leaked into {label}"


def _airflow_fernet(home: Path) -> Any:
    from cryptography.fernet import Fernet

    cfg = home / "airflow.cfg"
    match = re.search(r"^fernet_key\s*=\s*(\S+)\s*$", cfg.read_text(), re.MULTILINE) if cfg.exists() else None
    return Fernet(match.group(1)) if match else None


@pytest.fixture
def leak_audit(request: pytest.FixtureRequest) -> Iterator[LeakAudit]:
    """Fails the test if any secret reached output, logs, XCom, Variables, rendered fields or the DB."""
    audit = LeakAudit()
    if "emulator" in request.fixturenames:
        audit.watch(request.getfixturevalue("emulator"))
    if "airflow_home" in request.fixturenames:
        audit.home = request.getfixturevalue("airflow_home")
    yield audit
    audit.check()
