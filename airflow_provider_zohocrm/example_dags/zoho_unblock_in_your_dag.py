"""The unblock job as a TaskGroup inside a DAG of your own, with a task of yours after it that reads its report
(here it prints what a campaign re-send would need: how many records were unblocked, per module)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from airflow_provider_zohocrm import UnblockJobConfig, ZohoUnblockTaskGroup


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["zoho"])
def zoho_unblock_in_your_dag() -> None:
    unblock = ZohoUnblockTaskGroup(
        "unblock",
        conn_id="zohocrm_default",
        config=UnblockJobConfig(sources=[{"module": "Leads", "all": True}]),
        approval="off",
    )

    @task
    def after_the_unblock(report: dict[str, Any]) -> dict[str, int]:
        unblocked = {m: c.get("unblocked", 0) for m, c in report["counts"].items()}
        print(f"Unblocked per module: {unblocked}")
        return unblocked

    after_the_unblock(unblock.report_output)


zoho_unblock_in_your_dag()
