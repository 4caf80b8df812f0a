"""The job's state machine: what each task of the workflow does, as functions of plain values.

claim → read → group → (plan → approve) → unblock → commit and report. The task wrappers in :mod:`.group` only
gather their inputs from Airflow (params, XCom, the run's id) and call one function here. The rules that keep the
stored state sound live here, not in a DAG file:

- the first task checks every per-run value with no call, and a scheduled run of a DAG whose config names no
  sources fails there (unpausing the example never goes live by itself);
- the candidates are read raw, cut to each rolling-coverage source's plan, and de-duplicated after the cut;
- a dry run stores nothing (no reset, no claim, no checkpoint); a rejected plan releases its claim, changing
  nothing else;
- the report commits every group's verdicts that exist, then fails the run if any group failed: a failed group
  never keeps the others' verdicts from being stored, and never lets the run look green;
- the records' addresses travel encrypted (a key only holders of the connection derive) from the read to the one
  task that needs them; what the run keeps (XCom, logs, rendered fields) holds ids and outcomes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.params import refuse_unknown_keys
from airflow_provider_zohocrm.zoho.sources import SHORTHAND_KIND_PARAMS

#: The DAG's task ids (inside a TaskGroup each gets the group's prefix).
CHECK_PARAMS = "check_params"
FIND_CANDIDATES = "find_candidates"
MAKE_GROUPS = "make_groups"
GROUPS_TO_PLAN = "groups_to_plan"
PLAN_EMAILS = "plan_emails"
SUMMARIZE_PLAN = "summarize_plan"
APPROVE_PLAN = "approve_plan"
UNBLOCK_EMAILS = "unblock_emails"
REPORT = "report"
#: The XCom key of a group's records (``group_<map index>``, pushed by make_groups, pulled by its mapped task).
GROUP_KEY = "group_{}"


class RunRefused(Exception):
    """A run that must not go on, in words for the person who triggered it (the task wrapper fails with it)."""


# -- check_params ------------------------------------------------------------------------------------------------


def _no_approval_message() -> str:
    """Why a run may not ask for approval: Airflow 3.0 has no human-in-the-loop operators, or the DAG's author
    built it with approval='off'."""
    from airflow import __version__ as airflow_version

    try:
        from airflow.providers.standard.operators.hitl import ApprovalOperator  # noqa: F401
    except Exception:  # 3.0: AirflowOptionalProviderFeatureException; an old standard provider: ImportError
        has_hitl = False
    else:
        has_hitl = True
    if not has_hitl:
        return (
            f"require_approval needs Airflow 3.1 or later (its human-in-the-loop operators); this is Airflow"
            f" {airflow_version}. Run without require_approval (a dry_run first shows the plan), or upgrade."
        )
    return (
        "require_approval: this DAG was built without its approval tasks (approval='off'). Run without"
        " require_approval (a dry_run first shows the plan), or build the DAG with approval='on'."
    )


def check_params(
    run_params: Mapping[str, Any],
    *,
    param_names: Iterable[str],
    prefix: str,
    conf_keys: Iterable[str],
    known_keys: Iterable[str],
    conn_id: str,
    allowed_conn_ids: Sequence[str] | None,
    dns_options: Mapping[str, Any] | None,
    approval_built: bool,
    run_type: str | None,
    config_names_sources: bool,
    max_sources: int | None,
    allow_reset_coverage: bool = False,
) -> dict[str, Any]:
    """Every value checked with no network call; the run's settings (what the later tasks read from XCom).

    A conf key nobody reads (``dryrun``) is refused; so is a connection the DAG's author did not list."""
    from airflow_provider_zohocrm.workflows.config import check_run_params
    from airflow_provider_zohocrm.zoho.sources import sources_from_params

    try:
        if "require_approval" in set(conf_keys) and not approval_built:
            # no require_approval param without the approval tasks: say why, rather than "unknown key"
            raise ZohoValidationError(_no_approval_message())
        refuse_unknown_keys(set(conf_keys), set(known_keys), "The run's conf")
        own = {name: run_params[prefix + name] for name in param_names if prefix + name in run_params}
        chosen = conn_id
        if allowed_conn_ids:
            chosen = own.pop("conn_id", None) or conn_id
            if chosen not in allowed_conn_ids:
                raise ZohoValidationError(
                    f"conn_id {chosen!r} is not one this DAG may use; its author listed {list(allowed_conn_ids)}."
                )
        own.pop("conn_id", None)
        named = bool(own.get("sources")) or any(own.get(k) not in (None, "") for k in SHORTHAND_KIND_PARAMS)
        if run_type == "scheduled" and not named and not config_names_sources:
            raise ZohoValidationError(
                "This DAG names no sources, so a scheduled run has nothing it may do: nothing was read or sent."
                " Give the DAG its sources when you build it, e.g. unblock_bounced_emails_dag(...,"
                " config=UnblockJobConfig(sources=[{'module': 'Leads', 'all': True}])), or trigger a run"
                " with a 'sources' param. See docs/your-own-dag.md."
            )
        check_run_params(own)
        if own.get("reset_coverage") and not allow_reset_coverage:
            raise ZohoValidationError(
                "reset_coverage: this DAG does not let a run restart rolling coverage; its author builds it with"
                " allow_reset_coverage=True to allow that (docs/security.md). Nothing was read or sent."
            )
        require_approval = bool(own.get("require_approval", False))
        settings = sources_from_params(
            {**own, "conn_id": chosen, "dns_options": dict(dns_options) if dns_options else None},
            max_sources=max_sources,
        )
    except ZohoValidationError as exc:
        raise RunRefused(str(exc)) from None
    if require_approval and not approval_built:
        raise RunRefused(_no_approval_message())
    if require_approval and settings.dry_run:
        raise RunRefused(
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
    return {
        **settings.to_dict(),
        "require_approval": require_approval,
        "reset_coverage": bool(own.get("reset_coverage", False)),
    }


# -- addresses: encrypted in transit through XCom ----------------------------------------------------------------


def address_cipher(hook: Any) -> Any:
    """A Fernet key only the holders of the connection derive (its client secret and refresh token), so the
    addresses in XCom are ciphertext to anyone reading the metadata DB or the UI."""
    from cryptography.fernet import Fernet

    creds = hook.settings.credentials
    material = "\0".join(("zohocrm-run-addresses", creds.client_id, creds.client_secret, creds.refresh_token))
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))


def seal(cipher: Any, value: Any) -> str:
    return str(cipher.encrypt(json.dumps(value, separators=(",", ":")).encode()).decode())


def unseal(cipher: Any, token: str | None) -> Any:
    return json.loads(cipher.decrypt(token.encode())) if token else None


# -- find_candidates ---------------------------------------------------------------------------------------------


def find_candidates(
    settings: Mapping[str, Any], *, hook: Any, scope: str, run_id: str
) -> list[dict[str, Any]]:
    """Resolve every view name first (an unknown name fails before anything else), read each source's ids (and,
    for verify=emails, their addresses with them), cut each rolling-coverage source to this run's plan, then
    keep a record two sources of one module both list once. Ids leave packed, addresses sealed."""
    from airflow_provider_zohocrm.zoho.addresses import addresses_by_id
    from airflow_provider_zohocrm.zoho.id_packing import pack_ids
    from airflow_provider_zohocrm.zoho.modules import check_modules, list_modules_or_none
    from airflow_provider_zohocrm.zoho.sources import Source

    sources = [Source.from_dict(s) for s in settings["sources"]]
    # One settings/modules call names a misspelled module ("Leeds": did you mean 'Leads'?) before any other call.
    modules = list_modules_or_none(hook.client)
    if modules is None:
        print(
            "The token lacks ZohoCRM.settings.modules.READ: module names are not checked before the run"
            " (Zoho's answers judge them)."
        )
    else:
        problems = check_modules(modules, [source.module for source in sources])
        if problems:
            raise RunRefused(" ".join(problems))
    cvids: dict[int, str] = {}
    for source in sources:
        if source.kind == "view":
            try:
                view = hook.resolve_view(source.module, str(source.view))
            except ZohoValidationError as exc:
                raise RunRefused(f"source #{source.index + 1}: {exc}") from None
            print(f"Source #{source.index + 1}: {source.module} view {view.label()}")
            cvids[source.index] = view.id
        elif source.kind == "cvid":
            cvids[source.index] = str(source.cvid)
    raw: list[dict[str, Any]] = []
    addresses: dict[int, dict[str, dict[str, str | None]]] = {}
    spent = 0
    for source in sources:
        before = hook.client.credits_spent
        if source.index in cvids:
            rows = list(
                hook.iter_records(source.module, cvid=cvids[source.index], fields=source.read_fields())
            )
        else:
            rows = list(hook.iter_coql(source.read_query()))  # the hook yields each record once
        credits = hook.client.credits_spent - before
        spent += credits
        raw.append(
            {
                "source": source.index,
                "module": source.module,
                "ids": [str(row["id"]) for row in rows],
                "credits_spent": credits,
            }
        )
        if source.reads_addresses:  # verify=emails: each field judged by its own address
            addresses[source.index] = addresses_by_id(rows, source.unblock_fields)
    if raw:  # the module list and view lookups: this task's calls besides the sources' reads
        raw[0]["credits_setup"] = hook.client.credits_spent - spent
    cut = plan_coverage(
        raw,
        settings,
        scope=scope,
        run_id=run_id,
        now=hook.client.server_time(),
    )
    by_index = {s.index: s for s in sources}
    from airflow_provider_zohocrm.hooks.coverage_run import dedupe_after_cut

    deduped = dedupe_after_cut(cut)  # a rolling source keeps the slice it planned (issue 26)
    kept = [(by_index[int(e["source"])], list(e["ids"])) for e in deduped]
    repeated = {int(e["source"]): int(e.get("repeated") or 0) for e in deduped}
    cipher = address_cipher(hook) if addresses else None
    found = []
    for entry, (source, ids) in zip(cut, kept, strict=True):
        again = repeated.get(source.index, 0)
        print(
            f"Found {len(ids):,} candidate {source.module} record(s) from source {source.describe()}"
            + (f" ({again:,} more already listed by an earlier source)" if again else "")
            + "."
        )
        out = {**entry, "ids": pack_ids(ids), "repeated": again}
        if source.index in addresses and cipher is not None:
            known = addresses[source.index]
            out["sealed_addresses"] = seal(cipher, {rid: known[rid] for rid in ids if rid in known})
        found.append(out)
    return found


def plan_coverage(
    raw: list[dict[str, Any]], settings: Mapping[str, Any], *, scope: str, run_id: str, now: float
) -> list[dict[str, Any]]:
    """Rolling coverage (``hooks/coverage_run.plan_sources``) over the raw reads: claim, and each coverage
    source's ids cut to this run's plan. Stored state is keyed by the connection (the org) as well as the DAG
    and the source; a dry run stores nothing."""
    from airflow_provider_zohocrm.hooks import coverage_run

    sources = {int(s["index"]): s for s in settings["sources"]}
    if not any(coverage_run.uses_coverage(s) for s in sources.values()):
        return [dict(e) for e in raw]
    return list(
        coverage_run.plan_sources(
            raw,
            sources,
            scope,
            run_id,
            now,
            reset_first=bool(settings.get("reset_coverage")),
            conn_id=str(settings["conn_id"]),
            dry_run=bool(settings.get("dry_run")),
        )
    )


# -- make_groups -------------------------------------------------------------------------------------------------


def make_groups(
    found: list[dict[str, Any]],
    settings: Mapping[str, Any],
    *,
    max_groups: int,
    hook: Any,
    push: Callable[[str, Any], None],
) -> list[int]:
    """Whole batches of every source over at most ``max_groups`` tasks. Each group's records and settings go to
    an XCom of their own (``group_<i>``: ids packed, addresses sealed), pulled by that mapped task in its
    ``execute`` and never rendered. The mapped tasks map over the returned list of group numbers."""
    from airflow_provider_zohocrm.hooks.coverage_run import group_reference
    from airflow_provider_zohocrm.zoho.id_packing import pack_ids, unpack_ids
    from airflow_provider_zohocrm.zoho.sources import Source, plan_groups

    cipher = address_cipher(hook) if any(f.get("sealed_addresses") for f in found) else None
    entries = [{**f, "ids": unpack_ids(f["ids"])} for f in found]
    addresses: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.get("sealed_addresses") and cipher is not None:
            addresses.setdefault(entry["module"], {}).update(unseal(cipher, entry["sealed_addresses"]) or {})
    sources = {s["index"]: Source.from_dict(s) for s in settings["sources"]}
    groups = plan_groups(
        [(sources[f["source"]], f["ids"]) for f in entries],
        batch_size=int(settings["batch_size"]),
        max_groups=max_groups,
        needs_person_tag=settings.get("needs_person_tag"),
        addresses=addresses,
        dns_options=settings.get("dns_options"),
    )
    # a coverage source holds at most its budget of ids this run, and a record is in one source of its module
    owner = {rid: f["coverage"] for f in entries if f.get("coverage") for rid in f["ids"]}
    refs = []
    for i, group in enumerate(groups):
        ids = group.pop("record_ids")
        own = group.pop("addresses", None)
        info = owner.get(ids[0]) if ids else None
        group.update(
            ids=pack_ids(ids),
            sealed_addresses=seal(cipher, own) if own and cipher is not None else None,
            coverage=group_reference(info) if info else None,
            batch_size=int(settings["batch_size"]),
            dry_run=bool(settings["dry_run"]),
        )
        push(GROUP_KEY.format(i), group)
        refs.append(i)
    total = sum(len(f["ids"]) for f in entries)
    modules = sorted({g["module"] for g in groups})
    print(
        f"{total:,} ids → {len(groups)} mapped task(s)" + (f" over {', '.join(modules)}." if modules else ".")
    )
    return refs


# -- summarize_plan ----------------------------------------------------------------------------------------------


def summarize_plan(
    planned: Sequence[Mapping[str, Any] | None], found: list[dict[str, Any]], settings: Mapping[str, Any]
) -> dict[str, str]:
    """The plan in words for the person who approves it: the approve_plan task's subject and body."""
    from airflow_provider_zohocrm.zoho.run_report import build_run_report, format_run_report

    merged = build_run_report(found, planned)  # the ids stay packed (zoho/run_report.py reads them so)
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


# -- report: commit, then fail loudly ----------------------------------------------------------------------------


def failed_group_result(group: Mapping[str, Any] | None, partial: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the report counts for a group whose task failed: its partial report (every id accounted, the rest
    pending), else each of its ids pending with the reason."""
    from airflow_provider_zohocrm.zoho.id_packing import unpack_ids

    if partial:
        return dict(partial)
    ids = unpack_ids(group["ids"]) if group else []
    reason = "its unblock task failed before reporting (see that task's log)"
    return {
        "module": (group or {}).get("module"),
        "ids": {},
        "pending": ids,
        "pending_reasons": dict.fromkeys(ids, reason),
        "unblock_fields": (group or {}).get("unblock_fields") or [],
    }


def report(
    *,
    settings: Mapping[str, Any],
    found: list[dict[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    results: Sequence[Mapping[str, Any] | None],
    partials: Sequence[Mapping[str, Any] | None],
    planned: Sequence[Mapping[str, Any] | None],
    decision: Mapping[str, Any] | None,
    run_id: str,
) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Commit what exists, then the report. Returns (the report's XCom value, the problems that must fail the run:
    failed groups and accounting mismatches, the asset event's extra). ``results[i]`` is None for a group whose
    task failed.

    Memory (issue 25 item 8): ``results`` may be a lazy sequence that pulls a mapped task's XCom when indexed;
    each result is read once, handed to ``build_run_report`` and let go (a million ids as lists of str take about
    80 MB). ``found`` stays packed; ``partials[i]`` is read only for a failed group; what ``finish_sources`` and
    the asset extra need of a result is kept (its credits; where its unblocked ids lie in the report's ids)."""
    from airflow_provider_zohocrm.workflows.assets import asset_extra
    from airflow_provider_zohocrm.zoho.run_report import (
        accounting_errors,
        build_run_report,
        format_run_report,
    )
    from airflow_provider_zohocrm.zoho.unblock import field_counts

    require_approval = bool(settings.get("require_approval"))
    chosen = (decision or {}).get("chosen_options") or []
    plan = [p for p in planned if p]
    rejected = require_approval and (
        "Reject" in chosen or (decision is None and bool(plan) and not any(results))
    )
    dry_run = bool(settings["dry_run"])
    failed: list[int] = []
    #: per result, what finish_sources reads of it: None for a failed group, else its credits
    spent: list[dict[str, Any] | None] = []
    #: per result that unblocked for real: (module, where its unblocked ids start in the report's, how many)
    unblocked_at: list[tuple[str, int, int]] = []
    heading = ""
    if rejected:
        heading = "Rejected in approve_plan: nothing was written to Zoho. The plan that was rejected:"
    elif decision:
        who = (decision.get("responded_by_user") or {}).get("name") or "someone"
        heading = f"Approved by {who} in approve_plan."

    def each_result() -> Iterator[Mapping[str, Any]]:
        """The results one at a time (a failed group's partial report in its place), noting what is kept."""
        taken: dict[str, int] = {}  # module → unblocked ids the report holds so far
        for i in range(len(results)):
            result = results[i]
            shown: Mapping[str, Any]
            if result is None:
                failed.append(i)
                spent.append(None)
                shown = failed_group_result(groups[i] if i < len(groups) else None, partials[i])
            else:
                spent.append({"credits_spent": result.get("credits_spent")})
                shown = result
            module = str(shown.get("module") or "")
            n = len((shown.get("ids") or {}).get("unblocked") or ())
            if result is not None and not result.get("dry_run"):
                unblocked_at.append((module, taken.get(module, 0), n))
            taken[module] = taken.get(module, 0) + n
            yield shown
            del result, shown

    if rejected:
        merged = build_run_report(found, (p for p in planned))  # the ids stay packed
        dry_run = True
    else:
        merged = build_run_report(found, each_result())
    text = format_run_report(merged, dry_run=dry_run, tag=settings.get("needs_person_tag"))
    if heading:
        text = f"{heading}\n{text}"
    text += "\n" + "\n".join(
        commit_coverage(
            found,  # finish_sources reads each coverage source's plan, never its ids
            groups,
            [] if rejected else spent,
            list(planned),
            run_id,
            conn_id=str(settings["conn_id"]),
            dry_run=bool(settings["dry_run"]),
            rejected=rejected,
            reset=bool(settings.get("reset_coverage")),
        )
    )
    problems = []
    if failed:
        problems.append(
            f"{len(failed)} of {len(results)} unblock task(s) failed (map index {', '.join(map(str, failed))}):"
            " the other groups' outcomes are committed and reported above; their records are pending."
        )
    mismatch = accounting_errors(merged)
    if mismatch and not failed:
        problems.append("Outcome accounting mismatch: " + "; ".join(mismatch))
    if problems:
        text += "\n" + "\n".join(problems)
    print(text)
    value = {
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
        "field_counts": {m: field_counts(slots) for m, slots in merged["fields"].items()},
        "would_send": merged["would_send"],
        "planned_calls": merged["planned_calls"],
        "needs_person": {
            outcome: [f"{r['module']}:{r['id']}" for r in records]
            for outcome, records in merged["needs_person"].items()
        },
        "pending": merged["pending"],
        "approval": "rejected" if rejected else ("approved" if decision else None),
        "failed_groups": failed,
        "text": text,
    }
    return value, problems, asset_extra(value, merged["ids"], unblocked_at)


def commit_coverage(
    found: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    results: list[Any],
    planned: list[Any],
    run_id: str,
    *,
    conn_id: str,
    dry_run: bool,
    rejected: bool,
    reset: bool,
) -> list[str]:
    """Commit each coverage source over the verdicts that exist (a failed group's checkpoint counts) and say where
    it stands; then the credits. A dry run commits nothing; a rejection only releases its claim."""
    from airflow_provider_zohocrm.hooks import coverage_run

    return list(
        coverage_run.finish_sources(
            found,
            groups,
            results,
            run_id,
            planned=planned,
            conn_id=conn_id,
            reset_first=reset,
            rejected=rejected,
            dry_run=dry_run,
        )
    )


__all__ = [
    "APPROVE_PLAN",
    "CHECK_PARAMS",
    "FIND_CANDIDATES",
    "GROUPS_TO_PLAN",
    "MAKE_GROUPS",
    "PLAN_EMAILS",
    "REPORT",
    "SUMMARIZE_PLAN",
    "UNBLOCK_EMAILS",
    "RunRefused",
    "check_params",
    "find_candidates",
    "make_groups",
    "report",
    "summarize_plan",
]
