"""Zoho's own Python SDK (``zohocrmsdk8-0``, unmodified, default configuration) runs against the emulator.

An independent check of the emulator's fidelity: Zoho's client, not ours, parses every answer. The SDK runs in a
subprocess per test (``tests/emulator/zoho_sdk_driver.py``): its ``Initializer`` is a process-wide singleton and its
``Utility`` caches field types in class attributes. Each test gives it its own token store, resource path and
TMPDIR under ``tmp_path``. Assertions are on what the SDK parsed *and* on the emulator's final state and stats.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    CONTACTS_BOUNCED_VIEW_ID,
    EmulatorBackend,
    EmulatorConfig,
    ZohoCRMEmulator,
    seed_demo_org,
)

DRIVER = Path(__file__).with_name("zoho_sdk_driver.py")
INVALID_ID = "4876876000000999999"


def run_sdk(emulator: ZohoCRMEmulator, tmp_path: Path, steps: list[dict[str, Any]], **over: str) -> list[Any]:
    """Run the SDK driver in its own process with the test's own dirs; return what the SDK parsed per step."""
    backend = emulator.backend
    (tmp_path / "resources").mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    config = {
        "url": emulator.url,
        "client_id": backend.client_id,
        "client_secret": backend.client_secret,
        "refresh_token": backend.refresh_token,
        "token_store": str(tmp_path / "sdk_tokens.csv"),
        "resource_path": str(tmp_path / "resources"),
        "log_file": str(tmp_path / "sdk.log"),
        "steps": steps,
        **over,
    }
    config_path = tmp_path / "sdk_config.json"
    config_path.write_text(json.dumps(config))
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results: list[Any] = json.loads(proc.stdout)["results"]
    return results


def stored_tokens(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "sdk_tokens.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def org() -> tuple[ZohoCRMEmulator, Any]:
    backend = EmulatorBackend()
    seeded = seed_demo_org(backend, n_bounced=60, seed=7)
    emulator = ZohoCRMEmulator(backend).start()
    yield emulator, seeded
    emulator.stop()


def test_token_grant_with_default_user_lookup(org: tuple[ZohoCRMEmulator, Any], tmp_path: Path) -> None:
    """OAuthToken's default find_user=True: a new token triggers users?type=CurrentUser and /org, and the SDK
    stores the token under "<user email>:<org zgid>"."""
    emulator, _ = org
    backend = emulator.backend
    run_sdk(emulator, tmp_path, [])
    stats = backend.stats
    assert stats["requests"]["token"] == 1 and stats["tokens_issued"] == 1
    assert stats["status_counts"]["users"] == {200: 1}
    assert stats["status_counts"]["org"] == {200: 1}
    (row,) = stored_tokens(tmp_path)
    assert row["user_name"] == f"admin@example.com:{backend.org_id}"
    assert row["access_token"] in backend.live_access_tokens()
    assert row["api_domain"] == emulator.url


def test_user_lookup_needs_users_scope(tmp_path: Path) -> None:
    """Without ZohoCRM.users.READ the lookup answers 401 OAUTH_SCOPE_MISMATCH; the SDK swallows it, skips /org
    and stores the token without a user name (what a real org does to an SDK user who forgot the scope)."""
    backend = EmulatorBackend()
    scopes = ["ZohoCRM.modules.ALL", "ZohoCRM.org.READ"]
    refresh = backend.add_refresh_token(backend.client_id, scopes=scopes)
    with ZohoCRMEmulator(backend) as emulator:
        run_sdk(emulator, tmp_path, [], refresh_token=refresh)
        assert backend.stats["status_counts"]["users"] == {401: 1}
        (row,) = stored_tokens(tmp_path)
        assert row["user_name"] == ""
        assert backend.stats["status_counts"]["org"] == {}


def test_get_records_of_a_view_past_2000(tmp_path: Path) -> None:
    """get_records with cvid pages past Zoho's 2,000-record page limit by page_token; the SDK first learns the
    module's field types from settings/fields (once, cached under the resource path)."""
    backend = EmulatorBackend()
    seed_demo_org(backend, n_bounced=2_150, seed=3)
    expected = backend.view_ids(BOUNCED_VIEW_ID)
    assert len(expected) == 2_150
    with ZohoCRMEmulator(backend) as emulator:
        fields = "Email,Last_Name,Email_Bounce_Status"
        step = {"call": "get_records", "module": "Leads", "cvid": BOUNCED_VIEW_ID, "fields": fields}
        (result,) = run_sdk(emulator, tmp_path, [step])
    assert "error" not in result, result
    assert result["ids"] == [int(i) for i in expected]
    assert result["pages"] == 11
    for rid, values in result["values"].items():
        record = backend.record("Leads", rid)["fields"]
        assert values == {
            "Email": record["Email"],
            "Last_Name": record["Last_Name"],
            "Email_Bounce_Status": record["Email_Bounce_Status"],  # parsed as the SDK's picklist Choice
        }
    stats = backend.stats
    assert stats["requests"]["records"] == 11
    assert stats["status_counts"]["fields"] == {200: 1}
    cached = list((tmp_path / "resources").rglob("*.json"))
    assert cached and "email_bounce_status" in cached[0].read_text().lower()


def test_coql_paged_by_id_reads_every_record_once(tmp_path: Path) -> None:
    """Zoho's SDK paging ``… and id > last order by id`` over 2,860 records with 19-digit ids 3 apart: every
    record once (with ids compared as floats, the emulator answered 2,000 of them)."""
    backend = EmulatorBackend()
    backend.add_many_records("Leads", 2_860, first_id=4_876_876_000_000_100_001, step=3)
    with ZohoCRMEmulator(backend) as emulator:
        step = {"call": "coql_by_id", "module": "Leads", "criteria": "Email is not null", "limit": 1000}
        (result,) = run_sdk(emulator, tmp_path, [step])
    assert "error" not in result, result
    assert result["ids"] == sorted(int(i) for i in backend.module("Leads").records)  # type: ignore[union-attr]
    assert result["calls"] == 3 and backend.stats["requests"]["coql"] == 3
    assert backend.stats["credits_by_endpoint"]["coql"] == 3 * 2  # LIMIT 1,000: 2 credits a call


def test_field_metadata(org: tuple[ZohoCRMEmulator, Any], tmp_path: Path) -> None:
    emulator, _ = org
    leads, deals, nope = run_sdk(
        emulator,
        tmp_path,
        [
            {"call": "get_fields", "module": "Leads"},
            {"call": "get_fields", "module": "Deals"},
            {"call": "get_fields", "module": "Nope"},
        ],
    )
    by_name = {f["api_name"]: f for f in leads["fields"]}
    assert {n: f["data_type"] for n, f in by_name.items()} == {
        "First_Name": "text",
        "Last_Name": "text",
        "Full_Name": "text",
        "Company": "text",
        "Email": "email",
        "Secondary_Email": "email",
        "Email_Bounce_Status": "picklist",
    }
    assert by_name["Email_Bounce_Status"]["custom_field"] is True
    assert by_name["Email_Bounce_Status"]["pick_list_values"] == ["Temporary", "Permanent"]
    assert len({f["id"] for f in leads["fields"]}) == len(leads["fields"])
    deal_fields = {f["api_name"] for f in deals["fields"]}
    assert "Email" in deal_fields and "Secondary_Email" not in deal_fields
    assert nope["status"] == 400 and nope["error"]["code"] == "INVALID_MODULE"
    assert emulator.backend.stats["status_counts"]["fields"] == {200: 2, 400: 1}


def test_custom_views_list_and_one(org: tuple[ZohoCRMEmulator, Any], tmp_path: Path) -> None:
    emulator, _ = org
    listed, one, unknown, other_module = run_sdk(
        emulator,
        tmp_path,
        [
            {"call": "get_custom_views", "module": "Leads"},
            {"call": "get_custom_view", "module": "Leads", "id": BOUNCED_VIEW_ID},
            {"call": "get_custom_view", "module": "Leads", "id": "6000000099999"},
            {"call": "get_custom_view", "module": "Leads", "id": CONTACTS_BOUNCED_VIEW_ID},
        ],
    )
    names = {v["name"]: v for v in listed["views"]}
    assert set(names) == {"All Leads", "Bounced leads"}
    assert names["All Leads"]["system_defined"] is True and names["All Leads"]["default"] is True
    assert listed["info"]["default"] == names["All Leads"]["id"]
    assert listed["info"]["count"] == 2 and listed["info"]["more_records"] is False
    assert listed["info"]["translation"] == "Public Views"
    (view,) = one["views"]
    assert view["id"] == int(BOUNCED_VIEW_ID)
    assert view["name"] == view["display_value"] == "Bounced leads"
    assert view["category"] == "public_views" and view["default"] is False and view["system_name"] is None
    assert view["created_time"] is not None  # parsed as the SDK's datetime
    assert unknown == {"status": 204} and other_module == {"status": 204}
    assert emulator.backend.stats["status_counts"]["custom_views"] == {200: 2, 204: 2}


def test_get_org(org: tuple[ZohoCRMEmulator, Any], tmp_path: Path) -> None:
    emulator, _ = org
    (result,) = run_sdk(emulator, tmp_path, [{"call": "get_org"}])
    assert result["status"] == 200
    assert result["id"] == result["zgid"] == emulator.backend.org_id
    assert result["company_name"] == "Emulated Zoho Org"
    assert emulator.backend.stats["status_counts"]["org"] == {200: 2}  # the SDK's lookup + our call


def test_single_unblock_then_already_unblocked(org: tuple[ZohoCRMEmulator, Any], tmp_path: Path) -> None:
    emulator, seeded = org
    backend = emulator.backend
    rid = seeded.of("temporary")[0]
    step = {"call": "unblock_single", "module": "Leads", "id": rid, "unblock_fields": ["Email"]}
    first, second = run_sdk(emulator, tmp_path, [step, step])
    assert first["status"] == 200 and first["kind"] == "ActionWrapper"
    assert first["items"] == [
        {
            "kind": "SuccessResponse",
            "code": "SUCCESS",
            "status": "success",
            "message": "Unblocked successfully",
            "details": {"id": int(rid)},
        }
    ]
    assert second["status"] == 400 and second["kind"] == "ActionWrapper"
    (item,) = second["items"]
    assert (item["code"], item["status"], item["details"]) == ("NOT_ALLOWED", "error", {"id": int(rid)})
    assert item["message"] == "Email is already unblocked"
    record = backend.record("Leads", rid)
    assert record["email"]["Email"] == {"blocked": None, "unblock_count": 1}
    assert len(record["unblock_events"]) == 1
    assert backend.stats["status_counts"]["unblock_single"] == {200: 1, 400: 1}


def test_flat_single_answer_loses_the_record_id_in_the_sdk(tmp_path: Path) -> None:
    """Why ``single_response_style`` defaults to "wrapped": the v8 OAS example's bare item reaches SDK users as an
    APIException with the record id dropped (zoho-crm-notes §8). Both shapes stay available."""
    backend = EmulatorBackend(EmulatorConfig(single_response_style="flat"))
    seeded = seed_demo_org(backend, n_bounced=12, seed=2)
    rid = seeded.of("temporary")[0]
    with ZohoCRMEmulator(backend) as emulator:
        step = {"call": "unblock_single", "module": "Leads", "id": rid, "unblock_fields": ["Email"]}
        (result,) = run_sdk(emulator, tmp_path, [step])
    assert result["kind"] == "APIException"
    assert result["error"]["code"] == "SUCCESS" and result["error"]["details"] == {}
    assert backend.record("Leads", rid)["email"]["Email"]["blocked"] is None


def test_bulk_unblock_mixed_outcomes_and_invalid_id(org: tuple[ZohoCRMEmulator, Any], tmp_path: Path) -> None:
    emulator, seeded = org
    backend = emulator.backend
    temp, perm, limit = seeded.of("temporary")[0], seeded.of("permanent")[0], seeded.of("limit")[0]
    ids = [temp, perm, limit, INVALID_ID]
    step = {"call": "unblock_bulk", "module": "Leads", "ids": ids, "unblock_fields": ["Email"]}
    (result,) = run_sdk(emulator, tmp_path, [step])
    assert result["status"] == 207 and result["kind"] == "ActionWrapper"
    got = [(i["code"], i["status"], i["message"], i["details"]) for i in result["items"]]
    assert got == [
        ("SUCCESS", "success", "Unblocked successfully", {"id": int(temp)}),
        ("NOT_ALLOWED", "error", "Cannot unblock, Email is blocked permanently", {"id": int(perm)}),
        (
            "NOT_ALLOWED",
            "error",
            "Cannot unblock, email has been unblocked 5 times already",
            {"id": int(limit)},
        ),
        # Zoho answers details.json_path "$.ids[3]"; the SDK keeps only declared keys, so SDK users map by position
        ("INVALID_DATA", "error", "Invalid record provided", {}),
    ]
    assert backend.record("Leads", temp)["email"]["Email"] == {"blocked": None, "unblock_count": 1}
    assert backend.record("Leads", perm)["email"]["Email"]["blocked"] == "permanent"
    assert backend.record("Leads", limit)["email"]["Email"] == {"blocked": "temporary", "unblock_count": 5}
    stats = backend.stats
    assert stats["status_counts"]["unblock_bulk"] == {207: 1}
    assert stats["ids_sent"] == 4 and stats["records_unblocked"] == 1
