"""Per-address verification, second pass (issue 27 rows 2, 3, 4, 6, 8, 10, the latest-mail rule, and issue 30's
precedence mutation), through UnblockEmailOperator against the emulator over HTTP.

Each test builds the records it needs, runs the operator, and asserts on the emulator's state afterwards (is the
field still blocked, how many unblock events did it get, how many calls of each kind were made).
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator
from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.testing.dns_server import SEED_ZONE, LocalDNSServer
from airflow_provider_zohocrm.testing.emails import bounced, delivered, sent
from airflow_provider_zohocrm.zoho.addresses import addresses_by_id, coql_with_fields
from tests.emulator.test_per_address import client_for

HOUR = 3_600.0
BOTH = ["Email", "Secondary_Email"]


class RecordingTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def run(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("module", "Leads")
    kwargs.setdefault("verify", "emails")
    kwargs.setdefault("fail_on", [])
    return UnblockEmailOperator(task_id="unblock", **kwargs).execute({"ti": RecordingTI()})  # type: ignore[arg-type]


@pytest.fixture
def em(conn_env: ZohoCRMEmulator, tmp_path, monkeypatch) -> ZohoCRMEmulator:
    monkeypatch.setenv("ZOHOCRM_TOKEN_CACHE_DIR", str(tmp_path / "token-cache"))
    return conn_env


def lead(
    em: ZohoCRMEmulator,
    email: str | None,
    secondary: str | None = None,
    *,
    email_blocked: str | None = "temporary",
    secondary_blocked: str | None = None,
) -> str:
    return em.backend.add_record(
        "Leads",
        fields={"Last_Name": "Kim", "Full_Name": "Kim", "Email": email, "Secondary_Email": secondary},
        email_blocked=email_blocked,
        secondary_blocked=secondary_blocked if secondary else None,
    )


def soft_mail(em: ZohoCRMEmulator, rid: str, to: str | list[str], hours_ago: float, **kw: Any) -> None:
    now = em.backend.now()
    bounce_hours = kw.pop("bounce_hours", hours_ago)
    em.backend.add_email(
        "Leads",
        rid,
        sent_at=now - hours_ago * HOUR,
        status=[sent(), bounced(now - bounce_hours * HOUR, **kw)],
        to=to,
    )


def state(em: ZohoCRMEmulator, rid: str, name: str = "Email") -> tuple[bool, int]:
    """(still blocked, unblock events) of one field."""
    blocked = em.backend.record("Leads", rid)["email"][name]["blocked"] is not None
    return blocked, len(em.backend.field_unblock_events("Leads", rid).get(name, []))


def requests_to(em: ZohoCRMEmulator, name: str) -> int:
    return int(em.backend.stats["requests"].get(name, 0))


def unblock_calls(em: ZohoCRMEmulator) -> int:
    return requests_to(em, "unblock_bulk") + requests_to(em, "unblock_single")


def outcome(result: dict[str, Any], rid: str) -> str:
    return next(o for o, ids in result["ids"].items() if rid in ids)


# -- row 2: a young bounce of a mail sent to both addresses is deferred, and check_domain applies ---------------


def test_a_young_bounce_of_a_mail_to_both_addresses_is_deferred_and_spends_nothing(
    em: ZohoCRMEmulator,
) -> None:
    rid = lead(em, "kim@x.example.org", "kim@y.example.org", secondary_blocked="temporary")
    soft_mail(em, rid, ["kim@x.example.org", "kim@y.example.org"], 2)
    result = run(record_ids=[rid], unblock_fields=BOTH, min_hours_since_bounce=24)
    assert result["fields"][rid] == {"Email": "deferred", "Secondary_Email": "deferred"}
    assert unblock_calls(em) == 0
    assert state(em, rid, "Email") == (True, 0) and state(em, rid, "Secondary_Email") == (True, 0)


def test_check_domain_applies_to_a_bounce_of_a_mail_to_both_addresses(em: ZohoCRMEmulator) -> None:
    dead = ["kim@gone.nxdomain.example.net", "lee@gone.nxdomain.example.net"]
    rid = lead(em, dead[0], dead[1], secondary_blocked="temporary")
    soft_mail(em, rid, dead, 72)  # old enough; "Temporary Domain Failure": a domain failure
    with LocalDNSServer(SEED_ZONE) as dns:
        result = run(
            record_ids=[rid],
            unblock_fields=BOTH,
            min_hours_since_bounce=24,
            check_domain=True,
            dns_options={"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 2},
        )
        assert dns.count() >= 1
    assert result["fields"][rid] == {"Email": "deferred", "Secondary_Email": "deferred"}
    assert "check_domain" in result["field_reasons"][f"{rid} Email"]
    assert unblock_calls(em) == 0 and state(em, rid) == (True, 0)


# -- row 3: the shared-mail rule applies whatever unblock_fields are ------------------------------------------


@pytest.mark.parametrize("pass_addresses", [True, False], ids=["addresses-given", "read-by-task"])
def test_a_hard_bounce_to_both_addresses_is_left_to_zoho_with_one_field_too(
    em: ZohoCRMEmulator, pass_addresses: bool
) -> None:
    """Email is soft-blocked; a mail to both addresses hard-bounced (which address failed cannot be told): Zoho's
    answer decides, with Email alone in unblock_fields as with both."""
    rid = lead(em, "kim@x.example.org", "kim@y.example.org", secondary_blocked="permanent")
    now = em.backend.now()
    em.backend.add_email(
        "Leads",
        rid,
        sent_at=now - 72 * HOUR,
        status=[sent(), bounced(now - 72 * HOUR, permanent=True)],
        to=["kim@x.example.org", "kim@y.example.org"],
    )
    addresses = {rid: {"Email": "kim@x.example.org", "Secondary_Email": "kim@y.example.org"}}
    result = run(
        record_ids=[rid],
        unblock_fields=["Email"],
        min_hours_since_bounce=24,
        addresses=addresses if pass_addresses else None,
    )
    assert outcome(result, rid) == "unblocked"
    assert state(em, rid) == (False, 1)
    assert requests_to(em, "coql") == (0 if pass_addresses else 1)


# -- row 4: the bounce-age policy is on Zoho's clock --------------------------------------------------------


@pytest.mark.parametrize("pass_addresses", [True, False], ids=["addresses-given", "read-by-task"])
def test_the_bounce_age_is_measured_on_zohos_clock(em: ZohoCRMEmulator, pass_addresses: bool) -> None:
    """Zoho's clock 10 h behind the worker's; the bounce is 20 h old on Zoho's clock (30 h on the worker's)."""
    em.backend.advance(-10 * HOUR)
    rid = lead(em, "kim@x.example.org")
    soft_mail(em, rid, "kim@x.example.org", 20)
    result = run(
        record_ids=[rid],
        unblock_fields=["Email"],
        min_hours_since_bounce=24,
        addresses={rid: {"Email": "kim@x.example.org"}} if pass_addresses else None,
    )
    assert outcome(result, rid) == "deferred"
    assert "20.0 h ago" in result["reasons"][rid]
    assert unblock_calls(em) == 0 and state(em, rid) == (True, 0)


# -- row 6: addresses keyed by anything but Email / Secondary_Email are refused before any call ---------------


@pytest.mark.parametrize("key", ["email", "EMAIL", "Secondary_email", "Emial"])
def test_addresses_with_a_field_name_in_another_spelling_are_refused_before_any_call(
    em: ZohoCRMEmulator, key: str
) -> None:
    rid = lead(em, "kim@x.example.org")
    with pytest.raises(AirflowFailException, match=repr(key)):
        run(record_ids=[rid], unblock_fields=["Email"], addresses={rid: {key: "kim@x.example.org"}})
    assert sum(em.backend.stats["requests"].values()) == 0
    assert state(em, rid) == (True, 0)


# -- row 8: a mail's `to` written as text -------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["objects", "text", "object_text"])
def test_to_written_as_text_with_display_names_and_lists_is_matched(em: ZohoCRMEmulator, shape: str) -> None:
    em.backend.config.emails_to_shape = shape  # type: ignore[assignment]
    one = lead(em, "kim@x.example.org")
    soft_mail(em, one, "kim@x.example.org", 72)
    # one mail to both addresses ("a@x.org, b@y.org" in the text shape), a young bounce: deferred, not unblocked
    two = lead(em, "lee@x.example.org", "lee@y.example.org", secondary_blocked="temporary")
    soft_mail(em, two, ["lee@x.example.org", "lee@y.example.org"], 2)
    result = run(record_ids=[one, two], unblock_fields=BOTH, min_hours_since_bounce=24)
    assert result["fields"][one] == {"Email": "unblocked", "Secondary_Email": "not_blocked"}
    assert result["fields"][two] == {"Email": "deferred", "Secondary_Email": "deferred"}
    assert state(em, one) == (False, 1) and state(em, two) == (True, 0)


# -- row 10: COQL field names in another case ---------------------------------------------------------------


@pytest.mark.parametrize("keys", ["as_written", "api_name"])
def test_a_coql_source_naming_fields_in_another_case_reads_the_addresses(
    em: ZohoCRMEmulator, keys: str
) -> None:
    em.backend.config.coql_keys = keys  # type: ignore[assignment]
    rid = lead(em, "kim@x.example.org", "kim@y.example.org")
    query = coql_with_fields("select id, email, secondary_EMAIL from Leads where Last_Name = 'Kim'", BOTH)
    assert query.lower().count("email") == 2  # nothing added twice
    rows = list(client_for(em).iter_coql(query))
    assert addresses_by_id(rows, ["Email"]) == {
        rid: {"Email": "kim@x.example.org", "Secondary_Email": "kim@y.example.org"}
    }


# -- the latest-mail rule: the latest event decides ----------------------------------------------------------


def test_a_bounce_that_arrived_after_a_newer_mails_bounce_is_the_latest_event(em: ZohoCRMEmulator) -> None:
    """Mail 1 sent 30 h ago bounced 1 h ago (retries exhausted); mail 2 sent 10 h ago bounced 9 h ago. The
    address's latest bounce is mail 1's, 1 h old: deferred under a 5 h policy (by send time it would be
    unblocked on mail 2's 9 h old bounce)."""
    rid = lead(em, "kim@x.example.org")
    soft_mail(em, rid, "kim@x.example.org", 30, bounce_hours=1)
    soft_mail(em, rid, "kim@x.example.org", 10, bounce_hours=9)
    result = run(record_ids=[rid], unblock_fields=["Email"], min_hours_since_bounce=5)
    assert outcome(result, rid) == "deferred"
    assert unblock_calls(em) == 0 and state(em, rid) == (True, 0)


def test_a_delivered_mail_older_than_a_late_bounce_does_not_hide_it(em: ZohoCRMEmulator) -> None:
    """Mail 1 sent 30 h ago bounced 2 h ago, after mail 2 (sent 10 h ago) was delivered: the address is blocked
    by that late bounce, so it is an unblock target, not not_blocked."""
    rid = lead(em, "kim@x.example.org")
    soft_mail(em, rid, "kim@x.example.org", 30, bounce_hours=2)
    now = em.backend.now()
    em.backend.add_email(
        "Leads", rid, sent_at=now - 10 * HOUR, status=[sent(), delivered()], to="kim@x.example.org"
    )
    result = run(record_ids=[rid], unblock_fields=["Email"], min_hours_since_bounce=0)
    assert outcome(result, rid) == "unblocked"
    assert state(em, rid) == (False, 1)


# -- issue 30, mutation 2: the documented precedence, deferred before unblocked ------------------------------


def test_a_record_with_a_deferred_field_and_an_unblocked_one_is_counted_deferred(em: ZohoCRMEmulator) -> None:
    """docs/per-address-verification.md: ``… > deferred > unblocked > …``: a later run still has work on the
    record, so it is counted under deferred (a record counted unblocked would hide it)."""
    rid = lead(em, "kim@x.example.org", "kim@y.example.org", secondary_blocked="temporary")
    soft_mail(em, rid, "kim@x.example.org", 2)  # young: deferred
    soft_mail(em, rid, "kim@y.example.org", 72)  # old: unblocked
    result = run(record_ids=[rid], unblock_fields=BOTH, min_hours_since_bounce=24)
    assert result["fields"][rid] == {"Email": "deferred", "Secondary_Email": "unblocked"}
    assert result["ids"]["deferred"] == [rid] and result["ids"]["unblocked"] == []
    assert result["counts"]["deferred"] == 1 and result["counts"]["unblocked"] == 0
    assert state(em, rid, "Secondary_Email") == (False, 1) and state(em, rid, "Email") == (True, 0)


# -- row 5: repeated DNS timeouts stop the lookups, and the result says so ----------------------------------


def test_after_consecutive_dns_timeouts_the_task_stops_asking_and_says_so(em: ZohoCRMEmulator) -> None:
    ids = []
    for i in range(5):
        rid = lead(em, f"kim@d{i}.example.net")
        soft_mail(em, rid, f"kim@d{i}.example.net", 72)  # "Temporary Domain Failure": looked up
        ids.append(rid)
    with LocalDNSServer(SEED_ZONE, answer=False) as silent:
        result = run(
            record_ids=ids,
            unblock_fields=["Email"],
            min_hours_since_bounce=24,
            check_domain=True,
            dns_options={"nameservers": ["127.0.0.1"], "port": silent.port, "timeout": 0.3},
        )
        asked = silent.count()
    assert asked == result["dns_queries"] == 3
    assert "3 consecutive timeouts" in result["dns_stopped"] and result["dns_unchecked"] == 2
    # sent as without the check: every field unblocked
    assert sorted(result["ids"]["unblocked"]) == sorted(ids)
    assert all(state(em, rid) == (False, 1) for rid in ids)


def test_a_nameserver_with_a_trailing_space_fails_the_task_before_any_call(em: ZohoCRMEmulator) -> None:
    rid = lead(em, "kim@x.example.org")
    with pytest.raises(AirflowFailException, match="not an IP address"):
        run(
            record_ids=[rid],
            unblock_fields=["Email"],
            check_domain=True,
            dns_options={"nameservers": ["127.0.0.1 "]},
        )
    assert sum(em.backend.stats["requests"].values()) == 0
