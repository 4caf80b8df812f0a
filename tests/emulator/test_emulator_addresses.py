"""The emulator's per-address model (issue 19): each mail names its recipient, each field has a history and
unblock events of its own, and a user's own mail is told apart from the CRM's. The oracle is this file's own
reading of the HTTP answers, never the provider's code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.emails import PERMANENT, TEMPORARY, bounced, sent
from airflow_provider_zohocrm.testing.seed import ADDRESS_CASES, ADDRESS_MIN_HOURS, seed_address_cases

HOUR = 3_600.0
DAY = 86_400.0


class Api:
    """Bare HTTP to the emulator (no provider code)."""

    def __init__(self, em: ZohoCRMEmulator) -> None:
        b = em.backend
        self.url = em.url
        self.s = requests.Session()
        grant = self.s.post(
            f"{em.url}/oauth/v2/token",
            params={
                "grant_type": "refresh_token",
                "client_id": b.client_id,
                "client_secret": b.client_secret,
                "refresh_token": b.refresh_token,
            },
            timeout=5,
        ).json()
        self.s.headers["Authorization"] = f"Zoho-oauthtoken {grant['access_token']}"

    def emails(self, module: str, rid: str, **params: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            r = self.s.get(f"{self.url}/crm/v8/{module}/{rid}/Emails", params=params, timeout=5)
            if r.status_code == 204:
                return out
            body = r.json()
            out += body["Emails"]
            if not body["info"]["more_records"]:
                return out
            params = {**params, "index": body["info"]["next_index"]}

    def unblock(self, module: str, ids: list[str], fields: list[str]) -> requests.Response:
        return self.s.post(
            f"{self.url}/crm/v8/{module}/actions/unblock_email",
            json={"unblock_fields": fields, "ids": ids},
            timeout=5,
        )


@pytest.fixture
def emu() -> Iterator[ZohoCRMEmulator]:
    with ZohoCRMEmulator(EmulatorBackend(EmulatorConfig())) as em:
        yield em


def t(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def latest_to(emails: list[dict[str, Any]], address: str) -> dict[str, Any] | None:
    """The newest sent mail to ``address`` (this test's own reading)."""
    mine = [e for e in emails if e["sent"] and address.lower() in {r["email"].lower() for r in e["to"]}]
    return max(mine, key=lambda e: t(e["time"]), default=None)


def bounce_of(mail: dict[str, Any] | None) -> dict[str, Any] | None:
    if mail is None:
        return None
    return next((s for s in mail["status"] if s["type"] == "bounced"), None)


def test_each_case_history_agrees_with_each_fields_state_and_truth(emu: ZohoCRMEmulator) -> None:
    """The seed's truth is consistent with the emulator: a field is blocked exactly when the latest CRM mail to
    its address bounced, and the truth's verdict is what that bounce and its age say."""
    seeded = seed_address_cases(emu.backend)
    assert set(seeded.ids) == set(ADDRESS_CASES)
    assert {"A_mirror", "B_mirror", "B_both_mirror", "C_mirror", "ages_mirror"} <= set(seeded.ids)
    api = Api(emu)
    now = emu.backend.now()
    for name, rid in seeded.ids.items():
        rec = emu.backend.record("Leads", rid)
        crm_mail = api.emails("Leads", rid, type="sent_from_crm")
        for field_name, truth in ADDRESS_CASES[name].expected.items():
            address = rec["fields"][field_name]
            blocked = rec["email"][field_name]["blocked"]
            bounce = bounce_of(latest_to(crm_mail, address)) if address else None
            if bounce is None:
                assert blocked is None and truth.verdict == "none", (name, field_name)
            elif bounce["category"] == PERMANENT:
                assert blocked == "permanent" and truth.verdict == "hard", (name, field_name)
            else:
                assert bounce["category"] == TEMPORARY and blocked == "temporary", (name, field_name)
                young = now - t(bounce["bounced_time"]) < ADDRESS_MIN_HOURS * HOUR
                assert truth.verdict == ("deferred" if young else "soft"), (name, field_name)


def test_unblock_events_are_kept_per_field(emu: ZohoCRMEmulator) -> None:
    b = emu.backend
    both = b.add_record(
        "Leads",
        fields={"Email": "a@x.com", "Secondary_Email": "b@y.org"},
        email_blocked="temporary",
        secondary_blocked="temporary",
    )
    one = b.add_record(
        "Leads",
        fields={"Email": "c@x.com", "Secondary_Email": "d@y.org"},
        email_blocked="temporary",
        secondary_blocked="permanent",
    )
    api = Api(emu)
    assert api.unblock("Leads", [both, one], ["Email", "Secondary_Email"]).status_code == 200
    assert {f: len(v) for f, v in b.field_unblock_events("Leads", both).items()} == {
        "Email": 1,
        "Secondary_Email": 1,
    }
    assert {f: len(v) for f, v in b.field_unblock_events("Leads", one).items()} == {
        "Email": 1,
        "Secondary_Email": 0,
    }
    assert len(b.unblock_events("Leads", one)) == 1  # the record-level events are unchanged
    # tests in another process (Airflow runs) read the same through the admin endpoint
    admin = requests.get(f"{emu.url}/_emulator/records/Leads", timeout=5).json()
    assert {f: len(v) for f, v in admin[one]["field_unblock_events"].items()} == {
        "Email": 1,
        "Secondary_Email": 0,
    }


def test_a_users_own_mail_is_sent_but_not_from_the_crm(emu: ZohoCRMEmulator) -> None:
    b = emu.backend
    rid = b.add_record(
        "Leads", fields={"Full_Name": "Ada L", "Email": "ada@x.com"}, email_blocked="temporary"
    )
    now = b.now()
    b.add_email("Leads", rid, sent_at=now - 3 * DAY, status=[sent(), bounced(now - 3 * DAY)], to="ada@x.com")
    b.add_email(
        "Leads",
        rid,
        sent_at=now - DAY,
        status=[sent()],
        to="ada@x.com",
        source="user_emails",
        sent_by_user=True,
    )
    b.add_email("Leads", rid, sent_at=now - HOUR, status=[], to="ada@x.com", source="user_emails")
    b.add_email("Leads", rid, sent_at=now - 2 * HOUR, status=[], to="ada@x.com", source="drafts")
    api = Api(emu)
    every = api.emails("Leads", rid)
    assert len(every) == 3  # Zoho's default: the user's emails and the CRM's, no drafts
    received, user_sent, crm = every
    assert user_sent["sent"] is True and user_sent["source"] == "imap"
    assert user_sent["to"] == [{"user_name": "Ada L", "email": "ada@x.com"}]
    assert user_sent["from"]["email"] != "ada@x.com"
    assert received["sent"] is False and received["from"]["email"] == "ada@x.com"
    assert crm["source"] == "crm_email" and bounce_of(crm) is not None
    assert [e["message_id"] for e in api.emails("Leads", rid, type="sent_from_crm")] == [crm["message_id"]]
    assert len(api.emails("Leads", rid, type="user_emails")) == 2
    (draft,) = api.emails("Leads", rid, type="drafts")
    assert draft["sent"] is False  # a draft was never sent
    with pytest.raises(ValueError):
        b.add_email("Leads", rid, sent_at=now, status=[], source="sent_from_crm", sent_by_user=True)


def test_derived_histories_follow_each_fields_own_unblocks(emu: ZohoCRMEmulator) -> None:
    """Email unblocked through the API keeps its bounce as the latest mail (Zoho sends nothing); Secondary_Email,
    unblocked twice before the emulator saw it and not touched since, still shows a delivered mail as its latest
    (its history must not borrow Email's unblock)."""
    b = emu.backend
    rid = b.add_record(
        "Leads",
        fields={"Email": "p@x.com", "Secondary_Email": "s@y.org"},
        email_blocked="temporary",
        secondary_unblock_count=2,
    )
    api = Api(emu)
    assert api.unblock("Leads", [rid], ["Email"]).json()["data"][0]["code"] == "SUCCESS"
    emails = api.emails("Leads", rid)
    assert bounce_of(latest_to(emails, "p@x.com")) is not None
    assert bounce_of(latest_to(emails, "s@y.org")) is None
    assert all(len(e["to"]) == 1 for e in emails)
    assert {e["to"][0]["email"] for e in emails} == {"p@x.com", "s@y.org"}


def test_a_derived_history_gives_each_field_its_own_bounce(emu: ZohoCRMEmulator) -> None:
    b = emu.backend
    rid = b.add_record(
        "Leads",
        fields={"Email": "hard@x.com", "Secondary_Email": "soft@y.org"},
        email_blocked="permanent",
        secondary_blocked="temporary",
    )
    emails = Api(emu).emails("Leads", rid)
    hard, soft = bounce_of(latest_to(emails, "hard@x.com")), bounce_of(latest_to(emails, "soft@y.org"))
    assert hard is not None and hard["category"] == PERMANENT
    assert soft is not None and soft["category"] == TEMPORARY
