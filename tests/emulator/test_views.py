"""Custom views by name (zoho/views.py and the hook): Zoho's listing parsed, names matched, unknown names refused
with the views that exist. Pure tests first, then the hook over HTTP against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, ZohoCRMEmulator, seed_demo_org
from airflow_provider_zohocrm.zoho.auth import FileTokenStore
from airflow_provider_zohocrm.zoho.errors import ZohoResponseError, ZohoValidationError
from airflow_provider_zohocrm.zoho.views import CustomView, match_view, parse_custom_views

#: One entry as Zoho's v8 OpenAPI spec (custom_views.json) describes it, trimmed to the fields that matter.
ZOHO_VIEW: dict[str, Any] = {
    "display_value": "Bounced leads",
    "system_name": None,
    "category": "created_by_me",
    "created_time": "2026-01-05T10:00:00+00:00",
    "name": "Bounced leads",
    "module": {"api_name": "Leads", "id": "6000000002175"},
    "default": False,
    "system_defined": False,
    "access_type": "only_to_me",
    "id": "6000000031001",
}
SYSTEM_VIEWS = [
    {
        **ZOHO_VIEW,
        "id": "6000000028001",
        "name": "All Leads",
        "display_value": "All Leads",
        "system_name": "ALLVIEWS",
        "category": "public_views",
        "default": True,
        "system_defined": True,
    },
    {
        **ZOHO_VIEW,
        "id": "6000000028003",
        "name": "{!Leads.My_Leads}",
        "display_value": "My Leads",
        "system_name": "MYLEADS",
        "category": "public_views",
    },
]


def views() -> list[CustomView]:
    return [CustomView.from_api(v) for v in [*SYSTEM_VIEWS, ZOHO_VIEW]]


def test_zohos_listing_shape_is_parsed() -> None:
    parsed, more = parse_custom_views(
        {"custom_views": [*SYSTEM_VIEWS, ZOHO_VIEW], "info": {"more_records": False}}
    )
    assert more is False
    assert parsed[0] == CustomView(
        "6000000028001", "All Leads", "All Leads", "ALLVIEWS", "public_views", True
    )
    assert parsed[2] == CustomView(
        "6000000031001", "Bounced leads", "Bounced leads", None, "created_by_me", False
    )


def test_no_content_is_no_views_and_a_broken_answer_raises() -> None:
    assert parse_custom_views(None) == ([], False)
    with pytest.raises(ZohoResponseError):
        parse_custom_views({"data": []})
    with pytest.raises(ZohoResponseError, match="without an id"):
        parse_custom_views({"custom_views": [{"name": "x"}]})


@pytest.mark.parametrize(
    ("wanted", "view_id"),
    [
        ("6000000031001", "6000000031001"),
        ("Bounced leads", "6000000031001"),
        ("  bounced LEADS ", "6000000031001"),
        ("My Leads", "6000000028003"),  # the shown name, when the stored name is a placeholder
        ("{!Leads.My_Leads}", "6000000028003"),
        (6000000028001, "6000000028001"),
    ],
)
def test_a_view_is_found_by_id_or_by_name_ignoring_case(wanted: Any, view_id: str) -> None:
    assert match_view(views(), "Leads", wanted).id == view_id


def test_an_unknown_name_lists_the_views_that_exist() -> None:
    with pytest.raises(ZohoValidationError) as info:
        match_view(views(), "Leads", "Bounced")
    text = str(info.value)
    assert "No Leads custom view is named 'Bounced'" in text
    for label in (
        "'All Leads' (6000000028001)",
        "'My Leads' (6000000028003)",
        "'Bounced leads' (6000000031001)",
    ):
        assert label in text


def test_two_views_with_one_name_are_refused_with_both_ids() -> None:
    twin = CustomView("6000000031099", "bounced leads", "bounced leads", None, "shared_with_me", False)
    with pytest.raises(ZohoValidationError, match="Pass the id") as info:
        match_view([*views(), twin], "Leads", "Bounced Leads")
    assert "6000000031001" in str(info.value) and "6000000031099" in str(info.value)


# -- over HTTP ----------------------------------------------------------------------------------------------------


def test_hook_lists_and_resolves_the_demo_orgs_view_with_one_call(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore
) -> None:
    seed_demo_org(conn_env.backend, n_bounced=10)
    hook = ZohoCRMHook(token_store=token_store)
    listed = hook.list_custom_views("Leads")
    assert BOUNCED_VIEW_ID in [v.id for v in listed]
    assert conn_env.backend.stats["requests"]["custom_views"] == 1
    view = hook.resolve_view("Leads", "bounced leads")
    assert (view.id, view.display_value) == (BOUNCED_VIEW_ID, "Bounced leads")
    assert conn_env.backend.stats["requests"]["custom_views"] == 2


def test_hook_refuses_an_unknown_view_name_before_any_unblock_call(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore
) -> None:
    seed_demo_org(conn_env.backend, n_bounced=10)
    with pytest.raises(ZohoValidationError) as info:
        ZohoCRMHook(token_store=token_store).resolve_view("Leads", "Hard bounces")
    assert f"'Bounced leads' ({BOUNCED_VIEW_ID})" in str(info.value)
    requests = conn_env.backend.stats["requests"]
    assert requests["unblock_bulk"] == requests["unblock_single"] == requests["records"] == 0


def test_hook_validates_the_module_before_any_call(
    conn_env: ZohoCRMEmulator, token_store: FileTokenStore
) -> None:
    with pytest.raises(ZohoValidationError, match=r"'Leads/\.\./org'"):
        ZohoCRMHook(token_store=token_store).list_custom_views("Leads/../org")
    assert conn_env.backend.stats["requests"]["token"] == 0
