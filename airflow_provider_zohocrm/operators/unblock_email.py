"""UnblockEmailOperator: unblock soft-bounced email addresses of one record or thousands, and report each one."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    BaseOperatorLink,
)

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.zoho.emails import BounceCheck, CallBudget, Verdict
from airflow_provider_zohocrm.zoho.errors import (
    ZohoConfigError,
    ZohoCRMError,
    ZohoInvalidClientError,
    ZohoRefreshTokenError,
    ZohoRequestError,
    ZohoScopeError,
    ZohoValidationError,
)
from airflow_provider_zohocrm.zoho.tags import tag_records, validate_tag_names
from airflow_provider_zohocrm.zoho.unblock import (
    MAX_IDS_PER_CALL,
    NEEDS_PERSON_OUTCOMES,
    Outcome,
    UnblockReport,
    UnblockRequest,
    format_table,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, TaskInstanceKey

#: Failures that no retry of the task can fix: fail at once instead of burning Airflow retries.
_FINAL_ERRORS = (ZohoConfigError, ZohoRefreshTokenError, ZohoInvalidClientError, ZohoScopeError)
#: Call-level refusals of the request itself (e.g. "EMAIL, SECONDARY_EMAIL field not available for module"):
#: Zoho answers every retry the same, so they are final too.
_FINAL_CODES = frozenset({"NOT_ALLOWED", "INVALID_MODULE", "MANDATORY_NOT_FOUND", "LIMIT_EXCEEDED"})
REPORT_XCOM_KEY = "unblock_report"
#: How the operator learns which ids are really blocked (see README "Finding bounced records").
VERIFY_MODES = ("none", "emails", "sweep")
#: A ``fail_on`` value besides the outcomes: fail the task when tagging the needs-person records failed.
TAG_FAILED = "tag_failed"
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})
_NOT_SENT = "not sent: an earlier call of this task failed"
_NOT_CHECKED = "not checked: an earlier call of this task failed"
_T = TypeVar("_T")


class ZohoCRMModuleLink(BaseOperatorLink):
    """Opens the module in Zoho CRM's web UI, in the connection's data center."""

    name = "Zoho CRM"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        try:
            hook = ZohoCRMHook(zohocrm_conn_id=operator.zohocrm_conn_id)
            web_url = hook.settings.endpoints.data_center.web_url
        except Exception:
            return ""
        module = operator.module if isinstance(operator.module, str) else ""
        return f"{web_url}/crm/tab/{module}" if module else f"{web_url}/crm/"


# -- parameter parsing (templated values arrive as strings, or as native types) -----------------------------


def parse_dry_run(value: Any) -> bool:
    """A real boolean, or true/false, yes/no, 1/0, on/off in any case. Anything else is an error, never a
    live run: a typo such as "ture" must not send anything (fail closed)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ZohoValidationError(
        f"dry_run must be true or false (or yes/no, 1/0, on/off), not {value!r}: refusing to guess."
    )


def parse_verify(value: Any) -> str:
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in VERIFY_MODES:
        raise ZohoValidationError(f"verify must be one of {', '.join(VERIFY_MODES)}, not {value!r}.")
    return str(word)


def parse_min_hours(value: Any) -> float:
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = value
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, float))
        or not math.isfinite(number)
        or number < 0
    ):
        raise ZohoValidationError(f"min_hours_since_bounce must be a number of hours >= 0, not {value!r}.")
    return float(number)


def parse_max_email_checks(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    number: Any = int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ZohoValidationError(
            f"max_email_checks must be a whole number of calls >= 0 (or None for no limit), not {value!r}."
        )
    return number


def parse_tag(value: Any) -> str | None:
    """A Zoho tag name (at most 25 characters, no commas), or None for no tagging."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ZohoValidationError(f"needs_person_tag must be a tag name (text), not {value!r}.")
    try:
        (name,) = validate_tag_names([value])
    except ZohoValidationError as exc:
        raise ZohoValidationError(f"needs_person_tag: {exc}") from None
    return name


@dataclass(frozen=True)
class _Plan:
    """Everything validated, before any call."""

    request: UnblockRequest
    dry_run: bool
    verify: str
    min_hours_since_bounce: float
    max_email_checks: int | None
    needs_person_tag: str | None


class _CallFailed(Exception):
    """Internal: a Zoho call failed; every id already has an outcome or a pending reason in the report."""

    def __init__(self, error: ZohoCRMError) -> None:
        super().__init__(str(error))
        self.error = error


class UnblockEmailOperator(BaseOperator):
    """Unblock the email addresses Zoho blocked after soft bounces, for one record or many.

    One id goes to the single-record endpoint; more go to the bulk endpoint in batches of at most 500.
    Every id ends in exactly one outcome (``unblocked``, ``already_unblocked``, ``not_blocked``, ``deferred``,
    ``permanently_blocked``, ``limit_reached``, ``invalid_record``, ``not_allowed`` or ``error``) or, when a
    call failed, in ``pending`` with the reason. The report is the task's XCom.

    :param module: module API name (Leads, Contacts, Deals, Accounts, Sales_Orders, Purchase_Orders, Invoices,
        Quotes, Cases, or a custom module). Templated.
    :param record_ids: the record ids (digits). Templated; map over it with ``expand``.
    :param record_id: a single record id, instead of ``record_ids``. Templated.
    :param unblock_fields: ``Email`` and/or ``Secondary_Email``. Templated.
    :param zohocrm_conn_id: the Zoho CRM connection.
    :param batch_size: ids per bulk call, 1 to 500.
    :param max_parallel_calls: Zoho calls in flight at once within this task, Emails reads and unblock calls
        alike (keep pool slots x this within your org's Zoho concurrency limit).
    :param dry_run: validate and report what would be sent; make no call at all. Only true/false spellings
        are accepted (fails closed). Templated.
    :param verify: ``none`` (trust the source: unblock every id), ``emails`` (read each id's Emails related
        list and unblock only those whose latest email soft-bounced) or ``sweep`` (send every id to the bulk
        unblock; "already unblocked" is reported as ``not_blocked``). Templated.
    :param min_hours_since_bounce: with ``verify="emails"``, a soft bounce younger than this is ``deferred``
        rather than unblocked (a full mailbox unblocked too early spends one of the 5 unblocks). Templated.
    :param max_email_checks: with ``verify="emails"``, at most this many Emails calls (credits) in this task;
        ids not checked when it runs out are ``deferred``. ``None``: no limit. Templated.
    :param needs_person_tag: tag the ``permanently_blocked`` and ``limit_reached`` records with this tag in
        Zoho (Add Tags API), so reps can filter on it. A failed tag call is logged and reported, and fails
        the task only when ``fail_on`` lists ``"tag_failed"``. Templated.
    :param fail_on: outcomes (or ``"tag_failed"``) that fail the task after all batches ran (default:
        ``error``). Ids unblocked on an earlier try come back ``already_unblocked``, so a retry is safe.
    """

    template_fields: Sequence[str] = (
        "module",
        "record_ids",
        "record_id",
        "unblock_fields",
        "zohocrm_conn_id",
        "batch_size",
        "dry_run_mode",
        "verify",
        "min_hours_since_bounce",
        "max_email_checks",
        "needs_person_tag",
    )
    template_fields_renderers = {"record_ids": "json", "unblock_fields": "json"}
    operator_extra_links = (ZohoCRMModuleLink(),)
    ui_color = "#e42527"

    def __init__(
        self,
        *,
        module: str = "Leads",
        record_ids: Sequence[str] | str | None = None,
        record_id: str | None = None,
        unblock_fields: Sequence[str] | str = ("Email",),
        zohocrm_conn_id: str = ZohoCRMHook.default_conn_name,
        batch_size: int | str = MAX_IDS_PER_CALL,
        max_parallel_calls: int = 1,
        dry_run: bool | str = False,
        verify: str = "none",
        min_hours_since_bounce: float | str = 0,
        max_email_checks: int | str | None = None,
        needs_person_tag: str | None = None,
        fail_on: Sequence[str] = (Outcome.ERROR.value,),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if record_ids is not None and record_id is not None:
            raise ValueError("Give either record_ids or record_id, not both.")
        allowed = [o.value for o in Outcome] + [TAG_FAILED]
        unknown = [o for o in fail_on if o not in allowed]
        if unknown:
            raise ValueError(f"fail_on has unknown outcomes {unknown}: use {allowed}")
        if (
            isinstance(max_parallel_calls, bool)
            or not isinstance(max_parallel_calls, int)
            or max_parallel_calls < 1
        ):
            raise ValueError(f"max_parallel_calls must be a whole number >= 1, not {max_parallel_calls!r}")
        self.module = module
        self.record_ids = record_ids
        self.record_id = record_id
        self.unblock_fields = unblock_fields
        self.zohocrm_conn_id = zohocrm_conn_id
        self.batch_size = batch_size
        self.max_parallel_calls = max_parallel_calls
        self.dry_run_mode = dry_run  # not ``self.dry_run``: BaseOperator.dry_run() is a method
        self.verify = verify
        self.min_hours_since_bounce = min_hours_since_bounce
        self.max_email_checks = max_email_checks
        self.needs_person_tag = needs_person_tag
        self.fail_on = list(fail_on)

    # -- validation -------------------------------------------------------------------------------------------

    def _request(self) -> UnblockRequest:
        ids: Any = self.record_ids
        if self.record_id is not None:
            ids = [self.record_id]
        elif ids is None:
            ids = []
        elif isinstance(ids, str):  # a template that rendered to one id, or to "a,b,c"
            ids = [part.strip() for part in ids.split(",") if part.strip()]
        batch_size: Any = self.batch_size
        if isinstance(batch_size, str) and batch_size.strip().isdigit():  # rendered without native types
            batch_size = int(batch_size)
        return UnblockRequest.build(self.module, ids, self.unblock_fields, batch_size)

    @property
    def is_dry_run(self) -> bool:
        return parse_dry_run(self.dry_run_mode)

    def _plan(self) -> _Plan:
        """Every input checked before any call; a bad value raises ZohoValidationError naming it."""
        plan = _Plan(
            request=self._request(),
            dry_run=parse_dry_run(self.dry_run_mode),
            verify=parse_verify(self.verify),
            min_hours_since_bounce=parse_min_hours(self.min_hours_since_bounce),
            max_email_checks=parse_max_email_checks(self.max_email_checks),
            needs_person_tag=parse_tag(self.needs_person_tag),
        )
        if plan.verify != "emails" and (plan.min_hours_since_bounce or plan.max_email_checks is not None):
            self.log.warning(
                "min_hours_since_bounce and max_email_checks apply only to verify='emails'; verify=%r ignores"
                " them.",
                plan.verify,
            )
        return plan

    # -- run --------------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            plan = self._plan()
        except ZohoConfigError as exc:
            raise AirflowFailException(str(exc)) from None
        request = plan.request
        report = UnblockReport(
            module=request.module,
            unblock_fields=request.unblock_fields,
            dry_run=plan.dry_run,
            verify=plan.verify,
        )
        if not request.record_ids:
            self.log.info("No record ids given: nothing to unblock.")
            return report.to_dict()
        if plan.dry_run:
            report.add_pending(request.record_ids, "dry run: nothing sent")
            self.log.info(
                "Dry run (verify=%s): would unblock %s of up to %d %s record(s) in up to %d call(s); nothing"
                " sent.",
                plan.verify,
                "/".join(request.unblock_fields),
                len(request.record_ids),
                request.module,
                len(request.batches()),
            )
            return report.to_dict()

        hook = ZohoCRMHook(zohocrm_conn_id=self.zohocrm_conn_id)
        try:
            targets: list[str] = request.record_ids
            checks: dict[str, dict[str, str | None]] = {}
            if plan.verify == "emails":
                targets, checks = self._check_emails(hook, plan, report)
            remap = {Outcome.ALREADY_UNBLOCKED: Outcome.NOT_BLOCKED} if plan.verify == "sweep" else None
            self._run_batches(hook, request, targets, report, remap=remap, checks=checks)
        except _CallFailed as failed:
            self._push_report(context, report)
            error = failed.error
            have = report.total - len(report.pending)
            reason = (
                f"{error} ({have} of {len(request.record_ids)} ids had an outcome before this,"
                f" {len(report.pending)} are pending with the reason in the report; a retry is safe)"
            )
            if isinstance(error, _FINAL_ERRORS) or (
                isinstance(error, ZohoRequestError) and error.code in _FINAL_CODES
            ):
                raise AirflowFailException(reason) from None
            raise AirflowException(reason) from None
        if plan.needs_person_tag:
            self._tag_needs_person(hook, request.module, plan.needs_person_tag, report)
        return self._finish(context, hook, report)

    def _finish(self, context: Context, hook: ZohoCRMHook, report: UnblockReport) -> dict[str, Any]:
        result = report.to_dict()
        self.log.info(
            "Unblock Email on %s (verify=%s), %d record(s), %d unblock call(s), %d Emails call(s), %d tag"
            " call(s):\n%s",
            report.module,
            report.verify,
            report.total,
            report.calls,
            report.email_checks,
            report.tag_calls,
            format_table(report.counts, report.total),
        )
        if hook.client.last_credits_remaining is not None:
            self.log.warning(
                "Zoho reports %d API credits left in the org's 24-hour window (sent once half are used).",
                hook.client.last_credits_remaining,
            )
        for outcome in sorted(NEEDS_PERSON_OUTCOMES):
            if report.ids[outcome]:
                self.log.warning(
                    "%d record(s) %s need a person: %s",
                    len(report.ids[outcome]),
                    outcome,
                    _preview([_described(rid, report.details.get(rid)) for rid in report.ids[outcome]], 10),
                )
        if report.ids[Outcome.DEFERRED]:
            self.log.info(
                "%d record(s) deferred to a later run: %s",
                len(report.ids[Outcome.DEFERRED]),
                _preview([f"{rid} ({report.reasons.get(rid)})" for rid in report.ids[Outcome.DEFERRED]], 10),
            )
        failing = {o: report.counts[o] for o in self.fail_on if report.counts.get(o)}
        if TAG_FAILED in self.fail_on and report.tag_errors:
            failing[TAG_FAILED] = len(report.tag_errors)
        if failing:
            self._push_report(context, report)
            examples = [f"{rid}: {msg}" for rid, msg in list(report.messages.items())[:5]]
            examples += report.tag_errors[:2] if TAG_FAILED in failing else []
            raise AirflowException(
                f"Unblock Email finished with outcomes listed in fail_on: {failing}."
                + (f" Examples: {'; '.join(examples)}" if examples else "")
            )
        return result

    def _in_parallel(
        self,
        items: Sequence[_T],
        call: Callable[[_T], Any],
        done: Callable[[int, _T, Any], None],
        failed: Callable[[_T, ZohoCRMError], None],
        skipped: Callable[[_T], None],
    ) -> None:
        """Run ``call`` on each item, at most ``max_parallel_calls`` at once. After the first failure nothing
        new is started; every item is then reported to exactly one of ``done``, ``failed`` or ``skipped``, and
        the first failure is raised as :class:`_CallFailed`."""
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

        workers = min(self.max_parallel_calls, len(items))
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

    def _check_emails(
        self, hook: ZohoCRMHook, plan: _Plan, report: UnblockReport
    ) -> tuple[list[str], dict[str, dict[str, str | None]]]:
        """Read each id's Emails list (verify="emails"): hard, none and deferred get their outcome here, with
        no unblock call; soft and unknown ones are returned as the unblock targets."""
        request = plan.request
        budget = CallBudget(plan.max_email_checks)
        now = datetime.now(UTC)
        checks: dict[str, BounceCheck] = {}
        errors: dict[str, str] = {}

        def check(record_id: str) -> BounceCheck:
            return hook.check_bounce(
                request.module,
                record_id,
                now=now,
                min_hours_since_bounce=plan.min_hours_since_bounce,
                budget=budget,
            )

        def done(_number: int, record_id: str, result: BounceCheck) -> None:
            checks[record_id] = result

        def failed(record_id: str, exc: ZohoCRMError) -> None:
            errors[record_id] = f"Emails check failed: {exc}"

        try:
            self._in_parallel(request.record_ids, check, done, failed, lambda _rid: None)
        except _CallFailed:
            report.email_checks = budget.spent
            for record_id in request.record_ids:
                result = checks.get(record_id)
                if result is not None and result.verdict not in (Verdict.SOFT, Verdict.UNKNOWN):
                    self._add_checked(report, record_id, result)
                elif result is not None:
                    report.add_pending(
                        [record_id], "checked, not unblocked: an Emails check of this task failed"
                    )
                else:
                    report.add_pending([record_id], errors.get(record_id, _NOT_CHECKED))
            raise
        report.email_checks = budget.spent
        targets: list[str] = []
        details: dict[str, dict[str, str | None]] = {}
        tally: dict[str, int] = {}
        for record_id in request.record_ids:
            result = checks[record_id]
            tally[result.verdict] = tally.get(result.verdict, 0) + 1
            if result.verdict in (Verdict.SOFT, Verdict.UNKNOWN):
                targets.append(record_id)
                details[record_id] = result.details()
            else:
                self._add_checked(report, record_id, result)
        self.log.info(
            "Emails checks: %d record(s), %d call(s)%s: %s.",
            len(request.record_ids),
            budget.spent,
            f" (budget {plan.max_email_checks})" if plan.max_email_checks is not None else "",
            ", ".join(f"{n} {verdict}" for verdict, n in sorted(tally.items(), key=lambda kv: -kv[1])),
        )
        return targets, details

    @staticmethod
    def _add_checked(report: UnblockReport, record_id: str, result: BounceCheck) -> None:
        if result.verdict == Verdict.HARD:
            report.add(record_id, Outcome.PERMANENTLY_BLOCKED, details=result.details())
        elif result.verdict == Verdict.NONE:
            report.add(record_id, Outcome.NOT_BLOCKED)
        else:
            report.add(record_id, Outcome.DEFERRED, details=result.details(), reason=result.note)

    def _run_batches(
        self,
        hook: ZohoCRMHook,
        request: UnblockRequest,
        targets: list[str],
        report: UnblockReport,
        *,
        remap: dict[Outcome, Outcome] | None,
        checks: dict[str, dict[str, str | None]],
    ) -> None:
        size = request.batch_size
        batches = [targets[i : i + size] for i in range(0, len(targets), size)]
        total = len(batches)

        def send(batch: list[str]) -> list[dict[str, Any]]:
            if len(targets) == 1:
                return hook.unblock_email(request.module, batch[0], request.unblock_fields)
            return hook.unblock_emails(request.module, batch, request.unblock_fields)

        def done(number: int, batch: list[str], items: list[dict[str, Any]]) -> None:
            counts = report.add_answer(batch, items, remap=remap, details=checks)
            summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            self.log.info("batch %d/%d: %d ids, %s", number, total, len(batch), summary)

        def failed(batch: list[str], exc: ZohoCRMError) -> None:
            report.calls += 1
            report.add_pending(
                batch,
                f"unblock call failed ({exc}); Zoho may have applied it: a retry reports such ids"
                " already_unblocked",
            )

        self._in_parallel(batches, send, done, failed, lambda batch: report.add_pending(batch, _NOT_SENT))

    def _tag_needs_person(self, hook: ZohoCRMHook, module: str, tag: str, report: UnblockReport) -> None:
        """Tag the records a person must look at, so reps can filter the CRM list view on the tag. A failure
        is logged and reported; it never hides the unblock results."""
        ids = [rid for outcome in sorted(NEEDS_PERSON_OUTCOMES) for rid in report.ids[outcome]]
        if not ids:
            return
        try:
            tagging = tag_records(hook.client, module, ids, [tag])  # ≤ 500 ids per call
        except Exception as exc:  # whatever it is, a tag failure must not lose the unblock report
            report.tag_errors.append(f"tag call failed for {len(ids)} id(s): {type(exc).__name__}: {exc}")
            self.log.warning("Could not tag needs-person records with %r: %s", tag, report.tag_errors[-1])
            return
        report.tag_calls += tagging.calls
        report.tagged += tagging.ids("tagged")
        refused = [item for item in tagging.items if item["outcome"] != "tagged"]
        report.tag_errors += [
            f"{item['id']}: {item['outcome']} ({item['code']}: {item['message']})" for item in refused
        ]
        if refused:
            self.log.warning(
                "%d of %d needs-person record(s) not tagged with %r: %s",
                len(refused),
                len(ids),
                tag,
                report.tag_errors[-len(refused) :][:5],
            )
        self.log.info("Tagged %d of %d needs-person record(s) with %r.", len(report.tagged), len(ids), tag)

    def _push_report(self, context: Context, report: UnblockReport) -> None:
        try:
            context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=report.to_dict())
        except Exception:
            self.log.warning("Could not push the partial report to XCom.")


class _Skipped(Exception):
    """Internal: not started because an earlier call of the task failed."""


def _described(record_id: str, details: dict[str, str | None] | None) -> str:
    if not details:
        return record_id
    parts = [details.get(k) for k in ("category", "sub_category", "reason")]
    text = "; ".join(p for p in parts if p)
    return f"{record_id} ({text})" if text else record_id


def _preview(ids: list[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" … (+{len(ids) - limit} more)" if len(ids) > limit else "")
