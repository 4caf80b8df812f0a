"""The four credential failures a first night meets (a wrong client secret, a revoked refresh token, a connection
in the wrong data center, a missing scope), against the emulator over HTTP. Each names its cause and its fix in
the first line a person reads: the exception's first line (``<cause> Fix: <fix>``), the preflight's ✗ line and
its ``fix:`` line (never "See the message"), and, in a task, one ERROR line of the hook with the same text, the
full traceback only at DEBUG and the raised one cut at the client."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.zoho.auth import FileTokenStore
from airflow_provider_zohocrm.zoho.errors import (
    ZohoConfigError,
    ZohoCRMError,
    ZohoInvalidClientError,
    ZohoRefreshTokenError,
    ZohoScopeError,
)
from tests.conftest import set_connection
from tests.emulator.test_data_centers import RouteToEmulator, zoho_connection

WITHOUT_ORG_SCOPE = ["ZohoCRM.modules.Leads.READ", "ZohoCRM.coql.READ", "ZohoCRM.settings.modules.READ"]


def _wrong_secret(em: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tokens: Path) -> ZohoCRMHook:
    conn = set_connection(monkeypatch, em)
    conn["password"] = "not-the-secret"
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", json.dumps(conn))
    return ZohoCRMHook(token_store=FileTokenStore(tokens))


def _revoked(em: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tokens: Path) -> ZohoCRMHook:
    set_connection(monkeypatch, em)
    em.backend.revoke_refresh_token(em.backend.refresh_token)
    return ZohoCRMHook(token_store=FileTokenStore(tokens))


def _wrong_data_center(em: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tokens: Path) -> ZohoCRMHook:
    em.backend.config.advertised_api_domain = "https://www.zohoapis.eu"  # the org lives in the EU
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", zoho_connection(em, "us"))
    return ZohoCRMHook(token_store=FileTokenStore(tokens), adapter=RouteToEmulator(em.url))


def _missing_scope(em: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tokens: Path) -> ZohoCRMHook:
    em.backend.refresh_token = em.backend.add_refresh_token(em.backend.client_id, scopes=WITHOUT_ORG_SCOPE)
    set_connection(monkeypatch, em)
    return ZohoCRMHook(token_store=FileTokenStore(tokens))


#: (the failure, its exception type, the ✗ step, a piece of the cause, the fix that must follow "Fix: ")
CASES: dict[str, tuple[Callable[..., ZohoCRMHook], type[ZohoCRMError], str, str, str]] = {
    "wrong client secret": (
        _wrong_secret,
        ZohoInvalidClientError,
        "access token",
        "rejected the connection's client ID or secret (invalid_client)",
        "Copy the client ID and secret of your Self Client from the Zoho API console into the connection's"
        " login and password",
    ),
    "revoked refresh token": (
        _revoked,
        ZohoRefreshTokenError,
        "access token",
        "Zoho rejected the connection's refresh token (invalid_code)",
        "Generate a new refresh token with this client (README: 'Getting a refresh token') and put it in the"
        " connection's extra refresh_token.",
    ),
    "wrong data center": (
        _wrong_data_center,
        ZohoConfigError,
        "access token",
        "The refresh token belongs to the 'eu' data center, not to 'us', the connection's data_center",
        "In the connection's extra, set data_center to 'eu'.",
    ),
    "missing scope": (
        _missing_scope,
        ZohoScopeError,
        "org",
        "the connection's refresh token lacks the scope it needs",
        "Generate a new refresh token whose scopes include ZohoCRM.org.READ",
    ),
}

#: The preflight's own words where it judges the step itself (a read step refused for its scope).
PREFLIGHT_CAUSE = {"missing scope": "Zoho refused: the token lacks ZohoCRM.org.READ"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_exception_s_first_line_is_the_cause_and_the_fix(
    case: str, emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make, kind, _, cause, fix = CASES[case]
    hook = make(emulator, monkeypatch, tmp_path / "tokens")
    with pytest.raises(kind) as raised:
        hook.get_org()
    first = str(raised.value).splitlines()[0]
    assert cause in first and f"Fix: {fix}" in first, first
    assert first.index(cause) < first.index("Fix: ")
    assert emulator.backend.stats["requests"]["org"] == (1 if case == "missing scope" else 0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_preflight_s_cross_says_the_cause_and_its_fix_says_what_to_do(
    case: str, emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make, _, step, cause, fix = CASES[case]
    cause = PREFLIGHT_CAUSE.get(case, cause)
    report = make(emulator, monkeypatch, tmp_path / "tokens").preflight(module="Leads", all_records=True)
    assert not report.ok
    failed = report.failures[0]
    assert failed.name == step, report.render()
    assert cause in failed.detail and "Fix:" not in failed.detail, failed.detail
    assert failed.fix.startswith(fix) or fix in failed.fix, failed.fix
    assert "See the message" not in report.render()
    # the rendered checklist: the ✗ line, then its fix on the next line
    lines = report.render().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"✗ {step}:"))
    assert cause in lines[at] and lines[at + 1].strip().startswith("fix: ")


@pytest.mark.parametrize("case", sorted(CASES))
def test_in_a_task_the_hook_logs_one_error_line_and_keeps_the_traceback_at_debug(
    case: str,
    emulator: ZohoCRMEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    make, kind, _, cause, fix = CASES[case]
    hook = make(emulator, monkeypatch, tmp_path / "tokens")
    records = _Records()
    hook.client.failure_log = _logger(records)  # the hook's own is Airflow's structlog logger
    with pytest.raises(kind) as raised:
        hook.client.request("GET", "org", purpose="org")
    # a second call (a parallel batch, a retry in the task) adds no second line
    with pytest.raises(ZohoCRMError):
        hook.client.request("GET", "org", purpose="org")
    errors = [r for r in records.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    line = errors[0].getMessage()
    assert (
        line.startswith("Zoho CRM connection 'zohocrm_default': ") and cause in line and f"Fix: {fix}" in line
    )
    assert errors[0].exc_info is None  # the line, not a traceback
    debug = [r for r in records.records if r.levelno == logging.DEBUG and r.exc_info]
    assert debug, "the full traceback is logged at DEBUG"
    # the raised traceback stops at the client: no frame of the token manager or of tenacity
    files = [frame.filename for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert not [f for f in files if f.endswith(("zoho/auth.py", "zoho/client.py")) or "tenacity" in f], files


def test_a_missing_scope_the_caller_expects_is_not_logged(
    emulator: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The module check (zoho/modules.py) runs without ZohoCRM.settings.modules.READ by design: no ERROR line."""
    from airflow_provider_zohocrm.zoho.modules import list_modules_or_none

    emulator.backend.refresh_token = emulator.backend.add_refresh_token(
        emulator.backend.client_id, scopes=["ZohoCRM.org.READ"]
    )
    set_connection(monkeypatch, emulator)
    hook = ZohoCRMHook(token_store=FileTokenStore(tmp_path / "t"))
    records = _Records()
    hook.client.failure_log = _logger(records)
    assert list_modules_or_none(hook.client) is None
    assert emulator.backend.stats["requests"]["modules"] == 1
    assert [r.getMessage() for r in records.records if r.levelno >= logging.ERROR] == []


def _logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"test_credential_failures.{id(handler)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
