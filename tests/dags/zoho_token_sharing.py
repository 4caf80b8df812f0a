"""Test DAG: many mapped task instances (separate processes, on Celery separate "machines") using one connection.

``warm``: an upstream task uses the hook first. ``isolate_machines``: every mapped task gets its own file cache,
as if each ran on a machine of its own, so only the Airflow Variable store and its lease are shared.
``barrier_url``: each mapped task builds its hook (connection read, nothing asked of Zoho), then waits there
until all have arrived, so they ask for a token at the same instant. ``lease_seconds``: the store's shortest
lease. ``run_seconds``: keep calling Zoho for this long, or until the task has used ``until_tokens`` tokens
(a long run crossing the refresh margin).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from airflow.sdk import dag, task


@dag(
    dag_id="zoho_token_sharing",
    schedule=None,
    params={
        "conn_id": "zohocrm_default",
        "warm": True,
        "isolate_machines": False,
        "n": 20,
        "report_path": "",
        "barrier_url": "",
        "lease_seconds": 0.0,
        "run_seconds": 0.0,
        "until_tokens": 0,
    },
    max_active_tasks=64,
)
def zoho_token_sharing() -> None:
    @task
    def warm(params: dict[str, Any] | None = None) -> list[int]:
        from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook

        assert params is not None
        if params["warm"]:
            ZohoCRMHook(params["conn_id"]).get_org()
        return list(range(int(params["n"])))

    @task(max_active_tis_per_dagrun=64)
    def use(i: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_provider_zohocrm.hooks.token_store import AirflowVariableTokenStore
        from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
        from airflow_provider_zohocrm.zoho.auth import FileTokenStore

        assert params is not None
        files = (
            FileTokenStore(Path(tempfile.gettempdir()) / f"machine-{i}")
            if params["isolate_machines"]
            else None
        )
        store = AirflowVariableTokenStore(files)
        if float(params["lease_seconds"] or 0):
            store.lease_seconds = float(params["lease_seconds"])
        hook = ZohoCRMHook(params["conn_id"], token_store=store)
        tokens = hook.tokens  # reads the connection: everything but the token is ready
        probe = time.perf_counter()
        store.load("no-such-key")  # one Task API round trip: the unit the token latency is made of
        variable_rtt = time.perf_counter() - probe
        if params["barrier_url"]:
            with urllib.request.urlopen(f"{params['barrier_url']}?i={i}", timeout=300) as answer:
                assert answer.status == 200
        before = dict(store.lease_stats)
        store.trace = []
        on_secret = tokens.on_secret

        def timed_mask(value: str) -> None:
            at = time.time()
            if on_secret:
                on_secret(value)
            if store.trace is not None:  # traced during the first get_token only
                store.trace.append(("mask", at, time.time() - at))

        tokens.on_secret = timed_mask
        wall_started = time.time()
        started = time.perf_counter()
        first = tokens.get_token()
        latency = time.perf_counter() - started
        trace = [(name, round(at - wall_started, 4), round(took, 4)) for name, at, took in store.trace]
        store.trace = None
        calls = store.lease_stats["variable_calls"] - before["variable_calls"]
        call_seconds = store.lease_stats["variable_seconds"] - before["variable_seconds"]
        hook.get_org()
        seen = {first.value}
        deadline = time.monotonic() + float(params["run_seconds"] or 0)
        until_tokens = int(params["until_tokens"] or 0)
        while time.monotonic() < deadline and not (until_tokens and len(seen) >= until_tokens):
            hook.get_org()
            seen.add(tokens.get_token().value)
            time.sleep(0.25)  # a task doing work between calls; not synchronisation
        stats = tokens.stats
        return {
            "i": i,
            "pid": os.getpid(),
            "machine": os.environ.get("TMPDIR", ""),
            "token_latency": latency,
            "started_at": wall_started,
            "trace": trace,
            "variable_rtt": variable_rtt,
            "token_variable_calls": calls,
            "token_variable_seconds": call_seconds,
            "refreshes": stats.refreshes,
            "early_refreshes": stats.early_refreshes,
            "kept_tokens": stats.kept_tokens,
            "shared_hits": stats.shared_hits,
            "tokens_seen": len(seen),
            "lease": dict(store.lease_stats),
        }

    @task
    def summary(results: list[dict[str, Any]], params: dict[str, Any] | None = None) -> None:
        assert params is not None
        if params["report_path"]:
            Path(params["report_path"]).write_text(json.dumps(list(results)))

    summary(use.expand(i=warm()))


zoho_token_sharing()
