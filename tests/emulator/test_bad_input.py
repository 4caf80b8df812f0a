"""Bad input fails with a clear error naming the value, before any call (the emulator counts zero requests).

Covers the gaps left by test_operator.py, test_hook.py and test_data_centers.py: the hook's own unblock
methods (public API, reached without the operator), values that fool a regex (``"Leads\\n"``), URLs that two
URL parsers read differently, whitespace-only credentials, and reading-side arguments. Inside a real DAG run:
tests/airflow/test_bad_input_dags.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator
from airflow_provider_zohocrm.testing import ZohoCRMEmulator, seed_demo_org
from airflow_provider_zohocrm.zoho import FileTokenStore, ZohoConfigError
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from tests.conftest import set_connection

pytestmark = pytest.mark.usefixtures("leak_audit")


def total_requests(em: ZohoCRMEmulator) -> int:
    return sum(int(n) for n in em.backend.stats["requests"].values())


class RecordingTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


# -- the hook's unblock methods (public API: DAG authors call them from @task functions) --------------------------


@pytest.mark.parametrize(
    ("module", "ids", "fields", "message"),
    [
        ("Leads", ["123/../../org"], ["Email"], "'123/../../org'"),
        ("Leads", ["../123"], ["Email"], "'../123'"),
        ("Leads", ["123?x=1"], ["Email"], "'123?x=1'"),
        ("Leads", ["12 34"], ["Email"], "'12 34'"),
        ("Leads", ["١٢٣"], ["Email"], "'١٢٣'"),  # Unicode digits are not Zoho ids
        ("Leads", [-5], ["Email"], "-5"),
        ("Leads", [None], ["Email"], "None"),
        ("Leads", ["1" * 31], ["Email"], "1" * 31),
        ("Leads", ["1", "2", "1"], ["Email"], "Duplicate record id '1'"),
        ("Leads", [str(4876876000000100001 + i) for i in range(501)], ["Email"], "not 501"),
        ("Leads", [], ["Email"], "not 0"),
        ("Leads/../org", ["1"], ["Email"], "'Leads/../org'"),
        ("Leads\n", ["1"], ["Email"], "'Leads\\n'"),
        ("", ["1"], ["Email"], "''"),
        ("LEADS", ["1"], ["Email"], "'Leads'"),
        ("Leads", ["1"], ["Email", "Email"], "'Email' is listed twice"),
        ("Leads", ["1"], ["Email_Opt_Out"], "'Email_Opt_Out'"),
        ("Leads", ["1"], ["Email "], "'Email '"),
        ("Deals", ["1"], ["Secondary_Email"], "'Deals' has no Secondary_Email"),
        ("Accounts", ["1"], ["Email", "Secondary_Email"], "'Accounts' has no Secondary_Email"),
    ],
)
def test_hook_bulk_unblock_validates_before_any_call(
    conn_env: ZohoCRMEmulator,
    token_store: FileTokenStore,
    module: str,
    ids: list[Any],
    fields: list[str],
    message: str,
) -> None:
    with pytest.raises(ZohoValidationError) as info:
        ZohoCRMHook(token_store=token_store).unblock_emails(module, ids, fields)
    assert message in str(info.value)
    assert total_requests(conn_env) == 0


@pytest.mark.parametrize(
    ("module", "record_id", "message"),
    [
        ("Leads", "123/../../org", "'123/../../org'"),
        ("Leads", "123\n456", "'123\\n456'"),
        ("Leads", "", "''"),
        ("Leads?x=1", "123", "'Leads?x=1'"),
    ],
)
def test_hook_single_unblock_validates_before_any_call(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore, module: str, record_id: str, message: str
) -> None:
    with pytest.raises(ZohoValidationError) as info:
        ZohoCRMHook(token_store=token_store).unblock_email(module, record_id, ["Email"])
    assert message in str(info.value)
    assert total_requests(conn_env) == 0


def test_custom_module_names_reach_zoho_which_judges_them(conn_env: ZohoCRMEmulator, token_store) -> None:
    """A well-formed custom module name is not refused locally (Zoho knows the org's modules)."""
    conn_env.backend.add_module("Bounced_Contacts", has_secondary_email=True)
    items = ZohoCRMHook(token_store=token_store).unblock_emails(
        "Bounced_Contacts", ["1"], ["Secondary_Email"]
    )
    assert items and conn_env.backend.stats["requests"]["unblock_bulk"] == 1


# -- reading-side arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"module": "Leads", "cvid": "6000000031001 or 1=1"}, "6000000031001 or 1=1"),
        ({"module": "Leads", "cvid": "../6000000031001"}, "../6000000031001"),
        ({"module": "Leads", "per_page": 201}, "201"),
        ({"module": "Leads", "per_page": 0}, "not 0"),
        ({"module": "Leads\n"}, "'Leads\\n'"),
        ({"module": "Leads/6000000031001"}, "'Leads/6000000031001'"),
    ],
)
def test_iter_records_validates_before_any_call(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ZohoValidationError) as info:
        list(ZohoCRMHook(token_store=token_store).iter_records(**kwargs))
    assert message in str(info.value)
    assert total_requests(conn_env) == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("select id from Leads limit 10", "limit"),
        ("select id from Leads where Last_Name = 'x' offset 5", "offset"),
        ("delete from Leads", "delete from Leads"),
        ("", "''"),
    ],
)
def test_iter_coql_validates_before_any_call(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore, query: str, message: str
) -> None:
    with pytest.raises(ZohoValidationError) as info:
        list(ZohoCRMHook(token_store=token_store).iter_coql(query))
    assert message in str(info.value)
    assert total_requests(conn_env) == 0


# -- the operator: values not covered by test_operator.py ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"module": "Leads\n", "record_ids": ["1"]}, "'Leads\\n'"),
        ({"record_ids": {"1": "2"}}, "not dict"),
        ({"record_ids": "1, 2, 1"}, "Duplicate record id '1'"),  # a template rendered to "a,b,c"
        ({"record_ids": ["1"], "unblock_fields": ["Email", "Email"]}, "listed twice"),
        (
            {"record_ids": ["1"], "batch_size": "501"},
            "not 501",
        ),  # rendered without native types: still checked
        ({"record_ids": ["1"], "batch_size": True}, "True"),
        ({"record_id": "1/actions"}, "'1/actions'"),
    ],
)
def test_operator_bad_input_fails_before_any_call(
    conn_env: ZohoCRMEmulator, kwargs: dict[str, Any], message: str
) -> None:
    kwargs.setdefault("module", "Leads")
    with pytest.raises(AirflowFailException) as info:
        UnblockEmailOperator(task_id="unblock", **kwargs).execute({"ti": RecordingTI()})  # type: ignore[arg-type]
    assert message in str(info.value)
    assert total_requests(conn_env) == 0


def test_operator_batch_size_of_a_rendered_string_within_limits_works(conn_env: ZohoCRMEmulator) -> None:
    seeded = seed_demo_org(conn_env.backend, n_bounced=12)
    ids = seeded.of("temporary")[:5]
    result = UnblockEmailOperator(task_id="u", module="Leads", record_ids=ids, batch_size="2").execute(
        {"ti": RecordingTI()}  # type: ignore[arg-type]
    )
    assert result["calls"] == 3 and sorted(result["ids"]["unblocked"]) == sorted(ids)


# -- the connection ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["login", "password", "refresh_token"])
def test_whitespace_only_credentials_are_missing_credentials(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, token_store: FileTokenStore, field: str
) -> None:
    conn = emulator.connection()
    if field == "refresh_token":
        conn["extra"]["refresh_token"] = "   "
    else:
        conn[field] = " \t "
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", json.dumps(conn))
    with pytest.raises(ZohoConfigError, match="is missing") as info:
        ZohoCRMHook(token_store=token_store).get_org()
    assert {"login": "client ID", "password": "client secret", "refresh_token": "refresh_token"}[
        field
    ] in str(info.value)
    assert total_requests(emulator) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # two URL parsers disagree on the host: urlsplit sees *.zohoapis.com, requests connects to evil.com
        ("api_domain", "https://evil.com\\.zohoapis.com"),
        ("accounts_url", "https://evil.com\\@accounts.zoho.com"),
        ("accounts_url", "https://evil.com\\.accounts.zoho.com"),
        ("api_domain", "https://evil.com;.zohoapis.com"),
        ("api_domain", "https://evil.com%2f.zohoapis.com"),
        ("api_domain", "https://evil.com\t.zohoapis.com"),
        ("accounts_url", "https://accounts.zoho.com@evil.example"),
        ("accounts_url", "http://169.254.169.254"),  # plain http to a non-loopback address
        ("api_domain", "http://www.zohoapis.eu"),
        ("api_domain", "https://www.zohoapis.com.evil.example"),
        ("accounts_url", "javascript://accounts.zoho.com"),
    ],
)
def test_endpoint_overrides_that_could_send_secrets_elsewhere_are_refused_before_any_call(
    emulator: ZohoCRMEmulator,
    monkeypatch: pytest.MonkeyPatch,
    token_store: FileTokenStore,
    field: str,
    value: str,
) -> None:
    set_connection(monkeypatch, emulator, **{field: value})
    with pytest.raises(ZohoConfigError) as info:
        ZohoCRMHook(token_store=token_store).get_org()
    assert repr(value) in str(info.value)
    assert total_requests(emulator) == 0


# -- one home for validation (issue 9: no import circle between client.py and unblock.py) -------------------------


def test_validation_lives_in_one_module_that_client_and_unblock_import_without_a_circle() -> None:
    import subprocess
    import sys

    code = (
        "import airflow_provider_zohocrm.zoho.unblock as u, airflow_provider_zohocrm.zoho.client as c,"
        " airflow_provider_zohocrm.zoho.validation as v, sys;"
        "old_u = ['validate_module', 'validate_record_ids', 'validate_unblock_fields', 'validate_batch_size',"
        " 'SUPPORTED_MODULES', 'MAX_IDS_PER_CALL', 'UNBLOCKABLE_FIELDS', 'MODULES_WITH_SECONDARY_EMAIL'];"
        "old_c = ['validate_module', 'validate_coql', 'SUPPORTED_MODULES'];"
        "assert all(getattr(u, n) is getattr(v, n) for n in old_u), 'unblock re-exports';"
        "assert all(getattr(c, n) is getattr(v, n) for n in old_c), 'client re-exports';"
        "assert v.coql_module('select id from Contacts where Email is not null') == 'Contacts';"
        "assert not [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')], 'no Airflow'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    import ast
    import inspect

    import airflow_provider_zohocrm.zoho.client as client_module
    import airflow_provider_zohocrm.zoho.validation as validation_module

    # validation imports nothing of the package but its errors, and client imports unblock nowhere (not even
    # inside a function, the old workaround for the circle)
    imported = {
        node.module
        for node in ast.walk(ast.parse(inspect.getsource(validation_module)))
        if isinstance(node, ast.ImportFrom)
    }
    assert {m for m in imported if m and m.startswith("airflow_provider_zohocrm")} == {
        "airflow_provider_zohocrm.zoho.errors"
    }

    assert "from airflow_provider_zohocrm.zoho.unblock" not in inspect.getsource(client_module)


@pytest.mark.parametrize(
    ("query", "module"),
    [
        ("select id from Contacts where Email is not null", "Contacts"),
        ("SELECT id FROM leads WHERE Email is not null", "Leads"),  # a standard module gets its API name
        ("select id, Email from Bounced_Contacts where id is not null", "Bounced_Contacts"),
        ("  select id\nfrom Sales_Orders where id is not null;", "Sales_Orders"),
    ],
)
def test_coql_module_is_the_from_module_as_an_api_name(query: str, module: str) -> None:
    from airflow_provider_zohocrm.zoho.validation import coql_module

    assert coql_module(query) == module


@pytest.mark.parametrize(
    "query", ["delete from Leads", "select id from", "select id from Leads limit 5", None]
)
def test_coql_module_refuses_what_is_not_a_coql_select(query: Any) -> None:
    from airflow_provider_zohocrm.zoho.validation import coql_module

    with pytest.raises(ZohoValidationError):
        coql_module(query)
