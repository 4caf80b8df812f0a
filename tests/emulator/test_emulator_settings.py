"""The emulator's users and settings endpoints answer in Zoho's documented shapes, scopes and status codes
(zoho/crm-oas v8.0 ``users.json``, ``fields.json``, ``custom_views.json``), over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    CONTACTS_BOUNCED_VIEW_ID,
    EmulatorBackend,
    ZohoCRMEmulator,
    seed_demo_org,
)


class Api:
    def __init__(self, emulator: ZohoCRMEmulator, scopes: list[str] | None = None) -> None:
        self.emulator = emulator
        backend = emulator.backend
        refresh = backend.refresh_token
        if scopes is not None:
            refresh = backend.add_refresh_token(backend.client_id, scopes=scopes)
        answer = requests.post(
            f"{emulator.url}/oauth/v2/token",
            params={
                "grant_type": "refresh_token",
                "client_id": backend.client_id,
                "client_secret": backend.client_secret,
                "refresh_token": refresh,
            },
            timeout=5,
        ).json()
        self.token = answer["access_token"]

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(
            f"{self.emulator.url}{path}",
            params=params,
            headers={"Authorization": f"Zoho-oauthtoken {self.token}"},
            timeout=5,
        )


@pytest.fixture
def emulator() -> Iterator[ZohoCRMEmulator]:
    backend = EmulatorBackend()
    seed_demo_org(backend, n_bounced=30, seed=5)
    with ZohoCRMEmulator(backend) as em:
        yield em


def error_of(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def test_current_user(emulator: ZohoCRMEmulator) -> None:
    r = Api(emulator).get("/crm/v8/users", type="CurrentUser")
    assert r.status_code == 200
    body = r.json()
    (user,) = body["users"]
    assert user["email"] == "admin@example.com" and user["status"] == "active" and user["confirm"] is True
    assert set(user) >= {"id", "full_name", "first_name", "last_name", "role", "profile", "zuid"}
    assert body["info"] == {"per_page": 200, "count": 1, "page": 1, "more_records": False}
    assert error_of(Api(emulator).get("/crm/v8/users", type="Bogus")) == (400, "INVALID_DATA")
    assert Api(emulator).get("/crm/v8/users", type="DeletedUsers").status_code == 204
    no_scope = Api(emulator, ["ZohoCRM.modules.ALL"]).get("/crm/v8/users", type="CurrentUser")
    assert error_of(no_scope) == (401, "OAUTH_SCOPE_MISMATCH")
    assert Api(emulator, ["ZohoCRM.users.ALL"]).get("/crm/v8/users", type="CurrentUser").status_code == 200
    assert emulator.backend.stats["status_counts"]["users"] == {200: 2, 400: 1, 204: 1, 401: 1}


def test_fields(emulator: ZohoCRMEmulator) -> None:
    api = Api(emulator)
    r = api.get("/crm/v8/settings/fields", module="Contacts")
    assert r.status_code == 200
    fields = {f["api_name"]: f for f in r.json()["fields"]}
    assert set(fields) == {
        "First_Name",
        "Last_Name",
        "Full_Name",
        "Email",
        "Secondary_Email",
        "Email_Bounce_Status",
    }
    email = fields["Email"]
    assert (email["data_type"], email["json_type"], email["field_label"], email["custom_field"]) == (
        "email",
        "string",
        "Email",
        False,
    )
    assert fields["Last_Name"]["system_mandatory"] is True
    status = fields["Email_Bounce_Status"]
    assert status["data_type"] == "picklist" and status["custom_field"] is True
    assert [v["actual_value"] for v in status["pick_list_values"]] == ["Temporary", "Permanent"]
    emulator.backend.add_module("Vendors_X", has_email=True)
    custom = {f["api_name"] for f in api.get("/crm/v8/settings/fields", module="Vendors_X").json()["fields"]}
    assert custom == {"Name", "Email"}
    assert error_of(api.get("/crm/v8/settings/fields")) == (400, "REQUIRED_PARAM_MISSING")
    assert api.get("/crm/v8/settings/fields").json()["details"] == {"param_name": "module"}
    assert error_of(api.get("/crm/v8/settings/fields", module="Nope")) == (400, "INVALID_MODULE")
    scoped = Api(emulator, ["ZohoCRM.settings.fields.READ"]).get("/crm/v8/settings/fields", module="Leads")
    assert scoped.status_code == 200
    no_scope = Api(emulator, ["ZohoCRM.modules.ALL"]).get("/crm/v8/settings/fields", module="Leads")
    assert error_of(no_scope) == (401, "OAUTH_SCOPE_MISMATCH")


def test_custom_views_list(emulator: ZohoCRMEmulator) -> None:
    api = Api(emulator)
    r = api.get("/crm/v8/settings/custom_views", module="Leads")
    assert r.status_code == 200
    body = r.json()
    views = {v["name"]: v for v in body["custom_views"]}
    assert set(views) == {"All Leads", "Bounced leads"}
    bounced = views["Bounced leads"]
    assert bounced["id"] == BOUNCED_VIEW_ID and bounced["display_value"] == "Bounced leads"
    assert (bounced["system_name"], bounced["category"], bounced["default"]) == (None, "public_views", False)
    assert views["All Leads"]["system_name"] == "ALLVIEWS" and views["All Leads"]["default"] is True
    info = body["info"]
    assert (
        info["default"] == views["All Leads"]["id"] and info["count"] == 2 and info["more_records"] is False
    )
    assert info["translation"]["public_views"] == "Public Views"
    paged = api.get("/crm/v8/settings/custom_views", module="Leads", per_page=1, page=2).json()
    assert [v["name"] for v in paged["custom_views"]] == ["Bounced leads"]
    assert api.get("/crm/v8/settings/custom_views", module="Leads", per_page=1, page=3).status_code == 204
    assert error_of(api.get("/crm/v8/settings/custom_views")) == (400, "REQUIRED_PARAM_MISSING")
    assert error_of(api.get("/crm/v8/settings/custom_views", module="Nope")) == (400, "INVALID_MODULE")
    for scope in ("ZohoCRM.settings.custom_views.READ", "ZohoCRM.settings.ALL"):
        assert Api(emulator, [scope]).get("/crm/v8/settings/custom_views", module="Leads").status_code == 200
    no_scope = Api(emulator, ["ZohoCRM.modules.ALL"]).get("/crm/v8/settings/custom_views", module="Leads")
    assert error_of(no_scope) == (401, "OAUTH_SCOPE_MISMATCH")


def test_custom_view_by_id(emulator: ZohoCRMEmulator) -> None:
    api = Api(emulator)
    r = api.get(f"/crm/v8/settings/custom_views/{BOUNCED_VIEW_ID}", module="Leads")
    assert r.status_code == 200
    (view,) = r.json()["custom_views"]
    assert view["id"] == BOUNCED_VIEW_ID and view["name"] == "Bounced leads"
    assert api.get("/crm/v8/settings/custom_views/6000000099999", module="Leads").status_code == 204
    other = api.get(f"/crm/v8/settings/custom_views/{CONTACTS_BOUNCED_VIEW_ID}", module="Leads")
    assert other.status_code == 204
    missing = api.get(f"/crm/v8/settings/custom_views/{BOUNCED_VIEW_ID}")
    assert error_of(missing) == (400, "REQUIRED_PARAM_MISSING")
    no_scope = Api(emulator, ["ZohoCRM.modules.ALL"]).get(
        f"/crm/v8/settings/custom_views/{BOUNCED_VIEW_ID}", module="Leads"
    )
    assert error_of(no_scope) == (401, "OAUTH_SCOPE_MISMATCH")
    assert emulator.backend.stats["status_counts"]["custom_views"] == {200: 1, 204: 2, 400: 1, 401: 1}


def test_system_view_lists_every_record(emulator: ZohoCRMEmulator) -> None:
    """A view id found through the API works as Get Records' cvid: the system "All Leads" view lists them all."""
    api = Api(emulator)
    views = api.get("/crm/v8/settings/custom_views", module="Leads").json()["custom_views"]
    all_leads = next(v["id"] for v in views if v["system_name"] == "ALLVIEWS")
    r = api.get("/crm/v8/Leads", fields="Email", cvid=all_leads)
    assert r.status_code == 200
    assert [row["id"] for row in r.json()["data"]] == sorted(emulator.backend.records("Leads"), key=int)
    assert emulator.backend.view_ids(all_leads) == [row["id"] for row in r.json()["data"]]
