"""The emulator's Add Tags API (``POST /crm/{v}/{module}/actions/add_tags``), over real HTTP.

Rules from Zoho's docs and the v8 OAS: ≤ 500 ids, ≤ 100 tags per module (LIMIT_EXCEEDED), ≤ 10 tags per
record, tag id over name, ``over_write``, scope, per-record answers. Assertions are on the answer and on
``backend.record_tags``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.tags import TagStore


class Api:
    def __init__(self, emu: ZohoCRMEmulator, scopes: list[str] | None = None) -> None:
        self.emu = emu
        b = emu.backend
        rt = b.refresh_token if scopes is None else b.add_refresh_token(b.client_id, scopes=scopes)
        self.s = requests.Session()
        r = self.s.post(
            f"{emu.url}/oauth/v2/token",
            params={
                "grant_type": "refresh_token",
                "client_id": b.client_id,
                "client_secret": b.client_secret,
                "refresh_token": rt,
            },
            timeout=5,
        )
        self.token = r.json()["access_token"]

    def add_tags(
        self, module: str, body: Any, rid: str | None = None, ver: str = "v8", **params: str
    ) -> requests.Response:
        path = (
            f"/crm/{ver}/{module}/{rid}/actions/add_tags" if rid else f"/crm/{ver}/{module}/actions/add_tags"
        )
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.s.post(
            f"{self.emu.url}{path}",
            data=data,
            params=params,
            headers={"Authorization": f"Zoho-oauthtoken {self.token}", "Content-Type": "application/json"},
            timeout=5,
        )


@pytest.fixture
def emu() -> Iterator[ZohoCRMEmulator]:
    with ZohoCRMEmulator(EmulatorBackend(EmulatorConfig())) as em:
        yield em


def leads(backend: EmulatorBackend, n: int) -> list[str]:
    return [backend.add_record("Leads", fields={"Last_Name": f"L{i}"}) for i in range(n)]


def test_tags_records_and_answers_per_record(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    ids = leads(emu.backend, 3)
    credits = emu.backend.stats["credits_used"]
    r = api.add_tags("Leads", {"tags": [{"name": "needs-person"}], "ids": ids, "over_write": False})
    assert r.status_code == 200
    body = r.json()
    assert body["success_count"] == "3" and body["locked_count"] == "0"
    assert [item["details"]["id"] for item in body["data"]] == ids
    first = body["data"][0]
    assert first["code"] == "SUCCESS" and first["status"] == "success"
    assert first["message"] == "tags updated successfully"
    (tag,) = first["details"]["tags"]
    assert tag["name"] == "needs-person" and tag["id"].isdigit() and "color_code" in tag
    assert all(emu.backend.record_tags("Leads", i) == ["needs-person"] for i in ids)
    admin = requests.get(f"{emu.url}/_emulator/tags/Leads", timeout=5).json()
    assert admin == {i: ["needs-person"] for i in ids}
    assert emu.backend.stats["requests"]["add_tags"] == 1
    assert emu.backend.stats["credits_used"] - credits == 1  # assumed 1 credit per call


def test_over_write_false_keeps_existing_tags_and_true_replaces_them(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    (rid,) = leads(emu.backend, 1)
    api.add_tags("Leads", {"tags": [{"name": "a"}], "ids": [rid]})
    api.add_tags("Leads", {"tags": [{"name": "b"}, {"name": "a"}], "ids": [rid], "over_write": False})
    assert emu.backend.record_tags("Leads", rid) == ["a", "b"]
    r = api.add_tags("Leads", {"tags": [{"name": "c"}], "ids": [rid], "over_write": True})
    assert [t["name"] for t in r.json()["data"][0]["details"]["tags"]] == ["c"]
    assert emu.backend.record_tags("Leads", rid) == ["c"]
    api.add_tags("Leads", {"tags": [{"name": "d"}], "ids": [rid]}, over_write="true")  # SDK: query parameter
    assert emu.backend.record_tags("Leads", rid) == ["d"]


def test_tag_id_takes_precedence_over_name_and_unknown_ids_are_refused(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    a, b = leads(emu.backend, 2)
    made = api.add_tags("Leads", {"tags": [{"name": "vip"}], "ids": [a]}).json()
    vip_id = made["data"][0]["details"]["tags"][0]["id"]
    api.add_tags("Leads", {"tags": [{"id": vip_id, "name": "something else"}], "ids": [b]})
    assert emu.backend.record_tags("Leads", b) == ["vip"]
    r = api.add_tags("Leads", {"tags": [{"id": "4876876000009999999", "name": "x"}], "ids": [b]})
    assert r.status_code == 400
    assert r.json()["code"] == "INVALID_DATA" and r.json()["message"] == "invalid tag id"
    assert emu.backend.record_tags("Leads", b) == ["vip"]
    assert [t.name for t in emu.backend.tag_store.tags("Leads")] == ["vip"]


def test_more_than_500_ids_is_limit_exceeded_and_changes_nothing(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    ids = leads(emu.backend, 501)
    r = api.add_tags("Leads", {"tags": [{"name": "t"}], "ids": ids})
    assert r.status_code == 400 and r.json()["code"] == "LIMIT_EXCEEDED"
    assert emu.backend.record_tags("Leads", ids[0]) == []
    assert emu.backend.tag_store.tags("Leads") == []
    assert api.add_tags("Leads", {"tags": [{"name": "t"}], "ids": ids[:500]}).status_code == 200


def test_module_holds_at_most_100_tags(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    (rid,) = leads(emu.backend, 1)
    for i in range(99):
        emu.backend.tag_store.define("Leads", f"tag{i}")
    r = api.add_tags("Leads", {"tags": [{"name": "new1"}, {"name": "new2"}], "ids": [rid]})
    assert r.status_code == 400 and r.json()["code"] == "LIMIT_EXCEEDED"
    assert len(emu.backend.tag_store.tags("Leads")) == 99 and emu.backend.record_tags("Leads", rid) == []
    assert api.add_tags("Leads", {"tags": [{"name": "new1"}], "ids": [rid]}).status_code == 200
    assert len(emu.backend.tag_store.tags("Leads")) == 100
    # an existing tag still attaches at the limit; other modules have their own 100
    assert api.add_tags("Leads", {"tags": [{"name": "tag5"}], "ids": [rid]}).status_code == 200
    (contact,) = [emu.backend.add_record("Contacts")]
    assert api.add_tags("Contacts", {"tags": [{"name": "fresh"}], "ids": [contact]}).status_code == 200


def test_record_holds_at_most_10_tags_the_others_proceed(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    full, empty = leads(emu.backend, 2)
    api.add_tags("Leads", {"tags": [{"name": f"t{i}"} for i in range(9)], "ids": [full]})
    r = api.add_tags("Leads", {"tags": [{"name": "x"}, {"name": "y"}], "ids": [full, empty]})
    assert r.status_code == 207
    over, fine = r.json()["data"]
    assert over["code"] == "LIMIT_EXCEEDED" and over["status"] == "error" and over["details"]["id"] == full
    assert fine["code"] == "SUCCESS"
    assert len(emu.backend.record_tags("Leads", full)) == 9
    assert emu.backend.record_tags("Leads", empty) == ["x", "y"]


def test_locked_and_unknown_records_fail_alone_and_all_failed_is_400(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    ok, locked = leads(emu.backend, 2)
    emu.backend.set_locked("Leads", locked)
    r = api.add_tags("Leads", {"tags": [{"name": "t"}], "ids": [ok, locked, "4876876000000999999"]})
    assert r.status_code == 207
    good, lock, bad = r.json()["data"]
    assert good["code"] == "SUCCESS"
    assert lock["code"] == "RECORD_LOCKED" and lock["details"] == {"action": "add_tags", "id": locked}
    assert bad["code"] == "INVALID_DATA" and bad["details"]["json_path"] == "$.ids[2]"
    assert r.json()["locked_count"] == "1"
    assert emu.backend.record_tags("Leads", locked) == []
    r = api.add_tags("Leads", {"tags": [{"name": "t"}], "ids": [locked]})
    assert r.status_code == 400 and r.json()["data"][0]["code"] == "RECORD_LOCKED"


def test_single_record_form_ids_as_string_and_v2_query_form(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    a, b, c = leads(emu.backend, 3)
    r = api.add_tags("Leads", {"tags": [{"name": "one"}]}, rid=a)
    assert r.status_code == 200 and r.json()["data"][0]["details"]["id"] == a
    r = api.add_tags(
        "Leads", {"tags": [{"name": "two"}], "ids": json.dumps([b])}
    )  # the OAS types ids a string
    assert r.status_code == 200 and emu.backend.record_tags("Leads", b) == ["two"]
    r = api.add_tags("Leads", b"", ver="v2.1", ids=c, tag_names="p,q")
    assert r.status_code == 200 and emu.backend.record_tags("Leads", c) == ["p", "q"]
    assert emu.backend.stats["requests"]["add_tags"] == 3


def test_bad_bodies_answer_call_level_errors(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    (rid,) = leads(emu.backend, 1)
    cases: list[tuple[Any, str]] = [
        (b"", "MANDATORY_NOT_FOUND"),
        ({"ids": [rid]}, "MANDATORY_NOT_FOUND"),
        ({"tags": [{"name": "t"}]}, "MANDATORY_NOT_FOUND"),
        ({"tags": [{"name": "x" * 26}], "ids": [rid]}, "INVALID_DATA"),
        ({"tags": "t", "ids": [rid]}, "INVALID_DATA"),
        ({"tags": [{"name": "t"}], "ids": [rid], "over_write": "maybe"}, "INVALID_DATA"),
        (b"{not json", "INVALID_DATA"),
    ]
    for body, code in cases:
        r = api.add_tags("Leads", body)
        assert r.status_code == 400 and r.json()["code"] == code, (body, r.text)
    assert api.add_tags("Nope", {"tags": [{"name": "t"}], "ids": [rid]}).json()["code"] == "INVALID_MODULE"
    assert emu.backend.record_tags("Leads", rid) == []


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        (["ZohoCRM.modules.ALL"], 200),
        (["ZohoCRM.modules.leads.WRITE"], 200),
        (["ZohoCRM.modules.Leads.ALL"], 200),
        (["ZohoCRM.settings.tags.ALL"], 200),  # the OAS's reading
        (["ZohoCRM.modules.leads.READ", "ZohoCRM.send_mail.all.CREATE"], 401),
        (["ZohoCRM.modules.contacts.WRITE"], 401),
    ],
)
def test_scope(emu: ZohoCRMEmulator, scopes: list[str], status: int) -> None:
    (rid,) = leads(emu.backend, 1)
    r = Api(emu, scopes).add_tags("Leads", {"tags": [{"name": "t"}], "ids": [rid]})
    assert r.status_code == status
    assert emu.backend.record_tags("Leads", rid) == (["t"] if status == 200 else [])
    if status == 401:
        assert r.json()["code"] == "OAUTH_SCOPE_MISMATCH"


def test_store_alone_dedupes_names_case_insensitively() -> None:
    store = TagStore()
    first = store.define("Leads", "Needs Person")
    assert store.define("Leads", "needs person") is first
    assert store.apply("Leads", "1", [first, first], over_write=False)
    assert store.record_tags("Leads", "1") == ["Needs Person"]
