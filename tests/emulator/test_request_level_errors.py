"""A module without the asked email field: Zoho's request-level answer and the per-record one, end to end.

Zoho's error list puts "EMAIL, SECONDARY_EMAIL field not available for module" beside "unknown field provided":
both describe the request. The emulator answers it as a call-level 400 NOT_ALLOWED (no ``data``) by default, and
per record with ``unavailable_field_style="record"``. The validation layer can only catch standard modules before
a call (it knows which have Secondary_Email); a custom module is left to Zoho, so this is where the answer
matters. In both forms every id must end in an outcome, or the task must fail clearly with a partial report. With two
fields each unblock call carries one field, so the Email field, which exists, is unblocked by its own calls.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.operators.unblock_email import REPORT_XCOM_KEY, UnblockEmailOperator
from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.zoho.auth import FileTokenStore
from airflow_provider_zohocrm.zoho.errors import ZohoCRMError
from tests.conftest import set_connection

MODULE = "Vendors_X"  # a custom module with Email but no Secondary_Email
MESSAGE = "EMAIL, SECONDARY_EMAIL field not available for module"
INVALID_ID = "4876876000000999999"


class RecordingTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@pytest.fixture
def custom_org(emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[str]:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    set_connection(monkeypatch, emulator)
    backend = emulator.backend
    backend.add_module(MODULE, has_email=True)
    return [backend.add_record(MODULE, email_blocked="temporary") for _ in range(5)]


def unblock_calls(emulator: ZohoCRMEmulator) -> int:
    requests = emulator.backend.stats["requests"]
    return int(requests["unblock_bulk"]) + int(requests["unblock_single"])


def assert_email_unblocked_once(emulator: ZohoCRMEmulator, ids: list[str]) -> None:
    for rid in ids:
        assert emulator.backend.record(MODULE, rid)["email"]["Email"] == {"blocked": None, "unblock_count": 1}


def assert_untouched(emulator: ZohoCRMEmulator, ids: list[str]) -> None:
    for rid in ids:
        assert emulator.backend.record(MODULE, rid)["email"]["Email"] == {
            "blocked": "temporary",
            "unblock_count": 0,
        }


def test_client_raises_a_clear_error_for_the_request_level_answer(
    emulator: ZohoCRMEmulator, custom_org: list[str], token_store: FileTokenStore
) -> None:
    hook = ZohoCRMHook(token_store=token_store)
    with pytest.raises(ZohoCRMError) as caught:
        hook.unblock_emails(MODULE, custom_org, ["Email", "Secondary_Email"])
    assert caught.value.code == "NOT_ALLOWED"
    assert MESSAGE in str(caught.value)
    assert emulator.backend.stats["status_counts"]["unblock_bulk"] == {400: 1}  # not retried
    assert_untouched(emulator, custom_org)


def _both_fields_operator(ids: list[str]) -> UnblockEmailOperator:
    """Email and Secondary_Email on a custom module that has no Secondary_Email, two batches."""
    return UnblockEmailOperator(
        task_id="unblock",
        module=MODULE,
        record_ids=ids,
        unblock_fields=["Email", "Secondary_Email"],
        batch_size=3,
    )


def test_operator_fails_clearly_with_every_id_pending(
    emulator: ZohoCRMEmulator, custom_org: list[str]
) -> None:
    ids = [*custom_org, INVALID_ID]
    ti = RecordingTI()
    op = _both_fields_operator(ids)
    with pytest.raises(AirflowException) as caught:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    # a request-level 400 answers the same on every try: the task must not be retried
    assert isinstance(caught.value, AirflowFailException), type(caught.value)
    assert MESSAGE in str(caught.value)
    report = ti.xcom[REPORT_XCOM_KEY]
    assert sorted(report["pending"]) == sorted(ids)  # nothing lost, nothing invented
    assert all(
        MESSAGE in report["pending_reasons"][rid] or "not sent" in report["pending_reasons"][rid]
        for rid in ids
    )
    assert sum(report["counts"].values()) == 0 and report["total"] == len(ids)
    # one call per field: both Email batches are sent and answered, then the first Secondary_Email batch's
    # request-level answer stops the task (its second batch is not sent)
    assert unblock_calls(emulator) == 3
    assert_email_unblocked_once(emulator, custom_org)
    assert report["fields"] == {
        **{rid: {"Email": "unblocked", "Secondary_Email": "pending"} for rid in custom_org},
        INVALID_ID: {"Email": "invalid_record", "Secondary_Email": "pending"},
    }


def test_operator_with_the_per_record_form(emulator: ZohoCRMEmulator, custom_org: list[str]) -> None:
    emulator.backend.config.unavailable_field_style = "record"
    ids = [*custom_org, INVALID_ID]
    ti = RecordingTI()
    op = _both_fields_operator(ids)
    report = op.execute({"ti": ti})  # type: ignore[arg-type]
    assert sorted(report["ids"]["not_allowed"]) == sorted(custom_org)
    assert report["ids"]["invalid_record"] == [INVALID_ID]
    assert all(MESSAGE in report["messages"][rid] for rid in custom_org)
    assert report["pending"] == [] and report["total"] == len(ids)
    assert unblock_calls(emulator) == 4  # one call per field and batch
    assert_email_unblocked_once(emulator, custom_org)  # the Email field exists: its own calls unblock it
    assert {rid: report["fields"][rid] for rid in custom_org} == {
        rid: {"Email": "unblocked", "Secondary_Email": "not_allowed"} for rid in custom_org
    }
