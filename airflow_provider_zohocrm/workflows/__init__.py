"""The nightly unblock job as a public API: a config object, a TaskGroup and a DAG factory.

- :class:`UnblockJobConfig` — the per-run params' defaults, checked with the job's own rules;
- :class:`ZohoUnblockTaskGroup` — the whole job inside a DAG of your own;
- :func:`unblock_bounced_emails_dag` — the whole job as a DAG (the shipped example is one call of it).

The built DAG's task ids, dependencies, trigger rules, param names and schemas are a public contract
(tests/unit/test_dag_snapshot.py; docs/your-own-dag.md states the policy).
"""

from __future__ import annotations

from airflow_provider_zohocrm.workflows.config import UnblockJobConfig
from airflow_provider_zohocrm.workflows.group import (
    ZohoUnblockTaskGroup,
    unblock_bounced_emails_dag,
    unblocked_asset,
)

__all__ = ["UnblockJobConfig", "ZohoUnblockTaskGroup", "unblock_bounced_emails_dag", "unblocked_asset"]
