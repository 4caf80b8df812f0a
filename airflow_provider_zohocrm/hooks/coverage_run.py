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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from airflow_provider_zohocrm.hooks.coverage_store import Claim, CoverageStore, Variables
from airflow_provider_zohocrm.zoho.coverage import (
    CoverageState,
    RunCheckpoint,
    RunPlan,
    Verdict,
    apply_outcomes,
    plan_run,
    summarize,
)
from airflow_provider_zohocrm.zoho.emails import BUDGET_REASON
from airflow_provider_zohocrm.zoho.unblock import Outcome, UnblockReport
from airflow_provider_zohocrm.zoho.unblock_job import Decision, FieldDecision, UnblockPlan

#: The schedule's period, used for "deferred records due by the next run" (the example DAG runs @daily).
NIGHT_SECONDS = 86_400.0


def uses_coverage(source: Mapping[str, Any]) -> bool:
    """Rolling coverage applies to a source with ``verify="emails"`` and a ``max_email_checks`` budget."""
    return source.get("verify") == "emails" and source.get("max_email_checks") is not None


def source_key(source: Mapping[str, Any]) -> str:
    """A stable name of a source's coverage: module, kind and a hash of what selects its records (the view, the
    query). The whole-module source's date filter is left out: its query text changes every day with ``days``."""
    kind = str(source.get("kind"))
    what = "" if kind == "all" else str(source.get("view") or source.get("cvid") or source.get("query") or "")
    digest = hashlib.sha256(what.encode()).hexdigest()[:10]
    return f"{source.get('module')}.{kind}.{digest}" if what else f"{source.get('module')}.{kind}"


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


def plan_source(
    store: CoverageStore,
    run_id: str,
    candidates: Sequence[str],
    budget: int,
    now: float,
    *,
    reset_first: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """Claim the source's coverage and plan this run: (the ids to read, in order; the plan to carry to the
    report). ``now`` is on Zoho's clock (``client.server_time()``)."""
    if reset_first:
        store.reset(now)
    claim = store.claim(run_id)
    plan = plan_run(claim.state, candidates, budget, now)
    info = {
        "key": store.source_key,
        "dag_id": store.dag_id,
        "claim": claim.to_json(),
        "plan": _plan_json(plan),
        "now": now,
        "reset": reset_first,
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
    variables: Variables | None = None,
) -> list[dict[str, Any]]:
    """The candidates task's step: each coverage source's ``ids`` cut to this run's plan, the plan under
    ``coverage`` (other sources unchanged). Every source is claimed before any is changed; a busy source fails
    the task before anything was read."""
    out = []
    for entry in found:
        source = sources[int(entry["source"])]
        if not uses_coverage(source):
            out.append(entry)
            continue
        store = CoverageStore(dag_id, source_key(source), variables)
        ids, info = plan_source(
            store, run_id, entry["ids"], int(source["max_email_checks"]), now, reset_first=reset_first
        )
        info["min_hours_since_bounce"] = float(source.get("min_hours_since_bounce") or 0)
        out.append({**entry, "ids": ids, "candidates": len(entry["ids"]), "coverage": info})
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


def verdicts_of(report: UnblockReport, min_hours: float, now: float) -> RunCheckpoint:
    """The coverage verdicts of a task's report: every id with an outcome is ``done``, except a young bounce
    (``deferred`` with its due time) and a record the budget left unread (no verdict, like a pending id)."""
    out = RunCheckpoint()
    for outcome, ids in report.ids.items():
        for rid in ids:
            if outcome == Outcome.DEFERRED.value:
                if report.reasons.get(rid) == BUDGET_REASON:
                    continue
                due = _bounce_due(report.details.get(rid), min_hours, now)
                out.record(rid, Verdict("deferred", max(due, now + 1.0)))
                continue
            # per field (both email fields): a young bounce on one field brings the record back when it is due
            young = [
                f
                for f, word in (report.fields.get(rid) or {}).items()
                if word == Outcome.DEFERRED.value and report.field_reasons.get(f"{rid} {f}") != BUDGET_REASON
            ]
            if young:
                due = min(_bounce_due(report.field_details.get(f"{rid} {f}"), min_hours, now) for f in young)
                out.record(rid, Verdict("deferred", max(due, now + 1.0)))
            else:
                out.record(rid, Verdict("done"))
    return out


class VariableCheckpoint:
    """The job's checkpoint seam for one mapped task of one run: a Variable of the store (per map index)."""

    def __init__(
        self, store: CoverageStore, run_id: str, map_index: int, min_hours: float, now: float
    ) -> None:
        self.store = store
        self.key = store.checkpoint_key(run_id, map_index)
        self.min_hours = min_hours
        self.now = now

    def load(self) -> dict[str, Decision]:
        raw = self.store.variables.get(self.key)
        data = json.loads(raw) if raw else {}
        return {rid: decision_from_json(rid, d) for rid, d in (data.get("decisions") or {}).items()}

    def save(self, decisions: Mapping[str, Decision], report: UnblockReport) -> None:
        payload = {
            **verdicts_of(report, self.min_hours, self.now).to_json(),
            "decisions": {rid: decision_to_json(d) for rid, d in decisions.items()},
        }
        self.store.variables.set(self.key, json.dumps(payload, separators=(",", ":")))


def group_reference(info: Mapping[str, Any]) -> dict[str, Any]:
    """What a mapped task of a coverage source needs (small: no claim, no plan): where its checkpoint goes, and
    the run's "now" for the bounce-age policy."""
    return {k: info[k] for k in ("dag_id", "key", "now", "min_hours_since_bounce")}


def task_checkpoint(
    coverage: Mapping[str, Any], run_id: str, map_index: int, variables: Variables | None = None
) -> VariableCheckpoint:
    """The seam of a mapped task, from the ``coverage`` reference its group carries."""
    store = CoverageStore(str(coverage["dag_id"]), str(coverage["key"]), variables)
    return VariableCheckpoint(
        store, run_id, map_index, float(coverage["min_hours_since_bounce"]), float(coverage["now"])
    )


def for_task(
    coverage: Mapping[str, Any], plan: UnblockPlan, run_id: str, map_index: int
) -> tuple[UnblockPlan, VariableCheckpoint | None]:
    """A mapped task's plan on the run's clock, and its checkpoint for retries (none for a dry run: it reads
    but moves no cursor)."""
    plan = replace(plan, now=float(coverage["now"]))
    return plan, None if plan.dry_run else task_checkpoint(coverage, run_id, map_index)


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
) -> tuple[CoverageState, Any]:
    """Merge the run's verdicts, advance the state over them only, and commit under the claim."""
    claim = Claim.from_json(dict(info["claim"]))
    plan = _plan_from_json(info["plan"])
    now = float(info["now"])
    verdicts = store.collect_checkpoints(run_id, map_indexes).verdicts
    planned = set(plan.ids)
    verdicts = {rid: v for rid, v in verdicts.items() if rid in planned}
    after = apply_outcomes(claim.state, plan, verdicts, now)
    store.commit(claim, after)
    summary = summarize(
        claim.state, after, plan, verdicts, now + NIGHT_SECONDS if next_run_at is None else next_run_at
    )
    return after, summary


def finish_sources(
    found: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    results: Sequence[Mapping[str, Any] | None],
    run_id: str,
    *,
    planned: Sequence[Mapping[str, Any] | None] = (),
    variables: Variables | None = None,
) -> list[str]:
    """The report task's step: commit every coverage source, and the report's lines (one per source, then the
    run's credits: the candidates task's and every unblock task's ``client.credits_spent``). ``groups`` are the
    mapped tasks' kwargs in map-index order (a coverage group names its source's key)."""
    lines: list[str] = []
    by_key: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        if group.get("coverage"):
            by_key.setdefault(str(group["coverage"]["key"]), []).append(i)
    task_credits: dict[int, int] = {}
    for tasks in (results, planned):  # planned: an approval's plan tasks (same groups, same map indexes)
        for i, result in enumerate(tasks):
            if result and isinstance(result.get("credits_spent"), int):
                task_credits[i] = task_credits.get(i, 0) + int(result["credits_spent"])
    for entry in found:
        info = entry.get("coverage")
        if not info:
            continue
        store = CoverageStore(str(info["dag_id"]), str(info["key"]), variables)
        indexes = by_key.get(str(info["key"]), [])
        _after, summary = finish_source(store, info, run_id, indexes)
        credits = int(entry.get("credits_spent") or 0) + sum(task_credits.get(i, 0) for i in indexes)
        lines.append(
            f"Coverage of source #{int(entry['source']) + 1} {entry['module']}"
            f" (budget {info['plan']['budget']:,}{', reset this run' if info.get('reset') else ''}):"
            f" {summary.describe()}; credits spent on it this run: {credits:,}."
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
    checkpoint = task_checkpoint(group_reference(info), run_id, 0, store.variables)
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
        plan = replace(plan, now=now)
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
    "NIGHT_SECONDS",
    "NightResult",
    "VariableCheckpoint",
    "decision_from_json",
    "decision_to_json",
    "finish_source",
    "finish_sources",
    "group_reference",
    "plan_source",
    "plan_sources",
    "run_source_once",
    "runs_per_cycle",
    "source_key",
    "task_checkpoint",
    "uses_coverage",
    "verdicts_of",
]
