"""Two Zoho CRM orgs, one DAG each, from one file: each DAG's connection is fixed when it is built (a run cannot
pick the org), and each keeps its own rolling coverage, asset (``zohocrm://<conn id>/unblocked``) and report."""

from __future__ import annotations

from airflow_provider_zohocrm import UnblockJobConfig, unblock_bounced_emails_dag

ORGS = {
    "zoho_unblock_org_eu": ("zohocrm_eu", [{"module": "Leads", "all": True}]),
    "zoho_unblock_org_us": ("zohocrm_us", [{"module": "Contacts", "all": True}]),
}

for dag_id, (conn_id, sources) in ORGS.items():
    globals()[dag_id] = unblock_bounced_emails_dag(
        dag_id,
        conn_id=conn_id,
        config=UnblockJobConfig(sources=sources, min_hours_since_bounce=24),
        dag_display_name=f"Unblock bounced emails ({conn_id})",
        tags=["zoho", "crm", "email", conn_id],
    )
