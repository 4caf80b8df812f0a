"""UnblockEmailOperator against the emulator: outcomes, validation, dry run, fail_on, retries."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_zohocrm.operators.unblock_email import REPORT_XCOM_KEY, UnblockEmailOperator
from airflow_provider_zohocrm.testing import Fault, ZohoCRMEmulator, expected_outcome, seed_demo_org
from airflow_provider_zohocrm.zoho.unblock import Outcome
from tests.conftest import RECORD_OUTCOMES, set_connection


class RecordingTI:
    """Stands in for the task instance's XCom push (the only context the operator touches)."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def run(**kwargs: Any) -> tuple[dict[str, Any], RecordingTI]:
    ti = RecordingTI()
    op = UnblockEmailOperator(task_id="unblock", **kwargs)
    return op.execute({"ti": ti}), ti  # type: ignore[arg-type]


def unblock_calls(em: ZohoCRMEmulator) -> int:
    requests = em.backend.stats["requests"]
    return int(requests["unblock_bulk"]) + int(requests["unblock_single"])


def assert_partition(result: dict[str, Any], ids: list[str]) -> None:
    """Every input id in exactly one outcome; counts agree with the lists."""
    reported = [rid for outcome_ids in result["ids"].values() for rid in outcome_ids] + result["pending"]
    assert sorted(reported) == sorted(ids)
    assert result["total"] == len(ids)
    assert all(result["counts"][o] == len(result["ids"][o]) for o in result["counts"])


@pytest.fixture
def org(conn_env: ZohoCRMEmulator, tmp_path, monkeypatch):
    # this test's own token file cache (TMPDIR set here would come too late: tempfile caches the temp dir)
    monkeypatch.setenv("ZOHOCRM_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    return seed_demo_org(conn_env.backend, n_bounced=1200, n_clean=50)


def test_every_outcome_over_several_batches(conn_env: ZohoCRMEmulator, org) -> None:
    ids = (
        org.bounced() + org.of("clean")[:5] + ["4876876999999999999", "4876876999999999998"]
    )  # two unknown ids
    expected = {rid: expected_outcome(conn_env.backend, "Leads", rid, ["Email"]) for rid in ids}
    result, _ = run(module="Leads", record_ids=ids, unblock_fields=["Email"], fail_on=[])
    assert_partition(result, ids)
    for rid in ids:
        outcome = next(o for o, lst in result["ids"].items() if rid in lst)
        assert outcome == expected[rid], rid
    assert expected["4876876999999999999"] == Outcome.INVALID_RECORD
    for outcome in RECORD_OUTCOMES:
        assert result["counts"][outcome] > 0, outcome
    assert unblock_calls(conn_env) == -(-len(ids) // 500) == result["calls"]
    # state: exactly the unblockable records changed, each once
    for rid in org.bounced():
        events = conn_env.backend.unblock_events("Leads", rid)
        assert len(events) == (1 if rid in result["ids"]["unblocked"] else 0)
    assert result["messages"] and all(rid in result["ids"]["not_allowed"] for rid in result["messages"])


def test_secondary_email_and_both_fields(conn_env: ZohoCRMEmulator, org) -> None:
    ids = org.of("secondary")[:10] + org.of("permanent_secondary")[:10]
    result, _ = run(module="Leads", record_ids=ids, unblock_fields=["Email", "Secondary_Email"])
    assert_partition(result, ids)
    # per field (issue 19): one call per field, so Zoho's answer is each field's own
    assert unblock_calls(conn_env) == result["calls"] == 2
    assert {rid: f["Secondary_Email"] for rid, f in result["fields"].items()} == dict.fromkeys(
        ids, "unblocked"
    )
    assert {rid: f["Email"] for rid, f in result["fields"].items()} == {
        **dict.fromkeys(org.of("secondary")[:10], "already_unblocked"),
        **dict.fromkeys(org.of("permanent_secondary")[:10], "permanently_blocked"),
    }
    # each record counted once, under its most actionable field
    assert sorted(result["ids"]["unblocked"]) == sorted(org.of("secondary")[:10])
    assert sorted(result["ids"]["permanently_blocked"]) == sorted(org.of("permanent_secondary")[:10])


@pytest.mark.parametrize("style", ["wrapped", "flat"])
def test_single_record_endpoint_both_answer_shapes(conn_env: ZohoCRMEmulator, org, style: str) -> None:
    conn_env.backend.config.single_response_style = style
    rid = org.of("temporary")[0]
    result, _ = run(module="Leads", record_id=rid)
    assert result["ids"]["unblocked"] == [rid]
    perm = org.of("permanent")[0]
    result, _ = run(module="Leads", record_ids=[perm], fail_on=[])
    assert result["ids"]["permanently_blocked"] == [perm]
    assert conn_env.backend.stats["requests"]["unblock_single"] == 2
    assert conn_env.backend.stats["requests"]["unblock_bulk"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"record_ids": ["12a"]}, "'12a'"),
        ({"record_ids": ["123/../456"]}, "123/../456"),
        ({"record_ids": ["1", "2", "1"]}, "Duplicate record id '1'"),
        ({"record_ids": [1.5]}, "1.5"),
        ({"module": "Leads;drop", "record_ids": ["1"]}, "Leads;drop"),
        ({"module": "leads", "record_ids": ["1"]}, "'Leads'"),
        ({"record_ids": ["1"], "unblock_fields": ["Email", "Other_Email"]}, "Other_Email"),
        ({"record_ids": ["1"], "unblock_fields": ["email"]}, "'email'"),
        ({"record_ids": ["1"], "unblock_fields": []}, "unblock_fields"),
        ({"module": "Deals", "record_ids": ["1"], "unblock_fields": ["Secondary_Email"]}, "Deals"),
        ({"record_ids": ["1"], "batch_size": 501}, "501"),
        ({"record_ids": ["1"], "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_input_fails_before_any_call(
    conn_env: ZohoCRMEmulator, kwargs: dict[str, Any], message: str
) -> None:
    kwargs.setdefault("module", "Leads")
    with pytest.raises(AirflowFailException) as info:
        run(**kwargs)
    assert message in str(info.value)
    assert unblock_calls(conn_env) == 0
    assert conn_env.backend.stats["requests"]["token"] == 0


def test_bad_operator_arguments_fail_at_definition() -> None:
    with pytest.raises(ValueError, match="fail_on"):
        UnblockEmailOperator(task_id="x", record_ids=["1"], fail_on=["exploded"])
    with pytest.raises(ValueError, match="either"):
        UnblockEmailOperator(task_id="x", record_ids=["1"], record_id="2")
    with pytest.raises(ValueError, match="max_parallel_calls"):
        UnblockEmailOperator(task_id="x", record_ids=["1"], max_parallel_calls=0)


def test_empty_list_is_success_with_nothing_to_do(conn_env: ZohoCRMEmulator) -> None:
    result, _ = run(module="Leads", record_ids=[])
    assert result["total"] == 0
    assert conn_env.backend.stats["requests"]["token"] == 0


def test_dry_run_sends_nothing(conn_env: ZohoCRMEmulator, org) -> None:
    ids = org.bounced()
    result, _ = run(module="Leads", record_ids=ids, dry_run=True)
    assert result["dry_run"] is True
    assert sorted(result["pending"]) == sorted(ids)
    assert_partition(result, ids)
    assert unblock_calls(conn_env) == 0
    assert all(not conn_env.backend.unblock_events("Leads", rid) for rid in ids)


def test_fail_on_policy(conn_env: ZohoCRMEmulator, org) -> None:
    ids = org.of("temporary")[:5] + org.of("permanent")[:3]
    with pytest.raises(AirflowException, match="permanently_blocked"):
        run(module="Leads", record_ids=ids, fail_on=["permanently_blocked"])
    # all batches ran before failing: the unblockable ones were unblocked
    assert all(len(conn_env.backend.unblock_events("Leads", rid)) == 1 for rid in ids[:5])
    result, _ = run(module="Leads", record_ids=org.of("permanent")[3:6])  # default fail_on=["error"]
    assert result["counts"]["permanently_blocked"] == 3


def test_unknown_per_record_code_is_error_and_fails_by_default(conn_env: ZohoCRMEmulator, org) -> None:
    ids = org.of("temporary")[:4]
    conn_env.backend.add_fault(Fault(endpoint="unblock_bulk", action="unknown_code"))
    ti_holder: dict[str, Any] = {}
    with pytest.raises(AirflowException, match="error") as info:
        ti = RecordingTI()
        ti_holder["ti"] = ti
        UnblockEmailOperator(task_id="u", module="Leads", record_ids=ids).execute({"ti": ti})  # type: ignore[arg-type]
    assert "SOMETHING_NEW" in str(info.value)
    report = ti_holder["ti"].xcom[REPORT_XCOM_KEY]
    assert sorted(report["ids"]["error"]) == sorted(ids)


def test_retried_task_after_partial_success_counts_done_records(
    conn_env: ZohoCRMEmulator, org, monkeypatch
) -> None:
    set_connection(monkeypatch, conn_env, max_attempts=2)
    ids = org.of("temporary")[:700]
    # the second batch keeps failing: the first try fails loudly after batch 1 …
    conn_env.backend.add_fault(Fault(endpoint="unblock_bulk", action="500", on_call=2, times=2))
    ti = RecordingTI()
    with pytest.raises(AirflowException, match="retry is safe"):
        UnblockEmailOperator(task_id="u", module="Leads", record_ids=ids, batch_size=500).execute({"ti": ti})  # type: ignore[arg-type]
    partial = ti.xcom[REPORT_XCOM_KEY]
    assert partial["counts"]["unblocked"] == 500
    # … and Airflow's retry finishes the job: the first 500 come back already_unblocked and count as done.
    result, _ = run(module="Leads", record_ids=ids, batch_size=500)
    assert result["counts"]["already_unblocked"] == 500
    assert result["counts"]["unblocked"] == 200
    assert all(len(conn_env.backend.unblock_events("Leads", rid)) == 1 for rid in ids)


def test_call_level_auth_failure_is_final(conn_env: ZohoCRMEmulator, org) -> None:
    conn_env.backend.revoke_refresh_token(conn_env.backend.refresh_token)
    with pytest.raises(AirflowFailException, match="refresh token"):
        run(module="Leads", record_ids=org.of("temporary")[:3])


def test_parallel_calls_within_task_stay_bounded(conn_env: ZohoCRMEmulator, org) -> None:
    conn_env.backend.config.latency = 0.05
    conn_env.backend.config.concurrency_limit = 3
    ids = org.bounced()  # 1200 ids, 24 batches of 50
    result, _ = run(module="Leads", record_ids=ids, batch_size=50, max_parallel_calls=3, fail_on=[])
    assert_partition(result, ids)
    assert conn_env.backend.stats["rejected_429"] == 0
    assert conn_env.backend.stats["peak_concurrency"] <= 3
    assert unblock_calls(conn_env) == 24


def test_templated_fields_render_to_a_valid_request(conn_env: ZohoCRMEmulator) -> None:
    from airflow.sdk import DAG

    with DAG("render_test", schedule=None, render_template_as_native_obj=True):
        op = UnblockEmailOperator(
            task_id="t",
            module="{{ params.m }}",
            record_ids="{{ params.ids }}",
            unblock_fields="{{ params.fields }}",
            batch_size="{{ params.size }}",
            dry_run="{{ params.dry }}",
        )
    context = {
        "params": {
            "m": "Contacts",
            "ids": ["11", "22"],
            "fields": ["Email", "Secondary_Email"],
            "size": 100,
            "dry": True,
        }
    }
    op.render_template_fields(context)  # type: ignore[arg-type]
    request = op._request()
    assert (request.module, request.record_ids, request.unblock_fields, request.batch_size) == (
        "Contacts",
        ["11", "22"],
        ["Email", "Secondary_Email"],
        100,
    )
    assert op.is_dry_run is True


@pytest.mark.parametrize(
    ("dc", "web"),
    [("us", "https://crm.zoho.com"), ("eu", "https://crm.zoho.eu"), ("ca", "https://crm.zohocloud.ca")],
)
def test_extra_link_opens_module_in_the_connections_data_center(
    emulator: ZohoCRMEmulator, monkeypatch, tmp_path, dc: str, web: str
) -> None:
    from airflow_provider_zohocrm.operators import unblock_email
    from airflow_provider_zohocrm.operators.unblock_email import LINK_XCOM_KEY, ZohoCRMModuleLink

    monkeypatch.setenv("ZOHOCRM_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    set_connection(monkeypatch, emulator, data_center=dc)
    op = UnblockEmailOperator(task_id="u", module="Contacts", record_ids=["1"], fail_on=[])
    ti = RecordingTI()
    op.execute({"ti": ti})  # type: ignore[arg-type]
    assert ti.xcom[LINK_XCOM_KEY] == f"{web}/crm/tab/Contacts"  # execute pushed it
    # the link reads that XCom (Airflow's store stands in for the task instance's) and builds no hook
    monkeypatch.setattr(unblock_email.XCom, "get_value", lambda *, key, ti_key: ti.xcom.get(key))
    monkeypatch.setattr(unblock_email, "ZohoCRMHook", None)
    tokens = emulator.backend.stats["requests"]["token"]
    assert ZohoCRMModuleLink().get_link(op, ti_key=None) == f"{web}/crm/tab/Contacts"  # type: ignore[arg-type]
    assert emulator.backend.stats["requests"]["token"] == tokens  # rendering a link calls nothing


# -- issue 9, finding 3: a failed call leaves every id accounted for -------------------------------------------


@pytest.mark.parametrize("parallel", [1, 3])
@pytest.mark.parametrize("failing_call", [1, 3, 5], ids=["first", "middle", "last"])
def test_failed_call_leaves_every_id_in_an_outcome_or_pending_with_its_reason(
    conn_env: ZohoCRMEmulator, org, monkeypatch, parallel: int, failing_call: int
) -> None:
    set_connection(monkeypatch, conn_env, max_attempts=1)
    ids = org.of("temporary")[:50]  # 5 batches of 10
    conn_env.backend.add_fault(Fault(endpoint="unblock_bulk", action="500", on_call=failing_call))
    ti = RecordingTI()
    with pytest.raises(AirflowException, match="pending"):
        UnblockEmailOperator(
            task_id="u", module="Leads", record_ids=ids, batch_size=10, max_parallel_calls=parallel
        ).execute({"ti": ti})  # type: ignore[arg-type]
    partial = ti.xcom[REPORT_XCOM_KEY]
    assert_partition(partial, ids)
    assert set(partial["pending_reasons"]) == set(partial["pending"])
    reasons = partial["pending_reasons"]
    failed = [rid for rid, why in reasons.items() if why.startswith("unblock call failed")]
    assert len(failed) == 10  # the failing batch
    assert all(why.startswith(("unblock call failed", "not sent")) for why in reasons.values())
    # the report agrees with Zoho's state: reported unblocked = unblocked once, pending = untouched
    for rid in ids:
        events = len(conn_env.backend.unblock_events("Leads", rid))
        assert events == (1 if rid in partial["ids"]["unblocked"] else 0), rid
    if parallel == 1:  # one after another: nothing is sent after the failure
        assert unblock_calls(conn_env) == failing_call
        assert sum(why.startswith("not sent") for why in reasons.values()) == (5 - failing_call) * 10
        assert partial["counts"]["unblocked"] == (failing_call - 1) * 10


# -- issue 9, finding 9: dry_run fails closed --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ture", "dry", "maybe", "", "2", 2, None, ["true"]])
def test_unrecognised_dry_run_is_refused_before_any_call(conn_env: ZohoCRMEmulator, org, value: Any) -> None:
    with pytest.raises(AirflowFailException, match="dry_run"):
        run(module="Leads", record_ids=org.of("temporary")[:3], dry_run=value)
    assert unblock_calls(conn_env) == 0
    assert conn_env.backend.stats["requests"]["token"] == 0
    assert all(not conn_env.backend.unblock_events("Leads", rid) for rid in org.of("temporary")[:3])


@pytest.mark.parametrize(
    ("value", "dry"),
    [
        (True, True),
        ("TRUE", True),
        ("yes", True),
        (" On ", True),
        ("1", True),
        (1, True),
        (False, False),
        ("False", False),
        ("NO", False),
        ("off", False),
        ("0", False),
        (0, False),
    ],
)
def test_usual_dry_run_spellings_are_understood(
    conn_env: ZohoCRMEmulator, org, value: Any, dry: bool
) -> None:
    ids = org.of("temporary")[:3]
    result, _ = run(module="Leads", record_ids=ids, dry_run=value)
    assert result["dry_run"] is dry
    assert unblock_calls(conn_env) == (0 if dry else 1)
    assert sorted(result["ids"]["unblocked"]) == ([] if dry else sorted(ids))


def test_addresses_given_as_data_are_never_rendered_as_a_template() -> None:
    """An address is the CRM's data: one holding ``{{ … }}`` (braces are legal in an address) must stay as it
    is, or a CRM user could make the task render a connection's secret. (A template string, the example DAG's
    ``xcom_pull``, still renders: tests/airflow/test_dag_per_address.py.)"""
    hostile = {"4876876000000100001": {"Email": "{{ 6 * 7 }}@example.com"}}
    op = UnblockEmailOperator(task_id="t", module="Leads", record_ids=list(hostile), addresses=hostile)
    op.render_template_fields({"params": {}})  # type: ignore[arg-type]
    assert op._plan().addresses == hostile
