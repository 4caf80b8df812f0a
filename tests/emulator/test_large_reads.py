"""Reading a module of any size (issue 18, part 1): keyset paging on the record id past COQL's 100,000-row offset
cap, exact 19-digit ids in the emulator, records added or deleted during a scan, and Get Records' page_token cap.

Every test talks HTTP to the emulator through the real client; the emulator's stats and state are the oracle.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import requests

from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, Fault, ZohoCRMEmulator
from airflow_provider_zohocrm.zoho.auth import OAuthCredentials, TokenManager
from airflow_provider_zohocrm.zoho.client import ZohoCRMClient
from airflow_provider_zohocrm.zoho.datacenters import resolve_endpoints
from airflow_provider_zohocrm.zoho.errors import ZohoCRMError, ZohoValidationError
from airflow_provider_zohocrm.zoho.sources import whole_module_query

#: Where big seeds start: a 19-digit id like Zoho's (4876876 000000 100001 …), with gaps of 3 between ids.
FIRST_ID = 4_876_876_000_000_100_001
STEP = 3
ALL_WITH_EMAIL = whole_module_query("Leads", ["Email"], None, None)


@pytest.fixture
def emu() -> Iterator[ZohoCRMEmulator]:
    with ZohoCRMEmulator(EmulatorBackend(EmulatorConfig())) as em:
        yield em


def client_for(em: ZohoCRMEmulator) -> ZohoCRMClient:
    b = em.backend
    creds = OAuthCredentials(b.client_id, b.client_secret, b.refresh_token)
    tokens = TokenManager(
        creds, resolve_endpoints("us", em.url, em.url), requests.Session(), timeout=(5.0, 60.0)
    )
    return ZohoCRMClient(tokens, requests.Session(), timeout=(5.0, 60.0))


def read_all(em: ZohoCRMEmulator, n: int) -> None:
    """Seed ``n`` Leads, read them all with the whole-module source's query, and check every rule."""
    em.backend.add_many_records("Leads", n, first_id=FIRST_ID, step=STEP)
    client = client_for(em)
    em.backend.reset_stats()
    ids = [row["id"] for row in client.iter_coql(ALL_WITH_EMAIL)]
    stats = em.backend.stats
    assert len(ids) == n and set(ids) == set(em.backend.module("Leads").records)  # each read once
    assert stats["requests"]["coql"] == math.ceil(n / 2000)  # keyset: one call per 2,000 rows
    assert 0 < stats["coql_max_reach"] <= 2000  # never an offset: no call reached past its first 2,000 rows
    assert stats["status_counts"]["coql"] == {200: math.ceil(n / 2000)}
    assert stats["credits_used"] == 3 * math.ceil(n / 2000) == client.credits_spent  # LIMIT 2000: 3 each


def test_150000_records_are_each_read_once_past_the_offset_cap(emu: ZohoCRMEmulator) -> None:
    read_all(emu, 150_000)


@pytest.mark.large
def test_1000000_records_are_each_read_once(emu: ZohoCRMEmulator) -> None:
    read_all(emu, 1_000_000)


def test_records_added_and_deleted_during_the_scan(emu: ZohoCRMEmulator) -> None:
    """Deletions behind and ahead of the cursor and new records: nothing that existed throughout is skipped,
    nothing is read twice, a deleted record not yet reached is not read, a new record ahead of it is."""
    n = 9_000
    first, last = emu.backend.add_many_records("Leads", n, first_id=FIRST_ID, step=STEP)
    all_ids = [str(i) for i in range(first, last + 1, STEP)]
    behind = tuple(all_ids[:30])  # read by page 1, deleted before page 3
    ahead = tuple(all_ids[7_000:7_030])  # not read yet when deleted before page 3
    added = tuple(str(last + 10 * k) for k in range(1, 21))  # created before page 2, above every id
    emu.backend.add_fault(Fault("coql", "add_records", on_call=2, ids=added, module="Leads"))
    emu.backend.add_fault(Fault("coql", "delete_records", on_call=3, ids=behind + ahead))
    ids = [row["id"] for row in client_for(emu).iter_coql(ALL_WITH_EMAIL)]
    assert len(ids) == len(set(ids))  # none read twice
    throughout = set(all_ids) - set(behind) - set(ahead)
    assert throughout <= set(ids)  # none skipped
    assert not set(ahead) & set(ids) and set(behind) <= set(ids) and set(added) <= set(ids)
    assert emu.backend.stats["faults_fired"] == 2


def test_user_query_with_or_is_paged_with_its_criteria_in_parentheses(emu: ZohoCRMEmulator) -> None:
    """``A or B`` plus ``and id > n`` without parentheses would read ``A or (B and id > n)``: every A row on
    every page. The client wraps the criteria, so each row comes once and the calls stay ⌈N/2000⌉."""
    b = emu.backend
    for i in range(5_000):
        b.add_record("Leads", fields={"Email": f"a{i}@x.com", "Lead_Source": "Web" if i % 2 else "Ads"})
    query = "select id from Leads where Lead_Source = 'Web' or Lead_Source = 'Ads'"
    b.reset_stats()
    ids = [r["id"] for r in client_for(emu).iter_coql(query)]
    assert sorted(ids, key=int) == ids and set(ids) == set(b.module("Leads").records)
    assert b.stats["requests"]["coql"] == 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("select id from Leads where Email is not null order by Last_Name", "ordered by 'Last_Name'"),
        ("select COUNT(id) from Leads where Email is not null", "aggregate"),
        ("select Lead_Source from Leads where id is not null group by Lead_Source", "group by"),
        ("select id from Leads where Email is not null limit 10", "limit"),
    ],
)
def test_queries_that_cannot_be_paged_by_id_are_refused_before_any_call(
    emu: ZohoCRMEmulator, query: str, message: str
) -> None:
    client = client_for(emu)
    with pytest.raises(ZohoValidationError, match=message):
        list(client.iter_coql(query))
    assert emu.backend.stats["requests"]["coql"] == 0


def test_order_by_id_desc_is_paged_downwards(emu: ZohoCRMEmulator) -> None:
    emu.backend.add_many_records("Leads", 4_500, first_id=FIRST_ID, step=STEP)
    ids = [r["id"] for r in client_for(emu).iter_coql(ALL_WITH_EMAIL + " order by id desc")]
    assert ids == sorted(emu.backend.module("Leads").records, key=int, reverse=True)
    assert emu.backend.stats["requests"]["coql"] == 3


# -- the emulator's COQL, as Zoho documents it -------------------------------------------------------------------


def coql(em: ZohoCRMEmulator, query: str) -> requests.Response:
    token = client_for(em).tokens.get_token().value
    return requests.post(
        f"{em.url}/crm/v8/coql",
        json={"select_query": query},
        headers={"Authorization": f"Zoho-oauthtoken {token}"},
        timeout=10,
    )


def test_ids_compare_as_exact_integers(emu: ZohoCRMEmulator) -> None:
    """19-digit ids 1 apart: a float (53-bit mantissa) cannot tell them apart, so ``id > x`` must be exact."""
    base = 4_876_876_000_000_100_500
    for rid in range(base - 3, base + 4):
        emu.backend.add_record("Leads", str(rid), fields={"Email": f"{rid}@x.com"})

    def ids(query: str) -> list[int]:
        r = coql(emu, query)
        return [] if r.status_code == 204 else [int(row["id"]) for row in r.json()["data"]]

    assert ids(f"select id from Leads where id > {base}") == list(range(base + 1, base + 4))
    assert ids(f"select id from Leads where id >= {base}") == list(range(base, base + 4))
    assert ids(f"select id from Leads where id < {base}") == list(range(base - 3, base))
    assert ids(f"select id from Leads where id = {base}") == [base]
    assert ids(f"select id from Leads where id = '{base}'") == [base]  # a quoted id is the same integer
    assert ids(f"select id from Leads where id > {base} order by id desc") == list(range(base + 3, base, -1))


def test_default_order_is_by_id_and_offset_past_the_cap_is_refused(emu: ZohoCRMEmulator) -> None:
    for rid in (FIRST_ID + 50, FIRST_ID + 5, FIRST_ID + 20):
        emu.backend.add_record("Leads", str(rid), fields={"Email": "x@x.com"})
    r = coql(emu, "select id from Leads where Email is not null")
    assert [row["id"] for row in r.json()["data"]] == [
        str(FIRST_ID + 5),
        str(FIRST_ID + 20),
        str(FIRST_ID + 50),
    ]
    r = coql(emu, "select id from Leads where Email is not null limit 2000 offset 98001")
    assert (r.status_code, r.json()["code"]) == (400, "LIMIT_EXCEEDED")
    assert emu.backend.stats["coql_max_reach"] == 100_001  # what was asked for, though refused


# -- Get Records' page_token cap ---------------------------------------------------------------------------------


def test_custom_view_past_the_page_token_cap_names_the_cap_and_what_to_use(emu: ZohoCRMEmulator) -> None:
    emu.backend.add_many_records("Leads", 100_400, first_id=FIRST_ID, step=STEP)
    cvid = emu.backend.add_view("Leads", name="Everyone")
    client = client_for(emu)
    read = 0
    with pytest.raises(ZohoCRMError) as caught:
        for _ in client.iter_records("Leads", cvid=cvid):
            read += 1
    message = str(caught.value)
    assert "100,000" in message and "COQL" in message and "'all': true" in message
    assert "v7" not in message
    assert read == 100_000  # the emulator, like Zoho, stops serving at the cap
    stats = emu.backend.stats
    assert stats["requests"]["records"] == 500  # 200 per page
    assert stats["credits_used"] == 3 * 500 == client.credits_spent  # a view's listing costs 3 a page


def test_whole_module_query_with_both_fields_and_a_date_is_paged_exactly(emu: ZohoCRMEmulator) -> None:
    """The whole-module source's query (``(Email is not null or Secondary_Email is not null) and date >= since``)
    keeps its meaning on every keyset page."""
    b = emu.backend
    expected = set()
    for i in range(1_200):
        fields: dict[str, object] = {"Modified_Time": f"2026-0{1 + i % 9}-15T00:00:00+00:00"}
        if i % 3:
            fields["Email"] = f"p{i}@x.com"
        if i % 5 == 0:
            fields["Secondary_Email"] = f"s{i}@x.com"
        rid = b.add_record("Leads", fields=fields)
        has_address = "Email" in fields or "Secondary_Email" in fields
        if has_address and str(fields["Modified_Time"]) >= "2026-05-01":
            expected.add(rid)
    query = whole_module_query("Leads", ["Email", "Secondary_Email"], "Modified_Time", "2026-05-01")
    b.reset_stats()
    ids = [r["id"] for r in client_for(emu).iter_coql(query, page_size=100)]
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert b.stats["requests"]["coql"] == math.ceil(len(expected) / 100)
