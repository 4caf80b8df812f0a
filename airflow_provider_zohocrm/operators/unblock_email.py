"""UnblockEmailOperator: unblock soft-bounced email addresses of one record or thousands, and report each one.

The job itself (verify → batch → unblock → tag, and its concurrency) is Airflow-free, in
:mod:`airflow_provider_zohocrm.zoho.unblock_job`; this module adapts it to a task: templating, the hook, logging,
the XCom result, the ``fail_on`` policy and the extra link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    BaseOperatorLink,
    XCom,
)

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.zoho.errors import ZohoConfigError
from airflow_provider_zohocrm.zoho.params import (
    emails_options_ignored,
    parse_flag,
    parse_max_parallel,
    parse_verify,
)
from airflow_provider_zohocrm.zoho.unblock import (
    MAX_IDS_PER_CALL,
    Outcome,
    UnblockReport,
    UnblockRequest,
    deferred_line,
    needs_person_lines,
)
from airflow_provider_zohocrm.zoho.unblock_job import UnblockJobFailed, UnblockPlan, run_unblock

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context, TaskInstanceKey

REPORT_XCOM_KEY = "unblock_report"
#: Where ``execute`` leaves the module's URL in Zoho's web UI, for the extra link.
LINK_XCOM_KEY = "zohocrm_module_url"
#: A ``fail_on`` value besides the outcomes: fail the task when tagging the needs-person records failed.
TAG_FAILED = "tag_failed"


def _is_runtime_value(value: Any) -> bool:
    """An XComArg (or another of Airflow's run-time resolved values): it has ``resolve`` and ``iter_references``."""
    return callable(getattr(value, "resolve", None)) and callable(getattr(value, "iter_references", None))


class ZohoCRMModuleLink(BaseOperatorLink):
    """Opens the module in Zoho CRM's web UI, in the connection's data center: the URL ``execute`` pushed, so
    rendering the link reads one XCom and never the connection (as Airflow's dbt Cloud run link does)."""

    name = "Zoho CRM"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        url = XCom.get_value(key=LINK_XCOM_KEY, ti_key=ti_key)
        return url if isinstance(url, str) else ""


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
    :param addresses: ``{id: {field: address or None}}``, the records' addresses as the source read them with
        the ids (the example DAG passes them). With ``verify="emails"`` each field is judged by the mail sent to
        its own address; without them the task reads them itself (one COQL call per 50 ids). A template string
        (e.g. an ``xcom_pull``, as the example DAG's mapped tasks use) is rendered; addresses given as data never
        are: they are the CRM's text, and a ``{{ … }}`` in one must not be evaluated. An upstream task's output
        (``addresses=read.output``, an XComArg) is resolved when the task runs, also without rendering.
    :param check_domain: with ``verify="emails"``, look up in DNS the domain of a soft bounce whose category
        says the domain or host failed; a domain with no mail host is ``deferred`` (opt-in). Templated.
    :param dns_options: ``check_domain``'s resolver: ``{"nameservers": [...], "port": 53, "timeout": 5}``
        (default: the system's resolver). Templated.
    :param coverage: set by the example DAG for a source under rolling coverage (``hooks/coverage_run.py``): the
        job keeps its decisions and verdicts in a checkpoint Variable, so a retry does not read again what an
        earlier try read, and the run's report moves the source's cursor over them.
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
        "check_domain",
        "dns_options",
        "addresses",
    )
    template_fields_renderers = {
        "record_ids": "json",
        "unblock_fields": "json",
        "dns_options": "json",
    }
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
        addresses: Mapping[str, Mapping[str, str | None]] | str | None = None,
        check_domain: bool | str = False,
        dns_options: Mapping[str, Any] | str | None = None,
        fail_on: Sequence[str] = (Outcome.ERROR.value,),
        coverage: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if record_ids is not None and record_id is not None:
            raise ValueError("Give either record_ids or record_id, not both.")
        allowed = [o.value for o in Outcome] + [TAG_FAILED]
        unknown = [o for o in fail_on if o not in allowed]
        if unknown:
            raise ValueError(f"fail_on has unknown outcomes {unknown}: use {allowed}")
        parse_max_parallel(max_parallel_calls, "max_parallel_calls")
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
        # Only a template string is rendered: addresses given as data are the CRM's text, and one holding
        # "{{ … }}" must never be evaluated (it could print a connection's secret into the report). An upstream
        # task's output (an XComArg) is resolved in execute(), outside the template fields, for the same reason;
        # it still makes that task upstream of this one.
        self._address_arg: Any = addresses if _is_runtime_value(addresses) else None
        self.addresses = addresses if isinstance(addresses, str) else None
        self._address_data = (
            None if isinstance(addresses, str) or self._address_arg is not None else addresses
        )
        runtime: Any = self._address_arg
        if runtime is not None:
            for upstream, _key in runtime.iter_references():
                self.set_upstream(upstream)
        self.check_domain = check_domain
        self.dns_options = dns_options
        self.fail_on = list(fail_on)
        self.coverage = coverage

    @cached_property
    def hook(self) -> ZohoCRMHook:
        """Built on first use: a dry run never reads the connection or calls Zoho."""
        return ZohoCRMHook(zohocrm_conn_id=self.zohocrm_conn_id)

    def _request(self) -> UnblockRequest:
        return self._plan().request

    @property
    def is_dry_run(self) -> bool:
        return parse_flag(self.dry_run_mode, "dry_run")

    def _plan(self) -> UnblockPlan:
        """Every input checked (zoho/params.py's rules) before any call; a bad value raises naming it."""
        verify = parse_verify(self.verify)
        ignored = emails_options_ignored(verify, self.min_hours_since_bounce, self.max_email_checks)
        if ignored:
            self.log.warning("%s apply only to verify='emails'; verify=%r ignores them.", ignored, verify)
        return UnblockPlan.build(
            self.module,
            [self.record_id] if self.record_id is not None else self.record_ids,
            self.unblock_fields,
            self.batch_size,
            dry_run=self.dry_run_mode,
            verify=self.verify,
            min_hours_since_bounce=self.min_hours_since_bounce,
            max_email_checks=self.max_email_checks,
            needs_person_tag=self.needs_person_tag,
            addresses=self._address_data if self._address_data is not None else self.addresses,
            check_domain=self.check_domain,
            dns_options=self.dns_options,
            strict=False,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        if self._address_arg is not None:  # data from an upstream task: resolved, never rendered
            self._address_data = self._address_arg.resolve(context)
        try:
            plan = self._plan()
        except ZohoConfigError as exc:
            raise AirflowFailException(str(exc)) from None
        request = plan.request
        if not request.record_ids:
            self.log.info("No record ids given: nothing to unblock.")
            return plan.new_report().to_dict()
        if plan.check_domain and plan.verify != "emails":
            self.log.warning(
                "check_domain applies only to verify='emails'; verify=%r ignores it.", plan.verify
            )
        if plan.dry_run:
            self.log.info("%s", plan.dry_run_summary())
            if not plan.reads:  # nothing to read: no connection, no call
                return self._plan_report(run_unblock(None, plan, self.max_parallel_calls, log=self.log))
        self._push_link(context, request.module)
        checkpoint = None
        if self.coverage:  # rolling coverage (the example DAG): the run's "now", and a checkpoint for retries
            from airflow_provider_zohocrm.hooks.coverage_run import for_task

            plan, checkpoint = for_task(
                self.coverage, plan, str(context["run_id"]), int(context["ti"].map_index or 0)
            )
        try:
            report = run_unblock(
                self.hook.client, plan, self.max_parallel_calls, log=self.log, checkpoint=checkpoint
            )
        except UnblockJobFailed as failed:
            self._push_report(context, failed.report)
            if failed.final:  # no retry of the task can fix it: fail at once instead of burning retries
                raise AirflowFailException(failed.explain()) from None
            raise AirflowException(failed.explain()) from None
        # what this task's calls cost (the client's own count), for the run report's credits line
        spent = {"credits_spent": self.hook.client.credits_spent}
        if plan.dry_run:
            return {**self._plan_report(report), **spent}
        return {**self._finish(context, report), **spent}

    def _plan_report(self, report: UnblockReport) -> dict[str, Any]:
        """A dry run's report is the plan: the outcomes reached by reading alone, and the calls it would make."""
        self.log.info("%s", report.plan_text())
        return report.to_dict()

    def _finish(self, context: Context, report: UnblockReport) -> dict[str, Any]:
        self.log.info("%s", report.summary_text())
        if self.hook.client.last_credits_remaining is not None:
            self.log.warning(
                "Zoho reports %d API credits left in the org's 24-hour window (sent once half are used).",
                self.hook.client.last_credits_remaining,
            )
        for line in needs_person_lines(report):
            self.log.warning("%s", line)
        if report.ids[Outcome.DEFERRED]:
            self.log.info("%s", deferred_line(report))
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
        return report.to_dict()

    def _push_link(self, context: Context, module: str) -> None:
        """The extra link's URL, from the connection's data center (no call); best effort."""
        try:
            web_url = self.hook.settings.endpoints.data_center.web_url
            context["ti"].xcom_push(key=LINK_XCOM_KEY, value=f"{web_url}/crm/tab/{module}")
        except Exception:
            self.log.debug("No Zoho CRM link pushed for this task.")

    def _push_report(self, context: Context, report: UnblockReport) -> None:
        try:
            context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=report.to_dict())
        except Exception:
            self.log.warning("Could not push the partial report to XCom.")
