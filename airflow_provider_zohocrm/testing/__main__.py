"""``python -m airflow_provider_zohocrm.testing``: serve a seeded demo org until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from types import FrameType

from .backend import EmulatorBackend, EmulatorConfig
from .seed import seed_demo_org
from .server import ZohoCRMEmulator


def shell_lines(emulator: ZohoCRMEmulator, conn_id: str = "zohocrm_default") -> list[str]:
    """What the command prints, every line safe to paste into a POSIX shell: the connection as an ``export``
    (quoted with ``shlex.quote``) first, then comments naming the URL and each demo view's id and name."""
    name, value = emulator.connection_env(conn_id)
    lines = [
        f"export {name}={shlex.quote(value)}",
        f"# Zoho CRM emulator at {emulator.url} (Ctrl-C stops it)",
    ]
    backend = emulator.backend
    for module in ("Leads", "Contacts"):
        for view in backend.views_of(module):
            if not view.system_defined:
                lines.append(f"# view on {module}: {json.dumps(view.name)} (id {view.cvid})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Start the emulator, print the ``export`` line for the connection and the demo views, serve."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_zohocrm.testing",
        description="Zoho CRM emulator serving a seeded demo org",
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bounced", type=int, default=60, help="bounced Leads to seed")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency per CRM API request")
    parser.add_argument("--concurrency", type=int, default=None, help="concurrent CRM calls before 429")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--single-style", choices=("wrapped", "flat"), default="wrapped")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    config = EmulatorConfig(
        latency=args.latency_ms / 1000.0,
        concurrency_limit=args.concurrency,
        single_response_style=args.single_style,
    )
    backend = EmulatorBackend(config)
    seed_demo_org(backend, n_bounced=args.bounced, seed=args.seed)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with ZohoCRMEmulator(backend, port=args.port, host=args.host, verbose=args.verbose) as emulator:
        sys.stdout.write("".join(f"{line}\n" for line in shell_lines(emulator)))
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
