"""DAGs of the workflow tests (tests/airflow/test_workflow_dags.py): the factory with choices the example leaves
at their defaults, and the operator fed by an upstream task's XCom."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseNotifier, task

from airflow_provider_zohocrm import UnblockEmailOperator, UnblockJobConfig, unblock_bounced_emails_dag


class FileNotifier(BaseNotifier):
    """A report notifier of the tests' own: appends what it got to ``$WF_NOTIFY_DIR/<dag id>.txt``."""

    def notify(self, context: Any) -> None:
        folder = os.environ.get("WF_NOTIFY_DIR")
        if folder:
            state = "failed" if context.get("exception") else "success"
            with open(Path(folder) / f"{context['dag'].dag_id}.txt", "a") as out:
                out.write(f"--- {state}\n{context['zohocrm_report']}\n")


# one try per mapped task: a failing group stays failed (the others are unaffected)
wf_no_retry = unblock_bounced_emails_dag(
    "wf_no_retry", retries=0, approval="off", schedule=None, report_notifiers=[FileNotifier()]
)

# sources named by the config: a scheduled run may go live
wf_configured = unblock_bounced_emails_dag(
    "wf_configured",
    config=UnblockJobConfig(sources=[{"module": "Leads", "all": True}]),
    schedule=None,
    report_notifiers=[FileNotifier()],
    allow_reset_coverage=True,
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
