"""The fork server's own process (see :mod:`.airflow_forkserver`, which starts it): Airflow imported, its
in-process Task Execution API built, then one forked child per request that runs Airflow's CLI.

The one module of ``testing`` that imports Airflow: it runs only as the server process (``python -c "…serve()"``),
and no module imports it (tests/unit/test_import_graph.py checks both).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import sys
from pathlib import Path
from typing import Any


def _warm_up() -> Any:
    """Import what ``airflow dags test`` imports and build the in-process Task Execution API (the app and its
    versioned routers), as the first run would; return Airflow's CLI entry point."""
    import airflow.cli.commands.dag_command
    import airflow.sdk.execution_time.task_runner  # noqa: F401
    from airflow.__main__ import main
    from airflow.sdk.execution_time import supervisor

    factory = getattr(supervisor, "in_process_api_server", None)  # cached by Airflow: the runs reuse this one
    if factory is not None:
        app = factory().app
        initialize = getattr(app, "_cadwyn_initialize", None)
        if initialize is not None and not getattr(app, "_cadwyn_initialized", True):
            initialize()  # what Cadwyn does on the app's first request
    return main


def _run_child(main: Any, request: dict[str, Any], preamble: bytes) -> int:
    """In the forked child (already in its own session): become the run (output, environment, directory, argv),
    write what a fresh process would have printed while importing (``preamble``), run Airflow's CLI, run the exit
    handlers; the exit code."""
    import signal
    import tempfile
    import traceback

    signal.set_wakeup_fd(-1)
    # the handlers a fresh interpreter starts with (SIGPIPE stays ignored, as Python sets it at start-up)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDONLY)  # stdin (fd 0, closed after the fork): nothing to read
    if null != 0:
        os.dup2(null, 0)
        os.close(null)
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)  # fds 0-2 are taken, so it is none of them
    os.write(1, preamble)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # computed again from this run's TMPDIR on first use
    sys.argv = [str(Path(sys.executable).parent / "airflow"), *request["argv"]]
    code: int
    try:
        result = main()
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream at exit, which the interpreter ignores too
                stream.flush()
    return code


def serve() -> None:
    """The server's main loop (run by :class:`ForkServer` in its own process)."""
    import gc
    import signal
    import tempfile

    gc.set_threshold(10_000, 10, 10)  # as airflow_cli's launcher: see there
    atexit.register(gc.disable)  # run last (registered first): no collections while the interpreter exits
    atexit.register(gc.freeze)
    control_out = os.dup(1)  # the protocol's channel; the children's fd 1 is their log
    server_log = os.dup(2)
    # What Airflow prints while it is imported (warnings, which Python then shows once per process) is what a fresh
    # process prints first: kept, and written at the start of every child's output.
    with tempfile.TemporaryFile() as printed:
        os.dup2(printed.fileno(), 1)
        os.dup2(printed.fileno(), 2)
        main = _warm_up()
        sys.stdout.flush()
        sys.stderr.flush()
        printed.seek(0)
        preamble = printed.read()
    os.dup2(server_log, 1)  # from here on, what the server prints goes to its log, not into the protocol
    os.dup2(server_log, 2)
    os.close(server_log)
    os.write(2, preamble)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: dict[int, int] = {}  # pid -> request id

    def say(message: dict[str, Any]) -> None:
        os.write(control_out, json.dumps(message).encode() + b"\n")

    gc.collect()
    gc.freeze()  # the children share these pages instead of copying them at their first collection
    say({"ready": True})
    buffer = b""
    stdin_fd = sys.stdin.fileno()  # the protocol's requests
    while True:
        try:
            readable = select.select([stdin_fd, wake_r], [], [])[0]
        except InterruptedError:
            readable = [wake_r]
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in children:
                say({"id": children.pop(pid), "status": os.waitstatus_to_exitcode(status)})
        if stdin_fd not in readable:
            continue
        chunk = os.read(stdin_fd, 65536)
        if not chunk:
            break  # the client is gone
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            ready_r, ready_w = os.pipe()
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(ready_r)
                os.close(ready_w)
                say({"id": request["id"], "error": str(exc)})
                continue
            if pid == 0:  # the child
                code = 1
                try:
                    for fd in (ready_r, wake_r, wake_w, control_out, stdin_fd):
                        os.close(fd)
                    os.setsid()
                    os.close(ready_w)  # the server now knows the child leads its own process group
                    code = _run_child(main, request, preamble)
                finally:
                    os._exit(code)
            os.close(ready_w)
            os.read(ready_r, 1)  # returns at EOF: the child has called setsid (or died)
            os.close(ready_r)
            children[pid] = request["id"]
            say({"id": request["id"], "pid": pid})
    os._exit(0)
