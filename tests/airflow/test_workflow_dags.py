"""The workflow (airflow_provider_zohocrm.workflows) in real Airflow against the emulator: the state machine's
guarantees (a failed group, a dry run, templates, addresses), the operator's XCom input, and the two extra
examples. Issues 25, 27 (rows 1 and 7) and 31 (rows 1-3)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import Fault, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import seed_email_org
from tests.conftest import REPO, assert_no_secrets, dag_run_state, emulator_conn_env, run_dag_test

pytestmark = pytest.mark.airflow_run

TEST_DAGS = REPO / "tests" / "dags" / "workflow"
EXAMPLES = REPO / "airflow_provider_zohocrm" / "example_dags"
STDOUT_RE = re.compile(r"^\S+ \[\w+\s*\] (.*?) \[task\.stdout\]$", re.MULTILINE)


def run(
    home: Path,
    em: ZohoCRMEmulator,
    tmp_path: Path,
    conf: dict[str, Any],
    *,
    dag_id: str,
    dags: Path = TEST_DAGS,
    conn_env: dict[str, str] | None = None,
    **env: str,
) -> str:
    proc = run_dag_test(
        home,
        conf,
        {
            **(conn_env or emulator_conn_env(em)),
            "TMPDIR": str(tmp_path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            **env,
        },
        dag_id=dag_id,
    )
    output = STDOUT_RE.sub(r"\1", proc.stdout + proc.stderr)
    assert_no_secrets(output, em)
    return output


def task_states(home: Path, dag_id: str) -> dict[tuple[str, int], str]:
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (dag_id,)
        ).fetchone()[0]
        rows = db.execute(
            "select task_id, map_index, state from task_instance where dag_id=? and run_id=?",
            (dag_id, run_id),
        ).fetchall()
    return {(t, int(i)): str(s) for t, i, s in rows}


def test_operator_addresses_from_an_upstream_xcomarg_resolve_at_run_time(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Issue 27 row 7: ``addresses=<task>.output`` failed with "addresses must be an object …, not
    PlainXComArg". It resolves at run time and sets the dependency (the operator's ``addresses`` data is
    resolved in execute, outside its template fields)."""
    org = seed_email_org(emulator.backend, counts={"old_soft": 2})
    ids = org.ids["old_soft"]
    addresses = {rid: {"Email": emulator.backend.record("Leads", rid)["fields"]["Email"]} for rid in ids}
    output = run(
        airflow_home,
        emulator,
        tmp_path,
        {"addresses": addresses, "record_ids": ids},
        dag_id="wf_operator_xcom_addresses",
    )
    assert dag_run_state(output) == "success", output[-5000:]
    assert "PlainXComArg" not in output
    for rid in ids:
        assert len(emulator.backend.unblock_events("Leads", rid)) == 1
    # the addresses came from the upstream task: the job read no address itself (no COQL call)
    assert emulator.backend.stats["requests"]["coql"] == 0


def variables(home: Path) -> dict[str, str]:
    """Every Airflow Variable of the home, as stored (ciphertext stays ciphertext: byte comparison)."""
    with sqlite3.connect(home / "airflow.db") as db:
        return {str(k): str(v) for k, v in db.execute("select key, val from variable").fetchall()}


def coverage_state(home: Path, dag_id: str) -> dict[str, Any]:
    """The stored coverage of the DAG's one rolling source (its key names the connection, the DAG, the source)."""
    from tests.conftest import _airflow_fernet

    keys = [
        k
        for k in variables(home)
        if k.startswith("zohocrm_coverage_") and not k.startswith("zohocrm_coverage_ckpt_") and dag_id in k
    ]
    assert len(keys) == 1, keys
    raw = variables(home)[keys[0]]
    fernet = _airflow_fernet(home)
    if fernet and raw.startswith("gAAAAA"):  # Airflow encrypted it with its fernet_key
        raw = fernet.decrypt(raw.encode()).decode()
    return dict(json.loads(raw))


def last_asset_extra(home: Path, uri: str = "zohocrm://zohocrm_default/unblocked") -> dict[str, Any]:
    """The extra of the newest event of the asset (the report task's outlet)."""
    with sqlite3.connect(home / "airflow.db") as db:
        row = db.execute(
            "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.uri = ?"
            " order by e.id desc limit 1",
            (uri,),
        ).fetchone()
    assert row, f"no event of {uri}"
    return dict(json.loads(row[0]))


def emails_source(budget: int = 1000) -> dict[str, Any]:
    return {"module": "Leads", "all": True, "verify": "emails", "max_email_checks": budget}


def test_a_failed_group_keeps_no_other_groups_verdicts_from_being_committed_and_the_run_fails(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Issue 25: the report ran on ``none_failed``, so one failed mapped task skipped it and no verdict of the
    run was committed. Now the report runs after every group (``all_done``), commits what exists, then fails."""
    org = seed_email_org(emulator.backend, counts={"old_soft": 40})
    emulator.backend.add_fault(Fault(endpoint="unblock_bulk", action="unknown_code", on_call=1, times=1))
    output = run(
        airflow_home,
        emulator,
        tmp_path,
        {"sources": [emails_source()], "batch_size": 10},
        dag_id="wf_no_retry",
        WF_NOTIFY_DIR=str(tmp_path),
    )
    assert dag_run_state(output) == "failed", output[-5000:]
    states = task_states(airflow_home, "wf_no_retry")
    unblock = sorted(s for (t, _i), s in states.items() if t == "unblock_emails")
    assert unblock == ["failed", "success", "success", "success"], states
    assert states[("report", -1)] == "failed", "the report ran (and failed the run loudly)"
    assert "1 of 4 unblock task(s) failed" in output
    # the report notifier got the report on the failure too
    notified = (tmp_path / "wf_no_retry.txt").read_text()
    assert notified.startswith("--- failed") and "1 of 4 unblock task(s) failed" in notified
    assert "candidate record(s) found" in notified
    unblocked = [r for r in org.ids["old_soft"] if emulator.backend.unblock_events("Leads", r)]
    assert len(unblocked) == 30
    state = coverage_state(airflow_home, "wf_no_retry")
    assert state.get("lease") is None, "the run's claim was released"
    inner = state.get("state", state)
    # the run's verdicts are committed: all 40 records reached a verdict (the failed group's from its
    # checkpoint), so the cycle is complete and the next one started
    assert inner["cycle"] == 2 and inner["covered"] == [], inner


def test_a_dry_run_with_reset_changes_no_stored_state(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Issue 25: ``reset_coverage`` ran before the plan was shown, so a dry run wiped the coverage. A dry run now
    stores nothing: every Airflow Variable is byte-identical before and after it."""
    seed_email_org(emulator.backend, counts={"old_soft": 6, "recent_soft": 4})
    emulator.backend.add_many_records("Leads", 30)
    first = run(airflow_home, emulator, tmp_path, {"sources": [emails_source(15)]}, dag_id="wf_configured")
    assert dag_run_state(first) == "success", first[-5000:]
    before = variables(airflow_home)
    assert any(k.startswith("zohocrm_coverage_") and "wf_configured" in k for k in before), sorted(before)
    dry = run(
        airflow_home,
        emulator,
        tmp_path,
        {"sources": [emails_source(15)], "dry_run": True, "reset_coverage": True},
        dag_id="wf_configured",
    )
    assert dag_run_state(dry) == "success", dry[-5000:]
    after = variables(airflow_home)
    changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
    assert changed == [], changed


SECRET = "s3cret-variable-value"
HOSTILE = ("{{ var.value.secret }}", "{{ 6*7 }}")


@pytest.mark.parametrize("text", HOSTILE)
def test_no_conf_value_is_ever_rendered_as_a_template(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, text: str
) -> None:
    """Issue 27 row 1 / 31: a run's conf set ``needs_person_tag`` to a template and Zoho got its evaluation.
    Every conf field and source key holding a template either reaches Zoho as that literal text or is refused
    by check_params; never evaluated (the mapped tasks render nothing: they read their group from XCom)."""
    org = seed_email_org(emulator.backend, counts={"hard": 2, "old_soft": 2})
    conn_env = {**emulator_conn_env(emulator), "AIRFLOW_VAR_SECRET": SECRET}
    ok = run(
        airflow_home,
        emulator,
        tmp_path,
        {"sources": [emails_source()], "needs_person_tag": text},
        dag_id="wf_configured",
        conn_env=conn_env,
        WF_NOTIFY_DIR=str(tmp_path),
    )
    assert dag_run_state(ok) == "success", ok[-5000:]
    # the asset event: the unblocked ids for a downstream DAG; the notifier got the report
    extra = last_asset_extra(airflow_home)
    assert {m: sorted(ids) for m, ids in extra["unblocked"].items()} == {"Leads": sorted(org.ids["old_soft"])}
    assert extra["counts"]["Leads"]["unblocked"] == 2
    notified = (tmp_path / "wf_configured.txt").read_text()
    assert notified.startswith("--- success") and f"tagged '{text}'" in notified
    for rid in org.ids["hard"]:
        assert emulator.backend.record_tags("Leads", rid) == [text]
    assert SECRET not in ok and "x42" not in ok
    # a source key that reaches Zoho (a view's name) is looked up as that text: unknown, refused before any
    # unblock call, named literally (every other conf field: tests/unit/test_workflow_config.py)
    if text == HOSTILE[1]:
        emulator.backend.reset_stats()
        conf = {"sources": [{"module": "Leads", "view": text}]}
        out = run(airflow_home, emulator, tmp_path, conf, dag_id="wf_configured", conn_env=conn_env)
        assert dag_run_state(out) == "failed", out[-3000:]
        assert "{{ 6*7 }}" in out and "view '42'" not in out
        assert emulator.backend.stats["requests"].get("unblock_bulk", 0) == 0


def test_after_a_verify_emails_run_no_address_is_kept_in_the_metadata_db_or_the_logs(
    emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Issue 31 row 3: every address read stayed in XCom, rendered fields and the task log. Now addresses travel
    sealed to the one task that needs them, and what the run keeps holds ids and outcomes. (An Airflow home of
    its own: other tests put addresses in a run's conf on purpose.) The tasks run under LocalExecutor, each in its
    own process, so each writes the task log file a reader sees in the UI (``dags test`` in one process writes
    none); the files and the run's output are searched with the metadata DB."""
    from airflow_provider_zohocrm.testing import airflow_cli
    from tests.conftest import LeakAudit, airflow_env, dags_test

    airflow_home = tmp_path / "home"
    airflow_cli.migrate(airflow_env(airflow_home))

    org = seed_email_org(
        emulator.backend, counts={k: 3 for k in ("old_soft", "recent_soft", "hard", "never_bounced")}
    )
    addresses = [
        str(r["fields"]["Email"]).lower()
        for r in (emulator.backend.record("Leads", rid) for rid in emulator.backend.records("Leads"))
    ]
    assert len(addresses) == 12
    # the newest bounce of each hard and old soft record quotes its recipient, as mail servers' answers do
    from airflow_provider_zohocrm.testing.emails import bounced, sent

    now = emulator.backend.now()
    for kind, permanent, days in (("hard", True, 6), ("old_soft", False, 5)):
        for rid in org.ids[kind]:
            to = str(emulator.backend.record("Leads", rid)["fields"]["Email"])
            at = now - days * 86400
            reason = f"550 5.1.1 <{to}>: Recipient address rejected: {to} mailbox unavailable"
            status = [sent(), bounced(at + 60, permanent=permanent, reason=reason)]
            emulator.backend.add_email("Leads", rid, sent_at=at, status=status, subject="Quote", to=to)
    with airflow_cli.api_server(airflow_env(airflow_home), parallelism=4) as server:
        proc = dags_test(
            airflow_home,
            "wf_configured",
            {"sources": [emails_source()], "min_hours_since_bounce": 24, "needs_person_tag": "Needs person"},
            {**emulator_conn_env(emulator), **server.executor_env, "TMPDIR": str(tmp_path)},
            dags_folder=TEST_DAGS,
        )
    output = proc.stdout + proc.stderr
    assert dag_run_state(output) == "success", output[-5000:]
    assert (
        sum(len(emulator.backend.unblock_events("Leads", r)) for r in emulator.backend.records("Leads")) == 3
    )
    audit = LeakAudit()
    audit.home = airflow_home
    audit.add_output(output)
    found = [
        (label, address)
        for label, text in audit.sources()
        for address in addresses
        if address in text.lower()
    ]
    assert found == [], found[:5]
    assert audit.scanned["xcom"] > 0 and audit.scanned["rendered_task_instance_fields"] > 0
    # every task wrote its log file (check_params, find_candidates, make_groups, the mapped unblocks, report)
    assert audit.scanned["log_files"] >= 5, audit.scanned
    logs = "\n".join(p.read_text(errors="replace") for p in (airflow_home / "logs").rglob("*") if p.is_file())
    assert "candidate record(s) found" in logs, "the report is in the task logs searched above"
    # the quoting bounce reasons reached the logs, redacted (Zoho's text is data; its addresses are not kept)
    assert "550 5.1.1 <address>: Recipient address rejected: <address> mailbox unavailable" in logs


def test_two_orgs_in_one_file_each_run_against_its_own_connection(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """The two-org example: each DAG's org is fixed when it is built; a run touches its own org only."""
    seed_email_org(emulator.backend, counts={"old_soft": 3})
    with ZohoCRMEmulator() as other:
        seed_email_org(other.backend, module="Contacts", counts={"old_soft": 2})
        conns = {}
        for conn_id, em in (("zohocrm_eu", emulator), ("zohocrm_us", other)):
            conn = em.connection(conn_id)
            conn["extra"].update({"backoff_base": 0.01, "backoff_max": 0.1, "timeout": 10})
            conns[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        for dag_id, em, module, n in (
            ("zoho_unblock_org_eu", emulator, "Leads", 3),
            ("zoho_unblock_org_us", other, "Contacts", 2),
        ):
            out = run(airflow_home, em, tmp_path, {}, dag_id=dag_id, dags=EXAMPLES, conn_env=conns)
            assert dag_run_state(out) == "success", out[-5000:]
            assert sum(len(em.backend.unblock_events(module, r)) for r in em.backend.records(module)) == n
        assert emulator.backend.stats["requests"].get("unblock_bulk", 0) == 1
        assert other.backend.stats["requests"].get("unblock_bulk", 0) == 1


def test_the_task_group_in_your_own_dag_and_your_task_after_it_reads_the_report(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    org = seed_email_org(emulator.backend, counts={"old_soft": 4, "hard": 1})
    out = run(airflow_home, emulator, tmp_path, {}, dag_id="zoho_unblock_in_your_dag", dags=EXAMPLES)
    assert dag_run_state(out) == "success", out[-5000:]
    assert "Unblocked per module: {'Leads': 4}" in out
    assert all(len(emulator.backend.unblock_events("Leads", r)) == 1 for r in org.ids["old_soft"])
