"""The workflow's pure parts: the config's rules (the job's own, not a second copy), the first-night rule, the
resolver check, and what a group's task may return."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_zohocrm.workflows import steps
from airflow_provider_zohocrm.workflows.config import UnblockJobConfig
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError


def check(run_params: dict[str, Any], *, run_type: str = "manual", **kw: Any) -> dict[str, Any]:
    config = UnblockJobConfig()
    names = list(config.param_specs())
    params = {**config.params_dict(), **run_params}
    args: dict[str, Any] = {
        "param_names": names,
        "prefix": "",
        "conf_keys": run_params.keys(),
        "known_keys": names,
        "conn_id": "zohocrm_default",
        "allowed_conn_ids": None,
        "dns_options": None,
        "approval_built": True,
        "run_type": run_type,
        "config_names_sources": config.names_sources,
        "max_sources": 1024,
        **kw,
    }
    return steps.check_params(params, **args)


def test_the_config_is_checked_by_the_jobs_own_rules() -> None:
    with pytest.raises(ZohoValidationError, match="batch_size"):
        UnblockJobConfig(batch_size=501)
    with pytest.raises(ZohoValidationError, match="verify"):
        UnblockJobConfig(verify="everything")
    with pytest.raises(ZohoValidationError, match="source #1"):
        UnblockJobConfig(sources=[{"module": "Leads", "view": "x", "cvid": "1"}])
    config = UnblockJobConfig(sources=[{"module": "Leads", "all": True}], needs_person_tag="Needs person")
    assert config.names_sources and config.param_specs()["sources"].default == [
        {"module": "Leads", "all": True}
    ]
    assert "require_approval" not in config.param_specs(approval=False)


def test_a_scheduled_run_of_a_dag_that_names_no_sources_fails_before_any_call() -> None:
    """Issue 29's first night: unpausing the shipped example never goes live by itself."""
    with pytest.raises(steps.RunRefused, match=r"names no sources.*UnblockJobConfig\(sources="):
        check({}, run_type="scheduled")
    # a manual run that gives its sources, or a DAG whose config names them, runs
    assert check({"sources": [{"module": "Leads", "all": True}]}, run_type="scheduled")["sources"]
    # a config that names them: no first-night refusal (the sources rule itself speaks here)
    with pytest.raises(steps.RunRefused, match=r"Set the 'cvid' param"):
        check({}, run_type="scheduled", config_names_sources=True)


def test_the_run_cannot_pick_the_org_or_the_resolver() -> None:
    """Issue 31 rows 1-2: conn_id and dns_options are no params; a conf naming them is refused."""
    for key, value in (("conn_id", "other_org"), ("dns_options", {"nameservers": ["10.20.30.40"]})):
        with pytest.raises(steps.RunRefused, match=f"unknown key.*{key}"):
            check({key: value, "view": "x"})
    # a run may choose only among the connections the DAG's author listed
    allowed = {"allowed_conn_ids": ["org_a", "org_b"], "conn_id": "org_a"}
    names = [*UnblockJobConfig().param_specs(), "conn_id"]
    chosen = check({"conn_id": "org_b", "view": "x"}, param_names=names, known_keys=names, **allowed)
    assert chosen["conn_id"] == "org_b"
    with pytest.raises(steps.RunRefused, match="not one this DAG may use"):
        check({"conn_id": "org_c", "view": "x"}, param_names=names, known_keys=names, **allowed)


@pytest.mark.parametrize(
    "options",
    [
        {"nameservers": ["127.0.0.1 "]},
        {"nameservers": ["https://dns.example/dns-query"]},
        {"nameservers": ["dns.example"]},
        {"nameservers": ["10.20.30.40:6379"]},
        {"port": 0},
        {"port": 65536},
        {"timeout": 0},
        {"timeout": -1},
        {"resolver": "x"},
    ],
)
def test_the_resolver_is_checked_when_the_dag_is_built(options: dict[str, Any]) -> None:
    """Issue 27 row 5 / 31 row 2: nameservers are IP addresses, port 1-65535, timeout > 0, no URL."""
    from airflow_provider_zohocrm.workflows.group import check_dns_options

    with pytest.raises(ValueError, match="dns_options"):
        check_dns_options(options)


def test_a_good_resolver_passes() -> None:
    from airflow_provider_zohocrm.workflows.group import check_dns_options

    assert check_dns_options({"nameservers": ["10.0.0.2", "::1"], "port": 5353, "timeout": 2}) == {
        "nameservers": ["10.0.0.2", "::1"],
        "port": 5353,
        "timeout": 2,
    }


def test_what_a_group_returns_holds_no_address() -> None:
    from airflow_provider_zohocrm.workflows.operators import scrub_addresses

    value = {"details": {"1": {"reason": "550 <kim.lee@example.org>: mailbox full", "to": "a.b@x.org"}}}
    assert "@" not in str(scrub_addresses(value))


def test_approval_on_where_airflow_has_no_hitl_is_refused_at_parse_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_zohocrm.workflows import group

    monkeypatch.setattr(group, "approval_operator", lambda: None)
    with pytest.raises(ValueError, match=r"approval=.on. needs Airflow 3\.1"):
        group.unblock_bounced_emails_dag("x_on", approval="on")
    dag = group.unblock_bounced_emails_dag("x_auto", approval="auto")
    assert "approve_plan" not in dag.task_ids and "require_approval" not in dag.params
    assert "no approval task" in (dag.doc_md or "")


@pytest.mark.parametrize("text", ["{{ var.value.secret }}", "{{ 6*7 }}"])
def test_every_other_conf_field_holding_a_template_is_refused_naming_the_literal_text(text: str) -> None:
    """Issue 27 row 1 / 31 row 3: what check_params does not refuse reaches Zoho as literal text (the airflow test
    shows the tag); everything else is refused here, before any call, quoting the text, never its value."""
    hostile: list[dict[str, Any]] = [
        {"module": text, "cvid": "1"},
        {"coql_query": text},
        {"cvid": text},
        {"verify": text, "view": "x"},
        {"unblock_fields": [text], "view": "x"},
        {"min_hours_since_bounce": text, "view": "x", "verify": "emails"},
        {"max_email_checks": text, "view": "x", "verify": "emails"},
        {"batch_size": text, "view": "x"},
        {"dry_run": text, "view": "x"},
        {"reset_coverage": text, "view": "x"},
        {"reset_coverage": True, "view": "x"},  # the DAG's author did not allow it
        {"require_approval": text, "view": "x"},
        {"check_domain": text, "view": "x", "verify": "emails"},
        {"sources": [{"module": text, "all": True}]},
        {"sources": [{"coql_query": text}]},
        {"sources": [{"all": True, "date_field": text, "days": 1}]},
        {"sources": [{"all": True, "date_field": "Modified_Time", "since": text}]},
        {"sources": [{"all": True, "unblock_fields": [text]}]},
        {"sources": [{"all": True, "verify": text}]},
        {"sources": [{"all": True, "days": text, "date_field": "Modified_Time"}]},
        {"sources": [{"all": True, text: 1}]},
        {"conn_id": text, "view": "x"},
        {"dns_options": {"nameservers": [text]}, "view": "x"},
        {text: 1, "view": "x"},
    ]
    for conf in hostile:
        with pytest.raises(steps.RunRefused) as refused:
            check(conf)
        assert "42" not in str(refused.value).replace(text, ""), conf


def test_reset_coverage_is_the_dag_authors_choice() -> None:
    """docs/security.md: a run may restart rolling coverage only where the DAG was built to allow it."""
    with pytest.raises(steps.RunRefused, match="allow_reset_coverage=True"):
        check({"reset_coverage": True, "view": "x"})
    assert check({"reset_coverage": True, "view": "x"}, allow_reset_coverage=True)["reset_coverage"] is True


def test_each_params_description_says_whether_a_trigger_only_user_may_set_it() -> None:
    """Issue 31 / docs/security.md: the trigger form says who may set each param; reset_coverage follows the
    DAG author's allow_reset_coverage, conn_id (when offered) is one of the author's list."""
    from airflow_provider_zohocrm.workflows.group import unblock_bounced_emails_dag

    for allow in (False, True):
        dag = unblock_bounced_emails_dag(f"x_who_{allow}", allow_reset_coverage=allow)
        for name in dag.params:
            text = dag.params.get_param(name).description or ""
            if name == "reset_coverage":
                assert ("may set it" in text) is allow and "allow_reset_coverage=True" in text, text
            else:
                assert "A trigger-only user may set it" in text and "never a template" in text, (name, text)
    dag = unblock_bounced_emails_dag("x_who_conn", conn_id="org_a", allowed_conn_ids=["org_a", "org_b"])
    text = dag.params.get_param("conn_id").description or ""
    assert "trigger-only user may pick only one of those" in text and "allowed_conn_ids" in text


def test_the_example_dag_docs_param_table_says_who_may_set_each_param() -> None:
    """docs/example-dag.md's param table has a trigger-only column matching docs/security.md."""
    from tests.conftest import REPO

    doc = (REPO / "docs" / "example-dag.md").read_text()
    table = doc.split("## Params", 1)[1].split("\n\n", 2)[1]
    header, _sep, *rows = table.splitlines()
    assert "trigger-only user" in header, header
    by_param = {row.split("|")[1].strip(): row.split("|")[3].strip() for row in rows}
    for names, who in by_param.items():
        expected = "only if the DAG's author allows it" if "reset_coverage" in names else "yes"
        assert who.startswith(expected), (names, who)


def test_a_bounce_reason_or_unblock_answer_quoting_the_recipient_is_redacted_where_it_enters() -> None:
    """Issue 31: Zoho's text names no address once read (the Emails check and the unblock answer), so neither the
    logs nor a plain UnblockEmailOperator's return value hold one."""
    from airflow_provider_zohocrm.zoho.redact import redact_addresses

    assert redact_addresses("550 <kim.lee@example.org>: kim.lee@example.org unknown") == (
        "550 <address>: <address> unknown"
    )
    assert redact_addresses("Host not reachable.") == "Host not reachable."
