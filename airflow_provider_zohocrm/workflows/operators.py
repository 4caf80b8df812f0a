"""The workflow's mapped unblock task: an :class:`UnblockEmailOperator` that renders nothing.

Values reach a mapped task's template fields through ``expand``/``expand_kwargs`` and Airflow renders them as
Jinja (issue 27 row 1: a run's conf set ``needs_person_tag`` to ``{{ 'x' ~ 6*7 }}`` and Zoho got ``x42``). This
subclass has no template fields at all, is mapped over group *numbers* only, and pulls its group's records and
settings from make_groups' XCom in ``execute``: by construction, no value from a run's conf, a source or Zoho's
data is ever rendered. Internal (not in the package's ``__all__``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator
from airflow_provider_zohocrm.workflows import steps
from airflow_provider_zohocrm.zoho.redact import REDACTED_ADDRESS as REDACTED_ADDRESS
from airflow_provider_zohocrm.zoho.redact import redact_addresses

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def scrub_addresses(value: Any) -> Any:
    """``value`` with every email address in its text replaced: what a task returns holds ids and outcomes."""
    if isinstance(value, str):
        return redact_addresses(value)
    if isinstance(value, dict):
        return {scrub_addresses(k): scrub_addresses(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_addresses(v) for v in value]
    return value


class GroupUnblockOperator(UnblockEmailOperator):
    """One mapped group of the workflow: its records and settings come from ``make_groups``' XCom
    (``group_<group>``), read in ``execute``; its addresses are decrypted there and scrubbed from what it
    returns. ``force_dry_run``: the approval path's plan tasks."""

    template_fields: Sequence[str] = ()
    template_fields_renderers = {}

    def __init__(
        self, *, group: int, groups_task_id: str, force_dry_run: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.groups_task_id = groups_task_id
        self.force_dry_run = force_dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        group = context["ti"].xcom_pull(task_ids=self.groups_task_id, key=steps.GROUP_KEY.format(self.group))
        if not isinstance(group, dict):
            from airflow.providers.common.compat.sdk import AirflowFailException

            raise AirflowFailException(f"No records for group {self.group!r} from {self.groups_task_id}.")
        from airflow_provider_zohocrm.zoho.id_packing import unpack_ids

        self.module = group["module"]
        self.record_ids = unpack_ids(group["ids"])
        self.unblock_fields = group["unblock_fields"]
        self.batch_size = group["batch_size"]
        self.dry_run_mode = True if self.force_dry_run else bool(group["dry_run"])
        self.verify = group["verify"]
        self.min_hours_since_bounce = group["min_hours_since_bounce"]
        self.max_email_checks = group["max_email_checks"]
        self.needs_person_tag = group["needs_person_tag"]
        self.check_domain = group["check_domain"]
        self.dns_options = group["dns_options"]
        self.coverage = group.get("coverage")
        sealed = group.get("sealed_addresses")
        self._address_data = steps.unseal(steps.address_cipher(self.hook), sealed) if sealed else None
        result: dict[str, Any] = scrub_addresses(super().execute(context))
        return result

    def _push_report(self, context: Context, report: Any) -> None:
        try:
            context["ti"].xcom_push(key="unblock_report", value=scrub_addresses(report.to_dict()))
        except Exception:
            self.log.warning("Could not push the partial report to XCom.")


__all__ = ["GroupUnblockOperator", "scrub_addresses"]
