"""Every night: find the Zoho CRM records whose email soft-bounced and unblock them in bulk.

find_bounced_ids → make_batches → unblock_emails (mapped, one Zoho call per 500 ids) → report

Where the bounced records come from: Zoho's API has no bounce-status criterion, so an admin creates a custom
view in the CRM filtered on email bounce status and passes its id as ``cvid`` (or passes a COQL query over a
bounce field of the org's own). Nothing here touches the network when the file is parsed.

Concurrency: mapped unblock tasks are bounded by ``ZOHOCRM_MAX_PARALLEL`` (default 10, the Standard edition's
concurrency limit) within a run and, when ``ZOHOCRM_POOL`` names an Airflow pool, by that pool across every DAG
that calls Zoho. Without the pool the DAG still runs.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator

POOL = os.environ.get("ZOHOCRM_POOL") or None
MAX_PARALLEL = int(os.environ.get("ZOHOCRM_MAX_PARALLEL", "10"))
#: A retried unblock task is safe (done records answer already_unblocked). Its delay is Airflow's
#: ``[core] default_task_retry_delay`` (300 s) unless ZOHOCRM_RETRY_DELAY_SECONDS says otherwise.
retry_args: dict[str, Any] = (
    {"retry_delay": timedelta(seconds=int(os.environ["ZOHOCRM_RETRY_DELAY_SECONDS"]))}
    if os.environ.get("ZOHOCRM_RETRY_DELAY_SECONDS")
    else {}
)
pool_args: dict[str, Any] = {"pool": POOL} if POOL else {}


@dag(
    dag_id="zoho_unblock_bounced_emails",
    description="Unblock soft-bounced email addresses in Zoho CRM, in bulk, and report every record",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["zoho", "crm", "email"],
    params={
        "conn_id": Param("zohocrm_default", type="string", description="Zoho CRM connection id"),
        "module": Param("Leads", type="string", description="Module API name"),
        "cvid": Param(
            None, type=["null", "string"], description="Custom view listing the bounced records (see README)"
        ),
        "coql_query": Param(
            None,
            type=["null", "string"],
            description="Alternative source: COQL select of the bounced records, without limit/offset",
        ),
        "unblock_fields": Param(["Email"], type="array", description="Email and/or Secondary_Email"),
        "batch_size": Param(500, type="integer", minimum=1, maximum=500, description="Ids per Zoho call"),
        "dry_run": Param(False, type="boolean", description="Report what would be sent; send nothing"),
    },
    doc_md=__doc__,
)
def zoho_unblock_bounced_emails() -> None:
    @task
    def find_bounced_ids(params: dict[str, Any] | None = None) -> list[str]:
        """All pages of the custom view (or the COQL query), ids only, each once."""
        from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook

        assert params is not None
        hook = ZohoCRMHook(zohocrm_conn_id=params["conn_id"])
        if params.get("coql_query"):
            rows = hook.iter_coql(params["coql_query"])
        elif params.get("cvid"):
            rows = hook.iter_records(params["module"], cvid=str(params["cvid"]), fields=["id"])
        else:
            raise ValueError("Set the 'cvid' param (a custom view of bounced records) or 'coql_query'.")
        ids = [str(row["id"]) for row in rows]  # the hook yields each record once
        print(f"Found {len(ids):,} bounced {params['module']} record(s).")
        return ids

    @task
    def make_batches(ids: list[str], params: dict[str, Any] | None = None) -> list[list[str]]:
        """Whole batches of ≤ batch_size ids, spread over at most min(max_map_length, MAX_PARALLEL) tasks."""
        from airflow.providers.common.compat.sdk import conf

        from airflow_provider_zohocrm.zoho.unblock import split_batches

        assert params is not None
        # At most MAX_PARALLEL groups: that many task instances keep Zoho's concurrency busy, and more would
        # only add Airflow's per-task process start-up (the benchmark: 200 tasks 106.8 s, 10 tasks 61.5 s).
        max_map_length = conf.getint("core", "max_map_length", fallback=1024)
        groups = split_batches(ids, int(params["batch_size"]), min(max_map_length, MAX_PARALLEL))
        print(f"{len(ids):,} ids → {len(groups)} mapped task(s).")
        return groups

    @task(trigger_rule="none_failed")  # also when nothing was found (the mapped task is then skipped)
    def report(results: list[dict[str, Any]], found: list[str]) -> dict[str, Any]:
        """One table for the run; the records a person must handle; totals checked against the ids found."""
        from airflow_provider_zohocrm.zoho.unblock import NEEDS_PERSON_OUTCOMES, format_table, merge_reports

        merged = merge_reports(results)
        reported = [rid for ids in merged["ids"].values() for rid in ids] + merged["pending"]
        lines = [
            f"Zoho CRM Unblock Email report: {len(found):,} bounced record(s) found,"
            f" {merged['total']:,} reported, {merged['calls']:,} unblock call(s).",
            format_table(merged["counts"], total=merged["total"]),
        ]
        if merged["pending"]:
            lines.append(f"dry run: {len(merged['pending']):,} record(s) would be sent; nothing was changed.")
        for outcome in sorted(NEEDS_PERSON_OUTCOMES):
            ids = merged["ids"].get(outcome, [])
            if ids:
                lines.append(
                    f"Need a person ({outcome}, {len(ids):,}): {', '.join(ids[:50])}"
                    + (" …" if len(ids) > 50 else "")
                )
        for rid, message in list(merged["messages"].items())[:20]:
            lines.append(f"  {rid}: {message}")
        print("\n".join(lines))
        if sorted(reported) != sorted(found):
            lost = set(found) - set(reported)
            extra = set(reported) - set(found)
            raise RuntimeError(
                f"Outcome accounting mismatch: {len(lost)} id(s) without outcome, {len(extra)} extra"
            )
        return {
            "found": len(found),
            "total": merged["total"],
            "counts": merged["counts"],
            "calls": merged["calls"],
            "needs_person": {o: merged["ids"].get(o, []) for o in sorted(NEEDS_PERSON_OUTCOMES)},
        }

    found = find_bounced_ids()
    batches = make_batches(found)
    unblock = UnblockEmailOperator.partial(
        task_id="unblock_emails",
        zohocrm_conn_id="{{ params.conn_id }}",
        module="{{ params.module }}",
        unblock_fields="{{ params.unblock_fields }}",
        batch_size="{{ params.batch_size }}",
        dry_run="{{ params.dry_run }}",
        max_active_tis_per_dagrun=MAX_PARALLEL,
        retries=2,
        **pool_args,
        **retry_args,
    ).expand(record_ids=batches)
    report(unblock.output, found)


zoho_unblock_bounced_emails()
