"""Credits as a figure (issue 18, part 3): the client counts what its calls cost from its own weight table
(``zoho/credits.py``); the emulator charges Zoho's published weights independently. The two must agree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import BOUNCED_VIEW_ID, seed_demo_org
from airflow_provider_zohocrm.zoho.emails import iter_emails
from airflow_provider_zohocrm.zoho.tags import tag_records
from tests.emulator.test_large_reads import client_for


@pytest.fixture
def emu() -> Iterator[ZohoCRMEmulator]:
    with ZohoCRMEmulator(EmulatorBackend(EmulatorConfig())) as em:
        yield em


def test_client_credit_count_matches_the_emulators_charges(emu: ZohoCRMEmulator) -> None:
    result = seed_demo_org(emu.backend, n_bounced=1_000)
    b = emu.backend
    client = client_for(emu)
    b.reset_stats()
    query = "select id from Leads where Email is not null"
    n_rows = len(list(client.iter_coql(query, page_size=150)))  # LIMIT 150: 1 credit a call
    list(client.iter_coql(query, page_size=500))  # LIMIT 500: 2 credits
    list(client.iter_coql(query))  # LIMIT 2000: 3 credits
    in_view = len(list(client.iter_records("Leads", cvid=BOUNCED_VIEW_ID)))  # a view: 3 credits a page
    list(client.iter_records("Contacts"))  # no view: 1 a page
    tagged = result.of("clean")[:60] + result.of("temporary")[:60]
    tag_records(client, "Leads", tagged, "needs-person")  # 120 records: ⌈120/50⌉ = 3 credits
    list(iter_emails(client, "Leads", result.of("temporary")[0]))  # 1 (assumed)
    client.unblock_emails("Leads", result.of("temporary")[1:4], ["Email"])  # 1 (assumed)
    client.get_org()  # 1
    stats = b.stats
    pages = -(-n_rows // 150), -(-n_rows // 500), -(-n_rows // 2000)
    expected_coql = pages[0] * 1 + pages[1] * 2 + pages[2] * 3
    by_endpoint = stats["credits_by_endpoint"]
    assert by_endpoint["coql"] == expected_coql
    assert by_endpoint["records"] == 3 * -(-in_view // 200) + stats["requests"]["records"] - -(
        -in_view // 200
    )
    assert by_endpoint["add_tags"] == 3
    assert client.credits_spent == stats["credits_used"] == sum(by_endpoint.values())
