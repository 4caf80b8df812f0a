"""The example DAG on a module of N records (default 1,000,000) in real Airflow: every task's XCom size and peak
memory (issue 18: bounded XCom at 1M records). Prints a Markdown table.

    PYTHONPATH=$PWD python -m benchmarks.dag_xcom_1m [--records 1000000] [--blocked 2000] [--verify sweep]
        [--max-report-mb 250]

A fresh Airflow home (SQLite), an api-server, and ``airflow dags test --use-executor``: each task runs in a
LocalExecutor process of its own. While the run goes, the benchmark polls ``/proc`` for the task processes (the
Task SDK titles them ``airflow worker -- <task instance id>``) and keeps each one's peak resident memory
(``VmHWM``); a task that ends between two polls (every 50 ms) is missed and shown as ``-``. The XCom sizes are
read from the metadata DB after the run (every key of a task, summed). The emulator runs in this process.

``--max-report-mb``: exit 1 when the report task's peak exceeds it, or was missed (issue 25: at most 250 MB at
1,000,000 records; the report is the one task whose memory grows with the whole module).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "zoho_unblock_bounced_emails"


def _poll(peaks: dict[str, int], stop: threading.Event) -> None:
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                if not cmd.startswith("airflow worker -- "):
                    continue
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            kb = int(line.split()[1])
                            ti = cmd.split(" -- ", 1)[1].split()[0].replace("-", "")
                            peaks[ti] = max(peaks.get(ti, 0), kb)
            except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError, IndexError):
                continue
        stop.wait(0.05)


def run(records: int, blocked: int, verify: str) -> dict[str, Any]:
    from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator, airflow_cli

    home = Path(tempfile.mkdtemp(prefix="dag-xcom-1m-"))
    env = airflow_cli.airflow_env(home, REPO / "dags", PYTHONPATH=str(REPO), **airflow_cli.PLAIN_AIRFLOW)
    airflow_cli.migrate(env)
    backend = EmulatorBackend(EmulatorConfig())
    backend.add_many_records("Leads", records, first_id=4_876_876_000_000_100_001, step=3)
    ids = sorted(backend.records("Leads"), key=int)
    for rid in random.Random(18).sample(ids, blocked):
        backend.set_email_state("Leads", rid, blocked="temporary")
    peaks: dict[str, int] = {}
    stop = threading.Event()
    with ZohoCRMEmulator(backend) as em, airflow_cli.api_server(env, parallelism=8) as server:
        conn = em.connection()
        conn["extra"].update({"backoff_base": 0.01, "backoff_max": 0.1, "timeout": 120})
        run_env = {**env, **server.executor_env, "AIRFLOW_CONN_ZOHOCRM_DEFAULT": json.dumps(conn)}
        poller = threading.Thread(target=_poll, args=(peaks, stop), daemon=True)
        poller.start()
        started = time.perf_counter()
        result = airflow_cli.dags_test(
            DAG_ID,
            {"sources": [{"module": "Leads", "all": True, "verify": verify}]},
            run_env,
            use_executor=True,
            timeout=3600,
        )
        wall = time.perf_counter() - started
        stop.set()
        poller.join()
        unblocked = sum(1 for rid in ids if backend.unblock_events("Leads", rid))
        stats = backend.stats
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (DAG_ID,)
        ).fetchone()[0]
        xcoms = db.execute(
            "select task_id, map_index, sum(length(value)), count(*) from xcom where dag_id=? and run_id=?"
            " group by task_id, map_index",
            (DAG_ID, run_id),
        ).fetchall()
        tis = db.execute(
            "select id, task_id, map_index, state, start_date, end_date from task_instance"
            " where dag_id=? and run_id=?",
            (DAG_ID, run_id),
        ).fetchall()
    return {
        "records": records,
        "state": result.state,
        "wall_s": round(wall, 1),
        "unblocked": unblocked,
        "blocked": blocked,
        "calls": sum(int(n) for n in stats["requests"].values()),
        "credits": stats["credits_used"],
        "xcom": {f"{t}[{i}]" if i >= 0 else t: (int(n or 0), int(k)) for t, i, n, k in xcoms},
        "tasks": [
            {
                "task": f"{t}[{i}]" if i >= 0 else t,
                "state": s,
                "peak_rss_mb": round(peaks[_hex(tid)] / 1024, 1) if _hex(tid) in peaks else None,
            }
            for tid, t, i, s, _start, _end in sorted(tis, key=lambda r: (r[1], r[2]))
        ],
        "home": str(home),
    }


def _hex(ti_id: Any) -> str:
    return str(ti_id).replace("-", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--blocked", type=int, default=2_000)
    parser.add_argument("--verify", default="sweep", choices=["sweep", "none"])
    parser.add_argument("--max-report-mb", type=float, default=None, help="fail above this report peak RSS")
    args = parser.parse_args(argv)
    r = run(args.records, args.blocked, args.verify)
    print(
        f"{r['records']:,} Leads, verify={args.verify}: run {r['state']} in {r['wall_s']} s (LocalExecutor);"
        f" {r['unblocked']:,} of {r['blocked']:,} blocked records unblocked; {r['calls']:,} calls,"
        f" {r['credits']:,} credits."
    )
    print()
    print("| task | state | XCom bytes (keys) | peak RSS MB |")
    print("|---|---|---:|---:|")
    for t in r["tasks"]:
        size, keys = r["xcom"].get(t["task"], (0, 0))
        rss = t["peak_rss_mb"] if t["peak_rss_mb"] is not None else "-"
        print(f"| {t['task']} | {t['state']} | {size:,} ({keys}) | {rss} |")
    if args.max_report_mb is not None:
        peak = next((t["peak_rss_mb"] for t in r["tasks"] if t["task"] == "report"), None)
        verdict = "PASS" if peak is not None and peak <= args.max_report_mb else "FAIL"
        print()
        print(
            f"report peak RSS: {peak if peak is not None else 'missed'} MB (at most {args.max_report_mb:g}): {verdict}"
        )
        return 0 if verdict == "PASS" else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
