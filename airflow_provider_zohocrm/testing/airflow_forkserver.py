"""A fork server for ``airflow dags test``: Airflow imported and its in-process Task Execution API built once,
then one forked child per run.

Why: on 2 cores an ``airflow dags test`` spent about 7.5 s of CPU before and around its DAG's own work: importing
Airflow and its CLI (about 1.9 s), building the FastAPI app of the in-process Task Execution API (1.6 s) and Cadwyn
generating that app's versioned routers on its first request (3.7 s). The suite runs about a hundred of them, so
that was a third of CI's CPU. A fork server pays it once per Airflow configuration and pytest process.

What a child runs is Airflow's own CLI entry point (``airflow.__main__.main``) with the run's argv, environment,
working directory and output file, in its own session (process group), exiting through the interpreter's exit
handlers like the ``airflow`` script. It starts from a copy of the server's memory in which nothing has run but
imports and the API app's construction, so no run sees another's state. What differs from a fresh process is only
what was computed before the fork, and the server is keyed so that none of it can differ:

- Airflow reads its configuration (``airflow.cfg``, ``AIRFLOW__*``) while importing: a server serves only the
  environment it was started with, except the variables read when used (:data:`RUNTIME_ENV_PREFIXES`:
  ``AIRFLOW_CONN_*``, ``AIRFLOW_VAR_*``, our ``ZOHOCRM_*``, ``TMPDIR``), and only while ``airflow.cfg`` is
  unchanged.
- SQLAlchemy connections are not shared with the child: Airflow disposes its engine after a fork
  (``settings.configure_orm`` registers that), and the server opens none.
- ``random`` is reseeded in every child (CPython does that after a fork); the server has no threads when it forks
  (the API's event-loop thread is started by the child, on its first request).

The server's protocol: JSON lines on its stdin (``{"id", "argv", "env", "cwd", "log"}``) and stdout (``{"id",
"pid"}`` once the child has its own session, ``{"id", "status"}`` when it exited). It exits when its stdin closes
(the pytest process ended). :class:`ForkedProcess` gives the client the part of :class:`subprocess.Popen` that
:mod:`.airflow_cli` uses (``pid``, ``poll``, ``wait``, ``returncode``).

Standard library only, like the rest of ``testing``: the server's side, which imports Airflow, is
:mod:`.airflow_forkserver_main`, run in its own process and imported by no other module.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Variables that Airflow and Python read when they are used, not when Airflow is imported: a run may set them to
#: anything and still be served by a server started with other values. (``TMPDIR``: Python caches it on first
#: use, so the child forgets the server's; every test has its own.)
RUNTIME_ENV_PREFIXES = ("AIRFLOW_CONN_", "AIRFLOW_VAR_", "ZOHOCRM_", "PYTEST_CURRENT_TEST", "TMPDIR")
#: Set to ``0`` in the environment of the tests (or of a run) to start every ``airflow dags test`` as a fresh process.
FORKSERVER_ENV = "ZOHOCRM_AIRFLOW_FORKSERVER"

_SERVER_COMMAND = (
    "import sys\n"
    "if sys.path and sys.path[0] == '':\n"
    "    del sys.path[0]\n"
    "from airflow_provider_zohocrm.testing.airflow_forkserver_main import serve\n"
    "serve()\n"
)


def enabled(env: Mapping[str, str]) -> bool:
    """Whether runs with this environment go through a fork server (``ZOHOCRM_AIRFLOW_FORKSERVER`` is not ``0``,
    neither in the run's environment nor in this process's)."""
    return env.get(FORKSERVER_ENV, os.environ.get(FORKSERVER_ENV, "1")) != "0"


def server_key(env: Mapping[str, str]) -> tuple[Any, ...]:
    """What a server's state depends on: the environment but for :data:`RUNTIME_ENV_PREFIXES`, and the
    ``airflow.cfg`` of its Airflow home (size and modification time; Airflow writes one on first import)."""
    static = tuple(sorted((k, v) for k, v in env.items() if not k.startswith(RUNTIME_ENV_PREFIXES)))
    cfg = Path(env.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "airflow.cfg"
    try:
        stat = cfg.stat()
        cfg_state: tuple[int, int] | None = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        cfg_state = None
    return static, cfg_state


# -- the client (the pytest process) -----------------------------------------------------------------------------


class ForkServerError(RuntimeError):
    """The fork server could not start or answer; the caller starts a fresh process instead."""


#: ``returncode`` of a child that ended after its server died (so nobody saw its exit status).
LOST_STATUS = 255


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ForkedProcess:
    """A child of the fork server, as much of :class:`subprocess.Popen` as :mod:`.airflow_cli` uses. Its
    ``pid`` leads its own process group (``os.killpg(pid, …)`` ends it and its children); ``returncode`` follows
    ``Popen``: the exit code, or minus the signal that ended it."""

    def __init__(self, server: ForkServer, request_id: int, pid: int) -> None:
        self._server = server
        self._id = request_id
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._server._pump(0.0)
            self.returncode = self._server._statuses.pop(self._id, None)
            if self.returncode is None and not self._server.alive() and not _exists(self.pid):
                self.returncode = LOST_STATUS  # the server died before it could say how the child ended
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("airflow (fork server child)", timeout or 0.0)
            if self._server.alive():
                self._server._pump(1.0 if left is None else min(left, 1.0))
            else:  # nobody will say when it ends: look again shortly
                time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode


class ForkServer:
    """One server process for one :func:`server_key`; see the module's docstring."""

    def __init__(self, env: Mapping[str, str], *, start_timeout: float = 180.0) -> None:
        self._lock = threading.RLock()
        self._next_id = 0
        self._buffer = b""
        self._statuses: dict[int, int] = {}
        self._pids: dict[int, int] = {}
        self._running: set[int] = set()  # request ids whose child has not exited
        home = Path(env.get("AIRFLOW_HOME", "."))
        self.log_path = home / f"forkserver-{os.getpid()}-{id(self)}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SERVER_COMMAND],
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        self._out = self.proc.stdout.fileno()
        ready = self._read_message(start_timeout)
        if ready is None or ready.get("ready") is not True:
            self.close()
            raise ForkServerError(f"the fork server did not start; its log: {self.log_path}")

    def _read_message(self, timeout: float) -> dict[str, Any] | None:
        """The next line from the server, waiting up to ``timeout`` seconds (None: none came, or it exited)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([self._out], [], [], left)[0]:
                return None
            chunk = os.read(self._out, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def _pump(self, timeout: float) -> None:
        """Read what the server has said (waiting up to ``timeout`` seconds for the first line)."""
        with self._lock:
            message = self._read_message(timeout)
            while message is not None:
                self._take(message)
                message = self._read_message(0.0)

    def _take(self, message: dict[str, Any]) -> None:
        if "status" in message:
            self._statuses[message["id"]] = message["status"]
            self._running.discard(message["id"])
        elif "pid" in message:
            self._pids[message["id"]] = message["pid"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def busy(self) -> bool:
        """Whether a child of this server still runs (as far as the server has said)."""
        with self._lock:
            if self.alive():
                self._pump(0.0)
            return bool(self._running)

    def start(self, argv: list[str], env: Mapping[str, str], log_path: Path) -> ForkedProcess:
        """Fork a child that runs Airflow's CLI with ``argv`` (without the program name), ``env`` and this
        process's working directory, its output (stdout and stderr) appended to ``log_path``."""
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            request = {
                "id": request_id,
                "argv": list(argv),
                "env": dict(env),
                "cwd": os.getcwd(),
                "log": str(log_path),
            }
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps(request).encode() + b"\n")
                self.proc.stdin.flush()
            except OSError as exc:
                raise ForkServerError(f"the fork server is gone: {exc}") from exc
            deadline = time.monotonic() + 60.0
            while request_id not in self._pids:
                message = self._read_message(max(0.0, deadline - time.monotonic()))
                if message is None:
                    raise ForkServerError(f"the fork server did not fork; its log: {self.log_path}")
                if message.get("error") and message.get("id") == request_id:
                    raise ForkServerError(f"the fork server could not fork: {message['error']}")
                self._take(message)
            self._running.add(request_id)
            return ForkedProcess(self, request_id, self._pids.pop(request_id))

    def close(self) -> None:
        """End the server: its stdin closed (it exits), killed if it has not exited 10 s later. Running children
        keep running: they are in sessions of their own, and whoever started them ends them."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


#: Servers kept per process (each holds an imported Airflow, about 300 MB); the least recently used idle one is
#: ended when another configuration needs one.
MAX_SERVERS = 3
_servers: OrderedDict[tuple[Any, ...], ForkServer] = OrderedDict()
_servers_lock = threading.Lock()


def server_for(env: Mapping[str, str]) -> ForkServer:
    """This process's server for ``env``'s :func:`server_key`, started on first use (about the time of one
    ``airflow dags test``); a server that has exited is replaced. Raises :class:`ForkServerError` if it cannot
    start."""
    key = server_key(env)
    with _servers_lock:
        server = _servers.get(key)
        if server is None or not server.alive():
            if server is not None:
                server.close()
            idle = [k for k, s in _servers.items() if not s.busy()]  # least recently used first
            for old in idle[: max(0, len(_servers) - MAX_SERVERS + 1)]:
                _servers.pop(old).close()
            base = {k: v for k, v in env.items() if not k.startswith(RUNTIME_ENV_PREFIXES)}
            server = _servers[key] = ForkServer(base)
        _servers.move_to_end(key)
        return server


@atexit.register
def close_all() -> None:
    """End every fork server this process started."""
    with _servers_lock:
        for server in _servers.values():
            server.close()
        _servers.clear()
