"""One set of param rules (zoho/params.py): a test per rule. The operator, the DAG's sources, the preflight and
the CLI all parse through these functions, so each rule is tested here once."""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_zohocrm.zoho import params, sources
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.params import refuse_unknown_keys

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def refused(parse: Any, value: Any, *args: Any) -> str:
    with pytest.raises(ZohoValidationError) as info:
        parse(value, *args)
    return str(info.value)


# -- VERIFY_MODES: one definition ----------------------------------------------------------------------------------


def test_every_entry_point_uses_the_one_set_of_verify_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert params.VERIFY_MODES == ("none", "emails", "sweep")
    assert sources.VERIFY_MODES is params.VERIFY_MODES
    from airflow_provider_zohocrm import __main__ as cli

    seen: dict[str, Any] = {}
    real_add = argparse._ActionsContainer.add_argument

    def add_argument(self: Any, *args: Any, **kwargs: Any) -> Any:
        if "--verify" in args:
            seen["choices"] = kwargs.get("choices")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(argparse._ActionsContainer, "add_argument", add_argument)
    cli._add_check(argparse.ArgumentParser().add_subparsers())
    assert seen["choices"] is params.VERIFY_MODES


# -- parse_flag (dry_run) -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), (1, True), (0, False)]
    + [(w, True) for w in ("true", "TRUE", " yes ", "1", "on")]
    + [(w, False) for w in ("false", "False", " no", "0", "OFF")],
)
def test_flag_takes_booleans_and_the_usual_spellings(value: Any, expected: bool) -> None:
    assert params.parse_flag(value, "dry_run") is expected


@pytest.mark.parametrize("value", ["", "  ", "ture", "y", "n", 2, -1, None, 0.5, [], "None"])
def test_flag_refuses_anything_else_naming_the_value(value: Any) -> None:
    # "" is refused: a template that rendered to nothing must not turn a dry run into a live one
    assert repr(value) in refused(params.parse_flag, value, "dry_run")


# -- parse_verify ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("none", "none"), (" Emails ", "emails"), ("SWEEP", "sweep")]
)
def test_verify_is_one_of_the_modes_case_and_spaces_ignored(value: str, expected: str) -> None:
    assert params.parse_verify(value) == expected


@pytest.mark.parametrize("value", ["email", "", None, 1, "all"])
def test_verify_refuses_other_values(value: Any) -> None:
    assert "verify must be one of none, emails, sweep" in refused(params.parse_verify, value)


# -- parse_min_hours ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0.0), (24, 24.0), (1.5, 1.5), ("24", 24.0), (" 0.5 ", 0.5)]
)
def test_min_hours_is_a_number_of_hours_from_zero(value: Any, expected: float) -> None:
    assert params.parse_min_hours(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", -0.01, math.nan, math.inf, "nan", "soon", True, None, [24]])
def test_min_hours_refuses_negative_non_finite_and_non_numbers(value: Any) -> None:
    assert "min_hours_since_bounce" in refused(params.parse_min_hours, value)


# -- parse_max_email_checks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("None", None), ("null", None), ("", None), (1, 1), (500, 500), ("7", 7), (" 7 ", 7)],
)
def test_max_email_checks_is_a_count_from_one_or_no_limit(value: Any, expected: int | None) -> None:
    assert params.parse_max_email_checks(value) == expected


@pytest.mark.parametrize("value", [0, "0", -3, True, False, 1.5, "many", [1]])
def test_max_email_checks_refuses_zero_negative_and_non_integers(value: Any) -> None:
    # 0 is refused everywhere (it was allowed by the operator, refused by the DAG's sources)
    assert "max_email_checks" in refused(params.parse_max_email_checks, value)


# -- parse_emails_options --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verify", ["none", "sweep"])
@pytest.mark.parametrize(("hours", "checks"), [(None, None), (0, None), ("0", "None"), (0.0, ""), (None, 0)])
def test_emails_options_left_unset_are_fine_in_other_modes(verify: str, hours: Any, checks: Any) -> None:
    assert params.parse_emails_options(verify, hours, checks) == (0.0, None)


@pytest.mark.parametrize("verify", ["none", "sweep"])
@pytest.mark.parametrize(
    ("hours", "checks", "name"), [(24, None, "min_hours_since_bounce"), (0, 10, "max_email_checks")]
)
def test_emails_options_set_in_another_mode_are_refused_when_strict_else_ignored(
    verify: str, hours: Any, checks: Any, name: str
) -> None:
    with pytest.raises(ZohoValidationError, match=f"{name} needs verify 'emails'"):
        params.parse_emails_options(verify, hours, checks)
    assert params.parse_emails_options(verify, hours, checks, strict=False) == (0.0, None)
    assert params.emails_options_ignored(verify, hours, checks) == [name]
    assert params.emails_options_ignored("emails", hours, checks) == []


@pytest.mark.parametrize(("hours", "checks"), [(-1, None), ("soon", None), (None, "many"), (None, 0.5)])
def test_emails_options_are_checked_even_where_ignored(hours: Any, checks: Any) -> None:
    with pytest.raises(ZohoValidationError):
        params.parse_emails_options("none", hours, checks, strict=False)


def test_emails_options_are_parsed_for_emails() -> None:
    assert params.parse_emails_options("emails", "24", "10") == (24.0, 10)
    with pytest.raises(ZohoValidationError, match="max_email_checks"):
        params.parse_emails_options("emails", 0, 0)


# -- parse_tag ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), ("  ", None), (" fix me ", "fix me")]
)
def test_tag_is_a_trimmed_name_or_none(value: Any, expected: str | None) -> None:
    assert params.parse_tag(value) == expected


@pytest.mark.parametrize("value", [5, ["a"], "a,b", "x" * 26, "bad\nname"])
def test_tag_refuses_what_zoho_would(value: Any) -> None:
    assert "needs_person_tag" in refused(params.parse_tag, value)


# -- parse_cvid, parse_batch_size, parse_max_parallel, parse_record_ids ----------------------------------------------


def test_cvid_is_digits_only() -> None:
    assert params.parse_cvid(" 6000000031001 ") == params.parse_cvid(6000000031001) == "6000000031001"
    for bad in ("Bounced leads", "1 or 1=1", "", True, None, "1" * 31):
        assert "cvid must be the numeric id" in refused(params.parse_cvid, bad)


def test_batch_size_is_one_to_five_hundred_as_number_or_digits() -> None:
    assert (params.parse_batch_size(1), params.parse_batch_size("500"), params.parse_batch_size(" 100 ")) == (
        1,
        500,
        100,
    )
    for bad in (0, 501, "501", "many", True, None):
        refused(params.parse_batch_size, bad)


def test_max_parallel_is_a_whole_number_from_one() -> None:
    assert params.parse_max_parallel(4) == 4
    for bad in (0, -1, True, 2.0, "4", None):
        assert "max_parallel must be a whole number >= 1" in refused(params.parse_max_parallel, bad)


def test_record_ids_rendered_as_text_become_a_list() -> None:
    assert params.parse_record_ids("11, 22,,33 ") == ["11", "22", "33"]
    assert params.parse_record_ids("11") == ["11"]
    assert params.parse_record_ids(None) == []
    assert params.parse_record_ids(["1", "2"]) == ["1", "2"]


# -- unknown keys: a misspelled key is refused, never ignored (issue 21) ---------------------------------------------


def _dag_param_names() -> list[str]:
    """The example DAG's declared params: what check_params passes as the known keys."""
    from airflow_provider_zohocrm.example_dags import zoho_unblock_bounced_emails as module

    return list(module.dag.params.keys())


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("dryrun", "dry_run"),
        ("dry-run", "dry_run"),
        ("DryRun", "dry_run"),
        ("dry run", "dry_run"),
        ("DRY_RUN", "dry_run"),
        ("BATCH-SIZE", "batch_size"),
        ("dry_rn", "dry_run"),
        ("unblock_field", "unblock_fields"),
        ("UnblockFields", "unblock_fields"),
        ("needs_person_tags", "needs_person_tag"),
        ("batchsize", "batch_size"),
        ("sorces", "sources"),
        ("verfy", "verify"),
        ("min_hour_since_bounce", "min_hours_since_bounce"),
        ("max_email_check", "max_email_checks"),
        ("modul", "module"),
        (
            "needs-person-tag",
            "needs_person_tag",
        ),  # conn_id is no param: the org is fixed when the DAG is built
        ("coql_querry", "coql_query"),
    ],
)
def test_a_misspelled_dag_param_is_refused_naming_the_key_it_resembles(typo: str, meant: str) -> None:
    known = _dag_param_names()
    assert meant in known  # the test's own premise: the DAG declares the intended param
    with pytest.raises(ZohoValidationError) as info:
        refuse_unknown_keys({"cvid": "1", typo: True}, known, "The run's conf")
    message = str(info.value)
    assert f"{typo!r} (did you mean {meant!r}?)" in message
    assert "nothing was run" in message


def test_known_keys_pass_and_a_key_unlike_any_is_named_without_a_guess() -> None:
    known = _dag_param_names()
    refuse_unknown_keys(dict.fromkeys(known), known, "The run's conf")  # every declared param is accepted
    with pytest.raises(ZohoValidationError) as info:
        refuse_unknown_keys({"zzz": 1}, known, "The run's conf")
    assert "'zzz';" in str(info.value) and "did you mean" not in str(info.value)


def test_a_source_key_typo_is_refused_with_its_close_match() -> None:
    from airflow_provider_zohocrm.zoho.sources import validate_source

    with pytest.raises(ZohoValidationError) as info:
        validate_source({"module": "Leads", "all": True, "verfy": "none"}, 0, defaults={}, now=NOW)
    assert "source #1 has unknown key(s) 'verfy' (did you mean 'verify'?)" in str(info.value)
