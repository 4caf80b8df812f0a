"""The example DAG's sources (zoho/sources.py): every param checked with no call, and the fan-out plan.

Pure logic, no I/O. The DAG runs that show the same rules end to end are in tests/airflow/test_dag_e2e.py.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.sources import (
    Source,
    dedupe_candidates,
    plan_groups,
    sources_from_params,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def one(params: dict[str, Any]) -> Source:
    settings = sources_from_params(params, now=NOW)
    assert len(settings.sources) == 1
    return settings.sources[0]


# -- the single-module shorthand -----------------------------------------------------------------------------------


def test_shorthand_module_and_cvid_is_one_trusted_source() -> None:
    source = one({"module": "Leads", "cvid": "6000000031001"})
    assert (source.module, source.kind, source.cvid, source.verify) == (
        "Leads",
        "cvid",
        "6000000031001",
        "none",
    )
    assert source.unblock_fields == ["Email"]


def test_shorthand_cvid_alone_defaults_to_leads() -> None:
    assert one({"cvid": "6000000031001"}).module == "Leads"


def test_coql_source_takes_its_module_from_the_query() -> None:
    """Finding 2: a Contacts query is unblocked in Contacts, not in the default module."""
    source = one({"coql_query": "select id from Contacts where Bounce_Flag = true"})
    assert (source.module, source.kind) == ("Contacts", "coql")


def test_coql_source_with_a_different_module_is_refused_naming_both() -> None:
    with pytest.raises(ZohoValidationError) as info:
        sources_from_params({"module": "Leads", "coql_query": "select id from Contacts where X = 1"}, now=NOW)
    assert "'Leads'" in str(info.value) and "'Contacts'" in str(info.value)


def test_coql_source_with_the_same_module_is_fine() -> None:
    assert (
        one({"module": "Contacts", "coql_query": "select id from Contacts where X = 1"}).module == "Contacts"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cvid": "1", "unblock_fields": ["Phone"]}, "'Phone'"),
        ({"cvid": "1", "unblock_fields": ["Email", "Email"]}, "listed twice"),
        ({"module": "Deals", "cvid": "1", "unblock_fields": ["Secondary_Email"]}, "Secondary_Email"),
        ({"cvid": "6000000031001 or 1=1"}, "6000000031001 or 1=1"),
        ({"cvid": "Bounced leads"}, "'view'"),
        ({"module": "leads", "cvid": "1"}, "'Leads'"),
        ({"module": "Leads/../org", "cvid": "1"}, "'Leads/../org'"),
        ({"cvid": "1", "verify": "bogus"}, "'bogus'"),
        ({"cvid": "1", "min_hours_since_bounce": 24}, "needs verify 'emails'"),
        ({"cvid": "1", "verify": "emails", "min_hours_since_bounce": -1}, "-1"),
        ({"cvid": "1", "verify": "emails", "max_email_checks": 0}, "not 0"),
        ({"cvid": "1", "batch_size": 501}, "501"),
        ({"cvid": "1", "dry_run": "ture"}, "'ture'"),
        ({"coql_query": "select id from Leads limit 5"}, "limit"),
        ({"coql_query": "delete from Leads"}, "delete from Leads"),
        ({}, "Set the 'cvid' param"),
        ({"cvid": "1", "sources": [{"module": "Leads", "all": True}]}, "not both"),
        ({"sources": [{"module": "Leads", "cvdi": "1"}]}, "'cvdi'"),
        ({"sources": [{"module": "Leads"}]}, "exactly one of"),
        ({"sources": [{"module": "Leads", "cvid": "1", "all": True}]}, "not cvid and all"),
        ({"sources": [{"module": "Leads", "all": "yes"}]}, "'all' must be true"),
        ({"sources": [{"module": "Leads", "all": True, "days": 30}]}, "date_field together"),
        (
            {"sources": [{"module": "Leads", "all": True, "date_field": "Modified_Time"}]},
            "date_field together",
        ),
        ({"sources": [{"all": True, "date_field": "Modified_Time", "since": "yesterday"}]}, "'yesterday'"),
        ({"sources": [{"all": True, "date_field": "x'; drop", "days": 3}]}, "date_field must be"),
        ({"sources": [{"module": "Leads", "cvid": "1", "since": "2026-01-01"}]}, "'all' source only"),
        ({"sources": ["Leads"]}, "source #1 must be an object"),
        ({"sources": [{"all": True}, {"module": "Contacts", "view": ""}]}, "source #2"),
        ({"sources": [{"all": True}], "needs_person_tag": "a,b"}, "needs_person_tag"),
    ],
)
def test_bad_params_are_refused_before_any_call(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ZohoValidationError) as info:
        sources_from_params(params, now=NOW)
    assert message in str(info.value)


def test_more_sources_than_airflow_can_map_are_refused() -> None:
    with pytest.raises(ZohoValidationError, match="max_map_length"):
        sources_from_params({"sources": [{"all": True}] * 5}, now=NOW, max_sources=4)


# -- the whole-module source ---------------------------------------------------------------------------------------


def test_whole_module_source_selects_every_record_with_an_email_and_verifies_by_emails() -> None:
    source = one({"sources": [{"module": "Contacts", "all": True}]})
    assert source.query == "select id from Contacts where Email is not null"
    assert (source.kind, source.verify) == ("all", "emails")


def test_whole_module_source_narrowed_by_days_counts_back_from_now_in_utc() -> None:
    source = one({"sources": [{"module": "Leads", "all": True, "date_field": "Modified_Time", "days": 30}]})
    assert source.query == (
        "select id from Leads where Email is not null and Modified_Time >= '2026-01-30T12:00:00+00:00'"
    )


def test_whole_module_source_since_a_date_keeps_a_date_and_both_fields_are_or_ed() -> None:
    source = one(
        {
            "sources": [
                {
                    "module": "Leads",
                    "all": True,
                    "date_field": "Last_Activity_Time",
                    "since": "2026-02-01",
                    "unblock_fields": ["Email", "Secondary_Email"],
                }
            ]
        }
    )
    assert source.query == (
        "select id from Leads where (Email is not null or Secondary_Email is not null)"
        " and Last_Activity_Time >= '2026-02-01'"
    )


def test_run_wide_params_are_defaults_for_list_sources() -> None:
    settings = sources_from_params(
        {
            "sources": [
                {"module": "Leads", "all": True},
                {"module": "Contacts", "view": "Bounced contacts", "unblock_fields": ["Secondary_Email"]},
                {"module": "Leads", "all": True, "min_hours_since_bounce": 2, "max_email_checks": 10},
            ],
            "unblock_fields": ["Email"],
            "min_hours_since_bounce": 24,
            "max_email_checks": 500,
            "needs_person_tag": " needs-person ",
            "dry_run": "false",
        },
        now=NOW,
    )
    a, b, c = settings.sources
    assert (a.verify, a.min_hours_since_bounce, a.max_email_checks) == ("emails", 24.0, 500)
    assert (b.verify, b.min_hours_since_bounce, b.max_email_checks, b.view) == (
        "none",
        0.0,
        None,
        "Bounced contacts",
    )
    assert b.unblock_fields == ["Secondary_Email"]
    assert (c.min_hours_since_bounce, c.max_email_checks) == (2.0, 10)
    assert settings.needs_person_tag == "needs-person" and settings.dry_run is False


def test_settings_survive_xcom_json() -> None:
    import json

    settings = sources_from_params(
        {
            "sources": [
                {"module": "Leads", "view": "Bounced leads"},
                {"module": "Contacts", "cvid": "6000000031001"},
                {"module": "Leads", "all": True, "min_hours_since_bounce": 2, "max_email_checks": 10},
            ],
            "needs_person_tag": "fix address",
            "batch_size": 100,
            "dry_run": True,
        },
        now=NOW,
    )
    # every optional field differs from its default somewhere, so a field lost on the way is seen
    view, cvid, whole = settings.sources
    assert (view.view, cvid.cvid, whole.query) == (
        "Bounced leads",
        "6000000031001",
        "select id from Leads where Email is not null",
    )
    assert (whole.min_hours_since_bounce, whole.max_email_checks) == (2.0, 10)
    data = json.loads(json.dumps(settings.to_dict()))
    assert [Source.from_dict(s) for s in data["sources"]] == settings.sources
    assert (data["needs_person_tag"], data["batch_size"], data["dry_run"]) == ("fix address", 100, True)


# -- fan-out -------------------------------------------------------------------------------------------------------


def ids(n: int, start: int = 1) -> list[str]:
    return [str(start + i) for i in range(n)]


def src(index: int, module: str, verify: str = "none", checks: int | None = None) -> Source:
    return Source(index, module, "all", ["Email"], verify, 0.0, checks, query=f"select id from {module}")


def test_groups_are_bounded_across_modules_not_per_module() -> None:
    leads, contacts = ids(2600), ids(260, 10_000)
    groups = plan_groups(
        [(src(0, "Leads"), leads), (src(1, "Contacts"), contacts)], batch_size=500, max_groups=4
    )
    assert len(groups) == 4
    assert [g["module"] for g in groups] == ["Leads", "Leads", "Leads", "Contacts"]
    assert [rid for g in groups if g["module"] == "Leads" for rid in g["record_ids"]] == leads
    assert [rid for g in groups if g["module"] == "Contacts" for rid in g["record_ids"]] == contacts
    assert [len(g["record_ids"]) for g in groups] == [1000, 1000, 600, 260], "whole batches, evenly spread"


def test_one_group_per_batch_while_there_is_room() -> None:
    groups = plan_groups(
        [(src(0, "Leads"), ids(1200)), (src(1, "Contacts"), ids(10))], batch_size=500, max_groups=10
    )
    assert [len(g["record_ids"]) for g in groups] == [500, 500, 200, 10]


def test_every_source_with_candidates_gets_a_group_even_past_max_groups() -> None:
    sources = [(src(i, f"Mod_{i}"), ids(3, 100 * i)) for i in range(5)]
    groups = plan_groups([*sources, (src(5, "Empty"), [])], batch_size=500, max_groups=2)
    assert [g["module"] for g in groups] == [f"Mod_{i}" for i in range(5)]


def test_email_check_budget_is_split_over_the_source_groups_and_adds_up() -> None:
    groups = plan_groups(
        [
            (src(0, "Leads", "emails", checks=100), ids(2100)),
            (src(1, "Contacts", "emails", checks=3), ids(2000)),
        ],
        batch_size=200,
        max_groups=20,
    )
    leads = [g for g in groups if g["module"] == "Leads"]
    contacts = [g for g in groups if g["module"] == "Contacts"]
    assert sum(g["max_email_checks"] for g in leads) == 100
    assert len(contacts) == 3, "no more groups than checks, so no group starts with a budget of 0"
    assert [g["max_email_checks"] for g in contacts] == [1, 1, 1]
    assert all(g["max_email_checks"] >= 1 for g in groups)
    assert len(groups) == 11 + 3


def test_groups_carry_every_operator_kwarg_of_their_source() -> None:
    source = Source(
        0,
        "Contacts",
        "view",
        ["Email", "Secondary_Email"],
        "emails",
        24.0,
        7,
        view="Bounced",
        check_domain=True,
    )
    read = {str(i): {"Email": f"p{i}@x.test", "Secondary_Email": None, "Phone": "1"} for i in range(1, 5)}
    (group,) = plan_groups(
        [(source, ids(3))],
        batch_size=500,
        max_groups=10,
        needs_person_tag="Needs person",
        addresses={"Contacts": read, "Leads": {"1": {"Email": "other@x.test"}}},
        dns_options={"timeout": 2},
    )
    assert group == {
        "module": "Contacts",
        "record_ids": ["1", "2", "3"],
        "unblock_fields": ["Email", "Secondary_Email"],
        "verify": "emails",
        "min_hours_since_bounce": 24.0,
        "max_email_checks": 7,
        "needs_person_tag": "Needs person",
        # only this group's records, only the fields it unblocks (the XCom stays small)
        "addresses": {str(i): {"Email": f"p{i}@x.test", "Secondary_Email": None} for i in range(1, 4)},
        "check_domain": True,
        "dns_options": {"timeout": 2},
    }


def test_a_source_that_trusts_its_list_carries_no_addresses() -> None:
    source = Source(0, "Leads", "view", ["Email"], "none", view="Bounced")
    (group,) = plan_groups(
        [(source, ids(2))], batch_size=500, max_groups=10, addresses={"Leads": {"1": {"Email": "a@x.test"}}}
    )
    assert (group["addresses"], group["check_domain"], group["dns_options"]) == (None, False, None)


def test_check_domain_needs_verify_emails_and_dns_options_are_checked_before_any_call() -> None:
    with pytest.raises(ZohoValidationError, match=r"check_domain .* needs verify 'emails'"):
        sources_from_params({"sources": [{"module": "Leads", "view": "B", "check_domain": True}]})
    with pytest.raises(ZohoValidationError, match="dns_options: unknown DNS option"):
        sources_from_params({"sources": [{"module": "Leads", "all": True}], "dns_options": {"server": "x"}})
    # issue 27 row 5: a nameserver that is not exactly an IP address fails the first task
    with pytest.raises(ZohoValidationError, match="not an IP address"):
        sources_from_params(
            {
                "sources": [{"module": "Leads", "all": True, "verify": "emails", "check_domain": True}],
                "dns_options": {"nameservers": ["127.0.0.1 "]},
            }
        )
    settings = sources_from_params(
        {
            "sources": [{"module": "Leads", "all": True}, {"module": "Contacts", "view": "B"}],
            "check_domain": True,
        }
    )
    assert [s.check_domain for s in settings.sources] == [True, False]  # the run-wide default: emails only
    # Leads have a Secondary_Email: it is read too (it costs nothing), for the rule on a mail to both addresses
    assert settings.sources[0].read_query().startswith("select id, Email, Secondary_Email from Leads where")


@pytest.mark.parametrize("seed", range(30))
def test_plan_never_loses_or_repeats_an_id_and_respects_the_bound(seed: int) -> None:
    rng = random.Random(seed)
    batch, max_groups = rng.choice([1, 7, 200, 500]), rng.randint(1, 12)
    sizes = [rng.choice([0, 1, 5, 499, 500, 501, 2600]) for _ in range(rng.randint(1, 4))]
    candidates = [(src(i, f"M{i}"), ids(n, 1_000_000 * (i + 1))) for i, n in enumerate(sizes)]
    groups = plan_groups(candidates, batch_size=batch, max_groups=max_groups)
    active = sum(1 for n in sizes if n)
    assert len(groups) <= max(max_groups, active)
    for source, source_ids in candidates:
        got = [rid for g in groups if g["module"] == source.module for rid in g["record_ids"]]
        assert got == source_ids
    assert all(g["record_ids"] for g in groups), "no empty group"


def test_dedupe_keeps_a_record_once_per_module_with_the_first_source() -> None:
    kept, repeated = dedupe_candidates(
        [(src(0, "Leads"), ["1", "2"]), (src(1, "Leads"), ["2", "3"]), (src(2, "Contacts"), ["2"])]
    )
    assert [k[1] for k in kept] == [["1", "2"], ["3"], ["2"]]
    assert repeated == {1: 1}
