"""Test DAG: many mapped task instances (separate processes) using one Zoho connection.

``warm``: an upstream task uses the hook first. ``isolate_machines``: every mapped task gets its own file
cache, as if each ran on a machine of its own, so only the Airflow Variable store and its lease are shared.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import dag, task


@dag(
    dag_id="zoho_token_sharing",
    schedule=None,
    params={"warm": True, "isolate_machines": False, "n": 20, "report_path": ""},
)
def zoho_token_sharing() -> None:
    @task
    def warm(params: dict[str, Any] | None = None) -> list[int]:
        from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook

        assert params is not None
        if params["warm"]:
            ZohoCRMHook().get_org()
        return list(range(int(params["n"])))

    @task
    def use(i: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_provider_zohocrm.hooks.token_store import AirflowVariableTokenStore
        from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
        from airflow_provider_zohocrm.zoho.auth import FileTokenStore

        assert params is not None
        store = None
        if params["isolate_machines"]:
            store = AirflowVariableTokenStore(FileTokenStore(Path(tempfile.gettempdir()) / f"machine-{i}"))
        hook = ZohoCRMHook(token_store=store)
        hook.get_org()
        stats = hook.tokens.stats
        return {"i": i, "pid": os.getpid(), "refreshes": stats.refreshes, "shared_hits": stats.shared_hits}

    @task
    def summary(results: list[dict[str, Any]], params: dict[str, Any] | None = None) -> None:
        assert params is not None
        Path(params["report_path"]).write_text(json.dumps(list(results)))

    summary(use.expand(i=warm()))


zoho_token_sharing()
