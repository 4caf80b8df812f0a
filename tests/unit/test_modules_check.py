"""Naming an unknown module (pure logic of ``zoho.modules``): the close matches, case, UI-only modules."""

from __future__ import annotations

import pytest

from airflow_provider_zohocrm.zoho.errors import ZohoResponseError, ZohoValidationError
from airflow_provider_zohocrm.zoho.modules import CrmModule, check_module, check_modules, parse_modules

ORG = parse_modules(
    {
        "modules": [
            {"api_name": "Home", "module_name": "Home", "plural_label": "Home", "api_supported": False},
            {"api_name": "Leads", "module_name": "Leads", "plural_label": "Leads", "api_supported": True},
            {
                "api_name": "Contacts",
                "module_name": "Contacts",
                "plural_label": "Contacts",
                "api_supported": True,
            },
            {"api_name": "CustomModule1", "module_name": "CustomModule1", "plural_label": "Bounces"},
        ]
    }
)


def test_a_known_module_passes_whatever_its_case() -> None:
    assert check_module(ORG, "Leads").api_name == "Leads"
    assert check_module(ORG, "leads").api_name == "Leads"


def test_a_typo_is_named_with_its_close_match() -> None:
    with pytest.raises(ZohoValidationError) as err:
        check_module(ORG, "Leeds")
    assert str(err.value) == (
        "Unknown module 'Leeds': the org has no module with that API name; did you mean 'Leads'?"
    )


def test_a_label_leads_to_the_api_name() -> None:
    with pytest.raises(ZohoValidationError, match="did you mean 'CustomModule1'"):
        check_module(ORG, "Bounce")


def test_no_close_match_lists_the_modules_the_api_can_use() -> None:
    with pytest.raises(ZohoValidationError) as err:
        check_module(ORG, "Xyzzy")
    assert "Leads, Contacts, CustomModule1." in str(err.value)
    assert "Home" not in str(err.value)


def test_a_module_the_api_cannot_reach_is_refused() -> None:
    with pytest.raises(ZohoValidationError, match=r"'Home' .*does not support it"):
        check_module(ORG, "Home")


def test_every_unknown_name_of_a_run_is_named_once() -> None:
    problems = check_modules(ORG, ["Leads", "Leeds", "Contcts", "Leeds"])
    assert len(problems) == 2
    assert "'Leeds'" in problems[0] and "'Contacts'" in problems[1]


def test_a_204_is_no_modules_and_a_broken_answer_is_refused() -> None:
    assert parse_modules(None) == []
    with pytest.raises(ZohoResponseError):
        parse_modules({"data": []})
    with pytest.raises(ZohoResponseError):
        parse_modules({"modules": [{"module_name": "x"}]})
    assert parse_modules({"modules": [{"api_name": "Leads"}]}) == [CrmModule("Leads", "Leads", True)]
