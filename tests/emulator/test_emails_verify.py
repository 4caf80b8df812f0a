"""Finding bounced records through each record's Emails related list (issue 13), and the verify modes.

The first part tests the pure classification (zoho/emails.py) on email lists shaped like Zoho's documented
answers; the second runs the operator against the emulator over HTTP in each verify mode.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_zohocrm.operators.unblock_email import REPORT_XCOM_KEY, UnblockEmailOperator
from airflow_provider_zohocrm.testing import Fault, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import EMAIL_KINDS, Seeded, seed_email_org
from airflow_provider_zohocrm.zoho.emails import (
    BUDGET_REASON,
    CallBudget,
    Verdict,
    bounce_kind,
    classify_emails,
    latest_email,
    runs_oldest_first,
)
from tests.conftest import set_connection

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def iso(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).astimezone().isoformat(timespec="seconds")


def email(hours_ago: float, *status: dict[str, Any], sent: bool = True) -> dict[str, Any]:
    return {
        "subject": "s",
        "sent": sent,
        "time": iso(hours_ago),
        "status": list(status) or [{"type": "sent"}],
    }


def bounce(
    category: str, hours_ago: float, sub: str = "Mailbox full", why: str = "552 full"
) -> dict[str, Any]:
    return {
        "type": "bounced",
        "category": category,
        "sub_category": sub,
        "bounced_reason": why,
        "bounced_time": iso(hours_ago),
    }


# -- pure: categories ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "kind"),
    [
        ("Temporarily blocked", "soft"),
        ("temporarily blocked", "soft"),
        ("TEMPORARY", "soft"),
        ("Temporary bounce", "soft"),
        ("Soft bounce", "soft"),
        ("soft_bounce", "soft"),
        ("Permanently blocked", "hard"),
        ("permanent", "hard"),
        ("Hard bounce", "hard"),
        ("Blocked permanently", "hard"),
        ("HARD", "hard"),
        ("Blocked", None),
        ("", None),
        (None, None),
        (7, None),
        ("soft then hard", None),
        ("Temporarily blocked; hard", None),
    ],
)
def test_bounce_category_matching_is_tolerant_and_never_guesses(category: Any, kind: str | None) -> None:
    assert bounce_kind(category) == kind


# -- pure: which email is the latest ---------------------------------------------------------------------------


def test_latest_is_newest_by_time_in_any_order() -> None:
    old, new = email(100), email(1)
    assert latest_email([new, old]) is new
    assert latest_email([old, new]) is new
    assert runs_oldest_first([old, new]) and not runs_oldest_first([new, old])


def test_latest_falls_back_to_zoho_order_when_times_are_missing() -> None:
    first, second = {"status": [{"type": "sent"}]}, email(1)
    assert latest_email([first, second]) is first  # Zoho's documented sample lists newest first


def test_drafts_and_scheduled_emails_are_not_the_latest_status() -> None:
    sent = email(5, bounce("Temporarily blocked", 4))
    draft = email(1, {"type": "draft"}, sent=False)
    check = classify_emails([draft, sent], now=NOW)
    assert check.verdict == Verdict.SOFT


# -- pure: verdicts ---------------------------------------------------------------------------------------


def test_soft_bounce_is_an_unblock_target_with_zohos_details() -> None:
    check = classify_emails(
        [email(30, bounce("Temporarily blocked", 29, "Temporary Domain Failure", "Host not reachable."))],
        now=NOW,
        calls=1,
    )
    assert check.verdict == Verdict.SOFT
    assert check.details() == {
        "category": "Temporarily blocked",
        "sub_category": "Temporary Domain Failure",
        "reason": "Host not reachable.",
        "bounced_time": iso(29),
    }
    assert check.calls == 1


def test_hard_bounce_is_permanent_whatever_its_age() -> None:
    check = classify_emails(
        [email(1, bounce("Permanently blocked", 0.5))], now=NOW, min_hours_since_bounce=24
    )
    assert check.verdict == Verdict.HARD
    assert check.category == "Permanently blocked"


def test_no_bounce_in_the_latest_email_is_none_even_after_an_older_bounce() -> None:
    emails = [email(1, {"type": "sent"}, {"type": "opened"}), email(50, bounce("Temporarily blocked", 49))]
    assert classify_emails(emails, now=NOW).verdict == Verdict.NONE
    assert classify_emails([], now=NOW).verdict == Verdict.NONE  # 204: no email within retention


def test_young_soft_bounce_is_deferred_old_one_is_a_target() -> None:
    young = [email(3, bounce("Temporarily blocked", 2))]
    old = [email(250, bounce("Temporarily blocked", 240))]
    deferred = classify_emails(young, now=NOW, min_hours_since_bounce=24)
    assert deferred.verdict == Verdict.DEFERRED
    assert "min_hours_since_bounce=24" in deferred.note and deferred.reason == "552 full"
    assert classify_emails(old, now=NOW, min_hours_since_bounce=24).verdict == Verdict.SOFT
    assert classify_emails(young, now=NOW, min_hours_since_bounce=0).verdict == Verdict.SOFT


def test_unknown_category_or_shape_goes_to_unblock_so_zoho_decides() -> None:
    assert classify_emails([email(1, bounce("Quarantined", 1))], now=NOW).verdict == Verdict.UNKNOWN
    no_category = {"type": "bounced", "bounced_time": iso(1), "bounced_reason": "x"}  # OAS: category optional
    assert classify_emails([email(1, no_category)], now=NOW).verdict == Verdict.UNKNOWN
    assert classify_emails([{"time": iso(1), "status": "bounced"}], now=NOW).verdict == Verdict.UNKNOWN


def test_mail_without_status_never_hides_an_older_bounce() -> None:
    received = [{"time": iso(h), "sent": False, "status": []} for h in (1, 2, 3)]
    synced = [{"time": iso(h), "status": []} for h in (4, 5)]
    emails = [*received, *synced, email(48, bounce("Temporarily blocked", 47))]
    assert classify_emails(emails, now=NOW).verdict == Verdict.SOFT
    assert classify_emails(received, now=NOW).verdict == Verdict.NONE


def test_budget_is_shared_and_bounded(conn_env: ZohoCRMEmulator, email_org: Seeded) -> None:
    # one budget, taken by many threads at once: exactly its limit is granted
    budget = CallBudget(3)
    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = list(pool.map(lambda _: budget.take(), range(40)))
    assert granted.count(True) == 3 == budget.spent
    unlimited = CallBudget(None)
    assert all(unlimited.take() for _ in range(1000))
    # and the task shares one budget among its threads: 4 in flight, 3 Emails calls in all, the rest deferred
    single_page = [rid for rid in email_org.all_ids() if rid not in email_org.of("buried_soft")]
    result = run(
        record_ids=single_page, verify="emails", max_parallel_calls=4, max_email_checks=3, fail_on=[]
    )
    assert requests(conn_env, "emails") == result["email_checks"] == 3
    unchecked = [rid for rid, why in result["reasons"].items() if why == BUDGET_REASON]
    assert len(unchecked) == len(single_page) - 3
    assert all(result["details"][rid]["reason"] is None for rid in unchecked)  # no bounce was read for them


# == against the emulator, over HTTP ============================================================================

#: Kinds whose latest sent email is not on the first page of ten (newest first): 12 newer received emails.
#: Kinds whose latest CRM-sent email is on page 2. None since the Emails list is read with type=sent_from_crm
#: (issue 19): the received mails that buried "buried_soft"'s bounce on page 2 are no longer listed.
TWO_PAGE_KINDS: tuple[str, ...] = ()


class RecordingTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def run(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("module", "Leads")
    return UnblockEmailOperator(task_id="unblock", **kwargs).execute({"ti": RecordingTI()})  # type: ignore[arg-type]


def outcome_of(result: dict[str, Any]) -> dict[str, str]:
    """{id: outcome}; fails if an id is in two outcomes."""
    found: dict[str, str] = {}
    for outcome, ids in result["ids"].items():
        for rid in ids:
            assert rid not in found, f"{rid} in {found[rid]} and {outcome}"
            found[rid] = outcome
    for rid in result["pending"]:
        assert rid not in found, rid
        found[rid] = "pending"
    assert result["total"] == len(found) == sum(result["counts"].values()) + len(result["pending"])
    return found


def requests(em: ZohoCRMEmulator, endpoint: str) -> int:
    return int(em.backend.stats["requests"].get(endpoint, 0))


def unblock_calls(em: ZohoCRMEmulator) -> int:
    return requests(em, "unblock_bulk") + requests(em, "unblock_single")


@pytest.fixture
def email_org(conn_env: ZohoCRMEmulator, tmp_path, monkeypatch) -> Seeded:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return seed_email_org(conn_env.backend, "Leads", counts=dict.fromkeys(EMAIL_KINDS, 3))


@pytest.mark.parametrize("parallel", [1, 4])
def test_verify_emails_every_kind_lands_in_its_outcome_at_minimum_calls(
    conn_env: ZohoCRMEmulator, email_org: Seeded, parallel: int
) -> None:
    ids = email_org.all_ids()
    expected = email_org.expected_outcomes("emails")
    before = {rid: len(conn_env.backend.unblock_events("Leads", rid)) for rid in ids}
    result = run(
        record_ids=ids, verify="emails", min_hours_since_bounce=24, max_parallel_calls=parallel, fail_on=[]
    )
    assert outcome_of(result) == expected
    # no unblock spent on records that needed none, or must wait, or can never be unblocked
    for rid in ids:
        events = len(conn_env.backend.unblock_events("Leads", rid)) - before[rid]
        assert events == (1 if expected[rid] == "unblocked" else 0), (rid, expected[rid])
    # calls: one Emails page per record, two for the records whose latest sent email is on page 2
    minimum_reads = len(ids) + sum(len(email_org.of(k)) for k in TWO_PAGE_KINDS)
    assert requests(conn_env, "emails") == result["email_checks"] == minimum_reads
    targets = [r for r in ids if expected[r] in ("unblocked", "limit_reached")]
    assert unblock_calls(conn_env) == result["calls"] == -(-len(targets) // 500)
    # only the targets were sent: no id that is not_blocked, deferred or hard reached an unblock call
    assert conn_env.backend.stats["ids_sent"] == len(targets)
    # the people who must act see Zoho's reason; deferred ones say why
    for rid in result["ids"]["permanently_blocked"]:
        assert result["details"][rid]["category"] == "Permanently blocked"
        assert result["details"][rid]["reason"]
    for rid in result["ids"]["limit_reached"]:
        assert result["details"][rid]["category"] == "Temporarily blocked"
    for rid in result["ids"]["deferred"]:
        assert "min_hours_since_bounce=24" in result["reasons"][rid]
        assert result["details"][rid]["bounced_time"]


def test_verify_emails_reads_to_the_end_when_zoho_lists_oldest_first(
    conn_env: ZohoCRMEmulator, email_org: Seeded
) -> None:
    conn_env.backend.email_store.order = "oldest_first"
    ids = email_org.all_ids()
    result = run(record_ids=ids, verify="emails", min_hours_since_bounce=24, fail_on=[])
    assert outcome_of(result) == email_org.expected_outcomes("emails")
    deep = email_org.of("deep_soft")[0]
    assert result["email_checks"] > len(ids)  # the long histories needed their last page
    assert deep in result["ids"]["unblocked"]


def test_verify_sweep_sends_everything_and_never_blocked_is_not_blocked(
    conn_env: ZohoCRMEmulator, email_org: Seeded
) -> None:
    ids = email_org.all_ids()
    result = run(record_ids=ids, verify="sweep", fail_on=[])
    assert outcome_of(result) == email_org.expected_outcomes("sweep")
    assert requests(conn_env, "emails") == 0 == result["email_checks"]
    assert unblock_calls(conn_env) == result["calls"] == -(-len(ids) // 500)


def test_verify_none_trusts_the_source(conn_env: ZohoCRMEmulator, email_org: Seeded) -> None:
    ids = email_org.all_ids()
    result = run(record_ids=ids, fail_on=[])
    assert outcome_of(result) == email_org.expected_outcomes("none")
    assert requests(conn_env, "emails") == 0


@pytest.mark.parametrize("budget", [1, 7])
def test_email_check_budget_is_respected_and_the_rest_is_deferred(
    conn_env: ZohoCRMEmulator, email_org: Seeded, budget: int
) -> None:
    two_pages = {rid for kind in TWO_PAGE_KINDS for rid in email_org.of(kind)}
    ids = [rid for rid in email_org.all_ids() if rid not in two_pages]  # one Emails call each
    before = {rid: len(conn_env.backend.unblock_events("Leads", rid)) for rid in ids}
    result = run(
        record_ids=ids, verify="emails", min_hours_since_bounce=24, max_email_checks=budget, fail_on=[]
    )
    outcomes = outcome_of(result)
    assert requests(conn_env, "emails") == result["email_checks"] == budget
    unchecked = [rid for rid, why in result["reasons"].items() if why == BUDGET_REASON]
    assert len(unchecked) == len(ids) - budget
    assert all(outcomes[rid] == "deferred" for rid in unchecked)
    assert all(len(conn_env.backend.unblock_events("Leads", rid)) == before[rid] for rid in unchecked)
    sent = sum(
        1 for rid, o in outcomes.items() if rid not in unchecked and o in ("unblocked", "limit_reached")
    )
    assert conn_env.backend.stats["ids_sent"] == sent
    expected = email_org.expected_outcomes("emails")
    assert all(outcome == expected[rid] for rid, outcome in outcomes.items() if rid not in unchecked)


def test_a_failed_email_check_leaves_every_id_accounted_for_and_unblocks_nothing(
    conn_env: ZohoCRMEmulator, email_org: Seeded, monkeypatch
) -> None:
    set_connection(monkeypatch, conn_env, max_attempts=1)
    ids = email_org.all_ids()
    conn_env.backend.add_fault(Fault(endpoint="emails", action="500", on_call=5))
    ti = RecordingTI()
    with pytest.raises(AirflowException, match="retry is safe"):
        UnblockEmailOperator(task_id="u", module="Leads", record_ids=ids, verify="emails").execute({"ti": ti})  # type: ignore[arg-type]
    partial = ti.xcom[REPORT_XCOM_KEY]
    outcomes = outcome_of(partial)
    assert sorted(outcomes) == sorted(ids)
    failed = [rid for rid, why in partial["pending_reasons"].items() if why.startswith("Emails check failed")]
    assert len(failed) == 1
    assert set(partial["pending_reasons"]) == set(partial["pending"])
    assert unblock_calls(conn_env) == 0


def test_missing_emails_scope_fails_the_task_naming_the_scope(
    conn_env: ZohoCRMEmulator, email_org: Seeded, monkeypatch
) -> None:
    backend = conn_env.backend
    token = backend.add_refresh_token(
        backend.client_id,
        scopes=["ZohoCRM.modules.Leads.ALL", "ZohoCRM.send_mail.Leads.CREATE", "ZohoCRM.coql.READ"],
    )
    set_connection(monkeypatch, conn_env, refresh_token=token)
    with pytest.raises(AirflowFailException, match=r"ZohoCRM\.modules\.emails\.READ"):
        run(record_ids=email_org.all_ids()[:3], verify="emails")
    assert unblock_calls(conn_env) == 0


def test_needs_person_records_are_tagged_and_a_tag_failure_hides_nothing(
    conn_env: ZohoCRMEmulator, email_org: Seeded, monkeypatch
) -> None:
    ids = email_org.all_ids()
    result = run(
        record_ids=ids,
        verify="emails",
        min_hours_since_bounce=24,
        needs_person_tag="Bounce: fix address",
        fail_on=[],
    )
    needs = result["ids"]["permanently_blocked"] + result["ids"]["limit_reached"]
    assert needs and sorted(result["tagged"]) == sorted(needs)
    assert requests(conn_env, "add_tags") == result["tag_calls"] == 1
    for rid in ids:
        assert ("Bounce: fix address" in conn_env.backend.record_tags("Leads", rid)) == (rid in needs)

    # a failing tag call: logged and reported, the unblock results stay, the task succeeds …
    set_connection(monkeypatch, conn_env, max_attempts=1)
    conn_env.backend.add_fault(Fault(endpoint="add_tags", action="500", times=5))
    again = run(
        record_ids=ids, verify="emails", min_hours_since_bounce=24, needs_person_tag="Other tag", fail_on=[]
    )
    assert again["tag_errors"] and again["tagged"] == []
    assert sorted(again["ids"]["permanently_blocked"]) == sorted(result["ids"]["permanently_blocked"])
    # … unless fail_on asks for it
    with pytest.raises(AirflowException, match="tag_failed"):
        run(record_ids=ids, verify="emails", needs_person_tag="Other tag", fail_on=["tag_failed"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"verify": "email"}, "verify"),
        ({"verify": 1}, "verify"),
        ({"verify": "emails", "min_hours_since_bounce": "-1"}, "min_hours_since_bounce"),
        ({"verify": "emails", "min_hours_since_bounce": "soon"}, "min_hours_since_bounce"),
        ({"verify": "emails", "min_hours_since_bounce": float("nan")}, "min_hours_since_bounce"),
        ({"verify": "emails", "max_email_checks": "many"}, "max_email_checks"),
        ({"verify": "emails", "max_email_checks": -3}, "max_email_checks"),
        ({"verify": "emails", "max_email_checks": 0}, "max_email_checks"),  # 0 is not "no limit": refused
        ({"verify": "none", "max_email_checks": "many"}, "max_email_checks"),  # checked even when ignored
        ({"verify": "emails", "max_email_checks": True}, "max_email_checks"),
        ({"needs_person_tag": 5}, "needs_person_tag"),
    ],
)
def test_bad_verify_settings_fail_before_any_call(
    conn_env: ZohoCRMEmulator, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(AirflowFailException, match=message):
        run(record_ids=["4876876000000100001"], **kwargs)
    assert conn_env.backend.stats["requests"]["token"] == 0


def test_templated_verify_settings_render_from_strings(conn_env: ZohoCRMEmulator, email_org: Seeded) -> None:
    ids = email_org.of("recent_soft") + email_org.of("old_soft")
    result = run(
        record_ids=ids, verify=" Emails ", min_hours_since_bounce="24", max_email_checks="None", fail_on=[]
    )
    assert sorted(result["ids"]["deferred"]) == sorted(email_org.of("recent_soft"))
    assert sorted(result["ids"]["unblocked"]) == sorted(email_org.of("old_soft"))


def test_unknown_record_ids_end_invalid_record_through_zohos_unblock_answer(
    conn_env: ZohoCRMEmulator, email_org: Seeded
) -> None:
    ghosts = ["4876876999999999991", "4876876999999999992"]
    ids = email_org.of("old_soft") + ghosts
    result = run(record_ids=ids, verify="emails", fail_on=[])
    outcomes = outcome_of(result)
    assert {outcomes[g] for g in ghosts} == {"invalid_record"}
    assert all(outcomes[rid] == "unblocked" for rid in email_org.of("old_soft"))
    # the address read does not return an unknown id: it goes to the unblock call unread, Zoho's answer decides
    assert requests(conn_env, "emails") == len(ids) - len(ghosts)


def test_emails_reads_stay_inside_the_tasks_concurrency_bound_and_budget(
    conn_env: ZohoCRMEmulator, email_org: Seeded
) -> None:
    conn_env.backend.config.latency = 0.02
    conn_env.backend.config.concurrency_limit = 3
    ids = email_org.all_ids()
    result = run(
        record_ids=ids,
        verify="emails",
        min_hours_since_bounce=24,
        max_parallel_calls=3,
        max_email_checks=20,
        fail_on=[],
    )
    assert len(outcome_of(result)) == len(ids)
    assert conn_env.backend.stats["rejected_429"] == 0
    assert conn_env.backend.stats["peak_concurrency"] <= 3
    assert requests(conn_env, "emails") == result["email_checks"] == 20  # the budget holds across threads


def test_an_emails_list_zoho_refuses_for_the_record_is_unknown_so_the_unblock_call_decides(
    conn_env: ZohoCRMEmulator, email_org: Seeded
) -> None:
    """Zoho answers an unknown record's Emails list with INVALID_DATA: that is about the record, not the request,
    so the record is ``unknown`` in every field (one call counted), never a failed task."""
    from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
    from airflow_provider_zohocrm.zoho.emails import check_addresses, check_bounce

    client = ZohoCRMHook().client
    ghost = "4876876999999999991"
    single = check_bounce(client, "Leads", ghost)
    both = check_addresses(
        client, "Leads", ghost, {"Email": "a@example.com", "Secondary_Email": "b@example.com"}
    )
    for check in (single, *both.values()):
        assert check.verdict == Verdict.UNKNOWN and check.calls == 1
        assert "Emails list refused" in str(check.note)
    assert set(both) == {"Email", "Secondary_Email"}
    assert requests(conn_env, "emails") == 2
