"""Every night: unblock the Zoho CRM records whose email soft-bounced, in bulk, and report every record.

The whole job is the provider's (upgrading it updates this DAG); this file only chooses. Per-run params
(sources, verify, dry_run, …) are set when triggering; the defaults below are this deployment's.
``sources`` left empty: a scheduled run fails in check_params, before any call, until you give it some,
e.g. ``config=UnblockJobConfig(sources=[{"module": "Leads", "all": True}])``. Other arguments
(``report_notifiers``, ``approval``, ``pool``, ``dns_options``, every DAG keyword): docs/your-own-dag.md.
"""

from __future__ import annotations

from airflow_provider_zohocrm import UnblockJobConfig, unblock_bounced_emails_dag

dag = unblock_bounced_emails_dag(
    "zoho_unblock_bounced_emails",
    conn_id="zohocrm_default",
    config=UnblockJobConfig(),
    allow_reset_coverage=True,  # a run may restart rolling coverage; drop it to keep that the author's alone
)
