"""DAGs of the workflow tests (tests/airflow/test_workflow_dags.py): the factory with choices the example leaves
at their defaults, and the operator fed by an upstream task's XCom."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_zohocrm import UnblockEmailOperator, UnblockJobConfig, unblock_bounced_emails_dag

# one try per mapped task: a failing group stays failed (the others are unaffected)
wf_no_retry = unblock_bounced_emails_dag("wf_no_retry", retries=0, approval="off", schedule=None)

# sources named by the config: a scheduled run may go live
wf_configured = unblock_bounced_emails_dag(
    "wf_configured", config=UnblockJobConfig(sources=[{"module": "Leads", "all": True}]), schedule=None
)

with DAG("wf_operator_xcom_addresses", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def read_addresses(params: Any = None) -> dict[str, Any]:
        """An upstream task that found the records' addresses (here: given in the run's conf)."""
        return dict((params or {}).get("addresses") or {})

    @task
    def record_ids(params: Any = None) -> list[str]:
        return list((params or {}).get("record_ids") or [])

    UnblockEmailOperator(
        task_id="unblock",
        record_ids=record_ids(),
        addresses=read_addresses(),
        verify="emails",
        params={"addresses": {}, "record_ids": []},
    )
