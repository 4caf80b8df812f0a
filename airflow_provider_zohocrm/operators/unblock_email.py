"""UnblockEmailOperator: unblock soft-bounced email addresses of one record or thousands, and report each one."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    BaseOperatorLink,
)

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.zoho.errors import (
    ZohoConfigError,
    ZohoCRMError,
    ZohoInvalidClientError,
    ZohoRefreshTokenError,
    ZohoScopeError,
)
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
REPORT_XCOM_KEY = "unblock_report"


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


class UnblockEmailOperator(BaseOperator):
    """Unblock the email addresses Zoho blocked after soft bounces, for one record or many.

    One id goes to the single-record endpoint; more go to the bulk endpoint in batches of at most 500.
    Every id ends in exactly one outcome — ``unblocked``, ``already_unblocked``, ``permanently_blocked``,
    ``limit_reached``, ``invalid_record``, ``not_allowed`` or ``error`` — returned as the task's XCom.

    :param module: module API name (Leads, Contacts, Deals, Accounts, Sales_Orders, Purchase_Orders, Invoices,
        Quotes, Cases, or a custom module). Templated.
    :param record_ids: the record ids (digits). Templated; map over it with ``expand``.
    :param record_id: a single record id, instead of ``record_ids``. Templated.
    :param unblock_fields: ``Email`` and/or ``Secondary_Email``. Templated.
    :param zohocrm_conn_id: the Zoho CRM connection.
    :param batch_size: ids per bulk call, 1 to 500.
    :param max_parallel_calls: bulk calls in flight at once within this task (keep pool slots x this within
        your org's Zoho concurrency limit).
    :param dry_run: validate and report what would be sent; make no unblock call.
    :param fail_on: outcomes that fail the task after all batches ran (default: ``error``). Ids unblocked on
        an earlier try come back ``already_unblocked`` and count as done, so retrying the task is safe.
    """

    template_fields: Sequence[str] = (
        "module",
        "record_ids",
        "record_id",
        "unblock_fields",
        "zohocrm_conn_id",
        "batch_size",
        "dry_run_mode",
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
        fail_on: Sequence[str] = (Outcome.ERROR.value,),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if record_ids is not None and record_id is not None:
            raise ValueError("Give either record_ids or record_id, not both.")
        unknown = [o for o in fail_on if o not in {x.value for x in Outcome}]
        if unknown:
            raise ValueError(f"fail_on has unknown outcomes {unknown}: use {[o.value for o in Outcome]}")
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
        self.fail_on = list(fail_on)

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
        value = self.dry_run_mode
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes", "on")
        return bool(value)

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            request = self._request()  # every input checked before any call
        except ZohoConfigError as exc:
            raise AirflowFailException(str(exc)) from None
        report = UnblockReport(
            module=request.module, unblock_fields=request.unblock_fields, dry_run=self.is_dry_run
        )
        batches = request.batches()
        if not batches:
            self.log.info("No record ids given: nothing to unblock.")
            return report.to_dict()
        if self.is_dry_run:
            report.pending = list(request.record_ids)
            self.log.info(
                "Dry run: would unblock %s of %d %s record(s) in %d call(s); nothing sent.",
                "/".join(request.unblock_fields),
                len(request.record_ids),
                request.module,
                len(batches),
            )
            return report.to_dict()

        hook = ZohoCRMHook(zohocrm_conn_id=self.zohocrm_conn_id)
        try:
            self._run_batches(hook, request, batches, report)
        except ZohoCRMError as exc:
            self._push_report(context, report)
            done = report.total
            reason = (
                f"{exc} ({done} of {len(request.record_ids)} ids had an outcome before this; a retry is safe)"
            )
            if isinstance(exc, _FINAL_ERRORS):
                raise AirflowFailException(reason) from None
            raise AirflowException(reason) from None

        result = report.to_dict()
        self.log.info(
            "Unblock Email on %s, %d record(s):\n%s",
            request.module,
            report.total,
            format_table(report.counts),
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
                    _preview(report.ids[outcome]),
                )
        failing = {o: report.counts[o] for o in self.fail_on if report.counts.get(o)}
        if failing:
            self._push_report(context, report)
            examples = [f"{rid}: {msg}" for rid, msg in list(report.messages.items())[:5]]
            raise AirflowException(
                f"Unblock Email finished with outcomes listed in fail_on: {failing}."
                + (f" Examples: {'; '.join(examples)}" if examples else "")
            )
        return result

    def _run_batches(
        self, hook: ZohoCRMHook, request: UnblockRequest, batches: list[list[str]], report: UnblockReport
    ) -> None:
        total = len(batches)

        def send(batch: list[str]) -> list[dict[str, Any]]:
            if len(request.record_ids) == 1:
                return hook.unblock_email(request.module, batch[0], request.unblock_fields)
            return hook.unblock_emails(request.module, batch, request.unblock_fields)

        def record(number: int, batch: list[str], items: list[dict[str, Any]]) -> None:
            counts = report.add_answer(batch, items)
            summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            self.log.info("batch %d/%d: %d ids, %s", number, total, len(batch), summary)

        if self.max_parallel_calls == 1 or total == 1:
            for number, batch in enumerate(batches, start=1):
                record(number, batch, send(batch))
            return
        with ThreadPoolExecutor(max_workers=min(self.max_parallel_calls, total)) as pool:
            futures = [pool.submit(send, batch) for batch in batches]
            first_error: BaseException | None = None
            for number, (batch, future) in enumerate(zip(batches, futures, strict=True), start=1):
                try:
                    record(number, batch, future.result())
                except ZohoCRMError as exc:
                    first_error = first_error or exc
            if first_error:
                raise first_error

    def _push_report(self, context: Context, report: UnblockReport) -> None:
        try:
            context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=report.to_dict())
        except Exception:
            self.log.warning("Could not push the partial report to XCom.")


def _preview(ids: list[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" … (+{len(ids) - limit} more)" if len(ids) > limit else "")
