"""The job as Airflow objects: :class:`ZohoUnblockTaskGroup` (inside any DAG) and :func:`unblock_bounced_emails_dag`
(the whole DAG, with the task ids of the example it replaces).

Construction-time choices (they change the graph or the deployment: the org, the resolver, the pool, approval,
notifiers) are arguments here; per-run choices are DAG params whose defaults come from :class:`UnblockJobConfig`.
Every task body is a function of :mod:`.steps`; the mapped tasks are :class:`~.operators.GroupUnblockOperator`,
which renders nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, overload

from airflow.sdk import DAG, Param, TaskGroup, task

from airflow_provider_zohocrm import __version__
from airflow_provider_zohocrm.workflows import steps
from airflow_provider_zohocrm.workflows.config import UnblockJobConfig
from airflow_provider_zohocrm.workflows.operators import GroupUnblockOperator
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.params import parse_dns_options, parse_max_parallel

ApprovalChoice = Literal["auto", "on", "off"]
DEFAULT_DAG_ID = "zoho_unblock_bounced_emails"
DEFAULT_CONN_ID = "zohocrm_default"


def approval_operator() -> type[Any] | None:
    """Airflow's ApprovalOperator (human-in-the-loop, 3.1+), or None where it does not exist (3.0)."""
    try:
        from airflow.providers.standard.operators.hitl import ApprovalOperator
    except Exception:  # 3.0: AirflowOptionalProviderFeatureException; an old standard provider: ImportError
        return None
    return ApprovalOperator


def check_dns_options(value: Any) -> dict[str, Any] | None:
    """The resolver of ``check_domain``, a deployment choice, checked by ``zoho/params.parse_dns_options`` (the one
    rule: nameservers are IP addresses, no URL, no host name, no spaces; port 1-65535; timeout > 0). None: the
    system's resolver. Raises ValueError naming the value."""
    try:
        options = parse_dns_options(value)
    except ZohoValidationError as exc:
        raise ValueError(str(exc)) from None
    return dict(options) if options else None


@dataclass(frozen=True)
class JobTasks:
    """The tasks of one built job (for the user's own dependencies)."""

    check_params: Any
    report: Any
    unblock: Any


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


class _Job:
    """Builds the job's tasks in the current DAG (or TaskGroup) context; shared by the group and the factory."""

    def __init__(
        self,
        *,
        conn_id: str,
        config: UnblockJobConfig | None,
        allowed_conn_ids: Sequence[str] | None,
        pool: str | None,
        max_parallel: int | None,
        retries: int,
        retry_delay: timedelta | None,
        approval: ApprovalChoice,
        approval_subject: str | None,
        approval_assigned_users: Any,
        approval_notifiers: Sequence[Any] | None,
        report_notifiers: Sequence[Any] | None,
        dns_options: Mapping[str, Any] | None,
        params_prefix: str,
        asset: bool,
        allow_reset_coverage: bool = False,
    ) -> None:
        if not isinstance(conn_id, str) or not conn_id.strip():
            raise ValueError(f"conn_id must be a connection id, not {conn_id!r}")
        self.conn_id = conn_id
        self.config = config or UnblockJobConfig()
        if not isinstance(self.config, UnblockJobConfig):
            raise TypeError(f"config must be an UnblockJobConfig, not {type(self.config).__name__}")
        self.allowed_conn_ids = list(allowed_conn_ids) if allowed_conn_ids else None
        if self.allowed_conn_ids and conn_id not in self.allowed_conn_ids:
            raise ValueError(f"conn_id {conn_id!r} must be one of allowed_conn_ids {self.allowed_conn_ids}")
        self.pool = pool if pool is not None else (os.environ.get("ZOHOCRM_POOL") or None)
        chosen = max_parallel if max_parallel is not None else (_env_int("ZOHOCRM_MAX_PARALLEL") or 10)
        try:
            self.max_parallel = parse_max_parallel(chosen, "max_parallel")
        except ZohoValidationError as exc:
            raise ValueError(str(exc)) from None
        self.retries = retries
        delay = _env_int("ZOHOCRM_RETRY_DELAY_SECONDS")
        self.retry_delay = (
            retry_delay if retry_delay is not None else (timedelta(seconds=delay) if delay else None)
        )
        if approval not in ("auto", "on", "off"):
            raise ValueError(f"approval must be 'auto', 'on' or 'off', not {approval!r}")
        operator = approval_operator()
        if approval == "on" and operator is None:
            from airflow import __version__ as airflow_version

            raise ValueError(
                f"approval='on' needs Airflow 3.1 or later (its human-in-the-loop operators); this is Airflow"
                f" {airflow_version}. Build the DAG with approval='auto' (no approval task here) or 'off'."
            )
        self.approval_operator = operator if approval != "off" else None
        self.approval_choice = approval
        self.approval_subject = approval_subject
        self.approval_assigned_users = approval_assigned_users
        self.approval_notifiers = list(approval_notifiers or [])
        self.report_notifiers = list(report_notifiers or [])
        self.dns_options = check_dns_options(dns_options)
        self.prefix = params_prefix or ""
        self.asset = asset
        self.allow_reset_coverage = bool(allow_reset_coverage)
        if self.config.reset_coverage and not self.allow_reset_coverage:
            raise ValueError(
                "config.reset_coverage=True needs allow_reset_coverage=True (every run would reset)."
            )

    # -- params and docs ---------------------------------------------------------------------------------------

    def param_names(self) -> list[str]:
        names = list(self.config.param_specs(approval=self.approval_operator is not None))
        return [*names, "conn_id"] if self.allowed_conn_ids else names

    def params(self) -> dict[str, Param]:
        out = {
            self.prefix + name: Param(spec.default, description=spec.description, **spec.schema)
            for name, spec in self.config.param_specs(
                approval=self.approval_operator is not None, allow_reset_coverage=self.allow_reset_coverage
            ).items()
        }
        if self.allowed_conn_ids:
            out[self.prefix + "conn_id"] = Param(
                self.conn_id,
                type="string",
                enum=list(self.allowed_conn_ids),
                description="The Zoho CRM connection (the org). A trigger-only user may pick only one of those"
                " the DAG's author listed (allowed_conn_ids).",
            )
        return out

    def doc_md(self) -> str:
        approval = (
            "a person approves the plan in `approve_plan` when a run sets `require_approval`"
            if self.approval_operator is not None
            else (
                "no approval task: this Airflow has no human-in-the-loop operators (3.1+), so `approval='auto'`"
                " built none"
                if self.approval_choice == "auto"
                else "no approval task (`approval='off'`)"
            )
        )
        return (
            f"Unblock soft-bounced email addresses in Zoho CRM, in bulk, and report every record"
            f" (airflow-provider-zohocrm {__version__}).\n\n"
            f"Connection (the org): `{self.conn_id}`"
            + (f" (a run may choose among {self.allowed_conn_ids})" if self.allowed_conn_ids else "")
            + f". Max parallel tasks: {self.max_parallel}. Pool: {self.pool or 'none'}. Approval: {approval}.\n\n"
            "check_params → find_candidates → make_groups → unblock_emails (mapped) → report; with approval:"
            " make_groups → groups_to_plan → plan_emails → summarize_plan → approve_plan → unblock_emails.\n\n"
            "**First night:** a scheduled run of a DAG whose config names no sources fails in check_params,"
            " before any call, saying how to configure them: unpausing it never goes live by itself.\n\n"
            "Per-run params are used as literal data, never rendered as templates. See docs/your-own-dag.md."
        )

    # -- tasks -------------------------------------------------------------------------------------------------

    def build(self, dag: Any, scope: str) -> JobTasks:
        for name, param in self.params().items():
            dag.params[name] = param
        job = self
        names = self.param_names()
        approval_built = self.approval_operator is not None
        config_names_sources = self.config.names_sources
        mapped_args: dict[str, Any] = {
            "retries": self.retries,
            "max_active_tis_per_dagrun": self.max_parallel,
        }
        if self.pool:
            mapped_args["pool"] = self.pool
        if self.retry_delay is not None:
            mapped_args["retry_delay"] = self.retry_delay

        # multiple_outputs=False: a dict return would be split into one XCom per key
        @task(task_id=steps.CHECK_PARAMS, multiple_outputs=False)
        def check_params(params: Any = None, dag: Any = None, dag_run: Any = None) -> dict[str, Any]:
            """Every param checked, no Zoho call: a bad value fails here. A conf key the DAG does not declare
            (``dryrun`` for ``dry_run``) is refused, never ignored."""
            from airflow.providers.common.compat.sdk import AirflowFailException

            conf = getattr(dag_run, "conf", None) or {}
            try:
                settings = steps.check_params(
                    dict(params or {}),
                    param_names=names,
                    prefix=job.prefix,
                    conf_keys=conf.keys(),
                    known_keys=dag.params.keys(),
                    conn_id=job.conn_id,
                    allowed_conn_ids=job.allowed_conn_ids,
                    dns_options=job.dns_options,
                    approval_built=approval_built,
                    run_type=str(getattr(dag_run, "run_type", "") or "") or None,
                    config_names_sources=config_names_sources,
                    max_sources=_max_map_length(),
                    allow_reset_coverage=job.allow_reset_coverage,
                )
                if settings["dns_options"] is None and any(s["check_domain"] for s in settings["sources"]):
                    settings["dns_options"] = _connection_dns_options(settings["conn_id"])
            except (steps.RunRefused, ValueError) as exc:
                raise AirflowFailException(str(exc)) from None
            return settings

        @task(task_id=steps.FIND_CANDIDATES)
        def find_candidates(settings: dict[str, Any], run_id: str | None = None) -> list[dict[str, Any]]:
            """Read every source's ids (verify=emails: their addresses, sealed), the coverage cut, de-duplication."""
            from airflow.providers.common.compat.sdk import AirflowFailException

            from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook

            try:
                return steps.find_candidates(
                    settings,
                    hook=ZohoCRMHook(zohocrm_conn_id=settings["conn_id"]),
                    scope=scope,
                    run_id=str(run_id),
                )
            except steps.RunRefused as exc:
                raise AirflowFailException(str(exc)) from None

        @task(task_id=steps.MAKE_GROUPS)
        def make_groups(found: list[dict[str, Any]], settings: dict[str, Any], ti: Any = None) -> list[int]:
            """Whole batches over at most min(max_map_length, max_parallel) tasks; each group's records to
            ``group_<i>``."""
            from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook

            return steps.make_groups(
                found,
                settings,
                max_groups=min(_max_map_length(), job.max_parallel),
                hook=ZohoCRMHook(zohocrm_conn_id=settings["conn_id"]),
                push=lambda key, value: ti.xcom_push(key=key, value=value),
            )

        settings: Any = check_params()
        found: Any = find_candidates(settings)
        groups: Any = make_groups(found, settings)
        groups_id = groups.operator.task_id
        plan: Any = None
        summary: Any = None
        approve: Any = None
        if approval_built:

            @task(task_id=steps.GROUPS_TO_PLAN)
            def groups_to_plan(groups: list[int], settings: dict[str, Any]) -> list[int]:
                """All groups when the run asks for approval, else none (the plan tasks are then skipped)."""
                return list(groups) if settings.get("require_approval") else []

            plan = GroupUnblockOperator.partial(
                task_id=steps.PLAN_EMAILS,
                zohocrm_conn_id=self.conn_id,
                groups_task_id=groups_id,
                force_dry_run=True,
                **mapped_args,
            ).expand(group=groups_to_plan(groups, settings))

            @task(task_id=steps.SUMMARIZE_PLAN, multiple_outputs=False)
            def summarize_plan(settings: dict[str, Any], ti: Any = None) -> dict[str, str]:
                """The plan in words for the person who approves it."""
                planned = _LazyPull(
                    lambda i: ti.xcom_pull(task_ids=plan_id, map_indexes=i), _count(ti, groups_id)
                )
                return steps.summarize_plan(planned, ti.xcom_pull(task_ids=found_id), settings)

            plan_id = plan.task_id
            found_id = found.operator.task_id
            summary = summarize_plan(settings)
            plan >> summary
            summary_id = summary.operator.task_id
            extra: dict[str, Any] = {}
            if self.approval_notifiers:
                extra["notifiers"] = self.approval_notifiers
            if self.approval_assigned_users:
                extra["assigned_users"] = self.approval_assigned_users
            assert self.approval_operator is not None
            approve = self.approval_operator(
                task_id=steps.APPROVE_PLAN,
                # the library's own template strings: the values they pull are data, rendered once, never again
                subject=self.approval_subject
                or f"{{{{ ti.xcom_pull(task_ids='{summary_id}')['subject'] }}}}",
                body=f"{{{{ ti.xcom_pull(task_ids='{summary_id}')['body'] }}}}",
                ignore_downstream_trigger_rules=False,  # Reject skips unblock_emails only; the report runs
                **extra,
            )
            summary >> approve
        unblock = GroupUnblockOperator.partial(
            task_id=steps.UNBLOCK_EMAILS,
            zohocrm_conn_id=self.conn_id,
            groups_task_id=groups_id,
            # approve_plan is skipped when no approval is asked for; a rejection skips this task itself
            trigger_rule="none_failed",
            **mapped_args,
        ).expand(group=groups)
        if approve is not None:
            approve >> unblock
        ids = {
            "settings": settings.operator.task_id,
            "found": found.operator.task_id,
            "groups": groups_id,
            "unblock": unblock.task_id,
            "plan": plan.task_id if plan is not None else None,
            "approve": approve.task_id if approve is not None else None,
        }
        report_kwargs: dict[str, Any] = {}
        if self.report_notifiers:
            report_kwargs["on_success_callback"] = _ReportNotify(self.report_notifiers)
            report_kwargs["on_failure_callback"] = _ReportNotify(self.report_notifiers)
        if self.asset:
            report_kwargs["outlets"] = [unblocked_asset(self.conn_id)]

        @task(task_id=steps.REPORT, trigger_rule="all_done", multiple_outputs=False, **report_kwargs)
        def report(ti: Any = None, run_id: str | None = None, outlet_events: Any = None) -> dict[str, Any]:
            """Commit what exists (every group's verdicts that reached a checkpoint), then a table per module, the
            records a person must handle, and the accounting; then fail if any group failed."""
            return _report_body(ti, str(run_id), ids, job, outlet_events)

        done = report()
        # not approve_plan: a Reject skips its direct downstream tasks (unblock_emails), and the report must run
        chain = [settings, found, groups, unblock] + ([plan, summary] if approve is not None else [])
        for upstream in chain:
            upstream >> done
        return JobTasks(check_params=settings, report=done, unblock=unblock)


def _report_body(
    ti: Any, run_id: str, ids: Mapping[str, Any], job: _Job, outlet_events: Any
) -> dict[str, Any]:
    from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

    settings = ti.xcom_pull(task_ids=ids["settings"])
    if not settings:
        raise AirflowFailException("check_params did not pass: nothing was read, sent or stored.")
    found = ti.xcom_pull(task_ids=ids["found"])
    if found is None:
        raise AirflowFailException("find_candidates failed: nothing was sent; see its log.")
    groups_n = ti.xcom_pull(task_ids=ids["groups"])
    if groups_n is None:  # make_groups failed: release the claims (no verdicts), then fail
        steps.commit_coverage(
            [dict(f, ids=[]) for f in found],
            [],
            [],
            [],
            run_id,
            conn_id=settings["conn_id"],
            dry_run=bool(settings["dry_run"]),
            rejected=False,
            reset=bool(settings.get("reset_coverage")),
        )
        raise AirflowFailException("make_groups failed: nothing was sent; see its log.")
    n = len(groups_n)
    groups = [ti.xcom_pull(task_ids=ids["groups"], key=steps.GROUP_KEY.format(i)) or {} for i in range(n)]
    # pulled when indexed, never held: steps.report reads each result once (issue 25 item 8: the report's memory)
    results = _LazyPull(lambda i: ti.xcom_pull(task_ids=ids["unblock"], map_indexes=i), n)
    partials = _LazyPull(  # read only for a group whose task failed
        lambda i: ti.xcom_pull(task_ids=ids["unblock"], map_indexes=i, key="unblock_report"), n
    )
    # the plan exists only when the run asked for approval (else plan_emails was skipped: pulling its XComs would
    # log an ERROR "XCom not found" per group)
    planned = _pull_mapped(ti, ids["plan"], n) if ids.get("plan") and settings.get("require_approval") else []
    decision = (
        ti.xcom_pull(task_ids=ids["approve"])
        if ids.get("approve") and settings.get("require_approval")
        else None
    )
    value, problems, extra = steps.report(
        settings=settings,
        found=found,
        groups=groups,
        results=results,
        partials=partials,
        planned=planned,
        decision=decision if isinstance(decision, dict) else None,
        run_id=run_id,
    )
    if job.asset and outlet_events is not None:
        outlet_events[unblocked_asset(job.conn_id)].extra = extra
    if problems:
        ti.xcom_push(key="report_text", value=value["text"])
        raise AirflowException(" ".join(problems))
    return value


def unblocked_asset(conn_id: str) -> Any:
    """The asset a run's report emits: ``zohocrm://<conn id>/unblocked``."""
    from airflow.sdk import Asset

    return Asset(f"zohocrm://{conn_id}/unblocked")


class _ReportNotify:
    """Calls each report notifier with the task's context (the report text under ``zohocrm_report``)."""

    def __init__(self, notifiers: Sequence[Any]) -> None:
        self.notifiers = list(notifiers)

    def __call__(self, context: Any) -> None:
        ti = context["ti"]
        text = None
        value = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)
        if isinstance(value, dict):
            text = value.get("text")
        if text is None:
            text = ti.xcom_pull(task_ids=ti.task_id, key="report_text")
        context = {**context, "zohocrm_report": text}
        for notifier in self.notifiers:
            notifier(context)


def _pull_mapped(ti: Any, task_id: str | None, n: int) -> list[Any]:
    """Each map index's return value (None where that task failed or was skipped), in map-index order."""
    if not task_id or not n:
        return []
    return [ti.xcom_pull(task_ids=task_id, map_indexes=i) for i in range(n)]


class _LazyPull(Sequence[Any]):
    """Map index → that mapped task's XCom, pulled each time it is indexed and not kept (a result of 100,000 ids
    is tens of MB as Python objects; the report reads each once)."""

    def __init__(self, pull: Callable[[int], Any], n: int) -> None:
        self._pull = pull
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._pull(i) for i in range(*index.indices(self._n))]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError(index)
        return self._pull(index)


def _count(ti: Any, groups_id: str) -> int:
    return len(ti.xcom_pull(task_ids=groups_id) or [])


def _max_map_length() -> int:
    """Mapped task instances per run Airflow allows ([core] max_map_length)."""
    from airflow.providers.common.compat.sdk import conf

    return int(conf.getint("core", "max_map_length", fallback=1024))


def _connection_dns_options(conn_id: str) -> dict[str, Any] | None:
    """The resolver from the connection's extra ``dns_options`` (a connection editor's choice), validated."""
    from airflow.providers.common.compat.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson or {}
    return check_dns_options(extra.get("dns_options"))


_JOB_ARGS = (
    "conn_id",
    "config",
    "allowed_conn_ids",
    "pool",
    "max_parallel",
    "retries",
    "retry_delay",
    "approval",
    "approval_subject",
    "approval_assigned_users",
    "approval_notifiers",
    "report_notifiers",
    "dns_options",
    "asset",
    "allow_reset_coverage",
)


class ZohoUnblockTaskGroup(TaskGroup):
    """The whole job inside any DAG: put tasks of your own before it (``>> group``) and after it (``group >>``;
    read the report from :attr:`report_output`).

    :param group_id: required (Airflow would silently suffix a duplicate, renaming the tasks).
    :param conn_id: the Zoho CRM connection: the org is the deployment's choice, not a run's.
    :param config: the per-run params' defaults (:class:`UnblockJobConfig`).
    :param params_prefix: prefix of this group's DAG params, so two groups live in one DAG.
    :param allowed_conn_ids: let a run choose among these connections (a ``conn_id`` param); default: none.
    :param pool: an Airflow pool bounding the Zoho calls across DAGs (default ``$ZOHOCRM_POOL``, else none).
    :param max_parallel: mapped unblock tasks at once per run (default ``$ZOHOCRM_MAX_PARALLEL``, else 10).
    :param retries: retries of a mapped unblock task (safe: a done record answers already_unblocked).
    :param retry_delay: their delay (default ``$ZOHOCRM_RETRY_DELAY_SECONDS``, else Airflow's).
    :param approval: ``auto`` (the approval tasks where Airflow has HITL operators, 3.1+), ``on`` (required;
        refused at parse time on 3.0) or ``off``.
    :param approval_subject: the approval's subject (default: the plan's counts).
    :param approval_assigned_users: who may answer (Airflow's ``HITLUser`` dicts).
    :param approval_notifiers: notifiers told when a plan waits for approval.
    :param report_notifiers: Airflow ``BaseNotifier`` objects called with the report (``context["zohocrm_report"]``)
        on success and on failure.
    :param dns_options: ``check_domain``'s resolver ``{"nameservers": [IP, …], "port": 53, "timeout": 5}``
        (default: the connection's extra ``dns_options``, else the system's).
    :param asset: emit ``zohocrm://<conn id>/unblocked`` from the report (docs/your-own-dag.md).
    :param allow_reset_coverage: let a run restart rolling coverage (``reset_coverage``); otherwise a run asking
        for it is refused in check_params (docs/security.md).
    :param kwargs: every other TaskGroup argument (tooltip, ui_color, default_args, …).
    """

    def __init__(
        self,
        group_id: str,
        *,
        conn_id: str = DEFAULT_CONN_ID,
        config: UnblockJobConfig | None = None,
        params_prefix: str = "",
        allowed_conn_ids: Sequence[str] | None = None,
        pool: str | None = None,
        max_parallel: int | None = None,
        retries: int = 2,
        retry_delay: timedelta | None = None,
        approval: ApprovalChoice = "auto",
        approval_subject: str | None = None,
        approval_assigned_users: Any = None,
        approval_notifiers: Sequence[Any] | None = None,
        report_notifiers: Sequence[Any] | None = None,
        dns_options: Mapping[str, Any] | None = None,
        asset: bool = True,
        allow_reset_coverage: bool = False,
        **kwargs: Any,
    ) -> None:
        if not group_id:
            raise ValueError("ZohoUnblockTaskGroup needs an explicit group_id.")
        job = _Job(
            conn_id=conn_id,
            config=config,
            allowed_conn_ids=allowed_conn_ids,
            pool=pool,
            max_parallel=max_parallel,
            retries=retries,
            retry_delay=retry_delay,
            approval=approval,
            approval_subject=approval_subject,
            approval_assigned_users=approval_assigned_users,
            approval_notifiers=approval_notifiers,
            report_notifiers=report_notifiers,
            dns_options=dns_options,
            params_prefix=params_prefix,
            asset=asset,
            allow_reset_coverage=allow_reset_coverage,
        )
        kwargs.setdefault("tooltip", f"Unblock bounced emails in Zoho CRM ({conn_id})")
        super().__init__(group_id=group_id, **kwargs)
        with self:
            self.tasks = job.build(self.dag, scope=f"{self.dag.dag_id}.{self.group_id}")

    @property
    def report_task(self) -> Any:
        """The report task (``group >> my_task`` waits for it too)."""
        return self.tasks.report.operator

    @property
    def report_output(self) -> Any:
        """The report's XComArg: pass it to a task of your own (``my_task(group.report_output)``)."""
        return self.tasks.report


def unblock_bounced_emails_dag(
    dag_id: str = DEFAULT_DAG_ID,
    *,
    conn_id: str = DEFAULT_CONN_ID,
    config: UnblockJobConfig | None = None,
    allowed_conn_ids: Sequence[str] | None = None,
    pool: str | None = None,
    max_parallel: int | None = None,
    retries: int = 2,
    retry_delay: timedelta | None = None,
    approval: ApprovalChoice = "auto",
    approval_subject: str | None = None,
    approval_assigned_users: Any = None,
    approval_notifiers: Sequence[Any] | None = None,
    report_notifiers: Sequence[Any] | None = None,
    dns_options: Mapping[str, Any] | None = None,
    asset: bool = True,
    allow_reset_coverage: bool = False,
    **dag_kwargs: Any,
) -> DAG:
    """The whole job as a DAG, with the example's task ids (check_params, find_candidates, make_groups,
    groups_to_plan, plan_emails, summarize_plan, approve_plan, unblock_emails, report). The job's arguments are
    :class:`ZohoUnblockTaskGroup`'s; every other keyword goes to Airflow's ``DAG`` (schedule, start_date,
    default_args, callbacks, tags, dag_display_name, …) over these defaults: ``@daily`` from 2026-01-01, no
    catchup, one active run, tags zoho/crm/email."""
    job = _Job(
        conn_id=conn_id,
        config=config,
        allowed_conn_ids=allowed_conn_ids,
        pool=pool,
        max_parallel=max_parallel,
        retries=retries,
        retry_delay=retry_delay,
        approval=approval,
        approval_subject=approval_subject,
        approval_assigned_users=approval_assigned_users,
        approval_notifiers=approval_notifiers,
        report_notifiers=report_notifiers,
        dns_options=dns_options,
        params_prefix="",
        asset=asset,
        allow_reset_coverage=allow_reset_coverage,
    )
    defaults: dict[str, Any] = {
        "description": "Unblock soft-bounced email addresses in Zoho CRM, in bulk, in every module, and report"
        " every record",
        "schedule": "@daily",
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["zoho", "crm", "email"],
    }
    own_doc = job.doc_md()
    user_doc = dag_kwargs.pop("doc_md", None)
    dag = DAG(
        dag_id=dag_id,
        **{**defaults, **dag_kwargs},
        doc_md=f"{user_doc}\n\n{own_doc}" if user_doc else own_doc,
    )
    with dag:
        job.build(dag, scope=dag_id)
    return dag


__all__ = [
    "JobTasks",
    "ZohoUnblockTaskGroup",
    "check_dns_options",
    "unblock_bounced_emails_dag",
    "unblocked_asset",
]
