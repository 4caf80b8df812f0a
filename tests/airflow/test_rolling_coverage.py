"""Rolling coverage in the example DAG, in real Airflow (``airflow dags test``, one Airflow home so the coverage
Variable persists between runs) against the emulator. The emulator's per-record Emails-read log, its record states
and its credit count are the oracle."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import seed_email_org
from tests.conftest import (
    REPO,
    airflow_env,
    assert_no_secrets,
    dag_run_state,
    emulator_conn_env,
    run_dag_test,
)

pytestmark = pytest.mark.airflow_run

DAG_ID = "zoho_unblock_bounced_emails"
HOUR = 3600.0
STDOUT_RE = re.compile(r"^\S+ \[\w+\s*\] (.*?) \[task\.stdout\]$", re.MULTILINE)
CREDITS_RE = re.compile(r"Credits spent by this run \(client count\): ([\d,]+)\.")
COVERAGE_RE = re.compile(
    r"Coverage of source #1 Leads \(budget ([\d,]+)[^)]*\): read ([\d,]+) of ([\d,]+) records"
)


def run(home: Path, em: ZohoCRMEmulator, tmp_path: Path, conf: dict[str, Any]) -> str:
    em.backend.email_list_reads(clear=True)
    em.backend.reset_stats()
    proc = run_dag_test(home, conf, {**emulator_conn_env(em), "TMPDIR": str(tmp_path)})
    output = STDOUT_RE.sub(r"\1", proc.stdout + proc.stderr)
    assert_no_secrets(output, em)
    return output


def reads(em: ZohoCRMEmulator) -> set[str]:
    return {rid for (_m, rid) in em.backend.email_list_reads()}


def leads_ids(em: ZohoCRMEmulator) -> list[str]:
    return sorted(em.backend.records("Leads"), key=int)


def conf_of(budget: int, **extra: Any) -> dict[str, Any]:
    source = {"module": "Leads", "all": True, "verify": "emails", "max_email_checks": budget}
    return {"sources": [{**source, **extra.pop("source", {})}], **extra}


def test_three_runs_at_a_budget_of_1000_cover_2520_records(
    airflow_home: Path, tmp_path: Path, emulator: ZohoCRMEmulator
) -> None:
    org = seed_email_org(emulator.backend, counts={"old_soft": 20})
    emulator.backend.add_many_records("Leads", 2500)
    every = set(leads_ids(emulator))
    assert len(every) == 2520
    seen: list[set[str]] = []
    for n in range(3):
        output = run(airflow_home, emulator, tmp_path, conf_of(1000, reset_coverage=(n == 0)))
        assert dag_run_state(output) == "success", output[-4000:]
        got = reads(emulator)
        assert len(got) <= 1000
        assert all(count == 1 for count in emulator.backend.email_list_reads().values())
        seen.append(got)
        line = COVERAGE_RE.search(output)
        assert line, output[-3000:]
        assert (line.group(2), line.group(3)) == (f"{len(got):,}", "2,520")
        credits = CREDITS_RE.search(output)
        assert credits, output[-3000:]
        assert int(credits.group(1).replace(",", "")) == emulator.backend.stats["credits_used"]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] | seen[2] == every
    assert "a full cycle takes 3 runs at this budget" in output
    for rid in org.ids["old_soft"]:
        assert len(emulator.backend.unblock_events("Leads", rid)) == 1


def test_a_deferred_record_is_unblocked_on_the_first_run_after_it_is_due(
    airflow_home: Path, tmp_path: Path, emulator: ZohoCRMEmulator
) -> None:
    org = seed_email_org(emulator.backend, counts={"recent_soft": 2})  # soft bounces 2 h ago, first ids
    emulator.backend.add_many_records("Leads", 28)
    ids = leads_ids(emulator)
    young = org.ids["recent_soft"]
    conf = conf_of(10, source={"min_hours_since_bounce": 24})
    output = run(airflow_home, emulator, tmp_path, {**conf, "reset_coverage": True})
    assert dag_run_state(output) == "success", output[-4000:]
    assert reads(emulator) == set(ids[:10]) and set(young) <= set(ids[:10])
    assert all(not emulator.backend.unblock_events("Leads", rid) for rid in young)
    emulator.backend.advance(23 * HOUR)  # 25 h since the bounces: due
    output = run(airflow_home, emulator, tmp_path, conf)
    assert dag_run_state(output) == "success", output[-4000:]
    assert reads(emulator) == {*young, *ids[10:18]}  # the due records first, then the slice goes on
    assert all(len(emulator.backend.unblock_events("Leads", rid)) == 1 for rid in young)


HOLDER = r"""
import json, sys
from dataclasses import replace
from airflow_provider_zohocrm.hooks.coverage_run import source_key
from airflow_provider_zohocrm.hooks.coverage_store import Claim, CoverageStore
store = CoverageStore("zoho_unblock_bounced_emails", source_key({"module": "Leads", "kind": "all"}), settle_seconds=0.05, conn_id="zohocrm_default")
if sys.argv[1] == "claim":
    print(json.dumps(store.claim("scheduled__2026-12-05T00:00:00+00:00").to_json()))
elif sys.argv[1] == "commit":
    claim = Claim.from_json(json.loads(sys.stdin.read()))
    store.commit(claim, replace(claim.state, covered=((1, 2),), read_this_cycle=2))
    print(json.dumps(store.read().to_json()))
else:
    print(json.dumps({"state": store.read().to_json(), "holder": store.holder()}))
"""


def test_a_manual_trigger_next_to_a_running_run_fails_and_moves_no_cursor(
    airflow_home: Path, tmp_path: Path, emulator: ZohoCRMEmulator
) -> None:
    emulator.backend.add_many_records("Leads", 30)
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = airflow_env(airflow_home, PYTHONPATH=str(REPO))

    def holder(step: str, stdin: str = "") -> Any:
        out = subprocess.run(
            [sys.executable, str(script), step],
            input=stdin,
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run(airflow_home, emulator, tmp_path, conf_of(10, reset_coverage=True))
    assert dag_run_state(first) == "success", first[-4000:]
    before = holder("read")["state"]
    claim = holder("claim")  # the scheduled run is running: it holds the source's coverage
    output = run(airflow_home, emulator, tmp_path, conf_of(10))  # the manual trigger
    assert dag_run_state(output) == "failed"
    assert "CoverageBusyError" in output and "scheduled__2026-12-05T00:00:00+00:00" in output
    assert reads(emulator) == set()  # it read no Emails list
    now = holder("read")
    assert now["state"] == before and now["holder"]["run_id"].startswith("scheduled__")
    after = holder("commit", json.dumps(claim))  # the scheduled run ends: its commit, and only it, lands
    assert after["covered"] == [["1", "2"]] and after["read_this_cycle"] == 2
