"""Run real Airflow against the emulator: an Airflow home on SQLite, an api-server, ``airflow dags test``.

For DAG tests (ours and our users') and the benchmark. Standard library only, like the rest of ``testing``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import airflow_forkserver

#: The ``airflow`` command next to the running interpreter (the venv the tests run in).
AIRFLOW = str(Path(sys.executable).parent / "airflow")

# What ``AIRFLOW_COMMAND`` runs: Airflow's own CLI entry point (what the ``airflow`` script runs), with two garbage
# collector settings for short-lived processes. Measured on 2 cores, an ``airflow dags test`` whose first task fails
# at once took 12.0-13.7 s as ``airflow`` and 7.3-7.7 s this way: about 2.4 s went to the collections Python runs
# while the interpreter shuts down (Airflow's imports leave millions of objects), about 2 s to generation-0
# collections while Airflow builds its in-process Task Execution API. Freezing at exit skips the first (our
# ``atexit`` hook is registered first, so it runs after Airflow's own, logging's flush included); a generation-0
# threshold of 10,000 instead of 700 the second (only reference cycles wait longer to be freed; nothing else
# changes). ``-c`` puts the working directory first on ``sys.path``, which ``airflow`` does not: it is removed.
_LAUNCHER = f"""
import atexit, gc, sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
atexit.register(lambda: (gc.freeze(), gc.disable()))
gc.set_threshold(10_000, 10, 10)
sys.argv[0] = {AIRFLOW!r}
from airflow.__main__ import main
sys.exit(main())
"""

#: The real ``airflow`` CLI as a command line (``[*AIRFLOW_COMMAND, "dags", "test", …]``): the same entry point as
#: :data:`AIRFLOW`, about 40 % faster to start and to exit (see ``_LAUNCHER`` above). Every Airflow process the
#: tests and the benchmark start goes through it; the documented commands that the README and first-night tests
#: paste into a shell keep the plain ``airflow``.
AIRFLOW_COMMAND: tuple[str, ...] = (sys.executable, "-c", _LAUNCHER)

#: Set to ``1`` in an env given to this module's functions to run the plain ``airflow`` script instead of
#: :data:`AIRFLOW_COMMAND`: the benchmarks do, so their wall times are what a deployment's ``airflow`` takes.
PLAIN_AIRFLOW_ENV = "ZOHOCRM_PLAIN_AIRFLOW"
#: ``airflow_env(home, dags, **PLAIN_AIRFLOW)``: that setting as keyword arguments.
PLAIN_AIRFLOW = {PLAIN_AIRFLOW_ENV: "1"}


def airflow_command(env: Mapping[str, str]) -> tuple[str, ...]:
    """:data:`AIRFLOW_COMMAND`, or ``(AIRFLOW,)`` when ``env`` sets :data:`PLAIN_AIRFLOW_ENV` to ``1``."""
    return (AIRFLOW,) if env.get(PLAIN_AIRFLOW_ENV) == "1" else AIRFLOW_COMMAND


_FINISHED_RE = re.compile(r"DagRun Finished: .*?state=(\w+)")


def airflow_env(home: Path, dags_folder: Path, **extra: str) -> dict[str, str]:
    """The environment for ``airflow`` subprocesses: this home, these DAGs, SQLite, no examples, no
    ``AIRFLOW*`` variables inherited from the caller, and a private TMPDIR (the token file cache lives there)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        PATH=f"{Path(AIRFLOW).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        TMPDIR=str(home / "tmp"),
    )
    env.update(extra)
    return env


def migrate(env: Mapping[str, str]) -> None:
    """``airflow db migrate`` for the home named in ``env`` (SQLite: a few seconds)."""
    subprocess.run(
        [*airflow_command(env), "db", "migrate"], env=dict(env), check=True, capture_output=True, timeout=300
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ApiServer:
    """A running api-server: its base URL, and the settings that point LocalExecutor tasks at it."""

    url: str
    executor_env: dict[str, str]


@contextmanager
def api_server(
    env: Mapping[str, str], *, parallelism: int = 8, timeout: float = 180.0
) -> Iterator[ApiServer]:
    """Run ``airflow api-server`` (UI, REST and Task Execution API) on a free loopback port until the block
    ends. With ``executor_env`` added to its env, ``airflow dags test --use-executor`` runs each task in its
    own LocalExecutor process against it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(16, parallelism)),
        "AIRFLOW__API_AUTH__JWT_SECRET": "zohocrm-emulator-jwt-secret-0123456789",
        "AIRFLOW__API__SECRET_KEY": "zohocrm-emulator-secret-key-0123456789",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
    }
    home = Path(env["AIRFLOW_HOME"])
    log_path = home / "api-server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*airflow_command(env), "api-server", "--port", str(port), "--host", "127.0.0.1"],
            env={**env, **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it ends its workers too
        )
        try:
            _wait_healthy(f"{url}/api/v2/monitor/health", proc, log_path, timeout)
            yield ApiServer(url=url, executor_env=settings)
        finally:
            _stop(proc)


@contextmanager
def scheduler(env: Mapping[str, str], server: ApiServer) -> Iterator[None]:
    """Run ``airflow scheduler`` and ``airflow dag-processor`` (LocalExecutor, tasks talking to ``server``) until
    the block ends; their output goes to ``scheduler.log`` and ``dag-processor.log`` in the env's Airflow home.
    Triggered and asset-scheduled runs then run as in a deployment (``dags test`` runs one DAG run only)."""
    home = Path(env["AIRFLOW_HOME"])
    full = {**env, **server.executor_env}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("scheduler", "dag-processor"):
            with open(home / f"{name}.log", "w") as log:
                procs.append(
                    subprocess.Popen(
                        [*airflow_command(env), name],
                        env=full,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield
    finally:
        for proc in procs:
            _stop(proc)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own loopback server
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None:
            raise RuntimeError("api-server exited:\n" + log_path.read_text(errors="replace")[-3000:])
        if time.monotonic() > deadline:
            raise RuntimeError(f"api-server not healthy after {timeout:.0f} s")
        time.sleep(0.5)  # readiness polling


def _stop(proc: subprocess.Popen[Any] | airflow_forkserver.ForkedProcess) -> None:
    if proc.poll() is None:
        _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)  # SIGKILL cannot be refused: longer means nobody can see it end


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:  # it exited since it was polled, or it is not (yet) a group leader
        with suppress(ProcessLookupError):
            os.kill(pgid, signum)


@dataclass
class DagTestResult:
    """What ``airflow dags test`` did: the run's final state, its whole output and how long it took."""

    state: str | None
    output: str
    returncode: int | None
    #: seconds until the CLI printed ``DagRun Finished`` (or exited)
    seconds: float
    note: str = "exited"

    @property
    def stdout(self) -> str:  # lets callers treat it like a CompletedProcess
        return self.output

    stderr = ""


class DagTestRun:
    """A running ``airflow dags test`` (see :func:`start_dags_test`): its process and its output so far.

    Why a run is ended rather than awaited once it has finished: ``dags test --use-executor`` on Airflow 3.3.2
    sometimes never exits after the run. ``LocalExecutor.end()`` puts one shutdown message (``None``) on the task
    queue per worker it finds alive, checking the workers one after another, while the idle workers already take
    those messages and exit; a worker that took one and exited before ``end()`` checks it gets no message of its
    own counted, so one worker too many waits on the queue for ever and ``end()`` joins it for ever (the more
    loaded the machine, the likelier). The run's outcome is in the metadata DB and in the output by then
    (``DagRun Finished: … state=…``), so :meth:`wait` gives the process ``exit_grace`` seconds to exit (the
    executor first lets its last tasks' supervisors finish), then ends its process group.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes] | airflow_forkserver.ForkedProcess, log_path: Path
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        """Everything the run printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait(self, *, timeout: float = 600.0, exit_grace: float = 20.0) -> DagTestResult:
        """Until the run has finished (``DagRun Finished`` printed) and the process exited or had ``exit_grace``
        seconds to; or ``timeout`` seconds from the start. The process group is ended in every case."""
        note = "exited"
        finished_at: float | None = None
        recent = ""
        with open(self.log_path, errors="replace") as tail:
            try:
                while self.proc.poll() is None:
                    recent = recent[-300:] + tail.read()
                    now = time.monotonic()
                    if finished_at is None and "DagRun Finished" in recent:
                        finished_at = now
                    if finished_at is not None and now - finished_at > exit_grace:
                        note = f"did not exit {exit_grace:.0f} s after the run finished; ended"
                        break
                    if now - self.started > timeout:
                        note = f"timed out after {timeout:.0f} s; ended"
                        break
                    time.sleep(0.2)  # watching a subprocess's output, not synchronising code under test
            finally:
                self.stop()
        end = time.monotonic()
        output = self.output()
        states = _FINISHED_RE.findall(output)
        return DagTestResult(
            state=states[-1] if states else None,
            output=output,
            returncode=self.proc.returncode,
            seconds=(finished_at or end) - self.started,
            note=note,
        )

    def stop(self) -> None:
        """End the run's process group (its executor workers and their tasks too) if it still runs."""
        _stop(self.proc)


@contextmanager
def start_dags_test(
    dag_id: str,
    conf: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    use_executor: bool = False,
    log_path: Path | None = None,
) -> Iterator[DagTestRun]:
    """Start ``airflow dags test DAG_ID -c CONF [--use-executor]`` in its own process group, output to
    ``log_path`` (a temp file in the env's TMPDIR by default); the block gets the running
    :class:`DagTestRun` (to act on it while it runs, then :meth:`DagTestRun.wait`); the process group is ended
    when the block is left."""
    cmd = [*airflow_command(env), "dags", "test", dag_id, "-c", json.dumps(dict(conf))]
    if use_executor:
        cmd.append("--use-executor")
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"dags-test-{dag_id}-", suffix=".log", dir=env.get("TMPDIR"))
        os.close(fd)
        log_path = Path(name)
    proc: subprocess.Popen[bytes] | airflow_forkserver.ForkedProcess | None = None
    with open(log_path, "w") as sink:  # a forked run appends to it, a fresh process writes through it
        if not use_executor and airflow_command(env) == AIRFLOW_COMMAND and airflow_forkserver.enabled(env):
            try:
                proc = airflow_forkserver.server_for(env).start(cmd[len(AIRFLOW_COMMAND) :], env, log_path)
            except airflow_forkserver.ForkServerError as exc:
                print(f"airflow_cli: {exc}; starting a fresh process instead", file=sys.stderr)
        if proc is None:
            proc = subprocess.Popen(
                cmd, env=dict(env), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
    run = DagTestRun(proc, log_path)
    try:
        yield run
    finally:
        run.stop()


def dags_test(
    dag_id: str,
    conf: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    use_executor: bool = False,
    timeout: float = 600.0,
    exit_grace: float = 20.0,
    log_path: Path | None = None,
) -> DagTestResult:
    """``airflow dags test DAG_ID -c CONF [--use-executor]`` to its end (see :class:`DagTestRun` for why a
    finished run that does not exit is ended after ``exit_grace`` seconds). The run's state is read from the
    output."""
    with start_dags_test(dag_id, conf, env, use_executor=use_executor, log_path=log_path) as run:
        return run.wait(timeout=timeout, exit_grace=exit_grace)
