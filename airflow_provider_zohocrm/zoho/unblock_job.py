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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from airflow_provider_zohocrm.zoho.addresses import addresses_by_id, fields_to_read
from airflow_provider_zohocrm.zoho.emails import (
    BUDGET_REASON,
    BounceCheck,
    CallBudget,
    Verdict,
    check_addresses,
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
    parse_addresses,
    parse_batch_size,
    parse_dns_options,
    parse_emails_options,
    parse_flag,
    parse_max_parallel,
    parse_record_ids,
    parse_tag,
    parse_verify,
)
from airflow_provider_zohocrm.zoho.per_field import PRECEDENCE, outcome_of_check, plan_unblock_calls
from airflow_provider_zohocrm.zoho.tags import tag_records
from airflow_provider_zohocrm.zoho.unblock import (
    DETAILED_OUTCOMES,
    MAX_IDS_PER_CALL,
    NEEDS_PERSON_OUTCOMES,
    Outcome,
    UnblockReport,
    UnblockRequest,
    _warn_unrecognised,
    classify_item,
    match_items,
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
#: The pending reason of a field a dry run would send (the plan); a live run sends it.
WOULD_SEND = "dry run: would be sent to Unblock Email"
#: Ids per COQL address read (``where id in (…)``; Zoho allows 50 values in ``in``).
ADDRESS_READ_CHUNK = 50
Details = dict[str, str | None]
_RANK = {outcome: i for i, outcome in enumerate(PRECEDENCE)}


@dataclass(frozen=True)
class UnblockPlan:
    """Everything the job needs, validated before any call (:meth:`build` raises ZohoValidationError)."""

    request: UnblockRequest
    dry_run: bool = False
    verify: str = "none"
    min_hours_since_bounce: float = 0.0
    max_email_checks: int | None = None
    needs_person_tag: str | None = None
    #: ``{id: {field: address or None}}`` as the source read them with the ids (None: the job reads them).
    addresses: Mapping[str, Mapping[str, str | None]] | None = None
    #: verify="emails": look up the domain of a domain/host-failure soft bounce before sending it (opt-in).
    check_domain: bool = False
    dns_options: Mapping[str, Any] | None = None
    #: "Now" for the bounce-age policy, epoch seconds on Zoho's clock (rolling coverage passes the run's planning
    #: time, so every task of a run judges ages alike); None: the client's ``server_time()`` when checking.
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
        addresses: Any = None,
        check_domain: Any = False,
        dns_options: Any = None,
        strict: bool = True,
    ) -> UnblockPlan:
        """Every value through zoho/params.py's rules; templated strings are read as the operator gets them.
        ``strict``: refuse emails-only options set with another ``verify`` (see ``parse_emails_options``)."""
        request = UnblockRequest.build(
            module, parse_record_ids(record_ids), unblock_fields, parse_batch_size(batch_size)
        )
        mode = parse_verify(verify)
        hours, checks = parse_emails_options(mode, min_hours_since_bounce, max_email_checks, strict=strict)
        domain_check = parse_flag(check_domain if check_domain is not None else False, "check_domain")
        dns = parse_dns_options(dns_options) or None
        if domain_check and mode == "emails":
            from airflow_provider_zohocrm.zoho.domains import DomainChecker  # dnspython only when used

            # a resolver that cannot be built fails here, before any call
            DomainChecker.from_options(dns, build=True)
        return cls(
            request=request,
            dry_run=parse_flag(dry_run, "dry_run"),
            verify=mode,
            min_hours_since_bounce=hours,
            max_email_checks=checks,
            needs_person_tag=parse_tag(needs_person_tag),
            addresses=parse_addresses(addresses, request.unblock_fields),
            check_domain=domain_check,
            dns_options=dns,
        )

    @property
    def per_field(self) -> bool:
        """More than one field in play: each unblock call carries one field, so Zoho's answer is per field
        (with both in one call Zoho answers once per record, and a field at its limit hides behind the other)."""
        return len(self.request.unblock_fields) > 1

    @property
    def reads(self) -> bool:
        """Whether the verify step reads from Zoho (a dry run then makes those reads, and only those)."""
        return self.verify == "emails"

    def dry_run_summary(self) -> str:
        """What a dry run does, in one log line."""
        request = self.request
        reads = "reads Emails lists, sends nothing" if self.reads else "makes no call"
        return (
            f"Dry run (verify={self.verify}): plans {'/'.join(request.unblock_fields)} of"
            f" {len(request.record_ids)} {request.module} record(s); {reads}."
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
class FieldDecision:
    """One field's outcome reached without an unblock call."""

    outcome: Outcome
    details: Details | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Decision:
    """The verify step's word on one record: the fields to unblock (``fields``), and for every other field of
    the plan an outcome reached without a call: ``settled[field]``, else the record-wide ``outcome``.
    ``details`` are Zoho's bounce details when known (``field_details`` per sent field)."""

    record_id: str
    fields: tuple[str, ...] = ()
    outcome: Outcome | None = None
    details: Details | None = None
    reason: str | None = None
    settled: Mapping[str, FieldDecision] = field(default_factory=dict)
    field_details: Mapping[str, Details] = field(default_factory=dict)

    @property
    def send(self) -> bool:
        return bool(self.fields)

    def of(self, name: str) -> FieldDecision | None:
        """The field's outcome without a call, or None when the field is sent."""
        if name in self.fields:
            return None
        known = self.settled.get(name)
        if known is not None:
            return known
        assert self.outcome is not None, f"{self.record_id} {name}: neither sent nor decided"
        return FieldDecision(self.outcome, self.details, self.reason)

    def details_of(self, name: str) -> Details | None:
        return self.field_details.get(name, self.details)


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


def decision_from_checks(record_id: str, checks: Mapping[str, BounceCheck]) -> Decision:
    """Per field (issue 19): a soft or unknown verdict is sent, the others end here with their outcome."""
    send = tuple(f for f, c in checks.items() if outcome_of_check(c) is None)
    settled: dict[str, FieldDecision] = {}
    for name, check in checks.items():
        outcome = outcome_of_check(check)
        if outcome is None:
            continue
        detailed = outcome in (Outcome.PERMANENTLY_BLOCKED, Outcome.DEFERRED)
        settled[name] = FieldDecision(
            outcome,
            details=check.details() if detailed else None,
            reason=check.note if outcome is Outcome.DEFERRED else None,
        )
    return Decision(
        record_id,
        send,
        settled=settled,
        field_details={f: checks[f].details() for f in send},
    )


def read_addresses(
    client: ZohoCRMClient, module: str, record_ids: Sequence[str], fields: Sequence[str]
) -> tuple[dict[str, dict[str, str | None]], int]:
    """The records' addresses when the caller did not pass them (the operator on its own): one COQL select
    per 50 ids. Returns the addresses (a record Zoho did not return is left out) and the calls made."""
    found: dict[str, dict[str, str | None]] = {}
    calls = 0
    names = ", ".join(fields_to_read(module, fields))  # the record's other address too: it costs nothing
    for start in range(0, len(record_ids), ADDRESS_READ_CHUNK):
        chunk = record_ids[start : start + ADDRESS_READ_CHUNK]
        query = f"select id, {names} from {module} where id in ({', '.join(chunk)})"
        calls += 1
        found.update(addresses_by_id(client.iter_coql(query), fields))
    return found, calls


def check_emails(
    client: ZohoCRMClient, plan: UnblockPlan, pool: CallPool, report: UnblockReport, log: Logger
) -> list[Decision]:
    """``verify="emails"``, per address: each field is judged by the latest mail the CRM sent to that field's
    own address (one Emails read per record, one budget shared by every thread of the job). The addresses
    come with the plan (the source read them with the ids) or are read here; a record whose addresses could
    not be read is sent whole, and Zoho's answer decides. ``check_domain`` defers a domain/host-failure soft
    bounce whose domain has no mail host."""
    from airflow_provider_zohocrm.zoho.domains import DomainChecker  # dnspython only when used

    request = plan.request
    fields = tuple(request.unblock_fields)
    budget = CallBudget(plan.max_email_checks)
    domains = DomainChecker.from_options(plan.dns_options, build=True) if plan.check_domain else None
    fixed_now = plan.now

    def now() -> datetime:
        """Zoho's clock, read when a record's list has been read: by then Zoho has answered this task at least
        once, so the client knows the offset of Zoho's ``Date`` (before any answer it only knows ours)."""
        return datetime.fromtimestamp(fixed_now if fixed_now is not None else client.server_time(), UTC)

    given = plan.addresses or {}
    addresses = {rid: dict(given[rid]) for rid in request.record_ids if rid in given}
    missing = [rid for rid in request.record_ids if rid not in addresses]
    if missing:
        try:
            read, calls = read_addresses(client, request.module, missing, fields)
        except ZohoCRMError as exc:
            raise VerifyFailed(exc) from None
        report.read_calls += calls
        addresses.update(read)
    checks: dict[str, dict[str, BounceCheck]] = {}
    errors: dict[str, str] = {}

    def check(record_id: str) -> dict[str, BounceCheck] | None:
        own = addresses.get(record_id)
        if own is None:  # not returned by the address read (deleted?): the unblock call decides
            return None
        result = check_addresses(
            client,
            request.module,
            record_id,
            {f: own.get(f) for f in fields},
            now=now,
            min_hours_since_bounce=plan.min_hours_since_bounce,
            budget=budget,
            record_addresses=own,
        )
        if domains is not None:
            result = domains.apply_all(result, own)
        return result

    def done(_n: int, rid: str, result: dict[str, BounceCheck] | None) -> None:
        if result is not None:
            checks[rid] = result

    def failed(record_id: str, exc: ZohoCRMError) -> None:
        errors[record_id] = f"Emails check failed: {exc}"

    def decide(rid: str) -> Decision:
        if rid not in addresses:
            return Decision(rid, fields)
        return decision_from_checks(rid, checks[rid])

    try:
        pool.run(request.record_ids, check, done, failed, _ignore)
    except _CallFailed as stop:
        report.email_checks = budget.spent
        _note_dns(report, domains)
        decided = {rid: decide(rid) for rid in request.record_ids if rid in checks}
        raise VerifyFailed(stop.error, decided, errors) from None
    report.email_checks = budget.spent
    _note_dns(report, domains)
    tally: dict[str, int] = {}
    for result in checks.values():
        for name, one in result.items():
            key = f"{name} {one.verdict}" if plan.per_field else str(one.verdict)
            tally[key] = tally.get(key, 0) + 1
    log.info(
        "Emails checks: %d record(s), %d call(s)%s: %s.",
        len(request.record_ids),
        budget.spent,
        f" (budget {plan.max_email_checks})" if plan.max_email_checks is not None else "",
        ", ".join(f"{n} {verdict}" for verdict, n in sorted(tally.items(), key=lambda kv: -kv[1])),
    )
    return [decide(rid) for rid in request.record_ids]


def _note_dns(report: UnblockReport, domains: Any) -> None:
    """``check_domain``'s cost into the report, and whether it stopped asking (consecutive timeouts)."""
    if domains is None:
        return
    report.dns_queries = domains.queries
    report.dns_stopped = domains.stopped
    report.dns_unchecked = domains.unchecked


def _ignore(_item: Any) -> None:
    return None


#: The verify step of each mode.
VERIFIERS: Mapping[str, Verifier] = {"none": trust_source, "sweep": trust_source, "emails": check_emails}
#: How Zoho's answer reads per mode: in a sweep nothing was known blocked, so "already unblocked" = never blocked.
_REMAP: Mapping[str, Mapping[Outcome, Outcome]] = {"sweep": {Outcome.ALREADY_UNBLOCKED: Outcome.NOT_BLOCKED}}


# -- the ledger: every (record, field) pair ---------------------------------------------------------------------


@dataclass
class _Pair:
    outcome: Outcome | None = None
    item: Mapping[str, Any] | None = None
    details: Details | None = None
    reason: str | None = None
    pending: str | None = None


class _Ledger:
    """Every (record, field) pair's outcome, or its pending reason; folded into the per-record report at the
    end, each record under its most actionable field outcome (:data:`~.per_field.PRECEDENCE`)."""

    def __init__(self, record_ids: Sequence[str], fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self.pairs: dict[str, dict[str, _Pair]] = {rid: {} for rid in record_ids}
        self._order: dict[str, None] = {}  # records in the order they got their last field (report order)
        self._lock = threading.Lock()

    def decide(
        self,
        record_id: str,
        fields: Sequence[str],
        outcome: Outcome,
        *,
        item: Mapping[str, Any] | None = None,
        details: Callable[[str], Details | None] | None = None,
        reason: str | None = None,
    ) -> None:
        with self._lock:
            slot = self.pairs[record_id]
            for name in fields:
                slot[name] = _Pair(outcome, item, details(name) if details else None, reason)
            self._settle(record_id)

    def pend(self, record_ids: Iterable[str], fields: Sequence[str], reason: str) -> None:
        with self._lock:
            for rid in record_ids:
                for name in fields:
                    self.pairs[rid][name] = _Pair(pending=reason)
                self._settle(rid)

    def _settle(self, record_id: str) -> None:
        if len(self.pairs[record_id]) == len(self.fields):
            self._order[record_id] = None

    def needs_person(self) -> list[str]:
        """Records with any field permanently blocked or at the unblock limit (the ones to tag)."""
        return [
            rid
            for rid in self._order
            if any(p.outcome in NEEDS_PERSON_OUTCOMES for p in self.pairs[rid].values())
        ]

    def fold(self, report: UnblockReport, per_field: bool) -> None:
        """Into ``report``: each record once, under its most actionable outcome, or ``pending`` when a field
        has no outcome; with more than one field, the per-field outcomes beside it."""
        for rid in self._order:
            slot = self.pairs[rid]
            pending = [p.pending for p in slot.values() if p.pending is not None]
            if pending:
                report.add_pending([rid], pending[0])
            else:
                name = min(slot, key=lambda f: (_RANK[slot[f].outcome], self.fields.index(f)))  # type: ignore[index]
                pair = slot[name]
                assert pair.outcome is not None
                report.add(rid, pair.outcome, pair.item, details=pair.details, reason=pair.reason)
            if per_field:
                report.fields[rid] = {f: _pair_word(slot[f]) for f in self.fields}
                for f in self.fields:
                    pair = slot[f]
                    note = pair.pending or pair.reason
                    if pair.outcome in DETAILED_OUTCOMES and pair.details:
                        report.field_details[f"{rid} {f}"] = dict(pair.details)
                    if pair.outcome in (Outcome.ERROR, Outcome.NOT_ALLOWED) and pair.item is not None:
                        note = f"{pair.item.get('code', '')}: {pair.item.get('message', '')}".strip(": ")
                    if note:
                        report.field_reasons[f"{rid} {f}"] = note


def _pair_word(pair: _Pair) -> str:
    return pair.outcome.value if pair.outcome is not None else "pending"


# -- steps 2 and 3: group and unblock ------------------------------------------------------------------------------


def group_by_fields(decisions: Sequence[Decision]) -> list[tuple[tuple[str, ...], list[str]]]:
    """The records to send, grouped by field set (one call carries one ``unblock_fields``), in first-seen order."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for decision in decisions:
        if decision.send:
            groups.setdefault(decision.fields, []).append(decision.record_id)
    return list(groups.items())


def plan_calls(plan: UnblockPlan, decisions: Sequence[Decision]) -> list[tuple[tuple[str, ...], list[str]]]:
    """The unblock calls: one field set per call, at most ``batch_size`` ids each; with more than one field in
    play, one field per call (Zoho's answer is then per field), else exactly today's calls."""
    sending = {d.record_id: d.fields for d in decisions if d.send}
    calls = plan_unblock_calls(sending, plan.request.batch_size, one_field_per_call=plan.per_field)
    return [(call.fields, call.ids) for call in calls]


def _unblock(
    client: ZohoCRMClient,
    plan: UnblockPlan,
    pool: CallPool,
    report: UnblockReport,
    ledger: _Ledger,
    decisions: Sequence[Decision],
    log: Logger,
) -> None:
    request = plan.request
    by_id = {d.record_id: d for d in decisions if d.send}
    batches = plan_calls(plan, decisions)
    remap = _REMAP.get(plan.verify) or {}
    single = len(by_id) == 1  # one record in all: the single-record endpoint

    def send(batch: tuple[tuple[str, ...], list[str]]) -> list[dict[str, Any]]:
        fields, ids = batch
        if single:
            return client.unblock_email(request.module, ids[0], list(fields))
        return client.unblock_emails(request.module, ids, list(fields))

    def done(number: int, batch: tuple[tuple[str, ...], list[str]], items: list[dict[str, Any]]) -> None:
        fields, ids = batch
        report.calls += 1
        pairs = match_items(ids, items)
        _warn_unrecognised(item for _, item in pairs)
        counts: dict[str, int] = {}
        for record_id, item in pairs:
            outcome = classify_item(item)
            outcome = remap.get(outcome, outcome)
            ledger.decide(record_id, fields, outcome, item=item, details=by_id[record_id].details_of)
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
        summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        on = f" ({'/'.join(fields)})" if plan.per_field else ""
        log.info("batch %d/%d%s: %d ids, %s", number, len(batches), on, len(ids), summary)

    def failed(batch: tuple[tuple[str, ...], list[str]], exc: ZohoCRMError) -> None:
        report.calls += 1
        ledger.pend(
            batch[1],
            batch[0],
            f"unblock call failed ({exc}); Zoho may have applied it: a retry reports such ids already_unblocked",
        )

    pool.run(batches, send, done, failed, lambda batch: ledger.pend(batch[1], batch[0], NOT_SENT))


# -- step 4: tag -------------------------------------------------------------------------------------------------


def tag_needs_person(
    client: ZohoCRMClient,
    module: str,
    tag: str,
    report: UnblockReport,
    log: Logger,
    ids: Sequence[str] | None = None,
) -> None:
    """Tag the records a person must look at, so reps can filter the CRM list view on the tag. A failure is
    logged and reported; it never hides the unblock results. ``ids``: the records to tag (default: the
    report's needs-person outcomes; per field, every record with any field needing a person)."""
    if ids is None:
        ids = [rid for outcome in sorted(NEEDS_PERSON_OUTCOMES) for rid in report.ids[outcome]]
    ids = list(ids)
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
    again (a record unblocked by the earlier try answers ``already_unblocked``). ``spent()``: the Emails-list
    calls the earlier tries made (the budget's one unit), so a retry reads within what is left of
    ``max_email_checks``. A dry run with a checkpoint (an approval's plan task) saves its decisions only."""

    def load(self) -> Mapping[str, Decision]: ...

    def spent(self) -> int: ...

    def save(self, decisions: Mapping[str, Decision], report: UnblockReport) -> None: ...


def _budget_only(decision: Decision) -> bool:
    """Deferred only because the Emails budget ran out: its list was not read."""
    if decision.send:
        return False
    parts = list(decision.settled.values()) or [
        FieldDecision(decision.outcome or Outcome.ERROR, None, decision.reason)
    ]
    return all(p.outcome == Outcome.DEFERRED and p.reason == BUDGET_REASON for p in parts)


def _read_decisions(decisions: Mapping[str, Decision]) -> dict[str, Decision]:
    """The decisions that took an Emails read (a record deferred because the budget ran out was not read)."""
    return {rid: d for rid, d in decisions.items() if not _budget_only(d)}


def _verify(
    client: ZohoCRMClient | None,
    plan: UnblockPlan,
    pool: CallPool,
    report: UnblockReport,
    log: Logger,
    known: Mapping[str, Decision],
    spent: int = 0,
) -> list[Decision]:
    """The verify step, reusing ``known`` decisions (an earlier try's): only the other records are read, within
    what is left of the Emails budget (``spent``: the Emails calls the earlier tries made)."""
    request = plan.request
    if not known and not spent:
        return VERIFIERS[plan.verify](client, plan, pool, report, log)  # type: ignore[arg-type]
    todo = [rid for rid in request.record_ids if rid not in known]
    log.info("Reusing %d decision(s) of an earlier try; %d record(s) left to verify.", len(known), len(todo))
    # one unit: Emails-list calls, the ones the earlier tries made counted against the same budget
    left = None if plan.max_email_checks is None else max(plan.max_email_checks - spent, 0)
    sub = replace(plan, request=replace(request, record_ids=todo), max_email_checks=left)
    try:
        fresh = (
            {d.record_id: d for d in VERIFIERS[plan.verify](client, sub, pool, report, log)}  # type: ignore[arg-type]
            if todo
            else {}
        )
    except VerifyFailed as stop:
        stop.decided = {**known, **stop.decided}
        raise
    return [known[rid] if rid in known else fresh[rid] for rid in request.record_ids]


# -- the job -----------------------------------------------------------------------------------------------------


def _settle_decisions(ledger: _Ledger, decisions: Iterable[Decision]) -> None:
    """The fields each decision ends without a call."""
    for decision in decisions:
        for name in ledger.fields:
            known = decision.of(name)
            if known is not None:
                ledger.decide(
                    decision.record_id,
                    [name],
                    known.outcome,
                    details=partial(_constant, known.details),
                    reason=known.reason,
                )


def _constant(value: Details | None, _name: str) -> Details | None:
    return value


def _plan_only(report: UnblockReport, plan: UnblockPlan, decisions: Sequence[Decision]) -> None:
    """A dry run's plan: the calls a live run would make, per field set."""
    for fields, ids in plan_calls(plan, decisions):
        report.would_send.setdefault("+".join(fields), []).extend(ids)
        report.planned_calls += 1


def _reads_only(plan: UnblockPlan, report: UnblockReport) -> UnblockReport:
    """A report with no outcome yet, carrying the Emails calls this try made (the checkpoint counts them)."""
    out = plan.new_report()
    out.email_checks = report.email_checks
    return out


def run_unblock(
    client: ZohoCRMClient | None,
    plan: UnblockPlan,
    max_parallel: int = 1,
    *,
    log: Logger | None = None,
    checkpoint: Checkpoint | None = None,
) -> UnblockReport:
    """Verify, unblock and tag ``plan``'s records; the report accounts for every id (and, with more than one
    field, every (record, field) pair in ``fields``).

    A dry run makes every read the live run would make (``verify="emails"``: addresses, Emails lists, DNS) and
    nothing else: the fields it would send are ``pending`` with :data:`WOULD_SEND`, the calls are in
    ``would_send``; every other record has the outcome the live run gives it (no call decides those). With
    ``verify="none"``/``"sweep"`` a dry run makes no call at all (``client`` may be None).
    A failed Zoho call raises :class:`UnblockJobFailed` with the report: ids decided before it keep their
    outcome, the others are ``pending`` with the reason (a retry is safe).
    ``checkpoint``: decisions of an earlier try are reused (no second Emails read), within what is left of the
    budget; this try's decisions are saved after the verify step, and with the report's outcomes at the end,
    failed or not (a dry run saves after the verify step only: an approval's plan, reused by the unblock task)."""
    log = log or _log
    pool = CallPool(max_parallel)
    report = plan.new_report()
    request = plan.request
    if not request.record_ids:
        return report
    if client is None and plan.reads:
        raise ValueError("verify='emails' reads from Zoho: a client is needed, even for a dry run")
    ledger = _Ledger(request.record_ids, request.unblock_fields)
    fields = ledger.fields
    wanted = set(request.record_ids)
    known = (
        {rid: d for rid, d in _read_decisions(checkpoint.load()).items() if rid in wanted}
        if checkpoint is not None
        else {}
    )
    spent = checkpoint.spent() if checkpoint is not None else 0
    try:
        decisions = _verify(client, plan, pool, report, log, known, spent)
    except VerifyFailed as stop:
        for rid in request.record_ids:
            decision = stop.decided.get(rid)
            if decision is None:
                ledger.pend([rid], fields, stop.errors.get(rid, NOT_CHECKED))
                continue
            _settle_decisions(ledger, [decision])
            ledger.pend([rid], decision.fields, CHECKED_NOT_SENT)
        ledger.fold(report, plan.per_field)
        if checkpoint is not None:
            checkpoint.save(_read_decisions(stop.decided), report)
        raise UnblockJobFailed(stop.error, report) from None
    by_id = _read_decisions({d.record_id: d for d in decisions})
    if checkpoint is not None:  # the reads, before any unblock call (no outcome yet: no coverage verdict)
        checkpoint.save(by_id, _reads_only(plan, report))
    _settle_decisions(ledger, decisions)
    if plan.dry_run:
        for decision in decisions:
            if decision.send:
                ledger.pend(
                    [decision.record_id], decision.fields, f"{WOULD_SEND} with {'/'.join(decision.fields)}"
                )
        _plan_only(report, plan, decisions)
        ledger.fold(report, plan.per_field)
        return report
    try:
        _unblock(client, plan, pool, report, ledger, decisions, log)  # type: ignore[arg-type]
    except _CallFailed as stop:
        ledger.fold(report, plan.per_field)
        if checkpoint is not None:
            checkpoint.save(by_id, report)
        raise UnblockJobFailed(stop.error, report) from None
    ledger.fold(report, plan.per_field)
    if checkpoint is not None:
        checkpoint.save(by_id, report)
    if plan.needs_person_tag:
        tag_needs_person(
            client,  # type: ignore[arg-type]
            request.module,
            plan.needs_person_tag,
            report,
            log,
            ids=ledger.needs_person() if plan.per_field else None,
        )
    return report


__all__ = [
    "VERIFIERS",
    "CallPool",
    "Checkpoint",
    "Decision",
    "FieldDecision",
    "UnblockJobFailed",
    "UnblockPlan",
    "Verifier",
    "VerifyFailed",
    "check_emails",
    "decision_from_check",
    "decision_from_checks",
    "group_by_fields",
    "plan_calls",
    "read_addresses",
    "run_unblock",
    "tag_needs_person",
    "trust_source",
]
