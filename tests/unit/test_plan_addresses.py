"""The unblock plan's per-address params, checked before any call (issue 19)."""

from __future__ import annotations

import pytest

from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.params import parse_addresses, parse_dns_options
from airflow_provider_zohocrm.zoho.unblock_job import UnblockPlan


def test_addresses_keep_the_address_fields() -> None:
    """Every address of a record is kept, whatever fields are unblocked (issue 27 row 3: the rule on a mail to
    several addresses needs them); a field to unblock that is missing is no address."""
    given = {"1": {"Email": " a@x.test ", "Secondary_Email": "b@x.test"}, 2: {"Email": ""}}
    assert parse_addresses(given, ["Email"]) == {
        "1": {"Email": "a@x.test", "Secondary_Email": "b@x.test"},
        "2": {"Email": None},
    }
    assert parse_addresses('{"1": {"Email": "a@x.test"}}', ["Email", "Secondary_Email"]) == {
        "1": {"Email": "a@x.test", "Secondary_Email": None}
    }
    assert parse_addresses(None, ["Email"]) is None


@pytest.mark.parametrize(
    "bad",
    [
        ["a@x.test"],
        {"1": "a@x.test"},
        {"1": {"Email": 5}},
        "not json",
        {"1": {"email": "a@x.test"}},  # issue 27 row 6: field names are exact
        {"1": {"Email": "a@x.test", "Phone": "1"}},
    ],
)
def test_malformed_addresses_are_refused(bad: object) -> None:
    with pytest.raises(ZohoValidationError, match="addresses"):
        parse_addresses(bad, ["Email"])


def test_check_domain_and_dns_options_fail_closed() -> None:
    with pytest.raises(ZohoValidationError, match="check_domain"):
        UnblockPlan.build("Leads", ["1"], verify="emails", check_domain="maybe")
    with pytest.raises(ZohoValidationError, match="dns_options: port"):
        parse_dns_options({"port": 70000})
    plan = UnblockPlan.build(
        "Leads",
        ["1"],
        ["Email", "Secondary_Email"],
        verify="emails",
        check_domain="true",
        dns_options='{"timeout": 2}',
    )
    assert (plan.check_domain, plan.dns_options, plan.per_field) == (True, {"timeout": 2}, True)
    assert UnblockPlan.build("Leads", ["1"]).per_field is False
