"""Every night: find the Zoho CRM records whose email soft-bounced, in every module, and unblock them in bulk.

check_params → find_candidates → make_groups → unblock_emails (mapped, all modules together) → report

With ``require_approval`` (Airflow 3.1+): make_groups → groups_to_plan → plan_emails (the same groups, mapped, ``dry_run``)
→ summarize_plan → approve_plan (a person approves or rejects the plan in the UI) → unblock_emails → report. A
rejection skips unblock_emails, and the report prints the plan. Without the param the three planning tasks are
skipped (groups_to_plan, a small task, gives them nothing to plan), and the run writes what it always wrote.

Sources (one module each; the ``sources`` param lists them, or the single-module params give one):
- ``{"module": "Leads", "all": true}`` — every record with an email (optionally ``date_field`` + ``since`` or
  ``days``), verified by reading each record's Emails related list (``verify: "emails"``, the default here). It
  works for any org: Zoho's API has no bounce-status criterion, and this is the one place it shows bounces.
- ``{"module": "Leads", "view": "Bounced leads"}`` (a name or an id), or ``"cvid"``, or ``{"coql_query": "select id
  from Contacts where …"}`` (the module is the query's ``from``): the source is trusted to list blocked records
  (``verify: "none"``), for orgs that keep a bounce field of their own. ``verify: "sweep"`` sends every candidate
  to the bulk unblock and lets Zoho's answers classify them.

Every param is checked in the first task with no network call; view names are resolved before any unblock call.
Nothing touches the network when the file is parsed.

Concurrency: the unblock tasks of every module are one mapped task, bounded by ``ZOHOCRM_MAX_PARALLEL`` (default
10, the Standard edition's concurrency limit) within a run and, when ``ZOHOCRM_POOL`` names an Airflow pool, by
that pool across every DAG that calls Zoho. Without the pool the DAG still runs.

Shipped in the provider's wheel as ``airflow_provider_zohocrm/example_dags/zoho_unblock_bounced_emails.py``: copy
it into your DAGs folder (see the README).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator
from airflow_provider_zohocrm.zoho.id_packing import unpack_ids
from airflow_provider_zohocrm.zoho.params import VERIFY_MODES

DAG_ID = "zoho_unblock_bounced_emails"
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

UNBLOCK_FIELDS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "enum": ["Email", "Secondary_Email"]},
    "minItems": 1,
    "uniqueItems": True,
}
VERIFY_ENUM = list(VERIFY_MODES)
#: One source of the ``sources`` param (checked again, with better messages, by the first task).
SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "module": {"type": "string"},
        "view": {"type": ["string", "integer"]},
        "cvid": {"type": ["string", "integer"]},
        "coql_query": {"type": "string"},
        "all": {"type": "boolean"},
        "date_field": {"type": "string"},
        "since": {"type": "string"},
        "days": {"type": "number", "exclusiveMinimum": 0},
        "unblock_fields": UNBLOCK_FIELDS_SCHEMA,
        "verify": {"type": "string", "enum": VERIFY_ENUM},
        "min_hours_since_bounce": {"type": "number", "minimum": 0},
        "max_email_checks": {"type": ["integer", "null"], "minimum": 1},
        "check_domain": {"type": "boolean"},
    },
}


def _approval_operator() -> type[Any] | None:
    """Airflow's ApprovalOperator (human-in-the-loop, Airflow 3.1+), or None where it does not exist: on 3.0
    the module raises on import, and the DAG must still parse there (``require_approval`` is then refused)."""
    try:
        from airflow.providers.standard.operators.hitl import ApprovalOperator
    except Exception:  # 3.0: AirflowOptionalProviderFeatureException; an old standard provider: ImportError
        return None
    return ApprovalOperator


def _max_groups() -> int:
    """Mapped task instances per run: MAX_PARALLEL keeps Zoho's concurrency busy, and more would only add
    Airflow's per-task process start-up (the benchmark: 200 tasks 106.8 s, 10 tasks 61.5 s)."""
    from airflow.providers.common.compat.sdk import conf

    return min(int(conf.getint("core", "max_map_length", fallback=1024)), MAX_PARALLEL)


@dag(
    dag_id=DAG_ID,
    description="Unblock soft-bounced email addresses in Zoho CRM, in bulk, in every module, and report every record",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["zoho", "crm", "email"],
    params={
        "conn_id": Param("zohocrm_default", type="string", minLength=1, description="Zoho CRM connection id"),
        "sources": Param(
            [],
            type="array",
            items=SOURCE_SCHEMA,
            description='Sources, one module each, e.g. [{"module": "Leads", "all": true}, {"module": "Contacts",'
            ' "view": "Bounced contacts"}]. Leave empty to use the single-module params below.',
        ),
        "module": Param(
            None,
            type=["null", "string"],
            description="Single-module shorthand: module API name (default Leads; a COQL query names its own)",
        ),
        "view": Param(None, type=["null", "string", "integer"], description="Custom view by name (or id)"),
        "cvid": Param(None, type=["null", "string", "integer"], description="Custom view by id"),
        "coql_query": Param(
            None,
            type=["null", "string"],
            description="COQL select of the candidates, without limit/offset; its 'from' is the module",
        ),
        "verify": Param(
            None,
            type=["null", "string"],
            enum=[None, *VERIFY_ENUM],
            description="none (trust the source), emails (read each Emails list), sweep (let Zoho's answers"
            " classify); default none for view/cvid/coql_query, emails for an 'all' source",
        ),
        "min_hours_since_bounce": Param(
            0, type="number", minimum=0, description="verify=emails: defer bounces younger than this"
        ),
        "max_email_checks": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="verify=emails: Emails-list reads per source",
        ),
        "unblock_fields": Param(
            ["Email"], **UNBLOCK_FIELDS_SCHEMA, description="Email and/or Secondary_Email"
        ),
        "check_domain": Param(
            False,
            type="boolean",
            description="verify=emails: look up the domain of a domain/host-failure soft bounce in DNS first;"
            " a domain with no mail host is deferred (one DNS query per distinct domain)",
        ),
        "dns_options": Param(
            None,
            type=["null", "object"],
            description='check_domain\'s resolver, e.g. {"nameservers": ["10.0.0.2"], "port": 53, "timeout": 5};'
            " default: the system's",
        ),
        "needs_person_tag": Param(
            None,
            type=["null", "string"],
            description="Tag the records a person must handle (permanently_blocked, limit_reached) in Zoho",
        ),
        "batch_size": Param(500, type="integer", minimum=1, maximum=500, description="Ids per Zoho call"),
        "dry_run": Param(False, type="boolean", description="Report what would be sent; send nothing"),
        "reset_coverage": Param(
            False,
            type="boolean",
            description="Start the rolling coverage of every source with max_email_checks over (a new cycle"
            " from the lowest id, nothing deferred); see docs/large-orgs.md",
        ),
        "require_approval": Param(
            False,
            type="boolean",
            description="Plan first (a dry run), show the plan in the approve_plan task, and unblock only after"
            " a person approves it in the UI; a rejection ends the run with the plan as its report (Airflow 3.1+)",
        ),
    },
    # the mapped tasks read their own ids from make_groups' XCom (packed small: zoho/id_packing.py)
    user_defined_filters={"zoho_ids": unpack_ids},
    doc_md=__doc__,
)
def zoho_unblock_bounced_emails() -> None:
    # multiple_outputs=False: a dict return would be split into one XCom per key, and Airflow 3.0 refuses a None one
    @task(multiple_outputs=False)
    def check_params(
        params: dict[str, Any] | None = None, dag: Any = None, dag_run: Any = None
    ) -> dict[str, Any]:
        """Every param checked, no network call: a bad value fails here, before any Zoho call. A conf key the
        DAG does not declare (``dryrun`` for ``dry_run``) is refused, never ignored."""
        from airflow.providers.common.compat.sdk import AirflowFailException

        from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
        from airflow_provider_zohocrm.zoho.params import refuse_unknown_keys
        from airflow_provider_zohocrm.zoho.sources import sources_from_params

        assert params is not None
        try:
            conf = getattr(dag_run, "conf", None) or {}
            refuse_unknown_keys({*params, *conf}, dag.params.keys(), "The run's conf")
            settings = sources_from_params(params, max_sources=_max_groups_hard_limit())
        except ZohoValidationError as exc:
            raise AirflowFailException(str(exc)) from None
        require_approval = params.get("require_approval", False)
        if not isinstance(require_approval, bool):
            raise AirflowFailException(f"require_approval must be true or false, not {require_approval!r}.")
        if require_approval and _approval_operator() is None:
            from airflow import __version__ as airflow_version

            raise AirflowFailException(
                f"require_approval needs Airflow 3.1 or later (its human-in-the-loop operators); this is Airflow"
                f" {airflow_version}. Run without require_approval (a dry_run first shows the plan), or upgrade."
            )
        if require_approval and settings.dry_run:
            raise AirflowFailException(
                "require_approval and dry_run together: a dry run writes nothing, so there is nothing to approve."
                " Use one or the other."
            )
        for source in settings.sources:
            print(f"Source {source.describe()}")
        if require_approval:
            print(
                "require_approval: the plan (a dry run) is shown in approve_plan; nothing is written before a"
                " person approves it."
            )
        return {**settings.to_dict(), "require_approval": require_approval}

    @task
    def find_candidates(
        settings: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Resolve every view name first (an unknown name fails before anything else), then read each source's
        ids; a record two sources of one module both list is kept once. A source with ``max_email_checks``
        keeps only this run's slice of its rolling coverage (``hooks/coverage_run.py``). Ids leave packed."""
        from airflow.providers.common.compat.sdk import AirflowFailException

        from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
        from airflow_provider_zohocrm.zoho.addresses import addresses_by_id
        from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
        from airflow_provider_zohocrm.zoho.modules import check_modules, list_modules_or_none
        from airflow_provider_zohocrm.zoho.sources import Source, dedupe_candidates

        sources = [Source.from_dict(s) for s in settings["sources"]]
        hook = ZohoCRMHook(zohocrm_conn_id=settings["conn_id"])
        # One settings/modules call names a misspelled module ("Leeds": did you mean 'Leads'?) before any other
        # call; Zoho's own answer to it is an unnamed INVALID_QUERY.
        modules = list_modules_or_none(hook.client)
        if modules is None:
            print(
                "The token lacks ZohoCRM.settings.modules.READ: module names are not checked before the run"
                " (Zoho's answers judge them)."
            )
        else:
            problems = check_modules(modules, [source.module for source in sources])
            if problems:
                raise AirflowFailException(" ".join(problems))
        cvids: dict[int, str] = {}
        for source in sources:
            if source.kind == "view":
                try:
                    view = hook.resolve_view(source.module, str(source.view))
                except ZohoValidationError as exc:
                    raise AirflowFailException(f"source #{source.index + 1}: {exc}") from None
                print(f"Source #{source.index + 1}: {source.module} view {view.label()}")
                cvids[source.index] = view.id
            elif source.kind == "cvid":
                cvids[source.index] = str(source.cvid)
        read: list[tuple[Source, list[str]]] = []
        addresses: dict[int, dict[str, dict[str, str | None]]] = {}
        credits: dict[int, int] = {}
        for source in sources:
            before = hook.client.credits_spent
            if source.index in cvids:
                rows = list(
                    hook.iter_records(source.module, cvid=cvids[source.index], fields=source.read_fields())
                )
            else:
                rows = list(hook.iter_coql(source.read_query()))  # the hook yields each record once
            read.append((source, [str(row["id"]) for row in rows]))
            credits[source.index] = hook.client.credits_spent - before
            if (
                source.reads_addresses
            ):  # verify=emails: each field judged by its own address, read with the ids
                addresses[source.index] = addresses_by_id(rows, source.unblock_fields)
        kept, repeated = dedupe_candidates(read)
        found = []
        for source, ids in kept:
            again = repeated.get(source.index, 0)
            print(
                f"Found {len(ids):,} candidate {source.module} record(s) from source {source.describe()}"
                + (f" ({again:,} more already listed by an earlier source)" if again else "")
                + "."
            )
            entry: dict[str, Any] = {
                "source": source.index,
                "module": source.module,
                "ids": ids,
                "repeated": again,
                "credits_spent": credits[source.index],
            }
            if source.index in addresses:
                entry["addresses"] = {rid: addresses[source.index][rid] for rid in ids}
            found.append(entry)
        if found:  # the module list and view lookups: this task's calls besides the sources' reads
            found[0]["credits_setup"] = hook.client.credits_spent - sum(credits.values())
        return coverage_and_pack(found, settings, params or {}, str(run_id), hook.client.server_time())

    @task
    def make_groups(
        found: list[dict[str, Any]], settings: dict[str, Any], ti: Any = None
    ) -> list[dict[str, Any]]:
        """Whole batches of every source over at most min(max_map_length, MAX_PARALLEL) tasks in total. Each
        group's ids (packed) and addresses go to an XCom of their own (``group_<map index>``): the mapped tasks'
        list stays small, and each task pulls only its own records."""
        from airflow_provider_zohocrm.zoho.sources import Source, plan_groups

        found = [{**f, "ids": unpack_ids(f["ids"])} for f in found]

        sources = {s["index"]: Source.from_dict(s) for s in settings["sources"]}
        groups = plan_groups(
            [(sources[f["source"]], f["ids"]) for f in found],
            batch_size=int(settings["batch_size"]),
            max_groups=_max_groups(),
            needs_person_tag=settings.get("needs_person_tag"),
            addresses=_addresses_by_module(found),
            dns_options=settings.get("dns_options"),
        )
        park_groups(groups, found, ti)
        total = sum(len(f["ids"]) for f in found)
        modules = sorted({g["module"] for g in groups})
        print(
            f"{total:,} ids → {len(groups)} mapped task(s)"
            + (f" over {', '.join(modules)}." if modules else ".")
        )
        return groups

    @task
    def groups_to_plan(groups: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
        """The groups to plan: all of them when the run needs approval, else none (plan_emails then maps over
        nothing, and it, summarize_plan and approve_plan are skipped without running). Airflow maps only over a
        task's return value, hence this small task."""
        return groups if settings.get("require_approval") else []

    @task(multiple_outputs=False)
    def summarize_plan(
        planned: list[dict[str, Any]], found: list[dict[str, Any]], settings: dict[str, Any]
    ) -> dict[str, str]:
        """The plan in words for the person who approves it: the approve_plan task's subject and body."""
        from airflow_provider_zohocrm.zoho.run_report import build_run_report, format_run_report

        found = [{**f, "ids": unpack_ids(f["ids"])} for f in found]
        merged = build_run_report(found, _read_all(planned))
        text = format_run_report(merged, dry_run=True, tag=settings.get("needs_person_tag"))
        print(text)
        would_send = sum(len(ids) for ids in merged["pending"].values())
        modules = ", ".join(merged["modules"]) or "no module"
        return {
            "subject": f"Unblock {would_send:,} email address(es) in Zoho CRM ({modules})?",
            "body": "The plan (a dry run: nothing has been written to Zoho yet). **Approve** unblocks the"
            " records the plan would send; **Reject** ends the run with this plan as its report.\n\n"
            f"```text\n{text}\n```",
            "text": text,
        }

    @task(trigger_rule="none_failed", multiple_outputs=False)  # also runs when nothing was found
    def report(
        results: list[dict[str, Any]],
        found: list[dict[str, Any]],
        settings: dict[str, Any],
        planned: list[dict[str, Any]] | None = None,
        groups: list[dict[str, Any]] | None = None,
        ti: Any = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """A table per module and the grand total; the records a person must handle, with Zoho's bounce reason;
        every candidate of every source checked to have exactly one outcome. After a rejected approval: the plan
        that was rejected, and nothing written."""
        from airflow_provider_zohocrm.zoho.run_report import (
            accounting_errors,
            build_run_report,
            format_run_report,
        )
        from airflow_provider_zohocrm.zoho.unblock import field_counts

        results = _read_all(results)
        plan = _read_all(planned)
        dry_run = bool(settings["dry_run"])
        # Approve: approve_plan returns the answer. Reject: it skips unblock_emails and returns nothing (the skip
        # ends the task), so a plan without results is the sign of a rejection.
        decision = ti.xcom_pull(task_ids=APPROVAL_TASK) if settings.get("require_approval") else None
        rejected = bool(settings.get("require_approval")) and bool(plan) and not results and decision is None
        heading = ""
        if rejected:
            heading = "Rejected in approve_plan: nothing was written to Zoho. The plan that was rejected:"
        elif isinstance(decision, dict):
            who = (decision.get("responded_by_user") or {}).get("name") or "someone"
            heading = f"Approved by {who} in approve_plan."
        if rejected:
            results, dry_run = plan, True
        found = [{**f, "ids": unpack_ids(f["ids"])} for f in found]
        merged = build_run_report(found, results)
        text = format_run_report(merged, dry_run=dry_run, tag=settings.get("needs_person_tag"))
        if heading:
            text = f"{heading}\n{text}"
        # rolling coverage: commit (over the records with an outcome only) and a line per source; the credits
        text += "\n" + "\n".join(
            coverage_lines(found, groups or [], [] if rejected else results, plan, str(run_id))
        )
        print(text)
        problems = accounting_errors(merged)
        if problems:
            raise RuntimeError("Outcome accounting mismatch: " + "; ".join(problems))
        return {
            "found": merged["found_total"],
            "total": merged["total"],
            "modules": merged["modules"],
            "found_per_module": merged["found"],
            "counts": merged["counts"],
            "calls": merged["calls"],
            "email_checks": merged["email_checks"],
            "tag_calls": merged["tag_calls"],
            "read_calls": merged["read_calls"],
            "dns_queries": merged["dns_queries"],
            # per field (unblock_fields with both): module → field → outcome → (record, field) pairs; the
            # pairs themselves are in each mapped task's XCom
            "field_counts": {m: field_counts(slots) for m, slots in merged["fields"].items()},
            # a dry run's plan: module → field set → the ids its unblock calls would carry
            "would_send": merged["would_send"],
            "planned_calls": merged["planned_calls"],
            # ids only (each mapped task's XCom has Zoho's bounce details): the XCom stays small
            "needs_person": {
                outcome: [f"{r['module']}:{r['id']}" for r in records]
                for outcome, records in merged["needs_person"].items()
            },
            "pending": merged["pending"],
            "approval": "rejected" if rejected else ("approved" if decision is not None else None),
            "text": text,  # the printed report, for a notifier on this task (README: "Tagging and notifications")
        }

    # XComArgs at parse time, the typed values at run time
    settings: Any = check_params()
    found: Any = find_candidates(settings)
    groups: Any = make_groups(found, settings)
    # The approval path: the same groups, dry run. Without require_approval groups_to_plan is empty, so
    # plan_emails maps over nothing and it, summarize_plan and approve_plan are skipped without running.
    planning: Any = groups_to_plan(groups, settings)
    plan = UnblockEmailOperator.partial(
        task_id="plan_emails",
        zohocrm_conn_id="{{ params.conn_id }}",
        **GROUP_RECORDS,
        batch_size="{{ params.batch_size }}",
        dry_run=True,
        max_active_tis_per_dagrun=MAX_PARALLEL,
        retries=2,
        **pool_args,
        **retry_args,
    ).expand_kwargs(planning)
    planned: Any = plan.output
    summary: Any = summarize_plan(planned, found, settings)
    approve = _approval_task(summary)
    unblock = UnblockEmailOperator.partial(
        task_id="unblock_emails",
        zohocrm_conn_id="{{ params.conn_id }}",
        **GROUP_RECORDS,
        batch_size="{{ params.batch_size }}",
        dry_run="{{ params.dry_run }}",
        max_active_tis_per_dagrun=MAX_PARALLEL,
        retries=2,
        # approve_plan is skipped when no approval is asked for; a rejection skips this task itself
        trigger_rule="none_failed",
        **pool_args,
        **retry_args,
    ).expand_kwargs(groups)
    approve >> unblock
    results: Any = unblock.output
    report(results, found, settings, planned, groups)


APPROVAL_TASK = "approve_plan"
#: Each mapped task pulls its own group's records from make_groups (``park_groups``): the ids, packed, and the
#: addresses the source read with them. plan_emails maps over the same list, so the map indexes match.
GROUP_RECORDS: dict[str, Any] = {
    "record_ids": "{{ ti.xcom_pull(task_ids='make_groups', key='group_' ~ ti.map_index)['ids'] | zoho_ids }}",
    "addresses": "{{ ti.xcom_pull(task_ids='make_groups', key='group_' ~ ti.map_index)['addresses'] }}",
}


def coverage_and_pack(
    found: list[dict[str, Any]], settings: dict[str, Any], params: dict[str, Any], run_id: str, now: float
) -> list[dict[str, Any]]:
    """Rolling coverage for the sources with max_email_checks (claim, plan; ``reset_coverage`` first), then every
    source's ids packed (a million ids: a few MB instead of 23)."""
    from airflow_provider_zohocrm.hooks.coverage_run import plan_sources
    from airflow_provider_zohocrm.zoho.id_packing import pack_ids

    sources = {int(s["index"]): s for s in settings["sources"]}
    planned = plan_sources(
        found, sources, DAG_ID, run_id, now, reset_first=bool(params.get("reset_coverage"))
    )
    out = []
    for entry in planned:
        if entry.get("coverage") and entry.get("addresses"):  # only this run's records' addresses go on
            entry = {**entry, "addresses": {rid: entry["addresses"][rid] for rid in entry["ids"]}}
        out.append({**entry, "ids": pack_ids(entry["ids"])})
    return out


def park_groups(groups: list[dict[str, Any]], found: list[dict[str, Any]], ti: Any) -> None:
    """Move each group's ids (packed) and addresses to the XCom ``group_<i>``, so the list the mapped tasks
    resolve holds no ids; a group of a coverage source gets the reference its checkpoint needs."""
    from airflow_provider_zohocrm.hooks.coverage_run import group_reference
    from airflow_provider_zohocrm.zoho.id_packing import pack_ids

    # a coverage source holds at most its budget of ids this run, and a record is in one source of its module
    owner = {rid: f["coverage"] for f in found if f.get("coverage") for rid in f["ids"]}
    for i, group in enumerate(groups):
        ids = group.pop("record_ids")
        ti.xcom_push(
            key=f"group_{i}", value={"ids": pack_ids(ids), "addresses": group.pop("addresses", None)}
        )
        info = owner.get(ids[0]) if ids else None
        group["coverage"] = group_reference(info) if info else None


def coverage_lines(
    found: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    results: list[Any],
    planned: list[Any],
    run_id: str,
) -> list[str]:
    """Commit each coverage source (its cursor moves over the records that reached an outcome) and say where it
    stands; then the credits the run spent."""
    from airflow_provider_zohocrm.hooks.coverage_run import finish_sources

    return finish_sources(found, groups, results, run_id, planned=planned)


def _read_all(results: Any) -> list[dict[str, Any]]:
    """Every item of a mapped task's results (empty when it was skipped). Iterating Airflow's lazy sequence asks
    for one item past the end, and Airflow 3.3 logs that 404 as an ERROR ("XCom not found"): read len() items."""
    return [results[i] for i in range(len(results))] if results else []


def _approval_task(summary: Any) -> Any:
    """approve_plan: Airflow's ApprovalOperator showing the plan (3.1+); on 3.0 a stand-in that is always
    skipped, since check_params refuses require_approval there."""
    operator = _approval_operator()
    if operator is None:

        @task(task_id=APPROVAL_TASK)
        def approve_plan(summary: dict[str, str]) -> None:
            from airflow.providers.common.compat.sdk import AirflowFailException

            raise AirflowFailException("require_approval needs Airflow 3.1 or later.")

        return approve_plan(summary)
    approval = operator(
        task_id=APPROVAL_TASK,
        subject="{{ ti.xcom_pull(task_ids='summarize_plan')['subject'] }}",
        body="{{ ti.xcom_pull(task_ids='summarize_plan')['body'] }}",
        # Reject skips unblock_emails only; the report still runs and prints the plan.
        ignore_downstream_trigger_rules=False,
    )
    summary >> approval
    return approval


def _addresses_by_module(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """module → id → {field: address}, from the sources that read addresses (verify=emails)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in found:
        out.setdefault(entry["module"], {}).update(entry.get("addresses") or {})
    return out


def _max_groups_hard_limit() -> int:
    """Sources per run: each needs a mapped task instance of its own, and Airflow maps at most max_map_length."""
    from airflow.providers.common.compat.sdk import conf

    return int(conf.getint("core", "max_map_length", fallback=1024))


zoho_unblock_bounced_emails()
