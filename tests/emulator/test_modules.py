"""``GET /settings/modules`` against the emulator: the org's modules listed, the scope enforced, and the client's
check (``zoho.modules``) naming ``Leeds`` with ``Leads`` in one call; a token without the scope skips the check."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import ZohoCRMEmulator, seed_demo_org
from airflow_provider_zohocrm.zoho.auth import FileTokenStore
from airflow_provider_zohocrm.zoho.errors import ZohoScopeError, ZohoValidationError
from airflow_provider_zohocrm.zoho.modules import check_module, list_modules, list_modules_or_none
from tests.conftest import set_connection

NO_MODULES_SCOPE = [
    "ZohoCRM.modules.ALL",
    "ZohoCRM.send_mail.all.CREATE",
    "ZohoCRM.coql.READ",
    "ZohoCRM.settings.custom_views.READ",
    "ZohoCRM.org.READ",
]


def _hook(monkeypatch: pytest.MonkeyPatch, em: ZohoCRMEmulator, tmp_path: Path) -> ZohoCRMHook:
    set_connection(monkeypatch, em)
    return ZohoCRMHook(token_store=FileTokenStore(tmp_path / "tokens"))


def test_the_emulator_lists_every_module_in_zoho_s_shape(emulator: ZohoCRMEmulator) -> None:
    seed_demo_org(emulator.backend, n_bounced=2)
    session = requests.Session()
    answer = session.post(
        f"{emulator.url}/oauth/v2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": emulator.backend.client_id,
            "client_secret": emulator.backend.client_secret,
            "refresh_token": emulator.backend.refresh_token,
        },
        timeout=5,
    ).json()
    got = session.get(
        f"{answer['api_domain']}/crm/v8/settings/modules",
        headers={"Authorization": f"Zoho-oauthtoken {answer['access_token']}"},
        timeout=5,
    )
    assert got.status_code == 200
    modules = {m["api_name"]: m for m in got.json()["modules"]}
    assert modules["Leads"]["api_supported"] is True and modules["Contacts"]["api_supported"] is True
    assert modules["Home"]["api_supported"] is False
    assert {"id", "module_name", "plural_label", "status"} <= set(modules["Leads"])
    assert emulator.backend.stats["requests"]["modules"] == 1


def test_leeds_is_named_with_leads_in_one_call(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seed_demo_org(emulator.backend, n_bounced=2)
    hook = _hook(monkeypatch, emulator, tmp_path)
    modules = list_modules(hook.client)
    assert check_module(modules, "Contacts").api_name == "Contacts"
    with pytest.raises(ZohoValidationError, match=r"Unknown module 'Leeds'.*did you mean 'Leads'\?"):
        check_module(modules, "Leeds")
    assert emulator.backend.stats["requests"]["modules"] == 1


def test_a_token_without_the_scope_skips_the_check(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = emulator.backend
    seed_demo_org(backend, n_bounced=2)
    backend.refresh_token = backend.add_refresh_token(backend.client_id, scopes=NO_MODULES_SCOPE)
    hook = _hook(monkeypatch, emulator, tmp_path)
    with pytest.raises(ZohoScopeError, match=r"ZohoCRM\.settings\.modules\.READ"):
        list_modules(hook.client)
    assert list_modules_or_none(hook.client) is None
    assert backend.stats["status_counts"]["modules"] == {401: 2}
