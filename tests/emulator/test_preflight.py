"""The preflight (``python -m airflow_provider_zohocrm check``) and the Test button's scope report, against the
emulator over HTTP: it passes on the demo org, fails with one precise ✗ for each missing scope, probes read
scopes when Zoho's token answer lists none, warns about a view that lists records that never bounced, and never
unblocks or tags (the emulator's request counts and record state prove it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    EmulatorBackend,
    EmulatorConfig,
    ZohoCRMEmulator,
    seed_demo_org,
)
from airflow_provider_zohocrm.zoho.auth import FileTokenStore, OAuthCredentials, TokenManager
from airflow_provider_zohocrm.zoho.client import ZohoCRMClient
from airflow_provider_zohocrm.zoho.datacenters import Endpoints, resolve_endpoints
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.preflight import PreflightReport, PreflightRequest, run_preflight
from airflow_provider_zohocrm.zoho.scopes import covers
from tests.conftest import set_connection

#: Exactly what the job needs on Leads, one scope per step, no wildcards.
NEEDED = {
    "org": "ZohoCRM.org.READ",
    "read Leads": "ZohoCRM.modules.Leads.READ",
    "custom views": "ZohoCRM.settings.custom_views.READ",
    "COQL": "ZohoCRM.coql.READ",
    "Emails related list": "ZohoCRM.modules.emails.READ",
    "unblock Leads": "ZohoCRM.send_mail.Leads.CREATE",
    "tag Leads": "ZohoCRM.settings.tags.ALL",
}
COQL = "select id from Leads where Email_Bounce_Status = 'Temporary'"
NEVER_CALLED = ("unblock_single", "unblock_bulk", "add_tags")


@pytest.fixture
def demo() -> Iterator[ZohoCRMEmulator]:
    backend = EmulatorBackend(EmulatorConfig())
    seed_demo_org(backend, n_bounced=260)
    with ZohoCRMEmulator(backend) as em:
        yield em


def _hook(
    monkeypatch: pytest.MonkeyPatch, em: ZohoCRMEmulator, tmp_path: Path, scopes: list[str] | None = None
) -> ZohoCRMHook:
    if scopes is not None:
        em.backend.refresh_token = em.backend.add_refresh_token(em.backend.client_id, scopes=scopes)
    set_connection(monkeypatch, em)
    return ZohoCRMHook(token_store=FileTokenStore(tmp_path / f"tokens-{len(scopes or [])}"))


@dataclass(frozen=True)
class _Settings:
    """The connection settings the preflight reads, without the hook."""

    endpoints: Endpoints
    api_version: str = "v8"


def _client(em: ZohoCRMEmulator, tmp_path: Path) -> tuple[ZohoCRMClient, _Settings]:
    """A protocol client on the emulator, built the way a script without Airflow builds it."""
    b = em.backend
    endpoints = resolve_endpoints("us", em.url, em.url)
    session = requests.Session()
    tokens = TokenManager(
        OAuthCredentials(b.client_id, b.client_secret, b.refresh_token),
        endpoints,
        session,
        store=FileTokenStore(tmp_path / "client-tokens"),
        timeout=(5.0, 5.0),
    )
    return ZohoCRMClient(tokens, session, timeout=(5.0, 5.0)), _Settings(endpoints)


def _statuses(report: PreflightReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def _assert_read_only(em: ZohoCRMEmulator, before: dict[str, object]) -> None:
    requests = em.backend.stats["requests"]
    assert all(requests.get(endpoint, 0) == 0 for endpoint in NEVER_CALLED), requests
    assert em.backend.records("Leads") == before


def test_passes_on_the_demo_org_counts_the_view_and_changes_nothing(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = demo.backend.records("Leads")
    report = _hook(monkeypatch, demo, tmp_path).preflight(
        module="Leads",
        view="bounced LEADS",  # as a person types it
        needs_person_tag="Bounce: needs a person",
        verify="emails",
        count=True,
        sample=3,
    )
    assert report.ok, report.render()
    assert report.view_id == BOUNCED_VIEW_ID
    assert report.record_count == len(demo.backend.view_ids(BOUNCED_VIEW_ID)) and report.record_count_exact
    assert set(_statuses(report)) >= set(NEEDED)
    assert demo.backend.stats["requests"]["emails"] >= 3
    assert demo.backend.stats["requests"]["org"] == 1
    _assert_read_only(demo, before)
    text = report.render()
    assert "✗" not in text and "✓ org" in text and "All checks passed." in text


@pytest.mark.parametrize("missing", sorted(NEEDED))
def test_a_token_without_one_scope_fails_exactly_that_step_with_the_fix(
    missing: str, demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = demo.backend.records("Leads")
    scopes = [scope for step, scope in NEEDED.items() if step != missing]
    source = {"coql_query": COQL} if missing == "COQL" else {"view": "Bounced leads"}
    report = _hook(monkeypatch, demo, tmp_path, scopes).preflight(
        verify="emails",
        needs_person_tag="Needs a person",
        **source,
    )
    statuses = _statuses(report)
    assert not report.ok
    assert [c.name for c in report.failures] == [missing], report.render()
    assert NEEDED[missing] in report.check(missing).fix
    assert statuses[missing] == "fail"
    _assert_read_only(demo, before)


def test_the_command_exits_1_and_prints_the_fix(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scopes = [s for step, s in NEEDED.items() if step != "unblock Leads"]
    demo.backend.refresh_token = demo.backend.add_refresh_token(demo.backend.client_id, scopes=scopes)
    conn = set_connection(monkeypatch, demo)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_CONN_ZOHOCRM_DEFAULT": json.dumps(conn),
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path),
    }
    args = [
        sys.executable,
        "-m",
        "airflow_provider_zohocrm",
        "check",
        "--module",
        "Leads",
        "--view",
        "Bounced leads",
    ]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "✗ unblock Leads" in proc.stdout
    assert "ZohoCRM.send_mail.Leads.CREATE or ZohoCRM.modules.Leads.UPDATE" in proc.stdout
    assert "✓ custom views" in proc.stdout and BOUNCED_VIEW_ID in proc.stdout
    assert "Skipping masking" not in proc.stdout + proc.stderr
    bad = subprocess.run(
        [*args[:4], "--module", "leads"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "'Leads'" in bad.stderr
    assert all(demo.backend.stats["requests"].get(e, 0) == 0 for e in NEVER_CALLED)


def test_without_scopes_in_the_token_answer_reads_are_probed_and_writes_unverified(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = EmulatorBackend(EmulatorConfig(scope_in_token_answer=False))
    seed_demo_org(backend, n_bounced=30)
    backend.refresh_token = backend.add_refresh_token(
        backend.client_id, scopes=[s for step, s in NEEDED.items() if step != "COQL"]
    )
    with ZohoCRMEmulator(backend) as em:
        report = _hook(monkeypatch, em, tmp_path).preflight(needs_person_tag="Needs a person")
        statuses = _statuses(report)
        assert statuses["scopes in the token"] == "warn"
        assert statuses["read Leads"] == statuses["org"] == "ok"
        assert statuses["COQL"] == "warn"  # probed, refused, and not needed by this run
        assert statuses["unblock Leads"] == statuses["tag Leads"] == "unverified"
        assert report.ok, report.render()
        assert backend.stats["requests"]["coql"] == 1
        assert all(backend.stats["requests"].get(e, 0) == 0 for e in NEVER_CALLED)


def test_warns_when_the_view_lists_records_that_never_bounced(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = demo.backend
    clean = [
        rid for rid, rec in backend.records("Leads").items() if rid not in backend.view_ids(BOUNCED_VIEW_ID)
    ]
    backend.add_view("Leads", "6000000039999", "Every lead", criteria=lambda rec: True)
    report = _hook(monkeypatch, demo, tmp_path).preflight(
        view="Every lead", sample=len(backend.records("Leads"))
    )
    emails = report.check("Emails related list")
    assert emails.status == "warn" and "verify='emails'" in emails.fix
    assert any(rid in emails.detail for rid in clean)
    assert report.ok  # a warning, not a failure


def test_the_whole_module_source_reads_with_coql_and_expects_records_that_never_bounced(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with_email = [rid for rid, rec in demo.backend.records("Leads").items() if rec["fields"].get("Email")]
    report = _hook(monkeypatch, demo, tmp_path).preflight(all_records=True, count=True, sample=50)
    assert report.ok, report.render()
    assert report.record_count == len(with_email) and report.record_count_exact
    assert report.check("COQL").status == report.check("read Leads").status == "ok"
    assert report.check("Emails related list").status == "ok"  # clean records are normal here, no warning
    assert demo.backend.stats["requests"]["emails"] >= 50
    assert all(demo.backend.stats["requests"].get(e, 0) == 0 for e in NEVER_CALLED)


def test_an_unknown_view_names_the_views_that_exist(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = _hook(monkeypatch, demo, tmp_path).preflight(view="Bounced people")
    views = report.check("custom views")
    assert views.status == "fail" and "Bounced leads" in views.detail
    assert demo.backend.stats["requests"].get("emails", 0) == 0  # nothing sampled from an unknown view


@pytest.mark.parametrize(
    "kwargs",
    [
        {"module": "leads"},
        {"view": "x", "coql_query": COQL},
        {"coql_query": "select id from Leads limit 5"},
        {"verify": "everything"},
        {"needs_person_tag": "a,b"},
        {"sample": -1},
    ],
)
def test_bad_input_is_refused_before_any_call(
    kwargs: dict[str, object], demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ZohoValidationError):
        _hook(monkeypatch, demo, tmp_path).preflight(**kwargs)  # type: ignore[arg-type]
    assert demo.backend.stats["requests"]["token"] == 0


def test_the_test_button_reports_missing_scopes_with_two_calls(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ok, message = _hook(monkeypatch, demo, tmp_path).test_connection()
    assert ok, message
    assert "Connected to Zoho CRM org" in message and "every module" in message

    scopes = ["ZohoCRM.org.READ", "ZohoCRM.modules.Contacts.READ", "ZohoCRM.modules.Leads.READ"]
    demo.backend.reset_stats()
    ok, message = _hook(monkeypatch, demo, tmp_path, scopes).test_connection()
    assert not ok
    assert "✗ unblock" in message and "ZohoCRM.send_mail.{module}.CREATE" in message
    assert "✓ read records: Leads, Contacts" in message
    assert demo.backend.stats["requests"]["token"] == 1 and demo.backend.stats["requests"]["org"] == 1
    assert sum(demo.backend.stats["requests"].values()) == 2


@pytest.mark.parametrize(
    ("granted", "needed", "expected"),
    [
        ("ZohoCRM.modules.ALL", "ZohoCRM.modules.Leads.READ", True),
        ("ZohoCRM.modules.READ", "ZohoCRM.modules.emails.READ", True),
        ("ZohoCRM.modules.Leads.ALL", "ZohoCRM.modules.Leads.CREATE", True),
        ("ZohoCRM.modules.Leads.WRITE", "ZohoCRM.modules.Leads.UPDATE", True),
        ("ZohoCRM.modules.Leads.WRITE", "ZohoCRM.modules.Leads.READ", False),
        ("ZohoCRM.modules.Contacts.READ", "ZohoCRM.modules.Leads.READ", False),
        ("ZohoCRM.send_mail.all.CREATE", "ZohoCRM.send_mail.Leads.CREATE", True),
        ("ZohoCRM.settings.ALL", "ZohoCRM.settings.custom_views.READ", True),
        ("zohocrm.settings.tags.all", "ZohoCRM.settings.tags.ALL", True),
        ("ZohoCRM.settings.ALL", "ZohoCRM.org.READ", False),
        ("ZohoCRM.modules.ALL", "ZohoCRM.send_mail.Leads.CREATE", False),
        ("ZohoCRM.coql.READ", "ZohoCRM.coql.READ", True),
        ("ZohoCRM.org.ALL", "ZohoCRM.org.READ", True),
    ],
)
def test_scope_wildcards(granted: str, needed: str, expected: bool) -> None:
    assert covers(granted, needed) is expected


def test_the_preflight_runs_on_a_protocol_client_without_the_hook(
    demo: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """``zoho.preflight`` is a function of a client and the connection's settings: no hook, no connection."""
    client, settings = _client(demo, tmp_path)
    request = PreflightRequest.checked(view="Bounced leads", count=True, sample=2)
    report = run_preflight(client, settings, request, conn_id="script")
    assert report.ok, report.render()
    assert report.view_id == BOUNCED_VIEW_ID
    assert (
        report.record_count == len(demo.backend.view_ids(BOUNCED_VIEW_ID)) > 200 and report.record_count_exact
    )
    assert report.render().startswith("Zoho CRM preflight for connection 'script'")
    assert demo.backend.stats["requests"]["emails"] >= 2
    assert all(demo.backend.stats["requests"].get(e, 0) == 0 for e in NEVER_CALLED)


def test_first_page_helpers_read_one_page_with_one_call(demo: ZohoCRMEmulator, tmp_path: Path) -> None:
    client, _settings = _client(demo, tmp_path)
    in_view = demo.backend.view_ids(BOUNCED_VIEW_ID)
    page = client.records_page("Leads", cvid=BOUNCED_VIEW_ID, per_page=200)
    assert len(page.ids) == 200 and set(page.ids) <= set(in_view) and page.more
    assert demo.backend.stats["requests"]["records"] == 1
    one = client.records_page("Leads", per_page=1)
    assert len(one.ids) == 1 and one.ids[0] in demo.backend.records("Leads") and one.more
    temporary = [  # what the COQL query selects, read from the records
        rid
        for rid, rec in demo.backend.records("Leads").items()
        if rec["fields"].get("Email_Bounce_Status") == "Temporary"
    ]
    first = client.coql_page(COQL, limit=5)
    assert len(first.ids) == 5 and set(first.ids) <= set(temporary) and first.more
    whole = client.coql_page(COQL, limit=2000)
    assert sorted(whole.ids) == sorted(temporary) and not whole.more
    none = client.coql_page("select id from Leads where Email = 'nobody@example.invalid'", limit=10)
    assert none.ids == [] and not none.more
    assert demo.backend.stats["requests"]["coql"] == 3 and demo.backend.stats["requests"]["records"] == 2
    with pytest.raises(ZohoValidationError):
        client.records_page("Leads", per_page=201)
    with pytest.raises(ZohoValidationError):
        client.coql_page(COQL, limit=0)
    assert demo.backend.stats["requests"]["coql"] == 3 and demo.backend.stats["requests"]["records"] == 2


def test_a_token_cache_directory_that_is_not_private_is_the_connections_one_failure(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-cache"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    set_connection(monkeypatch, demo, token_cache_dir=str(shared))
    report = ZohoCRMHook().preflight(view="Bounced leads")
    assert [(c.name, c.status) for c in report.checks] == [("connection", "fail")]
    assert str(shared) in report.checks[0].detail and "must be 0700" in report.checks[0].detail
    ok, message = ZohoCRMHook().test_connection()
    assert not ok and str(shared) in message
    assert sum(demo.backend.stats["requests"].values()) == 0
