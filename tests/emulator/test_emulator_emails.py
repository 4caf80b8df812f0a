"""The emulator's Emails related list (``GET /crm/{v}/{module}/{id}/Emails``), over real HTTP.

Checks Zoho's documented shape (10 per page, opaque ``index`` paging, 204 when none, scopes, 100-day
retention) and that every seeded record's list agrees with its block state. The oracle here is the test's own
reading of the answer (latest *sent* email), never the provider's classifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from airflow_provider_zohocrm.testing import (
    EmulatorBackend,
    EmulatorConfig,
    Fault,
    ZohoCRMEmulator,
    seed_demo_org,
)
from airflow_provider_zohocrm.testing.emails import (
    EMAIL_TYPES,
    PERMANENT,
    TEMPORARY,
    Email,
    EmailStore,
    FieldState,
    bounced,
    delivered,
    derived_history,
    opened,
    sent,
)
from airflow_provider_zohocrm.testing.seed import (
    EMAIL_EXPECTED,
    EMAIL_KINDS,
    UNKNOWN_CATEGORY,
    seed_email_org,
)

DAY = 86_400.0
HOUR = 3_600.0


class Api:
    """Minimal client for these tests (the provider's client is tested elsewhere)."""

    def __init__(self, emu: ZohoCRMEmulator, scopes: list[str] | None = None) -> None:
        self.emu = emu
        self.b = emu.backend
        self.s = requests.Session()
        rt = (
            self.b.refresh_token
            if scopes is None
            else self.b.add_refresh_token(self.b.client_id, scopes=scopes)
        )
        r = self.s.post(
            f"{emu.url}/oauth/v2/token",
            params={
                "grant_type": "refresh_token",
                "client_id": self.b.client_id,
                "client_secret": self.b.client_secret,
                "refresh_token": rt,
            },
            timeout=5,
        )
        self.grant = r.json()
        self.token = self.grant["access_token"]

    def emails(self, module: str, rid: str, **params: str) -> requests.Response:
        return self.s.get(
            f"{self.emu.url}/crm/v8/{module}/{rid}/Emails",
            params=params,
            headers={"Authorization": f"Zoho-oauthtoken {self.token}"},
            timeout=5,
        )

    def all_pages(self, module: str, rid: str) -> list[list[dict[str, Any]]]:
        """Every page, following ``next_index``; [] when the first answer is 204."""
        pages: list[list[dict[str, Any]]] = []
        params: dict[str, str] = {}
        while True:
            r = self.emails(module, rid, **params)
            if r.status_code == 204:
                assert r.content == b""
                return pages
            assert r.status_code == 200, r.text
            body = r.json()
            pages.append(body["Emails"])
            if not body["info"]["more_records"]:
                assert body["info"]["next_index"] is None
                return pages
            params = {"index": body["info"]["next_index"]}


@pytest.fixture
def emu() -> Iterator[ZohoCRMEmulator]:
    with ZohoCRMEmulator(EmulatorBackend(EmulatorConfig())) as em:
        yield em


def _t(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def latest_sent(emails: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest email CRM sent (received mail, ``sent: false``, says nothing about deliverability)."""
    out = [e for e in emails if e["sent"]]
    return max(out, key=lambda e: _t(e["time"])) if out else None


def bounce_of(email: dict[str, Any] | None) -> dict[str, Any] | None:
    if email is None:
        return None
    return next((s for s in email["status"] if s["type"] == "bounced"), None)


def _lead_with(backend: EmulatorBackend, n: int, *, start_days: float = 50.0) -> str:
    rid = backend.add_record("Leads", fields={"Last_Name": "Paged", "Email": "paged@example.com"})
    now = backend.now()
    for i in range(n):
        backend.add_email(
            "Leads", rid, sent_at=now - start_days * DAY + i * HOUR, status=[sent(), delivered()]
        )
    return rid


# ------------------------------------------------------------------------------------------ shape and paging


def test_pages_hold_ten_emails_newest_first_with_opaque_index(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    rid = _lead_with(emu.backend, 23)
    credits = emu.backend.stats["credits_used"]
    first = api.emails("Leads", rid)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"Emails", "info"}
    info = body["info"]
    assert info["per_page"] == 10 and info["count"] == 10 and info["more_records"] is True
    assert info["prev_index"] is None
    assert isinstance(info["next_index"], str) and not info["next_index"].isdigit()
    second = api.emails("Leads", rid, index=info["next_index"]).json()
    assert second["info"]["count"] == 10 and second["info"]["prev_index"]
    third = api.emails("Leads", rid, index=second["info"]["next_index"]).json()
    assert third["info"] == {
        "count": 3,
        "next_index": None,
        "prev_index": third["info"]["prev_index"],
        "per_page": 10,
        "more_records": False,
    }
    back = api.emails("Leads", rid, index=second["info"]["prev_index"]).json()
    assert [e["message_id"] for e in back["Emails"]] == [e["message_id"] for e in body["Emails"]]
    served = body["Emails"] + second["Emails"] + third["Emails"]
    assert len({e["message_id"] for e in served}) == 23
    times = [_t(e["time"]) for e in served]
    assert times == sorted(times, reverse=True)
    stats = emu.backend.stats
    assert stats["requests"]["emails"] == 4
    assert stats["credits_used"] - credits == 4  # 1 credit per call (assumed: Zoho publishes no weight)


def test_every_email_has_the_fields_the_oas_requires(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    rid = emu.backend.add_record("Leads", fields={"Full_Name": "Ada Lovelace", "Email": "ada@example.com"})
    now = emu.backend.now()
    emu.backend.add_email(
        "Leads", rid, sent_at=now - 2 * DAY, status=[sent(), delivered(), opened(now - DAY)]
    )
    emu.backend.add_email("Leads", rid, sent_at=now - HOUR, status=[sent(), bounced(now - HOUR + 60)])
    newest, older = api.emails("Leads", rid).json()["Emails"]
    required = {
        "cc",
        "summary",
        "owner",
        "read",
        "sent",
        "subject",
        "activity_info",
        "intent",
        "sentiment_info",
    }
    required |= {"message_id", "source", "linked_record", "emotion", "from", "to", "time", "status"}
    required |= {"has_attachment", "has_thread_attachment"}
    assert required <= set(newest)
    assert newest["linked_record"]["id"] == rid and newest["linked_record"]["module"]["api_name"] == "Leads"
    assert newest["to"] == [{"user_name": "Ada Lovelace", "email": "ada@example.com"}]
    bounce = bounce_of(newest)
    assert bounce is not None
    assert bounce["category"] == TEMPORARY and bounce["sub_category"] and bounce["bounced_reason"]
    assert abs(_t(bounce["bounced_time"]) - (now - HOUR + 60)) < 2
    opened_entry = next(s for s in older["status"] if s["type"] == "opened")
    assert set(opened_entry) >= {"first_open", "last_open", "count", "bounced_time", "bounced_reason"}
    assert opened_entry["bounced_time"] is None and opened_entry["bounced_reason"] is None
    assert older["read"] is True and newest["read"] is False


def test_no_emails_answers_204_with_no_body(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    clean_without_address = emu.backend.add_record("Leads")
    r = api.emails("Leads", clean_without_address)
    assert r.status_code == 204 and r.content == b""
    with_address = emu.backend.add_record(
        "Leads", fields={"Email": "x@example.com"}, email_blocked="temporary"
    )
    emu.backend.set_no_emails("Leads", with_address)
    assert api.emails("Leads", with_address).status_code == 204
    assert emu.backend.stats["status_counts"]["emails"] == {204: 2}


def test_a_deleted_records_id_is_never_given_again_so_its_emails_stay_with_it(emu: ZohoCRMEmulator) -> None:
    """Zoho never reuses a record id. The emulator did, after the newest records were deleted, and the new
    record inherited the deleted one's Emails list (a 3-hour-old bounce made an old record look "deferred")."""
    api = Api(emu)
    backend = emu.backend
    first = backend.add_record("Leads", fields={"Email": "gone@example.com"}, email_blocked="temporary")
    backend.add_email("Leads", first, sent_at=backend.now() - HOUR, status=[sent(), bounced(backend.now())])
    last = backend.add_record("Leads", fields={"Email": "gone-too@example.com"})
    for rid in list(backend.records("Leads")):
        assert backend.delete_record("Leads", rid)
    fresh = [backend.add_record("Leads", fields={"Email": f"new{i}@example.com"}) for i in range(3)]
    assert not {first, last} & set(fresh)
    assert all(int(rid) > int(last) for rid in fresh)
    for rid in fresh:  # never blocked: their lists show no bounce, whatever the deleted records' lists held
        emails = [e for page in api.all_pages("Leads", rid) for e in page]
        assert bounce_of(latest_sent(emails)) is None, rid
        assert all(s["type"] != "bounced" for e in emails for s in e["status"]), rid


def test_retention_hides_emails_older_than_100_days(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    rid = emu.backend.add_record("Leads", fields={"Email": "old@example.com"}, email_blocked="temporary")
    now = emu.backend.now()
    emu.backend.add_email("Leads", rid, sent_at=now - 99 * DAY, status=[sent(), bounced(now - 99 * DAY)])
    assert [len(p) for p in api.all_pages("Leads", rid)] == [1]
    emu.backend.advance(2 * DAY)
    api = Api(emu)  # the old access token is still valid, but a fresh one keeps the test independent of TTL
    assert api.emails("Leads", rid).status_code == 204
    assert emu.backend.record("Leads", rid)["email"]["Email"]["blocked"] == "temporary"  # still blocked


def test_bad_index_type_owner_module_and_record_answer_400(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    rid = _lead_with(emu.backend, 12)
    other = _lead_with(emu.backend, 12)
    foreign = api.emails("Leads", other).json()["info"]["next_index"]
    for params, name in (({"index": "bogus"}, "index"), ({"index": foreign}, "index")):
        r = api.emails("Leads", rid, **params)
        assert r.status_code == 400
        assert r.json()["code"] == "INVALID_DATA" and r.json()["details"] == {"param_name": name}
    r = api.emails("Leads", rid, type="everything")
    assert r.status_code == 400 and r.json()["details"] == {"param_name": "type"}
    r = api.emails("Leads", rid, owner_id="not-a-number")
    assert r.status_code == 400 and r.json()["details"] == {"param_name": "owner_id"}
    r = api.emails("Leads", rid, owner_id="4876876000000225013")  # optional; accepted (docs + SDK reading)
    assert r.status_code == 200
    assert api.emails("Products", rid).json()["code"] == "INVALID_MODULE"
    assert api.emails("Cases", rid).json()["code"] == "INVALID_MODULE"  # Zoho's docs list no Emails for Cases
    r = api.emails("Leads", "4876876000000999999")
    assert r.status_code == 400 and r.json()["code"] == "INVALID_DATA"
    assert sorted(EMAIL_TYPES) == sorted(set(EMAIL_TYPES))


def test_type_filters_by_source(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    seeded = seed_email_org(emu.backend, counts={"buried_soft": 1})
    rid = seeded.of("buried_soft")[0]
    received = api.emails("Leads", rid, type="user_emails").json()
    assert received["info"]["count"] == 10 and all(e["sent"] is False for e in received["Emails"])
    crm = api.emails("Leads", rid, type="sent_from_crm").json()
    assert crm["info"]["count"] == 2 and all(e["sent"] for e in crm["Emails"])
    assert api.emails("Leads", rid, type="drafts").status_code == 204


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        (["ZohoCRM.modules.ALL"], 200),
        (["ZohoCRM.modules.leads.READ", "ZohoCRM.modules.emails.READ"], 200),
        (["ZohoCRM.modules.READ", "ZohoCRM.modules.emails.READ"], 200),
        (["ZohoCRM.modules.leads.READ", "ZohoCRM.send_mail.all.CREATE"], 401),  # no emails scope
        (["ZohoCRM.modules.emails.READ"], 401),  # no read scope on the module
        (["ZohoCRM.modules.contacts.READ", "ZohoCRM.modules.emails.READ"], 401),
    ],
)
def test_scope_needs_module_read_and_emails_read(
    emu: ZohoCRMEmulator, scopes: list[str], status: int
) -> None:
    rid = _lead_with(emu.backend, 1)
    api = Api(emu, scopes)
    assert api.grant["scope"] == " ".join(scopes)  # the token answer names the refresh token's scopes
    r = api.emails("Leads", rid)
    assert r.status_code == status
    if status == 401:
        assert r.json()["code"] == "OAUTH_SCOPE_MISMATCH"
        assert emu.backend.stats["credits_used"] == 0


def test_faults_can_target_the_emails_endpoint(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    rid = _lead_with(emu.backend, 1)
    emu.backend.add_fault(Fault(endpoint="emails", action="429"))
    assert api.emails("Leads", rid).status_code == 429
    assert api.emails("Leads", rid).status_code == 200


# ------------------------------------------------------------------------------------- seeds agree with state


def test_every_seed_kind_has_the_history_its_state_says(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    seeded = seed_email_org(emu.backend, counts=dict.fromkeys(EMAIL_KINDS, 2))
    now = emu.backend.now()
    assert sorted(seeded.ids) == sorted(EMAIL_KINDS) and len(seeded.all_ids()) == 2 * len(EMAIL_KINDS)
    for kind in EMAIL_KINDS:
        for rid in seeded.of(kind):
            state = emu.backend.record("Leads", rid)["email"]["Email"]
            pages = api.all_pages("Leads", rid)
            emails = [e for p in pages for e in p]
            bounce = bounce_of(latest_sent(emails))
            if kind in ("no_emails", "expired"):
                assert pages == [], kind
                continue
            if state["blocked"] == "temporary":
                assert bounce is not None, kind
                category = UNKNOWN_CATEGORY if kind == "unknown_category" else TEMPORARY
                assert bounce["category"] == category, kind
            elif state["blocked"] == "permanent":
                assert bounce is not None and bounce["category"] == PERMANENT, kind
            else:
                assert bounce is None, kind
            if kind == "recent_soft":
                assert bounce is not None and now - _t(bounce["bounced_time"]) < 3 * HOUR
            if kind == "old_soft":
                assert bounce is not None and now - _t(bounce["bounced_time"]) > 9 * DAY
            if kind == "deep_soft":
                assert [len(p) for p in pages] == [10, 4]
                assert bounce_of(pages[0][0]) is not None  # newest first: the latest bounce opens page 1
                assert sum(1 for e in pages[1] if bounce_of(e)) == 2  # older bounces on page 2
            if kind == "buried_soft":
                assert not any(e["sent"] for e in pages[0])  # page 1: 10 received emails only
                assert bounce_of(latest_sent(pages[1])) is not None
            if kind == "limit":
                assert state["unblock_count"] == 5 and sum(1 for e in emails if bounce_of(e)) == 6


def test_oldest_first_order_moves_the_latest_bounce_off_page_one(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    emu.backend.email_store.order = "oldest_first"
    rid = seed_email_org(emu.backend, counts={"deep_soft": 1}).of("deep_soft")[0]
    pages = api.all_pages("Leads", rid)
    times = [_t(e["time"]) for p in pages for e in p]
    assert times == sorted(times)
    assert bounce_of(pages[1][-1]) is not None and bounce_of(latest_sent(pages[0])) is None


def test_expected_outcomes_cover_every_id_and_mode(emu: ZohoCRMEmulator) -> None:
    seeded = seed_email_org(emu.backend, counts={"old_soft": 3, "hard": 2, "expired": 1})
    for mode in ("none", "emails", "sweep"):
        outcomes = seeded.expected_outcomes(mode)
        assert sorted(outcomes) == seeded.all_ids()
        assert {outcomes[i] for i in seeded.of("hard")} == {"permanently_blocked"}
    assert seeded.expected_outcomes("emails")[seeded.of("expired")[0]] == "not_blocked"
    assert seeded.expected_outcomes("sweep")[seeded.of("expired")[0]] == "unblocked"
    with pytest.raises(KeyError):
        seeded.of("nonsense")
    # "none" must match what the emulator's unblock rule answers today
    for rid, outcome in seeded.expected_outcomes("none").items():
        assert emu.backend.predict_unblock("Leads", rid) == outcome
    assert set(EMAIL_EXPECTED) == set(EMAIL_KINDS)


def test_demo_org_lists_agree_with_block_state_in_leads_and_contacts(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    seeded = seed_demo_org(emu.backend, n_bounced=40)
    now = emu.backend.now()
    checked = 0
    assert seeded.recent("Leads")
    for module in ("Leads", "Contacts"):
        assert bool(seeded.recent(module)) == (len(seeded.of("temporary", module)) >= 2), module
        for rid, rec in emu.backend.records(module).items():
            emails = [e for p in api.all_pages(module, rid) for e in p]
            for field_name, state in rec["email"].items():
                address = rec["fields"].get(field_name)
                if not address:
                    continue
                mine = [e for e in emails if e["to"][0]["email"] == address]
                bounce = bounce_of(latest_sent(mine))
                if state["blocked"] == "temporary":
                    assert bounce is not None and bounce["category"] == TEMPORARY, (module, rid, field_name)
                    recent = now - _t(bounce["bounced_time"]) < 24 * HOUR
                    assert recent == (rid in seeded.recent(module) and field_name == "Email")
                elif state["blocked"] == "permanent":
                    assert bounce is not None and bounce["category"] == PERMANENT, (module, rid, field_name)
                else:
                    assert bounce is None, (module, rid, field_name)
                checked += 1
    assert checked > 40


def test_unblocking_leaves_the_bounce_as_the_latest_email(emu: ZohoCRMEmulator) -> None:
    api = Api(emu)
    rid = emu.backend.add_record("Leads", fields={"Email": "soft@example.com"}, email_blocked="temporary")
    before = api.all_pages("Leads", rid)
    r = api.s.post(
        f"{emu.url}/crm/v8/Leads/{rid}/actions/unblock_email",
        json={"unblock_fields": ["Email"]},
        headers={"Authorization": f"Zoho-oauthtoken {api.token}"},
        timeout=5,
    )
    assert r.json()["data"][0]["code"] == "SUCCESS"
    assert emu.backend.record("Leads", rid)["email"]["Email"] == {"blocked": None, "unblock_count": 1}
    assert api.all_pages("Leads", rid) == before  # Zoho sends nothing on unblock
    assert bounce_of(latest_sent(before[0])) is not None


# ------------------------------------------------------------------------------------------ the model alone


def test_derived_history_follows_each_state() -> None:
    anchor = 1_800_000_000.0

    def latest(states: list[FieldState], api_unblocks: int = 0) -> Email:
        return max(derived_history("Leads", "1", states, api_unblocks, anchor), key=lambda e: e.sent_at)

    assert latest([FieldState("a@x", "temporary", 0)]).latest_bounce() == bounced(anchor - 3 * DAY + 60)
    hard = latest([FieldState("a@x", "permanent", 0)]).latest_bounce()
    assert hard is not None and hard["category"] == PERMANENT
    assert latest([FieldState("a@x", None, 1)]).latest_bounce() is None  # unblocked before, delivered since
    assert latest([FieldState("a@x", None, 1)], api_unblocks=1).latest_bounce() is not None  # API unblock
    assert derived_history("Leads", "1", [FieldState(None, None, 0)], 0, anchor) == []
    assert len(derived_history("Leads", "1", [FieldState(None, "temporary", 0)], 0, anchor)) == 3


def test_store_pages_and_rejects_foreign_cursors() -> None:
    store = EmailStore(anchor=0.0)
    mails = [Email(str(i), float(i), "a@x", "s", [sent()]) for i in range(25)]
    visible = store.visible(mails, now=100.0)
    assert [e.message_id for e in visible[:3]] == ["24", "23", "22"]
    page = store.page("Leads", "1", visible, None)
    assert page is not None
    rows, info = page
    assert len(rows) == 10 and info["more_records"]
    assert store.page("Leads", "2", visible, info["next_index"]) is None
    assert store.visible(mails, now=100.0 + 100 * DAY) == []
