"""Every night: find the Zoho CRM records whose email soft-bounced, in every module, and unblock them in bulk.

check_params → find_candidates → make_groups → unblock_emails (mapped, all modules together) → report

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
        for source in settings.sources:
            print(f"Source {source.describe()}")
        return settings.to_dict()

    @task
    def find_candidates(
        settings: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Resolve every view name first (an unknown name fails before anything else), then read each source's
        ids; a record two sources of one module both list is kept once. A source with ``max_email_checks`` keeps only this run's slice of its
        rolling coverage (``hooks/coverage_run.py``). Ids leave packed (``zoho/id_packing.py``)."""
        from airflow.providers.common.compat.sdk import AirflowFailException

        from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
        from airflow_provider_zohocrm.zoho.addresses import addresses_by_id
        from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
        from airflow_provider_zohocrm.zoho.sources import Source, dedupe_candidates

        sources = [Source.from_dict(s) for s in settings["sources"]]
        hook = ZohoCRMHook(zohocrm_conn_id=settings["conn_id"])
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

    @task(trigger_rule="none_failed", multiple_outputs=False)  # also runs when nothing was found
    def report(
        results: list[dict[str, Any]],
        found: list[dict[str, Any]],
        settings: dict[str, Any],
        groups: list[dict[str, Any]],
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """A table per module and the grand total; the records a person must handle, with Zoho's bounce reason;
        every candidate of every source checked to have exactly one outcome."""
        from airflow_provider_zohocrm.zoho.run_report import (
            accounting_errors,
            build_run_report,
            format_run_report,
        )
        from airflow_provider_zohocrm.zoho.unblock import field_counts

        # Iterating Airflow's lazy sequence of mapped results asks for one item past the end, and Airflow 3.3
        # logs that 404 as an ERROR ("XCom not found"): read exactly len() items instead.
        results = [results[i] for i in range(len(results))] if results else []
        found = [{**f, "ids": unpack_ids(f["ids"])} for f in found]
        merged = build_run_report(found, results)
        text = format_run_report(
            merged, dry_run=bool(settings["dry_run"]), tag=settings.get("needs_person_tag")
        )
        text += "\n" + "\n".join(coverage_lines(found, groups, results, str(run_id)))
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
            "text": text,  # the printed report, for a notifier on this task (README: "Tagging and notifications")
        }

    # XComArgs at parse time, the typed values at run time
    settings: Any = check_params()
    found: Any = find_candidates(settings)
    groups: Any = make_groups(found, settings)
    unblock = UnblockEmailOperator.partial(
        task_id="unblock_emails",
        zohocrm_conn_id="{{ params.conn_id }}",
        record_ids="{{ ti.xcom_pull(task_ids='make_groups', key='group_' ~ ti.map_index)['ids'] | zoho_ids }}",
        addresses="{{ ti.xcom_pull(task_ids='make_groups', key='group_' ~ ti.map_index)['addresses'] }}",
        batch_size="{{ params.batch_size }}",
        dry_run="{{ params.dry_run }}",
        max_active_tis_per_dagrun=MAX_PARALLEL,
        retries=2,
        **pool_args,
        **retry_args,
    ).expand_kwargs(groups)
    results: Any = unblock.output
    report(results, found, settings, groups)


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
    found: list[dict[str, Any]], groups: list[dict[str, Any]], results: list[Any], run_id: str
) -> list[str]:
    """Commit each coverage source (its cursor moves over the records that reached an outcome) and say where it
    stands; then the credits the run spent."""
    from airflow_provider_zohocrm.hooks.coverage_run import finish_sources

    return finish_sources(found, groups or [], results, run_id)


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
