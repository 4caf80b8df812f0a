"""No secret leaks: not into DAG-run output, task log files, XComs, Variables, rendered templates, the metadata
DB, exception text or reprs.

The ``leak_audit`` fixture (tests/conftest.py) runs after every test of tests/airflow/test_faults_dag.py,
test_bad_input.py, test_secrets_dags.py and this file; the tests here prove the audit is not vacuous (it catches
planted leaks) and cover reprs and exception texts of every failure path; tests/airflow/test_secrets_dags.py shows
it really read task logs, XComs, rendered fields and the token Variable of a DAG run.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator
from airflow_provider_zohocrm.testing import BOUNCED_VIEW_ID, Fault, ZohoCRMEmulator, seed_demo_org
from airflow_provider_zohocrm.zoho import FileTokenStore, ZohoCRMError
from tests.conftest import (
    TOKEN_CACHE_VARIABLE_PREFIX,
    LeakAudit,
    assert_no_secrets,
    set_connection,
)

pytestmark = pytest.mark.usefixtures("leak_audit")


def test_the_audit_catches_planted_leaks(emulator: ZohoCRMEmulator, tmp_path: Path) -> None:
    backend = emulator.backend
    token = backend.grant_token(
        {
            "grant_type": "refresh_token",
            "client_id": backend.client_id,
            "client_secret": backend.client_secret,
            "refresh_token": backend.refresh_token,
        },
        emulator.url,
    )["access_token"]
    for secret in (backend.client_secret, backend.refresh_token, token):
        audit = LeakAudit()
        audit.watch(emulator)
        audit.add_output(f"some log line {secret} more")
        with pytest.raises(AssertionError, match="leaked"):
            audit.check()
    # in a task log file, and in the metadata DB (a plaintext token in the token-cache Variable)
    home = tmp_path / "home"
    (home / "logs" / "dag_id=x").mkdir(parents=True)
    (home / "logs" / "dag_id=x" / "attempt=1.log").write_text(json.dumps({"event": f"token {token}"}))
    with sqlite3.connect(home / "airflow.db") as db:
        for table in ("xcom", "rendered_task_instance_fields"):
            db.execute(f"create table {table} (value text)")
        db.execute("create table variable (key text, val text, is_encrypted boolean)")
    audit = LeakAudit()
    audit.watch(emulator)
    audit.home = home
    with pytest.raises(AssertionError, match="log file"):
        audit.check()
    (home / "logs" / "dag_id=x" / "attempt=1.log").write_text("clean")
    with sqlite3.connect(home / "airflow.db") as db:
        db.execute(
            "insert into variable values (?, ?, 0)", (TOKEN_CACHE_VARIABLE_PREFIX + "abc", "not-encrypted")
        )
    with pytest.raises(AssertionError, match="not Fernet ciphertext"):
        audit.check()


def _failure_texts(em: ZohoCRMEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """str() and repr() of the exception of every failure path, and the messages logged meanwhile."""
    backend = em.backend
    texts: list[str] = []

    def capture(call: Any) -> None:
        try:
            call()
        except ZohoCRMError as exc:
            texts.extend([str(exc), repr(exc), repr(exc.details), str(exc.__cause__), str(exc.__context__)])
        else:
            texts.append(f"no error {len(texts)}")

    def hook(name: str) -> ZohoCRMHook:
        return ZohoCRMHook(token_store=FileTokenStore(tmp_path / name))

    seed_demo_org(backend, n_bounced=20)
    ids = [str(r) for r in backend.view_ids(BOUNCED_VIEW_ID)]
    set_connection(monkeypatch, em, max_attempts=2)
    for action in ("500", "502", "429", "reset", "html200", "empty200", "missing_data"):
        backend.add_fault(Fault(endpoint="unblock_bulk", action=action, times=2))
        capture(lambda action=action: hook(action).unblock_emails("Leads", ids, ["Email"]))
    capture(lambda: hook("module").unblock_emails("Products", ids, ["Email"]))  # INVALID_MODULE
    scoped = "1000.scopedrefreshtoken0000000000000000.0000"
    backend.add_refresh_token(backend.client_id, scoped, ["ZohoCRM.org.READ"])
    set_connection(monkeypatch, em, refresh_token=scoped)
    capture(lambda: hook("scope").unblock_emails("Leads", ids, ["Email"]))  # OAUTH_SCOPE_MISMATCH
    wrong = set_connection(monkeypatch, em)
    wrong["password"] = "wrong-" + backend.client_secret  # a near miss of the real secret
    monkeypatch.setenv("AIRFLOW_CONN_ZOHOCRM_DEFAULT", json.dumps(wrong))
    capture(lambda: hook("client").get_org())  # invalid_client
    set_connection(monkeypatch, em)
    grant = {
        "grant_type": "refresh_token",
        "client_id": backend.client_id,
        "client_secret": backend.client_secret,
        "refresh_token": backend.refresh_token,
    }
    while "access_token" in backend.grant_token(grant, em.url):
        pass
    capture(lambda: hook("throttled").get_org())  # Access Denied
    backend.advance(3600)
    backend.revoke_refresh_token(backend.refresh_token)
    capture(lambda: hook("revoked").get_org())  # invalid_code
    return texts


def test_exception_texts_and_reprs_of_every_failure_path_carry_no_secret(
    emulator: ZohoCRMEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    leak_audit: LeakAudit,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    set_connection(monkeypatch, emulator)
    store = FileTokenStore(tmp_path / "store")
    hook = ZohoCRMHook(token_store=store)
    hook.get_org()
    token = hook.tokens.get_token()
    op = UnblockEmailOperator(task_id="u", module="Leads", record_ids=["1"])
    objects = [
        hook,
        hook.settings,
        hook.settings.credentials,
        hook.settings.endpoints,
        hook.tokens,
        hook.client,
        hook.client.auth,
        token,
        op,
        hook.tokens.stats,
    ]
    texts = [repr(o) for o in objects] + [str(o) for o in objects] + [f"{o!r:>10}" for o in objects]
    texts += [repr(vars(hook.settings)), repr(vars(hook.client)), repr(hook.get_conn().headers)]
    texts += _failure_texts(emulator, monkeypatch, tmp_path)
    assert not [t for t in texts if t.startswith("no error")], texts
    texts += [r.getMessage() for r in caplog.records]
    texts += [store.load(hook.tokens.key) or ""]
    leak_audit.add_text("reprs, exception texts and logs", "\n".join(texts))
    assert_no_secrets("\n".join(texts), emulator)


def test_hook_refuses_to_load_without_airflows_secret_masker(tmp_path: Path) -> None:
    """apache-airflow-providers-common-compat < 1.22 has no ``mask_secret`` in its ``sdk`` module: the hook must
    fail at import, naming the fix, instead of running with secrets silently unmasked."""
    import subprocess
    import sys

    # An old common-compat, as far as the hook can tell: the real sdk module without mask_secret.
    code = (
        "import sys, types, airflow.providers.common.compat.sdk as real\n"
        "old = types.ModuleType(real.__name__)\n"
        "old.__dict__.update({k: v for k, v in vars(real).items() if k != 'mask_secret'})\n"
        "def lookup(name):\n"
        "    if name == 'mask_secret':\n"
        "        raise AttributeError(name)\n"
        "    return getattr(real, name)\n"
        "old.__getattr__ = lookup\n"
        "sys.modules[real.__name__] = old\n"
        "import airflow_provider_zohocrm.hooks.zohocrm\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path, timeout=120
    )
    assert result.returncode != 0, "the hook imported without a secret masker"
    assert "ImportError" in result.stderr
    assert "apache-airflow-providers-common-compat>=1.22.0" in result.stderr
