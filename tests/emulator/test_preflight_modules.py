"""The preflight checks the module against the org's modules (``settings/modules``) the way the DAG does:
``--module Leeds --all`` shows ✗ naming ``Leads``, and no ✓ "read Leeds" or "unblock Leeds"; a known module is
✓; a token without ``ZohoCRM.settings.modules.READ`` gets a warning and no call. The emulator's request counts
show what was called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator, seed_demo_org
from airflow_provider_zohocrm.zoho.auth import FileTokenStore
from airflow_provider_zohocrm.zoho.scopes import parse_scopes, token_scopes
from tests.conftest import set_connection

NEVER_CALLED = ("coql", "records", "emails", "custom_views", "unblock_single", "unblock_bulk", "add_tags")


@pytest.fixture
def demo() -> Iterator[ZohoCRMEmulator]:
    backend = EmulatorBackend(EmulatorConfig())
    seed_demo_org(backend, n_bounced=40)
    with ZohoCRMEmulator(backend) as em:
        yield em


def test_the_command_names_leeds_with_leads_and_checks_nothing_of_leeds(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conn = set_connection(monkeypatch, demo)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_CONN_ZOHOCRM_DEFAULT": json.dumps(conn),
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path),
    }
    args = [sys.executable, "-m", "airflow_provider_zohocrm", "check", "--module", "Leeds", "--all"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "✗ module: Unknown module 'Leeds'" in out and "did you mean 'Leads'?" in out, out
    assert "read Leeds" not in out and "unblock Leeds" not in out and "COQL" not in out, out
    requests = demo.backend.stats["requests"]
    assert requests["modules"] == 1
    assert all(requests.get(e, 0) == 0 for e in NEVER_CALLED), requests


def test_a_known_module_is_checked_in_one_call(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    set_connection(monkeypatch, demo)
    report = ZohoCRMHook(token_store=FileTokenStore(tmp_path / "tokens")).preflight(
        module="Contacts", all_records=True
    )
    assert report.check("module").status == "ok", report.render()
    assert "Contacts" in report.check("module").detail
    assert report.check("read Contacts").status == "ok"
    assert demo.backend.stats["requests"]["modules"] == 1


def test_without_the_modules_scope_the_check_is_a_warning_and_no_call(
    demo: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scopes = [s for s in parse_scopes(token_scopes()) if s != "ZohoCRM.settings.modules.READ"]
    demo.backend.refresh_token = demo.backend.add_refresh_token(demo.backend.client_id, scopes=scopes)
    set_connection(monkeypatch, demo)
    report = ZohoCRMHook(token_store=FileTokenStore(tmp_path / "tokens")).preflight(
        module="Leads", all_records=True
    )
    module = report.check("module")
    assert module.status == "warn" and "ZohoCRM.settings.modules.READ" in module.detail, report.render()
    assert report.ok, report.render()
    assert demo.backend.stats["requests"].get("modules", 0) == 0
