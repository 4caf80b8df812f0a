"""Rolling coverage in a run of the example DAG (issue 18): plan, checkpoint, commit and report, per source.

The pure model is :mod:`airflow_provider_zohocrm.zoho.coverage`, the Variable store with its guard is
:mod:`.coverage_store`; this module strings them together the way the DAG uses them, so the DAG's tasks call one
function each and the simulation (``benchmarks/many_nights.py``) runs the same steps without Airflow:

1. :func:`plan_sources` (the candidates task): for every source with ``verify="emails"`` and
   ``max_email_checks``, claim its coverage (two runs never advance one cursor: a second run fails with
   ``CoverageBusyError``), reset it first when the run asks to, and keep only the ids this run reads: deferred
   records now due first, then the next ids after the cursor (wrapping). The plan travels with the candidates.
2. :class:`VariableCheckpoint` (each mapped unblock task): the job's checkpoint seam, one Variable per mapped task:
   the decisions (a retried try does not read those Emails lists again) and the coverage verdicts (``done``, or
   ``deferred`` with the time the bounce is old enough).
3. :func:`finish_sources` (the report task): merge the tasks' verdicts, move the cursor only over records that
   reached an outcome, commit under the claim's token, and give the report's lines per source.

Nothing here imports Airflow at module level (the store's default Variables do, when used).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from airflow_provider_zohocrm.hooks.coverage_store import (
    Claim,
    CoverageLostError,
    CoverageStore,
    Variables,
)
from airflow_provider_zohocrm.zoho.coverage import (
    RETRY,
    CoverageState,
    RunCheckpoint,
    RunPlan,
    Verdict,
    apply_outcomes,
    plan_run,
    reset,
    summarize,
)
from airflow_provider_zohocrm.zoho.emails import BUDGET_REASON
from airflow_provider_zohocrm.zoho.unblock import Outcome, UnblockReport
from airflow_provider_zohocrm.zoho.unblock_job import Decision, FieldDecision, UnblockPlan

#: The schedule's period, used for "deferred records due by the next run" (the example DAG runs @daily).
NIGHT_SECONDS = 86_400.0
#: How ``check_domain`` starts the reason of a record it deferred (its domain has no mail host): such a record
#: gets a ``retry`` verdict (a growing back-off, ``zoho/coverage.retry_due``), not "due again now".
DOMAIN_REASON_PREFIX = "check_domain:"
#: The checkpoint role of an approval's plan task (``plan_emails``, a dry run of the same groups).
PLAN_ROLE = "plan"


class CoverageConfigError(ValueError):
    """Sources whose coverage cannot be kept apart (two of one module would share one cursor)."""


def uses_coverage(source: Mapping[str, Any]) -> bool:
    """Rolling coverage applies to a source with ``verify="emails"`` and a ``max_email_checks`` budget."""
    return source.get("verify") == "emails" and source.get("max_email_checks") is not None


_SINCE = re.compile(r"\band\s+([A-Za-z][A-Za-z0-9_]*)\s*>=\s*'")


def source_key(source: Mapping[str, Any]) -> str:
    """A stable name of a source's coverage: module, kind and a hash of what selects its records (the view, the
    query). The whole-module source's date *value* is left out (its query text changes every day with
    ``days``), its date *field* is not: ``Leads.all`` and ``Leads.all.since_Modified_Time`` are two cursors."""
    kind = str(source.get("kind"))
    if kind == "all":
        since = _SINCE.search(str(source.get("query") or ""))
        return (
            f"{source.get('module')}.all.since_{since.group(1)}" if since else f"{source.get('module')}.all"
        )
    what = str(source.get("view") or source.get("cvid") or source.get("query") or "")
    digest = hashlib.sha256(what.encode()).hexdigest()[:10]
    return f"{source.get('module')}.{kind}.{digest}" if what else f"{source.get('module')}.{kind}"


def _store(
    dag_id: str,
    key: str,
    conn_id: str | None,
    variables: Variables | None,
    options: Mapping[str, Any] | None,
) -> CoverageStore:
    return CoverageStore(dag_id, key, variables, conn_id=conn_id, **dict(options or {}))


def _store_of(
    info: Mapping[str, Any], variables: Variables | None, options: Mapping[str, Any] | None = None
) -> CoverageStore:
    conn = info.get("conn_id")
    return _store(
        str(info["dag_id"]), str(info["key"]), None if conn is None else str(conn), variables, options
    )


# -- 1. plan ----------------------------------------------------------------------------------------------------


def _plan_json(plan: RunPlan) -> dict[str, Any]:
    return {
        "due": list(plan.due),
        "fresh": list(plan.fresh),
        "wrapped_segments": [list(s) for s in plan.wrapped_segments],
        "completes_cycle": plan.completes_cycle,
        "module_size": plan.module_size,
        "budget": plan.budget,
        "gone": list(plan.gone),
    }


def _plan_from_json(data: Mapping[str, Any]) -> RunPlan:
    return RunPlan(
        due=tuple(data["due"]),
        fresh=tuple(data["fresh"]),
        wrapped_segments=tuple(tuple(s) for s in data["wrapped_segments"]),
        completes_cycle=bool(data["completes_cycle"]),
        module_size=int(data["module_size"]),
        budget=data.get("budget"),
        gone=tuple(data.get("gone", ())),
    )


def take_claim(store: CoverageStore, run_id: str, now: float, *, reset_first: bool, dry_run: bool) -> Claim:
    """The run's hold on a source: a lease (a live run), or nothing written (a dry run reads the stored state; a
    reset run plans from a fresh one, applied at its commit only: scenario 8)."""
    if dry_run or reset_first:
        return store.peek(run_id, fresh_state=reset(now) if reset_first else None)
    return store.claim(run_id)


def plan_source(
    store: CoverageStore,
    run_id: str,
    candidates: Sequence[str],
    budget: int,
    now: float,
    *,
    reset_first: bool = False,
    dry_run: bool = False,
    claim: Claim | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Claim the source's coverage (unless ``claim`` is given) and plan this run: (the ids to read, in order; the
    plan to carry to the report). ``now`` is on Zoho's clock (``client.server_time()``)."""
    if claim is None:
        claim = take_claim(store, run_id, now, reset_first=reset_first, dry_run=dry_run)
    plan = plan_run(claim.state, candidates, budget, now)
    info = {
        "key": store.source_key,
        "dag_id": store.dag_id,
        "conn_id": store.conn_id,
        "claim": claim.to_json(),
        "plan": _plan_json(plan),
        "now": now,
        "reset": reset_first,
        "dry_run": dry_run,
    }
    return plan.ids, info


def plan_sources(
    found: list[dict[str, Any]],
    sources: Mapping[int, Mapping[str, Any]],
    dag_id: str,
    run_id: str,
    now: float,
    *,
    reset_first: bool = False,
    conn_id: str | None = None,
    dry_run: bool = False,
    variables: Variables | None = None,
    store_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The candidates task's step: each coverage source's ``ids`` cut to this run's plan, the plan under
    ``coverage`` (other sources unchanged).

    ``found`` are the sources' reads *before* de-duplication: de-duplicate the result with
    :func:`dedupe_after_cut`, so a record left out of a rolling source's slice stays with the module's other
    sources (scenario 5). Every source is claimed before any plan is made; a busy source fails the task before
    anything was read, and the claims this run took are released (byte-identical Variables: scenario 9). A dry
    run or a reset run writes nothing here (scenario 8; a reset takes effect at the commit). The stored key names
    the connection (the org), the DAG and the source; two coverage sources of one module with one key are
    refused with :class:`CoverageConfigError` before anything is claimed (scenario 3)."""
    coverage: list[tuple[dict[str, Any], Mapping[str, Any], str]] = []
    for entry in found:
        source = sources[int(entry["source"])]
        if uses_coverage(source):
            coverage.append((entry, source, source_key(source)))
    seen: dict[str, int] = {}
    for entry, _source, key in coverage:
        if key in seen:
            raise CoverageConfigError(
                f"Sources #{seen[key] + 1} and #{int(entry['source']) + 1} ({entry['module']}) would share one"
                f" rolling-coverage cursor ({key!r}): two sources of one module that select the same records"
                " cannot both run under max_email_checks. Remove one of them, or give one of them a different"
                " selection (a view, a COQL query, or date_field)."
            )
        seen[key] = int(entry["source"])
    stores = {key: _store(dag_id, key, conn_id, variables, store_options) for _e, _s, key in coverage}
    claims: dict[str, Claim] = {}
    try:
        for _entry, _source, key in coverage:
            claims[key] = take_claim(stores[key], run_id, now, reset_first=reset_first, dry_run=dry_run)
    except BaseException:
        for key, claim in claims.items():
            stores[key].release(claim)
        raise
    planned: dict[int, dict[str, Any]] = {}
    for entry, source, key in coverage:
        ids, info = plan_source(
            stores[key],
            run_id,
            entry["ids"],
            int(source["max_email_checks"]),
            now,
            reset_first=reset_first,
            dry_run=dry_run,
            claim=claims[key],
        )
        info["min_hours_since_bounce"] = float(source.get("min_hours_since_bounce") or 0)
        info["module"] = entry["module"]
        planned[id(entry)] = {**entry, "ids": ids, "candidates": len(entry["ids"]), "coverage": info}
    return [planned.get(id(entry), entry) for entry in found]


def dedupe_after_cut(planned: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each record once per module, *after* the coverage cut (:func:`plan_sources`): the ids a rolling source
    reads this run stay with it (its budget was planned on them); every other source keeps the rest, in source
    order, so a record outside this run's slice stays available to the module's other sources (scenario 5).
    Each entry gets ``repeated``: how many of its ids another source already had (and ``addresses`` only for
    the ids it kept)."""
    taken: dict[str, set[str]] = {}
    kept: dict[int, list[str]] = {}
    repeated: dict[int, int] = {}
    order = sorted(range(len(planned)), key=lambda i: (not planned[i].get("coverage"), i))
    for i in order:
        entry = planned[i]
        known = taken.setdefault(str(entry["module"]), set())
        mine: list[str] = []
        for rid in entry["ids"]:
            rid = str(rid)
            if rid in known:
                repeated[i] = repeated.get(i, 0) + 1
                continue
            known.add(rid)
            mine.append(rid)
        kept[i] = mine
    out = []
    for i, entry in enumerate(planned):
        new = {**entry, "ids": kept[i], "repeated": repeated.get(i, 0)}
        if entry.get("addresses") is not None:
            addresses = entry["addresses"]
            new["addresses"] = {rid: addresses[rid] for rid in kept[i] if rid in addresses}
        out.append(new)
    return out


# -- 2. checkpoints ---------------------------------------------------------------------------------------------


def decision_to_json(decision: Decision) -> list[Any]:
    """A decision as compact JSON (per field too: the fields settled without a call, the sent fields' details)."""
    return [
        list(decision.fields),
        decision.outcome.value if decision.outcome else None,
        decision.details,
        decision.reason,
        {f: [d.outcome.value, d.details, d.reason] for f, d in decision.settled.items()},
        {f: dict(d) for f, d in decision.field_details.items()},
    ]


def decision_from_json(record_id: str, data: Sequence[Any]) -> Decision:
    fields, outcome, details, reason, settled, field_details = data
    return Decision(
        record_id,
        tuple(fields),
        Outcome(outcome) if outcome else None,
        details,
        reason,
        settled={f: FieldDecision(Outcome(o), d, r) for f, (o, d, r) in settled.items()},
        field_details=field_details,
    )


def _bounce_due(details: Mapping[str, Any] | None, min_hours: float, now: float) -> float:
    """When a deferred bounce is old enough: its bounce time plus the policy (or, without a time, now plus it)."""
    at = (details or {}).get("bounced_time")
    if isinstance(at, str) and at:
        try:
            return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() + min_hours * 3600.0
        except ValueError:
            pass
    return now + min_hours * 3600.0


def _deferral(
    reason: str | None, details: Mapping[str, Any] | None, min_hours: float, now: float
) -> Verdict | None:
    """A read record's deferral as a verdict: None when the budget left it unread (not read at all), ``retry``
    for a dead domain (a growing back-off), else ``deferred`` until the bounce is old enough."""
    if reason == BUDGET_REASON:
        return None
    if reason and reason.startswith(DOMAIN_REASON_PREFIX):
        return RETRY
    return Verdict("deferred", max(_bounce_due(details, min_hours, now), now + 1.0))


def verdicts_of(report: UnblockReport, min_hours: float, now: float) -> RunCheckpoint:
    """The coverage verdicts of a task's report: every id with an outcome (``error`` too: the docs' table) is
    ``done``, except a young bounce (``deferred`` with its due time), a dead domain (``retry``), and a record the
    budget left unread in any field it asked about (no verdict, like a pending id: scenario 4)."""
    out = RunCheckpoint()
    for outcome, ids in report.ids.items():
        for rid in ids:
            words = report.fields.get(rid)
            if not words:  # one field: the record's own outcome
                if outcome != Outcome.DEFERRED.value:
                    out.record(rid, Verdict("done"))
                    continue
                verdict = _deferral(report.reasons.get(rid), report.details.get(rid), min_hours, now)
                if verdict is not None:
                    out.record(rid, verdict)
                continue
            # per field (both email fields): read only if every field was judged
            deferrals = [
                _deferral(
                    report.field_reasons.get(f"{rid} {f}"),
                    report.field_details.get(f"{rid} {f}"),
                    min_hours,
                    now,
                )
                for f, word in words.items()
                if word == Outcome.DEFERRED.value
            ]
            if any(v is None for v in deferrals):
                continue
            young = [v for v in deferrals if v is not None and v.kind == "deferred"]
            if young:
                out.record(rid, min(young, key=lambda v: v.due or 0.0))
            elif deferrals:
                out.record(rid, RETRY)
            else:
                out.record(rid, Verdict("done"))
    return out


class VariableCheckpoint:
    """The job's checkpoint seam for one mapped task of one run: a Variable of the store (per map index).

    It keeps the decisions (a retried try does not read those Emails lists again), the coverage verdicts, and the
    Emails calls the task's tries spent (``spent``: a retry reads within what is left of the task's budget, in
    the one unit the budget counts: Emails-list calls). ``plan_key``: the checkpoint of the approval's plan task
    of the same group; its decisions are reused, except those that would send (re-read, since hours may pass
    before approval): scenario 7."""

    def __init__(
        self,
        store: CoverageStore,
        run_id: str,
        map_index: int,
        min_hours: float,
        now: float,
        *,
        role: str = "",
        plan_key: str | None = None,
    ) -> None:
        self.store = store
        self.key = store.checkpoint_key(run_id, map_index, role)
        self.plan_key = plan_key
        self.min_hours = min_hours
        self.now = now
        self._spent_before: int | None = None

    def _data(self, key: str) -> dict[str, Any]:
        raw = self.store.variables.get(key)
        data = json.loads(raw) if raw else {}
        return data if isinstance(data, dict) else {}

    def load(self) -> dict[str, Decision]:
        data = self._data(self.key)
        self._spent_before = None  # a new try (the same object may serve several: run_source_once)
        own = {rid: decision_from_json(rid, d) for rid, d in (data.get("decisions") or {}).items()}
        if self.plan_key is None:
            return own
        planned = {
            rid: decision_from_json(rid, d)
            for rid, d in (self._data(self.plan_key).get("decisions") or {}).items()
        }
        return {**{rid: d for rid, d in planned.items() if not d.send}, **own}

    def spent(self) -> int:
        """Emails calls the earlier tries of this task spent. Under approval the plan task's calls count too,
        less one per record the plan would send (those are read again): an approved run reads at most B plus
        the plan's would-send records (scenario 7)."""
        if self._spent_before is None:
            data = self._data(self.key)
            if "spent" in data or self.plan_key is None:
                self._spent_before = int(data.get("spent") or 0)
            else:
                planned = self._data(self.plan_key)
                sends = sum(1 for d in (planned.get("decisions") or {}).values() if d and d[0])
                self._spent_before = max(int(planned.get("spent") or 0) - sends, 0)
        return self._spent_before

    def save(self, decisions: Mapping[str, Decision], report: UnblockReport) -> None:
        payload = {
            **verdicts_of(report, self.min_hours, self.now).to_json(),
            "decisions": {rid: decision_to_json(d) for rid, d in decisions.items()},
            "spent": self.spent() + int(report.email_checks),
        }
        self.store.variables.set(self.key, json.dumps(payload, separators=(",", ":")))


def group_reference(info: Mapping[str, Any]) -> dict[str, Any]:
    """What a mapped task of a coverage source needs (small: no claim, no plan): where its checkpoint goes, the
    run's "now" for the bounce-age policy, and whether the run is a dry run (no checkpoint then)."""
    ref = {k: info[k] for k in ("dag_id", "key", "now", "min_hours_since_bounce")}
    ref["conn_id"] = info.get("conn_id")
    ref["dry_run"] = bool(info.get("dry_run"))
    return ref


def task_checkpoint(
    coverage: Mapping[str, Any],
    run_id: str,
    map_index: int,
    variables: Variables | None = None,
    *,
    role: str = "",
    plan_key: str | None = None,
) -> VariableCheckpoint:
    """The seam of a mapped task, from the ``coverage`` reference its group carries."""
    store = _store_of(coverage, variables)
    return VariableCheckpoint(
        store,
        run_id,
        map_index,
        float(coverage["min_hours_since_bounce"]),
        float(coverage["now"]),
        role=role,
        plan_key=plan_key,
    )


def for_task(
    coverage: Mapping[str, Any],
    plan: UnblockPlan,
    run_id: str,
    map_index: int,
    variables: Variables | None = None,
) -> tuple[UnblockPlan, VariableCheckpoint | None]:
    """A mapped task's plan on the run's clock, and its checkpoint for retries.

    - a dry run's task (a run with ``dry_run``, or the approval's plan task): a checkpoint of role ``plan``, so
      a retried try reads no Emails list twice, and the unblock task of the same group (after an approval)
      reuses its decisions (scenario 7); the report deletes it, so a dry run leaves every Variable as it was;
    - the unblock task: its own checkpoint, reading the plan's decisions too when there was a plan."""
    plan = replace(plan, now=float(coverage["now"]))
    if coverage.get("dry_run") or plan.dry_run:
        return plan, task_checkpoint(coverage, run_id, map_index, variables, role=PLAN_ROLE)
    store = _store_of(coverage, variables)
    return plan, task_checkpoint(
        coverage, run_id, map_index, variables, plan_key=store.checkpoint_key(run_id, map_index, PLAN_ROLE)
    )


# -- 3. commit and report ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceOutcome:
    """What the report prints for one coverage source."""

    key: str
    module: str
    line: str
    state: CoverageState
    read: int
    credits: int | None


def finish_source(
    store: CoverageStore,
    info: Mapping[str, Any],
    run_id: str,
    map_indexes: Iterable[int],
    *,
    next_run_at: float | None = None,
    verdicts: Mapping[str, Verdict] | None = None,
    delete: bool = True,
) -> tuple[CoverageState, Any]:
    """Merge the run's verdicts (or take ``verdicts``), advance the state over them only, commit under the claim,
    and only then delete the checkpoints (``delete``): a failed commit leaves them for the retried step
    (scenario 6). A commit already stored (a retried step) is not written again."""
    indexes = list(map_indexes)
    claim = Claim.from_json(dict(info["claim"]))
    plan = _plan_from_json(info["plan"])
    now = float(info["now"])
    if verdicts is None:
        verdicts = store.collect_checkpoints(run_id, indexes).verdicts
    planned = set(plan.ids)
    verdicts = {rid: v for rid, v in verdicts.items() if rid in planned}
    after = apply_outcomes(claim.state, plan, verdicts, now)
    store.commit(claim, after)
    if delete:
        store.delete_checkpoints(run_id, indexes, roles=("", PLAN_ROLE))
    summary = summarize(
        claim.state, after, plan, verdicts, now + NIGHT_SECONDS if next_run_at is None else next_run_at
    )
    return after, summary


def discard_source(
    store: CoverageStore, info: Mapping[str, Any], run_id: str, map_indexes: Iterable[int]
) -> None:
    """A run that commits nothing (a dry run, a rejected plan): the lease released, the Variable as it was before
    the claim (C3, C6), and any checkpoint of the run removed (an approval's plan task wrote them)."""
    store.release(Claim.from_json(dict(info["claim"])))
    store.delete_checkpoints(run_id, list(map_indexes), roles=("", PLAN_ROLE))


def finish_sources(
    found: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    results: Sequence[Mapping[str, Any] | None],
    run_id: str,
    *,
    planned: Sequence[Mapping[str, Any] | None] | None = None,
    conn_id: str | None = None,
    reset_first: bool = False,
    rejected: bool = False,
    dry_run: bool = False,
    variables: Variables | None = None,
    store_options: Mapping[str, Any] | None = None,
    next_run_at: float | None = None,
) -> list[str]:
    """The report task's step: commit every coverage source, and the report's lines (one per source, then the
    run's credits: the candidates task's and every unblock task's ``client.credits_spent``). ``groups`` are the
    mapped tasks' kwargs in map-index order (a coverage group names its source's key).

    ``results`` may hold None for a group whose task failed or was killed: its checkpoint supplies the verdicts
    it reached (scenario 1); the run should still fail after this step (the caller raises). A record read for
    one coverage source counts for every coverage source of its module that planned it this run. Checkpoints
    are deleted only after every commit is stored (scenario 6). ``rejected``/``dry_run``: nothing is committed,
    leases are released and every Variable is as before the run (C3, C6). ``conn_id``/``reset_first`` are
    those the run planned with (each source's plan carries them too)."""
    lines: list[str] = []
    by_key: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        if group.get("coverage"):
            by_key.setdefault(str(group["coverage"]["key"]), []).append(i)
    task_credits: dict[int, int] = {}
    for tasks in (
        results,
        planned or (),
    ):  # planned: an approval's plan tasks (same groups, same map indexes)
        for i, result in enumerate(tasks):
            if result and isinstance(result.get("credits_spent"), int):
                task_credits[i] = task_credits.get(i, 0) + int(result["credits_spent"])
    entries = [e for e in found if e.get("coverage")]
    stores = {
        id(e): _store_of(
            {**e["coverage"], "conn_id": e["coverage"].get("conn_id") or conn_id}, variables, store_options
        )
        for e in entries
    }
    discard = rejected or dry_run or any(e["coverage"].get("dry_run") for e in entries)
    if discard:
        for entry in entries:
            info = entry["coverage"]
            discard_source(stores[id(entry)], info, run_id, by_key.get(str(info["key"]), []))
            why = "a dry run" if dry_run or info.get("dry_run") else "the plan was rejected"
            plan = _plan_from_json(info["plan"])
            lines.append(
                f"Coverage of source #{int(entry['source']) + 1} {entry['module']}"
                f" (budget {info['plan']['budget']:,}): {why}: nothing committed; this run would read"
                f" {len(plan.ids):,} of {plan.module_size:,} records; the stored coverage is unchanged."
            )
    else:
        # every task's verdicts per module: a record read for one source counts for each that planned it
        by_module: dict[str, dict[str, Verdict]] = {}
        for entry in entries:
            info = entry["coverage"]
            merged = stores[id(entry)].collect_checkpoints(run_id, by_key.get(str(info["key"]), []))
            by_module.setdefault(str(entry["module"]), {}).update(merged.verdicts)
        lost: list[CoverageLostError] = []
        for entry in entries:
            info = entry["coverage"]
            indexes = by_key.get(str(info["key"]), [])
            try:
                _after, summary = finish_source(
                    stores[id(entry)],
                    info,
                    run_id,
                    indexes,
                    verdicts=by_module.get(str(entry["module"]), {}),
                    delete=False,
                    next_run_at=next_run_at,
                )
            except CoverageLostError as exc:
                lost.append(exc)
                lines.append(f"Coverage of source #{int(entry['source']) + 1} {entry['module']}: {exc}")
                continue
            credits = int(entry.get("credits_spent") or 0) + sum(task_credits.get(i, 0) for i in indexes)
            lines.append(
                f"Coverage of source #{int(entry['source']) + 1} {entry['module']}"
                f" (budget {info['plan']['budget']:,}{', reset this run' if info.get('reset') else ''}):"
                f" {summary.describe()}; credits spent on it this run: {credits:,}."
            )
        if lost:
            raise CoverageLostError(" ".join(str(e) for e in lost))
        for entry in entries:  # every commit is stored: the checkpoints can go
            stores[id(entry)].delete_checkpoints(
                run_id, by_key.get(str(entry["coverage"]["key"]), []), roles=("", PLAN_ROLE)
            )
    failed = [i for i in range(len(groups)) if i >= len(results) or results[i] is None]
    if entries and failed and not discard and results:
        lines.append(
            f"{len(failed)} unblock task(s) failed (map index {', '.join(map(str, failed))}): the verdicts they"
            " reached were committed from their checkpoints; their other records are read again next run."
        )
    total = sum(int(e.get("credits_spent") or 0) + int(e.get("credits_setup") or 0) for e in found)
    total += sum(task_credits.values())
    lines.append(f"Credits spent by this run (client count): {total:,}.")
    return lines


@dataclass(frozen=True)
class NightResult:
    """One run of one coverage source driven without Airflow (:func:`run_source_once`)."""

    ids: list[str]
    report: UnblockReport | None
    state: CoverageState
    summary: Any
    failed: Exception | None


def run_source_once(
    client: Any,
    store: CoverageStore,
    run_id: str,
    candidates: Sequence[str],
    *,
    module: str,
    budget: int,
    min_hours_since_bounce: float = 0.0,
    unblock_fields: Sequence[str] = ("Email",),
    batch_size: int = 500,
    max_parallel: int = 1,
    tries: int = 1,
    reset_first: bool = False,
    addresses: Mapping[str, Mapping[str, str | None]] | None = None,
) -> NightResult:
    """The DAG's steps for one source in one process (the simulation, and tests of the steps): plan under a claim,
    run the job with a checkpoint (``tries`` attempts, as task retries), commit. Emails checks are capped at
    ``budget`` as the DAG caps them. ``addresses``: the records' addresses as read with the candidates (the DAG
    reads them with the ids); None: the job reads them itself."""
    from airflow_provider_zohocrm.zoho.unblock_job import UnblockJobFailed, UnblockPlan, run_unblock

    now = client.server_time()
    ids, info = plan_source(store, run_id, candidates, budget, now, reset_first=reset_first)
    info["min_hours_since_bounce"] = min_hours_since_bounce
    report: UnblockReport | None = None
    failed: Exception | None = None
    if ids:
        plan = UnblockPlan.build(
            module,
            ids,
            list(unblock_fields),
            batch_size,
            verify="emails",
            min_hours_since_bounce=min_hours_since_bounce,
            max_email_checks=budget,
            addresses={rid: addresses[rid] for rid in ids if rid in addresses} if addresses else None,
        )
        plan, checkpoint = for_task(group_reference(info), plan, run_id, 0, store.variables)
        for _ in range(tries):
            try:
                report = run_unblock(client, plan, max_parallel, checkpoint=checkpoint)
                failed = None
                break
            except UnblockJobFailed as exc:
                report, failed = exc.report, exc
    state, summary = finish_source(store, info, run_id, [0])
    return NightResult(ids, report, state, summary, failed)


def runs_per_cycle(module_size: int, budget: int) -> int:
    """Runs a full cycle takes at a budget (the rule of thumb: budget ≥ module size / K for a cycle in K runs)."""
    return max(1, math.ceil(module_size / budget))


__all__ = [
    "DOMAIN_REASON_PREFIX",
    "NIGHT_SECONDS",
    "PLAN_ROLE",
    "CoverageConfigError",
    "NightResult",
    "VariableCheckpoint",
    "decision_from_json",
    "decision_to_json",
    "dedupe_after_cut",
    "discard_source",
    "finish_source",
    "finish_sources",
    "for_task",
    "group_reference",
    "plan_source",
    "plan_sources",
    "run_source_once",
    "runs_per_cycle",
    "source_key",
    "take_claim",
    "task_checkpoint",
    "uses_coverage",
    "verdicts_of",
]
