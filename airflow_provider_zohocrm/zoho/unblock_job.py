"""The unblock job: verify → group by fields → batch → unblock → tag, with its concurrency. No Airflow here.

:func:`run_unblock` takes a protocol client and a validated :class:`UnblockPlan` and returns the
:class:`UnblockReport`, in which every id ends in exactly one outcome or in ``pending`` with its reason. The
operator adapts it to a task (templating, XCom, ``fail_on``); tests and other tools can run it on a client alone.

The steps, and where later work plugs in:

1. **Verify** (:data:`VERIFIERS`, one per ``verify`` mode) returns one :class:`Decision` per record: the fields to
   unblock, or a final outcome with no call (hard bounce, nothing blocked, deferred). Per-address verification
   (a decision per record *and* field) and rolling coverage (a resumable cursor, records due again, credits spent)
   are further verifiers or state around this step.
2. **Group** the records to send by their field set (:func:`group_by_fields`): one unblock call carries one
   ``unblock_fields`` list.
3. **Unblock** each group in batches of at most ``batch_size`` ids (one record in all: the single-record
   endpoint).
4. **Tag** the records a person must handle, when the plan names a tag.

Calls run on a :class:`CallPool`: at most ``max_parallel`` in flight; after the first failed call nothing new
starts, and :class:`UnblockJobFailed` carries the report with every id accounted for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from airflow_provider_zohocrm.zoho.emails import (
    BUDGET_REASON,
    BounceCheck,
    CallBudget,
    Verdict,
    check_bounce,
)
from airflow_provider_zohocrm.zoho.errors import (
    ZohoConfigError,
    ZohoCRMError,
    ZohoInvalidClientError,
    ZohoRefreshTokenError,
    ZohoRequestError,
    ZohoScopeError,
)
from airflow_provider_zohocrm.zoho.params import (
    parse_batch_size,
    parse_emails_options,
    parse_flag,
    parse_max_parallel,
    parse_record_ids,
    parse_tag,
    parse_verify,
)
from airflow_provider_zohocrm.zoho.tags import tag_records
from airflow_provider_zohocrm.zoho.unblock import (
    MAX_IDS_PER_CALL,
    NEEDS_PERSON_OUTCOMES,
    Outcome,
    UnblockReport,
    UnblockRequest,
)

if TYPE_CHECKING:
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient


class Logger(Protocol):
    """What the job logs through: a ``logging.Logger``, or the task's logger (the operator's ``self.log``)."""

    def info(self, msg: str, /, *args: Any) -> Any: ...

    def warning(self, msg: str, /, *args: Any) -> Any: ...


_log = logging.getLogger(__name__)
_T = TypeVar("_T")
NOT_SENT = "not sent: an earlier call of this task failed"
NOT_CHECKED = "not checked: an earlier call of this task failed"
CHECKED_NOT_SENT = "checked, not unblocked: an Emails check of this task failed"
Details = dict[str, str | None]


@dataclass(frozen=True)
class UnblockPlan:
    """Everything the job needs, validated before any call (:meth:`build` raises ZohoValidationError)."""

    request: UnblockRequest
    dry_run: bool = False
    verify: str = "none"
    min_hours_since_bounce: float = 0.0
    max_email_checks: int | None = None
    needs_person_tag: str | None = None
    #: "Now" for the bounce-age policy, epoch seconds on Zoho's clock (rolling coverage passes the run's planning
    #: time, so every task of a run judges ages alike); None: the client's :meth:`server_time` when checking.
    now: float | None = None

    @classmethod
    def build(
        cls,
        module: Any,
        record_ids: Any,
        unblock_fields: Any = ("Email",),
        batch_size: Any = MAX_IDS_PER_CALL,
        *,
        dry_run: Any = False,
        verify: Any = "none",
        min_hours_since_bounce: Any = 0,
        max_email_checks: Any = None,
        needs_person_tag: Any = None,
        strict: bool = True,
    ) -> UnblockPlan:
        """Every value through zoho/params.py's rules; templated strings are read as the operator gets them.
        ``strict``: refuse emails-only options set with another ``verify`` (see ``parse_emails_options``)."""
        request = UnblockRequest.build(
            module, parse_record_ids(record_ids), unblock_fields, parse_batch_size(batch_size)
        )
        mode = parse_verify(verify)
        hours, checks = parse_emails_options(mode, min_hours_since_bounce, max_email_checks, strict=strict)
        return cls(
            request=request,
            dry_run=parse_flag(dry_run, "dry_run"),
            verify=mode,
            min_hours_since_bounce=hours,
            max_email_checks=checks,
            needs_person_tag=parse_tag(needs_person_tag),
        )

    def dry_run_summary(self) -> str:
        """What a dry run would do, in one log line."""
        request = self.request
        return (
            f"Dry run (verify={self.verify}): would unblock {'/'.join(request.unblock_fields)} of up to"
            f" {len(request.record_ids)} {request.module} record(s) in up to {len(request.batches())} call(s);"
            " nothing sent."
        )

    def dry_run_report(self) -> UnblockReport:
        """What a dry run reports: every id pending, nothing sent."""
        report = self.new_report()
        report.add_pending(self.request.record_ids, "dry run: nothing sent")
        return report

    def new_report(self) -> UnblockReport:
        request = self.request
        return UnblockReport(
            module=request.module,
            unblock_fields=request.unblock_fields,
            dry_run=self.dry_run,
            verify=self.verify,
        )


#: Failures that no retry can fix (configuration, a dead refresh token or client, a missing scope).
_FINAL_ERRORS = (ZohoConfigError, ZohoRefreshTokenError, ZohoInvalidClientError, ZohoScopeError)
#: Call-level refusals of the request itself (e.g. "EMAIL, SECONDARY_EMAIL field not available for module"):
#: Zoho answers every retry the same, so they are final too.
_FINAL_CODES = frozenset({"NOT_ALLOWED", "INVALID_MODULE", "MANDATORY_NOT_FOUND", "LIMIT_EXCEEDED"})


class UnblockJobFailed(Exception):
    """A Zoho call failed. ``report`` holds every id: an outcome, or ``pending`` with the reason."""

    def __init__(self, error: ZohoCRMError, report: UnblockReport) -> None:
        super().__init__(str(error))
        self.error = error
        self.report = report

    @property
    def final(self) -> bool:
        """True when a retry would fail the same way (fail the task at once)."""
        error = self.error
        return isinstance(error, _FINAL_ERRORS) or (
            isinstance(error, ZohoRequestError) and error.code in _FINAL_CODES
        )

    def explain(self) -> str:
        """The error, and how far the job got (a retry is safe: done ids come back already_unblocked)."""
        report = self.report
        have = report.total - len(report.pending)
        return (
            f"{self.error} ({have} of {report.total} ids had an outcome before this,"
            f" {len(report.pending)} are pending with the reason in the report; a retry is safe)"
        )


# -- concurrency ------------------------------------------------------------------------------------------------


class _CallFailed(Exception):
    def __init__(self, error: ZohoCRMError) -> None:
        super().__init__(str(error))
        self.error = error


class _Skipped(Exception):
    """Not started because an earlier call of the job failed."""


@dataclass(frozen=True)
class CallPool:
    """At most ``max_parallel`` Zoho calls in flight (keep pool slots x this within the org's Zoho limit)."""

    max_parallel: int = 1

    def __post_init__(self) -> None:
        parse_max_parallel(self.max_parallel)

    def run(
        self,
        items: Sequence[_T],
        call: Callable[[_T], Any],
        done: Callable[[int, _T, Any], None],
        failed: Callable[[_T, ZohoCRMError], None],
        skipped: Callable[[_T], None],
    ) -> None:
        """Run ``call`` on each item. After the first failure nothing new starts; every item is reported to
        exactly one of ``done``, ``failed`` or ``skipped``, then the first failure is raised."""
        stop = threading.Event()
        first_error: ZohoCRMError | None = None

        def guarded(item: _T) -> Any:
            if stop.is_set():
                raise _Skipped
            return call(item)

        def settle(number: int, item: _T, run: Callable[[], Any]) -> None:
            nonlocal first_error
            try:
                outcome = run()
            except _Skipped:
                skipped(item)
            except ZohoCRMError as exc:
                stop.set()
                first_error = first_error or exc
                failed(item, exc)
            except BaseException:
                stop.set()  # a bug, or the task being stopped: start nothing more
                raise
            else:
                done(number, item, outcome)

        workers = min(self.max_parallel, len(items))
        if workers <= 1:
            for number, item in enumerate(items, start=1):
                settle(number, item, partial(guarded, item))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(guarded, item): (n, item) for n, item in enumerate(items, start=1)}
                try:
                    for future in as_completed(futures):
                        number, item = futures[future]
                        settle(number, item, future.result)
                except BaseException:  # e.g. the task's timeout: no queued call may start after it
                    stop.set()
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        if first_error is not None:
            raise _CallFailed(first_error)


# -- step 1: verify ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The verify step's word on one record: the fields to unblock, or (``fields`` empty) a final outcome
    reached without an unblock call. ``details`` are Zoho's bounce details when known."""

    record_id: str
    fields: tuple[str, ...] = ()
    outcome: Outcome | None = None
    details: Details | None = None
    reason: str | None = None

    @property
    def send(self) -> bool:
        return bool(self.fields)


@dataclass
class VerifyFailed(Exception):
    """A verify call failed: ``decided`` holds the decisions made, ``errors`` the failed records' reasons."""

    error: ZohoCRMError
    decided: dict[str, Decision] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class Verifier(Protocol):
    """One ``verify`` mode: a decision per record id, in input order; raises :class:`VerifyFailed`."""

    def __call__(
        self, client: ZohoCRMClient, plan: UnblockPlan, pool: CallPool, report: UnblockReport, log: Logger
    ) -> list[Decision]: ...


def trust_source(
    client: ZohoCRMClient, plan: UnblockPlan, pool: CallPool, report: UnblockReport, log: Logger
) -> list[Decision]:
    """``verify="none"`` and ``"sweep"``: every record is sent; Zoho's unblock answer classifies it."""
    fields = tuple(plan.request.unblock_fields)
    return [Decision(rid, fields) for rid in plan.request.record_ids]


def decision_from_check(record_id: str, check: BounceCheck, fields: tuple[str, ...]) -> Decision:
    """Soft and unknown verdicts are sent (Zoho's answer decides the unknown); the rest end here."""
    if check.verdict in (Verdict.SOFT, Verdict.UNKNOWN):
        return Decision(record_id, fields, details=check.details())
    if check.verdict == Verdict.HARD:
        return Decision(record_id, outcome=Outcome.PERMANENTLY_BLOCKED, details=check.details())
    if check.verdict == Verdict.NONE:
        return Decision(record_id, outcome=Outcome.NOT_BLOCKED)
    return Decision(record_id, outcome=Outcome.DEFERRED, details=check.details(), reason=check.note)


def check_emails(
    client: ZohoCRMClient, plan: UnblockPlan, pool: CallPool, report: UnblockReport, log: Logger
) -> list[Decision]:
    """``verify="emails"``: read each record's Emails list (one budget shared by every thread of the job)."""
    request = plan.request
    fields = tuple(request.unblock_fields)
    budget = CallBudget(plan.max_email_checks)
    now = datetime.fromtimestamp(plan.now if plan.now is not None else client.server_time(), UTC)
    checks: dict[str, BounceCheck] = {}
    errors: dict[str, str] = {}

    def check(record_id: str) -> BounceCheck:
        return check_bounce(
            client,
            request.module,
            record_id,
            now=now,
            min_hours_since_bounce=plan.min_hours_since_bounce,
            budget=budget,
        )

    def failed(record_id: str, exc: ZohoCRMError) -> None:
        errors[record_id] = f"Emails check failed: {exc}"

    try:
        pool.run(
            request.record_ids,
            check,
            lambda _n, rid, result: checks.__setitem__(rid, result),
            failed,
            _ignore,
        )
    except _CallFailed as stop:
        report.email_checks = budget.spent
        decided = {rid: decision_from_check(rid, c, fields) for rid, c in checks.items()}
        raise VerifyFailed(stop.error, decided, errors) from None
    report.email_checks = budget.spent
    tally: dict[str, int] = {}
    for result in checks.values():
        tally[result.verdict] = tally.get(result.verdict, 0) + 1
    log.info(
        "Emails checks: %d record(s), %d call(s)%s: %s.",
        len(request.record_ids),
        budget.spent,
        f" (budget {plan.max_email_checks})" if plan.max_email_checks is not None else "",
        ", ".join(f"{n} {verdict}" for verdict, n in sorted(tally.items(), key=lambda kv: -kv[1])),
    )
    return [decision_from_check(rid, checks[rid], fields) for rid in request.record_ids]


def _ignore(_item: Any) -> None:
    return None


#: The verify step of each mode.
VERIFIERS: Mapping[str, Verifier] = {"none": trust_source, "sweep": trust_source, "emails": check_emails}
#: How Zoho's answer reads per mode: in a sweep nothing was known blocked, so "already unblocked" = never blocked.
_REMAP: Mapping[str, Mapping[Outcome, Outcome]] = {"sweep": {Outcome.ALREADY_UNBLOCKED: Outcome.NOT_BLOCKED}}


# -- steps 2 and 3: group and unblock ------------------------------------------------------------------------------


def group_by_fields(decisions: Sequence[Decision]) -> list[tuple[tuple[str, ...], list[str]]]:
    """The records to send, grouped by field set (one call carries one ``unblock_fields``), in first-seen order."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for decision in decisions:
        if decision.send:
            groups.setdefault(decision.fields, []).append(decision.record_id)
    return list(groups.items())


def _unblock(
    client: ZohoCRMClient,
    plan: UnblockPlan,
    pool: CallPool,
    report: UnblockReport,
    decisions: Sequence[Decision],
    log: Logger,
) -> None:
    request = plan.request
    size = request.batch_size
    details = {d.record_id: d.details for d in decisions if d.send and d.details is not None}
    batches = [
        (fields, ids[i : i + size])
        for fields, ids in group_by_fields(decisions)
        for i in range(0, len(ids), size)
    ]
    remap = _REMAP.get(plan.verify)
    single = sum(len(ids) for _, ids in batches) == 1  # one record in all: the single-record endpoint

    def send(batch: tuple[tuple[str, ...], list[str]]) -> list[dict[str, Any]]:
        fields, ids = batch
        if single:
            return client.unblock_email(request.module, ids[0], list(fields))
        return client.unblock_emails(request.module, ids, list(fields))

    def done(number: int, batch: tuple[tuple[str, ...], list[str]], items: list[dict[str, Any]]) -> None:
        counts = report.add_answer(batch[1], items, remap=remap, details=details)
        summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        log.info("batch %d/%d: %d ids, %s", number, len(batches), len(batch[1]), summary)

    def failed(batch: tuple[tuple[str, ...], list[str]], exc: ZohoCRMError) -> None:
        report.calls += 1
        report.add_pending(
            batch[1],
            f"unblock call failed ({exc}); Zoho may have applied it: a retry reports such ids already_unblocked",
        )

    pool.run(batches, send, done, failed, lambda batch: report.add_pending(batch[1], NOT_SENT))


# -- step 4: tag -------------------------------------------------------------------------------------------------


def tag_needs_person(
    client: ZohoCRMClient, module: str, tag: str, report: UnblockReport, log: Logger
) -> None:
    """Tag the records a person must look at, so reps can filter the CRM list view on the tag. A failure is
    logged and reported; it never hides the unblock results."""
    ids = [rid for outcome in sorted(NEEDS_PERSON_OUTCOMES) for rid in report.ids[outcome]]
    if not ids:
        return
    try:
        tagging = tag_records(client, module, ids, [tag])  # ≤ 500 ids per call
    except Exception as exc:  # whatever it is, a tag failure must not lose the unblock report
        report.tag_errors.append(f"tag call failed for {len(ids)} id(s): {type(exc).__name__}: {exc}")
        log.warning("Could not tag needs-person records with %r: %s", tag, report.tag_errors[-1])
        return
    report.tag_calls += tagging.calls
    report.tagged += tagging.ids("tagged")
    refused = [item for item in tagging.items if item["outcome"] != "tagged"]
    report.tag_errors += [
        f"{item['id']}: {item['outcome']} ({item['code']}: {item['message']})" for item in refused
    ]
    if refused:
        log.warning(
            "%d of %d needs-person record(s) not tagged with %r: %s",
            len(refused),
            len(ids),
            tag,
            report.tag_errors[-len(refused) :][:5],
        )
    log.info("Tagged %d of %d needs-person record(s) with %r.", len(report.tagged), len(ids), tag)


# -- retries: the checkpoint seam --------------------------------------------------------------------------------


class Checkpoint(Protocol):
    """Where a task keeps what its tries learnt (rolling coverage: an Airflow Variable per mapped task). A retried
    try reads the Emails list only of records without a saved decision, and sends the saved ``send`` decisions
    again (a record unblocked by the earlier try answers ``already_unblocked``)."""

    def load(self) -> Mapping[str, Decision]: ...

    def save(self, decisions: Mapping[str, Decision], report: UnblockReport) -> None: ...


def _read_decisions(decisions: Mapping[str, Decision]) -> dict[str, Decision]:
    """The decisions that took an Emails read (a record deferred because the budget ran out was not read)."""
    return {
        rid: d
        for rid, d in decisions.items()
        if not (d.outcome == Outcome.DEFERRED and d.reason == BUDGET_REASON)
    }


def _verify(
    client: ZohoCRMClient,
    plan: UnblockPlan,
    pool: CallPool,
    report: UnblockReport,
    log: Logger,
    known: Mapping[str, Decision],
) -> list[Decision]:
    """The verify step, reusing ``known`` decisions (an earlier try's): only the other records are read, within
    what is left of the Emails budget."""
    request = plan.request
    todo = [rid for rid in request.record_ids if rid not in known]
    if not known:
        return VERIFIERS[plan.verify](client, plan, pool, report, log)
    log.info("Reusing %d decision(s) of an earlier try; %d record(s) left to verify.", len(known), len(todo))
    left = None if plan.max_email_checks is None else max(plan.max_email_checks - len(known), 0)
    sub = replace(plan, request=replace(request, record_ids=todo), max_email_checks=left)
    try:
        fresh = (
            {d.record_id: d for d in VERIFIERS[plan.verify](client, sub, pool, report, log)} if todo else {}
        )
    except VerifyFailed as stop:
        stop.decided = {**known, **stop.decided}
        raise
    return [known[rid] if rid in known else fresh[rid] for rid in request.record_ids]


# -- the job -----------------------------------------------------------------------------------------------------


def _record(report: UnblockReport, decision: Decision) -> None:
    assert decision.outcome is not None
    report.add(decision.record_id, decision.outcome, details=decision.details, reason=decision.reason)


def run_unblock(
    client: ZohoCRMClient,
    plan: UnblockPlan,
    max_parallel: int = 1,
    *,
    log: Logger | None = None,
    checkpoint: Checkpoint | None = None,
) -> UnblockReport:
    """Verify, unblock and tag ``plan``'s records; the report accounts for every id.

    A dry run (or no ids) makes no call. A failed Zoho call raises :class:`UnblockJobFailed` with the report:
    ids decided before it keep their outcome, the others are ``pending`` with the reason (a retry is safe).
    ``checkpoint``: decisions of an earlier try are reused (no second Emails read), and this try's decisions and
    outcomes are saved after the verify step and at the end, failed or not."""
    log = log or _log
    pool = CallPool(max_parallel)
    report = plan.new_report()
    request = plan.request
    if not request.record_ids:
        return report
    if plan.dry_run:
        return plan.dry_run_report()
    known = _read_decisions(checkpoint.load()) if checkpoint is not None else {}
    known = {rid: d for rid, d in known.items() if rid in set(request.record_ids)}
    try:
        decisions = _verify(client, plan, pool, report, log, known)
    except VerifyFailed as stop:
        for rid in request.record_ids:
            decision = stop.decided.get(rid)
            if decision is not None and not decision.send:
                _record(report, decision)
            else:
                report.add_pending([rid], CHECKED_NOT_SENT if decision else stop.errors.get(rid, NOT_CHECKED))
        if checkpoint is not None:
            checkpoint.save(_read_decisions(stop.decided), report)
        raise UnblockJobFailed(stop.error, report) from None
    for decision in decisions:
        if not decision.send:
            _record(report, decision)
    by_id = _read_decisions({d.record_id: d for d in decisions})
    if checkpoint is not None:
        checkpoint.save(by_id, report)
    try:
        _unblock(client, plan, pool, report, decisions, log)
    except _CallFailed as stop:
        if checkpoint is not None:
            checkpoint.save(by_id, report)
        raise UnblockJobFailed(stop.error, report) from None
    if checkpoint is not None:
        checkpoint.save(by_id, report)
    if plan.needs_person_tag:
        tag_needs_person(client, request.module, plan.needs_person_tag, report, log)
    return report


__all__ = [
    "VERIFIERS",
    "CallPool",
    "Checkpoint",
    "Decision",
    "UnblockJobFailed",
    "UnblockPlan",
    "Verifier",
    "VerifyFailed",
    "check_emails",
    "decision_from_check",
    "group_by_fields",
    "run_unblock",
    "tag_needs_person",
    "trust_source",
]
