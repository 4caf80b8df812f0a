"""The Zoho CRM emulator behaves like Zoho documents it, over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    CONTACTS_BOUNCED_VIEW_ID,
    EmulatorBackend,
    EmulatorConfig,
    Fault,
    ZohoCRMEmulator,
    expected_outcome,
    seed_demo_org,
)
from airflow_provider_zohocrm.testing.pytest_plugin import zohocrm_emulator  # noqa: F401

THROTTLE = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "status": "failure",
}


class Api:
    """Tiny client used only by these tests (the provider's client is tested elsewhere)."""

    def __init__(self, emu: ZohoCRMEmulator) -> None:
        self.emu = emu
        self.b = emu.backend
        self.s = requests.Session()
        self.token = ""

    def grant(self, **over: str) -> requests.Response:
        params = {
            "grant_type": "refresh_token",
            "client_id": self.b.client_id,
            "client_secret": self.b.client_secret,
            "refresh_token": self.b.refresh_token,
            **over,
        }
        return self.s.post(f"{self.emu.url}/oauth/v2/token", params=params, timeout=5)

    def login(self) -> str:
        self.token = self.grant().json()["access_token"]
        return self.token

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        tok = self.token if token is None else token
        headers = {"Authorization": f"Zoho-oauthtoken {tok}"} if tok else {}
        return self.s.request(method, f"{self.emu.url}{path}", headers=headers, timeout=5, **kw)

    def unblock(
        self, ids: list[str], fields: list[str] | None = None, module: str = "Leads"
    ) -> requests.Response:
        return self.call(
            "POST",
            f"/crm/v8/{module}/actions/unblock_email",
            json={"unblock_fields": fields or ["Email"], "ids": ids},
        )

    def page(self, **params: Any) -> requests.Response:
        return self.call("GET", "/crm/v8/Leads", params={"fields": "Email", **params})


@pytest.fixture
def api(zohocrm_emulator: ZohoCRMEmulator) -> Api:  # noqa: F811
    a = Api(zohocrm_emulator)
    a.login()
    return a


@pytest.fixture
def big() -> Iterator[Api]:
    """An org with 4,500 bounced leads (past the 2,000 discrete-paging limit)."""
    backend = EmulatorBackend()
    seed_demo_org(backend, n_bounced=4500, seed=7)
    with ZohoCRMEmulator(backend) as emu:
        a = Api(emu)
        a.login()
        yield a


def seeded(api: Api, kind: str, module: str = "Leads") -> list[str]:
    """Seeded ids of a kind, derived from state (the fixture seeds with seed=42)."""
    recs = api.b.records(module)
    out = []
    for rid, r in recs.items():
        e, s2 = r["email"]["Email"], r["email"].get("Secondary_Email", {"blocked": None})
        k = (
            "locked"
            if r["locked"]
            else "limit"
            if e["blocked"] == "temporary" and e["unblock_count"] >= 5
            else "temporary"
            if e["blocked"] == "temporary"
            else "permanent_secondary"
            if e["blocked"] == "permanent" and s2["blocked"]
            else "permanent"
            if e["blocked"] == "permanent"
            else "secondary"
            if s2["blocked"]
            else "clean"
        )
        if k == kind:
            out.append(rid)
    return sorted(out, key=int)


# ----------------------------------------------------------------------------------------- OAuth


def test_token_grant_and_connection(api: Api) -> None:
    body = api.grant().json()
    assert body["access_token"].startswith("1000.")
    assert body["api_domain"] == api.emu.url
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    conn = api.emu.connection()
    assert conn["conn_type"] == "zohocrm" and conn["login"] == api.b.client_id
    assert (
        conn["extra"]["accounts_url"] == api.emu.url and conn["extra"]["refresh_token"] == api.b.refresh_token
    )
    name, value = api.emu.connection_env()
    assert name == "AIRFLOW_CONN_ZOHOCRM_DEFAULT" and json.loads(value) == conn
    form = api.s.post(
        f"{api.emu.url}/oauth/v2/token",
        timeout=5,
        data={
            "grant_type": "refresh_token",
            "client_id": api.b.client_id,
            "client_secret": api.b.client_secret,
            "refresh_token": api.b.refresh_token,
        },
    )
    assert "access_token" in form.json()


def test_token_errors_are_http_200(api: Api) -> None:
    cases = [
        ({"client_secret": "nope"}, "invalid_client"),
        ({"client_id": "1000.X"}, "invalid_client"),
        ({"refresh_token": "1000.a.b"}, "invalid_code"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ]
    for over, error in cases:
        r = api.grant(**over)
        assert r.status_code == 200 and r.json() == {"error": error}


def test_legacy_expires() -> None:
    with ZohoCRMEmulator(EmulatorBackend(EmulatorConfig(legacy_expires=True))) as emu:
        body = Api(emu).grant().json()
    assert body["expires_in_sec"] == 3600 and body["expires_in"] == 3_600_000


def test_throttle_after_ten_in_window_and_clock_lifts_it(api: Api) -> None:
    api.b.reset_stats()
    for _ in range(9):  # the fixture's login was the first
        assert "access_token" in api.grant().json()
    r = api.grant()
    assert r.status_code == 200 and r.json() == THROTTLE
    api.b.advance(300)
    assert api.grant().json() == THROTTLE  # still throttled; this attempt counts too
    api.b.advance(301)
    assert "access_token" in api.grant().json()
    st = api.b.stats
    assert st["token_requests"] == 12 and st["tokens_issued"] == 10 and st["token_throttled"] == 2
    assert len(api.b.token_issue_times()) == 11


def test_hot_retry_during_throttle_rethrottles(api: Api) -> None:
    for _ in range(9):
        api.grant()
    for _ in range(10):  # hammering while throttled fills the next window
        api.b.advance(50)
        assert api.grant().json() == THROTTLE
    api.b.advance(101)  # throttle (600 s) over, but 10 attempts in the last 600 s
    assert api.grant().json() == THROTTLE


def test_sixteenth_token_invalidates_oldest(api: Api) -> None:
    cfg = api.b.config
    cfg.token_limit = 100
    first = api.token
    tokens = [api.grant().json()["access_token"] for _ in range(14)]
    assert api.call("GET", "/crm/v8/org", token=first).status_code == 200
    tokens.append(api.grant().json()["access_token"])  # 16th
    r = api.call("GET", "/crm/v8/org", token=first)
    assert r.status_code == 401 and r.json()["code"] == "INVALID_TOKEN"
    assert api.call("GET", "/crm/v8/org", token=tokens[0]).status_code == 200
    assert len(api.b.live_access_tokens()) == 15


def test_token_expiry_and_revoke(api: Api) -> None:
    api.b.advance(3601)
    r = api.call("GET", "/crm/v8/org")
    assert r.status_code == 401 and r.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }
    api.login()
    assert api.call("GET", "/crm/v8/org").status_code == 200
    api.b.revoke_access_tokens()
    assert api.call("GET", "/crm/v8/org").status_code == 401
    api.login()
    r = api.s.post(f"{api.emu.url}/oauth/v2/token/revoke", params={"token": api.b.refresh_token}, timeout=5)
    assert r.status_code == 200
    assert api.call("GET", "/crm/v8/org").json()["code"] == "INVALID_TOKEN"
    assert api.grant().json() == {"error": "invalid_code"}
    assert api.b.stats["revoke"] == 1


def test_auth_failures_and_scopes(api: Api) -> None:
    r = api.call("GET", "/crm/v8/org", token="")
    assert r.status_code == 401 and r.json()["code"] == "AUTHENTICATION_FAILURE"
    rt = api.b.add_refresh_token(api.b.client_id, scopes=["ZohoCRM.modules.leads.READ"])
    tok = api.grant(refresh_token=rt).json()["access_token"]
    assert api.call("GET", "/crm/v8/Leads", token=tok, params={"fields": "Email"}).status_code == 200
    for method, path, kw in [
        ("GET", "/crm/v8/org", {}),
        ("GET", "/crm/v8/Contacts", {"params": {"fields": "Email"}}),
        ("POST", "/crm/v8/coql", {"json": {"select_query": "select Email from Leads"}}),
        (
            "POST",
            "/crm/v8/Leads/actions/unblock_email",
            {"json": {"unblock_fields": ["Email"], "ids": ["1"]}},
        ),
    ]:
        r = api.call(method, path, token=tok, **kw)
        assert (r.status_code, r.json()["code"]) == (401, "OAUTH_SCOPE_MISMATCH"), path
    rt2 = api.b.add_refresh_token(api.b.client_id, scopes=["ZohoCRM.send_mail.leads.CREATE"])
    tok2 = api.grant(refresh_token=rt2).json()["access_token"]
    r = api.call(
        "POST",
        "/crm/v8/Leads/actions/unblock_email",
        token=tok2,
        json={"unblock_fields": ["Email"], "ids": [seeded(api, "temporary")[0]]},
    )
    assert r.status_code == 200


# ----------------------------------------------------------------------------------------- records


def test_list_view_past_2000_with_page_token(big: Api) -> None:
    expected = big.b.view_ids(BOUNCED_VIEW_ID)
    assert len(expected) == 4500
    seen: list[str] = []
    params: dict[str, Any] = {"cvid": BOUNCED_VIEW_ID, "per_page": 200}
    while True:
        r = big.page(**params)
        assert r.status_code == 200
        body = r.json()
        seen += [row["id"] for row in body["data"]]
        assert set(body["data"][0]) == {"id", "Email"}
        if not body["info"]["more_records"]:
            assert body["info"]["next_page_token"] is None
            break
        params = {"cvid": BOUNCED_VIEW_ID, "per_page": 200, "page_token": body["info"]["next_page_token"]}
    assert seen == expected
    assert len(seen[0]) == 19 and seen[0].isdigit()


def test_discrete_pagination_limit(big: Api) -> None:
    assert big.page(page=10, per_page=200).status_code == 200
    r = big.page(page=11, per_page=200)
    assert r.status_code == 400 and r.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    assert big.page(page=21, per_page=100).json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    info = big.page(page=2, per_page=200).json()["info"]
    assert info["page"] == 2 and info["more_records"] is True and info["next_page_token"]


def test_page_token_expiry_and_invalid(big: Api) -> None:
    tok = big.page(cvid=BOUNCED_VIEW_ID).json()["info"]["next_page_token"]
    big.b.advance(86401)
    big.login()
    r = big.page(page_token=tok)
    assert r.status_code == 400 and r.json() == {
        "code": "INVALID_DATA",
        "details": {"param_name": "page_token"},
        "message": "Page token is expired or invalid",
        "status": "error",
    }
    assert big.page(page_token="garbage").json()["details"] == {"param_name": "page_token"}


def test_list_errors_and_204(api: Api) -> None:
    r = api.call("GET", "/crm/v8/Leads")
    assert r.status_code == 400 and r.json()["code"] == "REQUIRED_PARAM_MISSING"
    assert api.page(per_page=201).json()["code"] == "INVALID_DATA"
    r = api.call("GET", "/crm/v8/Nope", params={"fields": "Email"})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_MODULE"
    r = api.page(cvid="999")
    assert r.status_code == 400 and r.json()["details"]["param_name"] == "cvid"
    r = api.call("GET", "/crm/v8/Deals", params={"fields": "Email"})
    assert r.status_code == 204 and r.content == b""
    assert api.page(page=2, per_page=200).status_code == 204  # 66 leads only
    assert api.call(
        "GET", "/crm/v8/Contacts", params={"fields": "Email", "cvid": CONTACTS_BOUNCED_VIEW_ID}
    ).ok
    r = api.call("GET", "/crm/v9/Leads", params={"fields": "Email"})
    assert r.status_code == 404 and r.json()["code"] == "INVALID_URL_PATTERN"
    assert api.call("GET", "/crm/v2.1/Leads", params={"fields": "Email"}).status_code == 200


def test_view_is_live_filter(api: Api) -> None:
    temp = seeded(api, "temporary")[0]
    assert temp in api.b.view_ids(BOUNCED_VIEW_ID)
    assert api.unblock([temp]).status_code == 200
    assert temp not in api.b.view_ids(BOUNCED_VIEW_ID)


# ----------------------------------------------------------------------------------------- COQL


def coql(api: Api, query: str) -> requests.Response:
    return api.call("POST", "/crm/v8/coql", json={"select_query": query})


def test_coql_paging(big: Api) -> None:
    ids: list[str] = []
    offset = 0
    while True:
        r = coql(
            big,
            f"SELECT id, Email FROM Leads WHERE Email_Bounce_Status = 'Temporary' LIMIT 2000 OFFSET {offset}",
        )
        body = r.json()
        ids += [row["id"] for row in body["data"]]
        if not body["info"]["more_records"]:
            break
        offset += 2000
    recs = big.b.records("Leads")
    expected = sorted(
        (i for i, r in recs.items() if r["fields"]["Email_Bounce_Status"] == "Temporary"), key=int
    )
    assert ids == expected and len(ids) > 2000
    assert coql(big, "select Email from Leads limit 0, 5").json()["info"] == {
        "count": 5,
        "more_records": True,
    }


def test_coql_conditions(api: Api) -> None:
    def rows(q: str) -> list[dict[str, Any]]:
        r = coql(api, q)
        return [] if r.status_code == 204 else r.json()["data"]

    perm = rows("select Email_Bounce_Status from Leads where Email_Bounce_Status = 'Permanent' limit 2000")
    assert perm and all(r["Email_Bounce_Status"] == "Permanent" for r in perm)
    nulls = rows("select Email from Leads where Email_Bounce_Status is null")
    assert len(nulls) == len(seeded(api, "clean"))
    both = rows(
        "select Email from Leads where Email_Bounce_Status in ('Permanent', 'Temporary') or "
        "Email_Bounce_Status is null limit 2000"
    )
    assert len(both) == len(api.b.records("Leads"))
    like = rows("select Email from Leads where Email like '%@example.org' and (Email_Bounce_Status != 'x')")
    assert like and all(r["Email"].endswith("@example.org") for r in like)
    desc = rows("select id from Leads order by id desc limit 3")
    assert [r["id"] for r in desc] == sorted(api.b.records("Leads"), key=int, reverse=True)[:3]
    assert coql(api, "select Email from Leads where Email = 'nobody@nowhere'").status_code == 204


def test_coql_errors(api: Api) -> None:
    for q, code in [
        ("select Email from Leads limit 2001", "LIMIT_EXCEEDED"),
        ("select Email from Leads limit 2000 offset 98001", "LIMIT_EXCEEDED"),
        ("select from Leads", "SYNTAX_ERROR"),
        ("select Email Leads", "SYNTAX_ERROR"),
        ("select Email from Leads where Email = ", "SYNTAX_ERROR"),
        ("select Email from Nope", "INVALID_QUERY"),
    ]:
        r = coql(api, q)
        assert (r.status_code, r.json()["code"]) == (400, code), q
    assert coql(api, "select Email from Leads limit 2000 offset 98000").status_code == 204  # cap: allowed


# ----------------------------------------------------------------------------------------- Unblock Email


def test_bulk_unblock_outcomes(api: Api) -> None:
    temp = seeded(api, "temporary")
    r = api.unblock(temp[:3])
    assert r.status_code == 200 and [i["code"] for i in r.json()["data"]] == ["SUCCESS"] * 3
    assert r.json()["data"][0] == {
        "code": "SUCCESS",
        "details": {"id": temp[0]},
        "message": "Unblocked successfully",
        "status": "success",
    }
    ids = [
        temp[3],
        "4876876000000999999",
        "abc",
        seeded(api, "permanent")[0],
        seeded(api, "limit")[0],
        temp[0],
        seeded(api, "locked")[0],
        temp[3],
    ]
    r = api.unblock(ids)
    assert r.status_code == 207
    items = r.json()["data"]
    assert items[0]["status"] == "success"
    assert items[1] == {
        "code": "INVALID_DATA",
        "details": {"json_path": "$.ids[1]"},
        "message": "Invalid record provided",
        "status": "error",
    }
    assert items[2]["details"] == {"json_path": "$.ids[2]"}
    msgs = [i["message"] for i in items[3:]]
    assert msgs == [
        "Cannot unblock, Email is blocked permanently",
        "Cannot unblock, email has been unblocked 5 times already",
        "Email is already unblocked",
        "Record is locked or in an approval process",
        "Email is already unblocked",
    ]
    assert all(
        i["code"] == "NOT_ALLOWED" and i["details"] == {"id": ids[n + 3]} for n, i in enumerate(items[3:])
    )
    r = api.unblock([seeded(api, "permanent")[0]])
    assert r.status_code == 400 and r.json()["data"][0]["code"] == "NOT_ALLOWED"
    assert api.b.unblock_events("Leads", temp[3]) and len(api.b.unblock_events("Leads", temp[3])) == 1
    st = api.b.stats
    assert st["records_unblocked"] == 4 and st["ids_sent"] == 12
    assert st["status_counts"]["unblock_bulk"] == {200: 1, 207: 1, 400: 1}


def test_five_times_limit_reached_by_repeated_bounces(api: Api) -> None:
    rid = seeded(api, "temporary")[0]
    for _ in range(5):
        assert expected_outcome(api.b, "Leads", rid, ["Email"]) == "unblocked"
        assert api.unblock([rid]).status_code == 200
        api.b.set_email_state("Leads", rid, "Email", "temporary")
    assert expected_outcome(api.b, "Leads", rid, ["Email"]) == "limit_reached"
    assert api.unblock([rid]).json()["data"][0]["message"].endswith("5 times already")
    assert api.b.record("Leads", rid)["email"]["Email"] == {"blocked": "temporary", "unblock_count": 5}


def test_secondary_email(api: Api) -> None:
    sec = seeded(api, "secondary")[0]
    assert api.unblock([sec]).json()["data"][0]["message"] == "Email is already unblocked"
    assert api.unblock([sec], ["Email", "Secondary_Email"]).status_code == 200
    ps = seeded(api, "permanent_secondary")[0]
    assert expected_outcome(api.b, "Leads", ps, ["Email"]) == "permanently_blocked"
    assert api.unblock([ps], ["Email", "Secondary_Email"]).status_code == 200
    deal = api.b.add_record("Deals", email_blocked="temporary")
    r = api.unblock([deal, "4876876000000999999"], ["Email", "Secondary_Email"], module="Deals")
    # default: a request-level error before any id is looked at, like "unknown field provided"
    assert r.status_code == 400 and r.json() == {
        "code": "NOT_ALLOWED",
        "details": {"api_name": "Secondary_Email"},
        "message": "EMAIL, SECONDARY_EMAIL field not available for module",
        "status": "error",
    }
    single = api.call(
        "POST", f"/crm/v8/Deals/{deal}/actions/unblock_email", json={"unblock_fields": ["Secondary_Email"]}
    )
    assert (
        single.status_code == 400 and "data" not in single.json() and single.json()["code"] == "NOT_ALLOWED"
    )
    api.b.config.unavailable_field_style = "record"  # the per-record form, kept as an option
    r = api.unblock([deal], ["Email", "Secondary_Email"], module="Deals")
    assert r.status_code == 400
    assert r.json()["data"][0]["message"] == "EMAIL, SECONDARY_EMAIL field not available for module"
    assert api.b.record("Deals", deal)["email"]["Email"]["blocked"] == "temporary"
    assert api.unblock([deal], module="Deals").status_code == 200
    api.b.add_module("Vendors_X", has_email=True)
    custom = api.b.add_record("Vendors_X", email_blocked="temporary")
    assert api.unblock([custom], module="Vendors_X").status_code == 200


def test_call_level_errors(api: Api) -> None:
    url = "/crm/v8/Leads/actions/unblock_email"

    def code(r: requests.Response) -> tuple[int, str]:
        return r.status_code, r.json()["code"]

    assert code(api.call("POST", url)) == (400, "MANDATORY_NOT_FOUND")
    assert code(api.call("POST", url, json={"ids": ["1"]})) == (400, "MANDATORY_NOT_FOUND")
    assert code(api.call("POST", url, json={"unblock_fields": ["Email"]})) == (400, "MANDATORY_NOT_FOUND")
    r = api.unblock([str(i) for i in range(501)])
    assert r.status_code == 400 and r.json() == {
        "code": "LIMIT_EXCEEDED",
        "details": {"limit": 500},
        "message": "the number of ids exceeds the limit",
        "status": "error",
    }
    r = api.unblock(["1"], ["Email", "Other_Email"])
    assert code(r) == (400, "NOT_ALLOWED") and r.json()["message"] == "unknown field provided"
    assert code(api.call("GET", url)) == (400, "INVALID_REQUEST_METHOD")
    assert code(api.unblock(["1"], module="Products")) == (400, "INVALID_MODULE")
    assert code(api.unblock(["1"], module="Nope")) == (400, "INVALID_MODULE")
    assert code(api.call("POST", "/crm/v5/Leads/actions/unblock_email", json={})) == (
        404,
        "INVALID_URL_PATTERN",
    )
    assert code(api.call("GET", "/nothing/here")) == (404, "INVALID_URL_PATTERN")


def test_single_wrapped_and_flat(api: Api) -> None:
    temp = seeded(api, "temporary")
    body = {"unblock_fields": ["Email"]}
    r = api.call("POST", f"/crm/v8/Leads/{temp[0]}/actions/unblock_email", json=body)
    assert r.status_code == 200 and r.json() == {
        "data": [
            {
                "code": "SUCCESS",
                "details": {"id": temp[0]},
                "message": "Unblocked successfully",
                "status": "success",
            }
        ]
    }
    r = api.call("POST", f"/crm/v8/Leads/{temp[0]}/actions/unblock_email", json=body)
    assert r.status_code == 400 and r.json()["data"][0]["message"] == "Email is already unblocked"
    r = api.call("POST", "/crm/v8/Leads/4876876000000999999/actions/unblock_email", json=body)
    assert r.status_code == 400 and r.json()["data"][0] == {
        "code": "INVALID_DATA",
        "details": {"id": "4876876000000999999"},
        "message": "Invalid record provided",
        "status": "error",
    }
    api.b.config.single_response_style = "flat"
    r = api.call("POST", f"/crm/v8/Leads/{temp[1]}/actions/unblock_email", json=body)
    assert r.status_code == 200 and r.json()["code"] == "SUCCESS" and "data" not in r.json()
    assert api.b.stats["unblock_single"] == 4


# ----------------------------------------------------------------------------------------- limits


def test_concurrency_limit_429() -> None:
    backend = EmulatorBackend(EmulatorConfig(latency=0.3, concurrency_limit=3))
    with ZohoCRMEmulator(backend) as emu:
        token = Api(emu).login()
        barrier = threading.Barrier(8)
        results: list[requests.Response] = []
        lock = threading.Lock()

        def worker() -> None:
            barrier.wait()
            r = requests.get(
                f"{emu.url}/crm/v8/org", headers={"Authorization": f"Zoho-oauthtoken {token}"}, timeout=10
            )
            with lock:
                results.append(r)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    codes = sorted(r.status_code for r in results)
    rejected = [r for r in results if r.status_code == 429]
    assert codes.count(200) >= 3 and rejected and codes.count(200) + len(rejected) == 8
    assert all("Retry-After" not in r.headers and r.json()["code"] == "TOO_MANY_REQUESTS" for r in rejected)
    st = backend.stats
    assert st["rejected_429"] == len(rejected) and st["peak_concurrency"] == 3
    assert st["credits_used"] == codes.count(200)


def test_credits_header(api: Api) -> None:
    api.b.config.credits_per_day = 4
    assert "X-API-CREDITS-REMAINING" not in api.call("GET", "/crm/v8/org").headers
    r = api.call("GET", "/crm/v8/org")
    assert r.headers["X-API-CREDITS-REMAINING"] == "2"


# ----------------------------------------------------------------------------------------- faults


def test_faults_status_and_bodies(api: Api) -> None:
    temp = seeded(api, "temporary")
    api.b.add_fault(Fault("unblock_bulk", "500"))
    api.b.add_fault(Fault("unblock_bulk", "503", on_call=2))
    api.b.add_fault(Fault("unblock_bulk", "429", on_call=3, times=2))
    r = api.unblock([temp[0]])
    assert r.status_code == 500 and r.json()["code"] == "INTERNAL_ERROR"
    r = api.unblock([temp[0]])
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("text/html")
    assert [api.unblock([temp[0]]).status_code for _ in range(2)] == [429, 429]
    assert api.b.record("Leads", temp[0])["email"]["Email"]["blocked"] == "temporary"  # nothing applied
    assert api.unblock([temp[0]]).status_code == 200
    assert api.b.stats["faults_pending"] == 0 and api.b.stats["faults_fired"] == 4
    for action, check in [
        ("html200", lambda r: r.text.startswith("<html>")),
        ("empty200", lambda r: r.content == b""),
        ("missing_data", lambda r: r.json() == {"info": {}}),
        ("502", lambda r: r.status_code == 502),
    ]:
        api.b.add_fault(Fault("records", action))
        r = api.page()
        assert check(r), action
        assert r.status_code in (200, 502)


def test_fault_reset_and_delay(api: Api) -> None:
    temp = seeded(api, "temporary")
    api.b.add_fault(Fault("unblock_bulk", "reset"))
    with pytest.raises(requests.ConnectionError):
        api.unblock([temp[0]])
    assert api.b.record("Leads", temp[0])["email"]["Email"]["blocked"] == "temporary"
    api.b.add_fault(Fault("unblock_bulk", "delay", delay=0.5))
    with pytest.raises(requests.Timeout):
        api.s.post(
            f"{api.emu.url}/crm/v8/Leads/actions/unblock_email",
            timeout=0.1,
            headers={"Authorization": f"Zoho-oauthtoken {api.token}"},
            json={"unblock_fields": ["Email"], "ids": [temp[0]]},
        )
    # the delayed request is still processed: a retry then finds the email already unblocked or unblocks it
    # the retry overtakes the sleeping request: it unblocks, the delayed one then finds nothing to do
    r = api.unblock([temp[0]])
    assert r.status_code == 200
    assert len(api.b.unblock_events("Leads", temp[0])) == 1
    assert api.b.stats["status_counts"]["unblock_bulk"].get(0) == 1


def test_fault_token_revocation_and_unknown_code(api: Api) -> None:
    temp = seeded(api, "temporary")
    api.b.add_fault(Fault("unblock_bulk", "revoke_access_tokens"))
    r = api.unblock([temp[0]])
    assert r.status_code == 401 and r.json()["code"] == "INVALID_TOKEN"
    api.login()
    api.b.add_fault(Fault("unblock_bulk", "unknown_code"))
    r = api.unblock([temp[0]])
    assert r.status_code == 400 and r.json()["data"][0]["code"] == "SOMETHING_NEW"
    assert api.b.record("Leads", temp[0])["email"]["Email"]["blocked"] == "temporary"
    api.b.add_fault(Fault("any", "revoke_refresh_token"))
    assert api.call("GET", "/crm/v8/org").status_code == 401
    assert api.grant().json() == {"error": "invalid_code"}
    api.b.add_fault(Fault("token", "500"))
    assert api.grant().status_code == 500
    with pytest.raises(ValueError):
        Fault("records", "explode")


def test_fault_expire_page_tokens(big: Api) -> None:
    tok = big.page(cvid=BOUNCED_VIEW_ID).json()["info"]["next_page_token"]
    big.b.add_fault(Fault("records", "expire_page_tokens"))
    r = big.page(page_token=tok)
    assert r.status_code == 400 and r.json()["details"] == {"param_name": "page_token"}


# ----------------------------------------------------------------------------------------- admin, CLI, seed


def test_admin_endpoints(api: Api) -> None:
    url = api.emu.url
    temp = seeded(api, "temporary")[0]
    assert requests.post(f"{url}/_emulator/faults", json={"endpoint": "org", "action": "500"}, timeout=5).ok
    assert api.call("GET", "/crm/v8/org").status_code == 500
    stats = requests.get(f"{url}/_emulator/stats", timeout=5).json()
    assert stats["requests"]["org"] == 1 and stats["status_counts"]["org"] == {"500": 1}
    recs = requests.get(f"{url}/_emulator/records/Leads", timeout=5).json()
    assert recs[temp]["email"]["Email"]["blocked"] == "temporary"
    assert requests.post(f"{url}/_emulator/reset_stats", timeout=5).ok
    assert api.b.stats["org"] == 0
    requests.post(f"{url}/_emulator/revoke_access_tokens", timeout=5)
    assert api.call("GET", "/crm/v8/org").status_code == 401
    api.login()
    requests.post(f"{url}/_emulator/advance", json={"seconds": 3601}, timeout=5)
    assert api.call("GET", "/crm/v8/org").status_code == 401
    assert requests.post(f"{url}/_emulator/faults", json={"action": "bogus"}, timeout=5).status_code == 400


def test_admin_stats_name_tokens_by_fingerprint_never_the_token(api: Api) -> None:
    """Issue 31 row 4: the unauthenticated stats endpoint must not show the refresh token (it would be enough
    to call the revoke endpoint), nor any secret; it names each refresh token by a short fingerprint."""
    from airflow_provider_zohocrm.testing.accounts import token_fingerprint

    other = api.b.add_refresh_token(api.b.client_id, scopes=["ZohoCRM.modules.ALL"])
    api.grant(refresh_token=other)  # the fixture's login granted from the default one
    body = requests.get(f"{api.emu.url}/_emulator/stats", timeout=5).text
    leaked = sum(1 for secret in api.b.secrets() if secret in body)  # a count: the test prints no secret
    assert leaked == 0, f"{leaked} secret(s) in the stats answer"
    times = json.loads(body)["token_issue_times"]
    assert times == {
        token_fingerprint(api.b.refresh_token): api.b.token_issue_times(),
        token_fingerprint(other): api.b.token_issue_times(other),
    }
    assert all(len(name) == 8 for name in times) and len(times[token_fingerprint(other)]) == 1


def test_seed_scales_and_is_deterministic() -> None:
    a, b, c = EmulatorBackend(), EmulatorBackend(), EmulatorBackend()
    ra = seed_demo_org(a, n_bounced=100_000, seed=3)
    assert seed_demo_org(b, n_bounced=500, seed=3).ids == seed_demo_org(c, n_bounced=500, seed=3).ids
    assert len(a.view_ids(BOUNCED_VIEW_ID)) == 100_000
    assert expected_outcome(a, "Leads", ra.of("permanent")[0]) == "permanently_blocked"
    assert expected_outcome(a, "Leads", ra.of("locked")[0]) == "not_allowed"
    assert expected_outcome(a, "Leads", ra.of("clean")[0]) == "already_unblocked"
    assert expected_outcome(a, "Leads", "1") == "invalid_record"


def test_cli_prints_a_pasteable_export_line_and_the_demo_views(tmp_path: Any) -> None:
    """``python -m airflow_provider_zohocrm.testing`` prints ``export NAME='json'`` (shell-quoted), then comments
    naming the demo views: every line pastes into a shell, and the exported value is the connection."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        "TMPDIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_zohocrm.testing", "--port", "0", "--bounced", "10"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(4)]
        export = lines[0]
        assert export.startswith("export AIRFLOW_CONN_ZOHOCRM_DEFAULT='")
        assert all(line.startswith("# ") for line in lines[1:])
        assert f'# view on Leads: "Bounced leads" (id {BOUNCED_VIEW_ID})' in lines
        assert f'# view on Contacts: "Bounced contacts" (id {CONTACTS_BOUNCED_VIEW_ID})' in lines
        script = "\n".join([*lines, 'printf %s "$AIRFLOW_CONN_ZOHOCRM_DEFAULT"'])
        shell = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=10, check=True, env=env
        )
        conn = json.loads(shell.stdout)
        assert conn["conn_type"] == "zohocrm"
        extra = conn["extra"]
        r = requests.post(
            f"{extra['accounts_url']}/oauth/v2/token",
            timeout=5,
            params={
                "grant_type": "refresh_token",
                "client_id": conn["login"],
                "client_secret": conn["password"],
                "refresh_token": extra["refresh_token"],
            },
        )
        assert "access_token" in r.json()
        token = r.json()["access_token"]
        views = requests.get(
            f"{extra['api_domain']}/crm/v8/settings/custom_views",
            params={"module": "Leads"},
            headers={"Authorization": f"Zoho-oauthtoken {token}"},
            timeout=5,
        ).json()["custom_views"]
        assert {"id": BOUNCED_VIEW_ID, "name": "Bounced leads"}.items() <= next(
            v for v in views if v["id"] == BOUNCED_VIEW_ID
        ).items()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
