"""A CeleryExecutor deployment on one machine, for tests: Redis, a private PostgreSQL cluster, api-server,
scheduler, dag-processor and N Celery workers, each worker a separate "machine" (its own TMPDIR and HOME).

Everything listens on 127.0.0.1 on free ports. Every process is started in its own process group and stopped by
PID (SIGTERM, then SIGKILL) when the ``Cluster`` context ends, however it ends.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from airflow_provider_zohocrm.testing.airflow_cli import AIRFLOW, AIRFLOW_COMMAND, free_port

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the deployment, each with how to get it."""
    missing = []
    if not shutil.which("redis-server"):
        missing.append("redis-server (apt-get install redis-server)")
    if not pg_bin():
        missing.append("PostgreSQL server binaries initdb/postgres (apt-get install postgresql)")
    try:
        import airflow.providers.celery  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError:
        missing.append(
            "apache-airflow[celery,postgres] (scripts/bootstrap.sh installs the 'deployment' extra)"
        )
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("a 'postgres' user to run PostgreSQL as (it refuses to run as root)")
    return missing


def pg_bin() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        real = Path(initdb).resolve().parent
        if (real / "postgres").exists():
            return real
    for candidate in PG_BIN_CANDIDATES:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Cluster:
    """Start with :meth:`start` inside ``with``; ``env`` is what every Airflow process shares."""

    root: Path
    dags_folder: Path
    workers: int = 3
    worker_concurrency: int = 4
    extra_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    procs: list[Proc] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    api_url: str = ""
    proxy: ExecutionApiProxy | None = None
    _pg_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- processes ---------------------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str], **kwargs: Any) -> Proc:
        log = self.root / "logs-processes" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as sink:
            popen = subprocess.Popen(
                cmd, env=dict(env), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc.popen)
        self.procs.clear()
        if self._pg_dir:
            shutil.rmtree(self._pg_dir, ignore_errors=True)

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for proc in self.procs:
            text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
            parts.append(f"--- {proc.name} (rc={proc.popen.poll()}) ---\n{text[-tail:]}")
        return "\n".join(parts)

    def _wait(self, what: str, ready: Any, proc: Proc | None, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc is not None and proc.popen.poll() is not None:
                raise RuntimeError(f"{what} exited:\n{proc.log.read_text(errors='replace')[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.3)  # readiness polling of a process we started

    # -- start ----------------------------------------------------------------------------------------------

    def start(self) -> Cluster:
        t0 = time.monotonic()
        redis_port = self._start_redis()
        pg_url = self._start_postgres()
        self.timings["redis+postgres"] = time.monotonic() - t0
        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        proxy_port = free_port()
        proxy = self._spawn(
            "proxy",
            [sys.executable, str(Path(__file__).with_name("proxy.py")), self.api_url, str(proxy_port)],
            os.environ,
        )
        self._wait("proxy", lambda: _port_open(proxy_port), proxy, timeout=30)
        self.proxy = ExecutionApiProxy(proxy_port)
        home = self.root / "airflow-home"
        home.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env = {
            **base,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "64",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.proxy.url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": "zohocrm-deployment-test-jwt-secret-0123456789",
            "AIRFLOW__API__SECRET_KEY": "zohocrm-deployment-test-secret-key-0123456789",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": str(self._dir("tmp-control")),
            **self.extra_env,
        }
        t0 = time.monotonic()
        subprocess.run(
            [*AIRFLOW_COMMAND, "db", "migrate"], env=self.env, check=True, capture_output=True, timeout=600
        )
        self.timings["db migrate"] = time.monotonic() - t0
        t0 = time.monotonic()
        api = self._spawn(
            "api-server",
            [*AIRFLOW_COMMAND, "api-server", "--port", str(api_port), "--host", "127.0.0.1"],
            self.env,
        )
        self._spawn("scheduler", [*AIRFLOW_COMMAND, "scheduler"], self.env)
        self._spawn("dag-processor", [*AIRFLOW_COMMAND, "dag-processor"], self.env)
        workers = []
        for n in range(1, self.workers + 1):
            machine = {"TMPDIR": str(self._dir(f"worker{n}/tmp")), "HOME": str(self._dir(f"worker{n}/home"))}
            workers.append(
                self._spawn(
                    f"worker{n}",
                    [
                        *AIRFLOW_COMMAND,
                        "celery",
                        "worker",
                        "-H",
                        f"w{n}@localhost",
                        "-c",
                        str(self.worker_concurrency),
                        "--skip-serve-logs",
                    ],
                    {**self.env, **machine},
                )
            )
        self._wait("api-server", lambda: _healthy(f"{self.api_url}/api/v2/monitor/health"), api)
        for proc in workers:
            self._wait(proc.name, lambda p=proc: "ready." in p.log.read_text(errors="replace"), proc)
        self.timings["processes ready"] = time.monotonic() - t0
        return self

    def _dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def _start_redis(self) -> int:
        port = free_port()
        proc = self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir("redis")),
            ],
            os.environ,
        )
        self._wait("redis", lambda: _redis_ping(port), proc, timeout=30)
        return port

    def _start_postgres(self) -> str:
        """A private cluster in a temp dir, as the 'postgres' user when we are root (postgres refuses root)."""
        bin_dir = pg_bin()
        assert bin_dir is not None
        port = free_port()
        # outside pytest's tmp dir: that one is private to root, and postgres must reach its data directory
        self._pg_dir = Path(tempfile.mkdtemp(prefix="zohocrm-pg-"))
        data = self._pg_dir / "data"
        run_as: dict[str, Any] = {}
        if os.getuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self._pg_dir, pg.pw_uid, pg.pw_gid)
            run_as = {"user": pg.pw_uid, "group": pg.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8"],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
            cwd=self._pg_dir,
            **run_as,
        )
        proc = self._spawn(
            "postgres",
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(self._pg_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            env,
            cwd=self._pg_dir,
            **run_as,
        )
        self._wait("postgres", lambda: _port_open(port), proc, timeout=60)
        return f"postgresql+psycopg2://airflow@127.0.0.1:{port}/postgres"

    # -- REST API ---------------------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.api_url}/api/v2/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read() or b"null")

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        def parsed() -> bool:
            try:
                self.api("GET", f"dags/{dag_id}")
            except urllib.error.HTTPError:
                return False
            return True

        self._wait(f"DAG {dag_id} parsed", parsed, None, timeout=timeout)

    def run_dag(self, dag_id: str, conf: Mapping[str, Any], timeout: float = 600.0) -> dict[str, Any]:
        """Trigger a run and wait for it to finish; the run's JSON (``state``, ``dag_run_id``)."""
        run = self.api("POST", f"dags/{dag_id}/dagRuns", {"conf": dict(conf), "logical_date": None})
        run_id = run["dag_run_id"]
        deadline = time.monotonic() + timeout
        while True:
            run = self.api("GET", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")
            if run["state"] in ("success", "failed"):
                return dict(run)
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} still {run['state']} after {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.5)  # polling the run's state through the REST API

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        entry = self.api(
            "GET",
            f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/xcomEntries/return_value"
            f"?map_index={map_index}&deserialize=true",
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_states(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self.api(
            "GET", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances?limit=500"
        )
        return list(answer["task_instances"])


class ExecutionApiProxy:
    """Controls the proxy process (``proxy.py``) in front of the api-server's Task Execution API."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def _call(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/_proxy/{path}", method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return dict(json.loads(answer.read()))

    @property
    def delay(self) -> float:
        return float(self._call("stats")["delay"])

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._call(f"delay?seconds={seconds}", method="POST")

    @property
    def variable_requests(self) -> int:
        return int(self._call("stats")["variable_requests"])


class Barrier(http.server.ThreadingHTTPServer):
    """``GET /`` blocks until ``parties`` requests are waiting, then answers them all at once."""

    daemon_threads = True

    def __init__(self, parties: int, timeout: float = 300.0) -> None:
        self.barrier = threading.Barrier(parties, timeout=timeout)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    outer.barrier.wait()
                    status = 200
                except threading.BrokenBarrierError:
                    status = 504
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def close(self) -> None:
        self.barrier.abort()
        self.shutdown()
        self.server_close()


@contextlib.contextmanager
def barrier(parties: int) -> Iterator[Barrier]:
    server = Barrier(parties)
    try:
        yield server
    finally:
        server.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    else:
        # the leader exited; its group (e.g. Celery pool children) may live on
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
