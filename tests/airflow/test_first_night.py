"""docs/first-night.md, run as written: its ``bash`` blocks become one script, run by a fresh ``bash`` from the
checkout's root with a temporary HOME and TMPDIR, its own ports and no other AIRFLOW_* variables, against the
emulator the page's rehearsal block starts. Blocks the page marks "not run by tests/airflow/test_first_night.py"
(real credentials, the alternative to a block) are left out.

The page's approval step (its section 6) runs twice: first answered ``Reject``, then ``Approve``, with the
emulator's state saved after each (the page's stop block ends the emulator). The oracle is the emulator's record
state: the scheduled run that unpausing starts, the dry run and the rejected run write nothing; the approved run
unblocks exactly the Leads whose Email soft-bounced, each once. And the stop block leaves no Airflow process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, airflow_cli, seed_demo_org

REPO = Path(__file__).resolve().parents[2]  # the checkout
PAGE = REPO / "docs" / "first-night.md"
SKIP_MARK = "<!-- not run by tests/airflow/test_first_night.py"
APPROVAL_SECTION = "## 6."
ANSWER_LINE = "ANSWER=Approve"
DAG_ID = "zoho_unblock_bounced_emails"


def page_blocks(page: str) -> list[tuple[str, str]]:
    """``(section heading, block)`` for every ```bash block of the page that the test runs, in page order."""
    blocks: list[tuple[str, str]] = []
    section = ""
    previous = ""
    for match in re.finditer(r"^(## [^\n]*)$|^```bash\n(.*?)^```", page, re.S | re.M):
        if match.group(1):
            section = match.group(1)
            continue
        before = page[: match.start()].rstrip().splitlines()
        previous = before[-1] if before else ""
        if not previous.startswith(SKIP_MARK):
            blocks.append((section, match.group(2)))
    return blocks


def night_script(page: str, probe_dir: Path) -> str:
    """The page's blocks as one script; the approval section twice (Reject, then Approve), the emulator's stats
    and Leads saved after each answer and before the stop block."""
    blocks = page_blocks(page)
    approval = [block for section, block in blocks if section.startswith(APPROVAL_SECTION)]
    assert approval and any(ANSWER_LINE in block for block in approval), "section 6 lost its answer line"
    first = next(i for i, (section, _) in enumerate(blocks) if section.startswith(APPROVAL_SECTION))
    after = [block for section, block in blocks[first:] if not section.startswith(APPROVAL_SECTION)]
    emulator_url = (
        "URL=$(python -c 'import json, os; "
        'print(json.loads(os.environ["AIRFLOW_CONN_ZOHOCRM_DEFAULT"])["extra"]["api_domain"])\')\n'
    )

    def probe(name: str) -> str:
        return (
            f'curl -sf "$URL/_emulator/stats" > "{probe_dir}/{name}-stats.json"\n'
            f'curl -sf "$URL/_emulator/records/Leads" > "{probe_dir}/{name}-leads.json"\n'
            f'echo "$RUN_ID" > "{probe_dir}/{name}-run-id"\n'
        )

    parts = [block for _, block in blocks[:first]]
    parts.append(emulator_url)
    for answer in ("Reject", "Approve"):
        parts += [block.replace(ANSWER_LINE, f"ANSWER={answer}") for block in approval]
        parts.append(probe(answer.lower()))
    parts += after
    return "\n".join(parts)


def soft_bounced_leads() -> list[str]:
    """The Leads the approved run must unblock, known from the seed alone: the page's emulator
    (``python -m airflow_provider_zohocrm.testing``: 60 bounced Leads, seed 42) seeds the same org here, and
    an ``all`` source verified in the Emails lists unblocks ``Email`` of every Lead whose Email soft-bounced."""
    seeded = seed_demo_org(EmulatorBackend(EmulatorConfig()), n_bounced=60, seed=42)
    return sorted(seeded.of("temporary", "Leads"), key=int)


def unblocked(leads: dict[str, Any]) -> dict[str, int]:
    return {rid: len(rec["unblock_events"]) for rid, rec in leads.items() if rec["unblock_events"]}


def test_the_script_runs_every_block_but_the_marked_ones_and_answers_twice(tmp_path: Path) -> None:
    page = (
        "## 1. A\n```bash\necho a\n```\n"
        f"{SKIP_MARK}: secrets -->\n```bash\necho secret\n```\n"
        f"## 6. Approve\n```bash\n{ANSWER_LINE}\n```\n## 8. Stop\n```bash\necho stop\n```\n"
    )
    script = night_script(page, tmp_path)
    assert "echo secret" not in script
    assert script.index("echo a") < script.index("ANSWER=Reject") < script.index("ANSWER=Approve")
    assert script.index("ANSWER=Approve") < script.index("approve-stats.json") < script.index("echo stop")


@pytest.mark.airflow_run
def test_the_first_night_page_works_in_a_fresh_shell(tmp_path: Path) -> None:
    probe_dir = tmp_path / "probe"
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    for folder in (probe_dir, home, tmp):
        folder.mkdir()
    script = tmp_path / "first-night.sh"
    script.write_text(night_script(PAGE.read_text(), probe_dir))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),  # this checkout's code, also in the processes Airflow starts
        # ports of its own, so that it never meets another Airflow on this machine
        "AIRFLOW__API__PORT": str(airflow_cli.free_port()),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(airflow_cli.free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(airflow_cli.free_port()),
        "AIRFLOW__CORE__PARALLELISM": "4",  # the test machine's size, not the page's business
    }
    airflow_home = home / "zoho-airflow"
    log = tmp_path / "first-night.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", str(script)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the emulator is ended with it
        )
    pgid_file = airflow_home / "airflow.pgid"
    try:
        proc.wait(timeout=1500)
        output = log.read_text(errors="replace")
        assert proc.returncode == 0, output[-6000:]
        assert "All checks passed." in output  # the preflight

        # the stop block ended every process of Airflow's group
        pgid = int(pgid_file.read_text())
        assert subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode == 1

        expected = soft_bounced_leads()
        assert expected
        # nothing live before the approval: the scheduled run, the dry run and the rejected run wrote nothing
        rejected = json.loads((probe_dir / "reject-stats.json").read_text())
        assert rejected["ids_sent"] == 0 and rejected["records_unblocked"] == 0, rejected
        assert unblocked(json.loads((probe_dir / "reject-leads.json").read_text())) == {}
        # the approved run: exactly the soft-bounced Leads, each once
        approved = unblocked(json.loads((probe_dir / "approve-leads.json").read_text()))
        assert sorted(approved, key=int) == expected
        assert set(approved.values()) == {1}, approved
        assert "Rejected in approve_plan: nothing was written to Zoho" in output
        assert "Approved by" in output
        # the dry run's plan is what the approved run sent (Zoho's answers then told unblocked from the rest)
        sent = json.loads((probe_dir / "approve-stats.json").read_text())["ids_sent"]
        assert f"dry run: {sent} record(s) would be sent" in output

        runs = run_states(airflow_home / "airflow.db")
        reject_id = (probe_dir / "reject-run-id").read_text().strip()
        approve_id = (probe_dir / "approve-run-id").read_text().strip()
        assert runs[reject_id]["state"] == runs[approve_id]["state"] == "success", runs
        scheduled = [r for r in runs.values() if r["run_type"] == "scheduled"]
        assert scheduled, "unpausing started no scheduled run"
        for run in scheduled:  # refused in check_params: no task that calls Zoho ran
            assert run["state"] == "failed"
            assert run["tasks"]["check_params"] == "failed"
            assert run["tasks"].get("find_candidates") in (None, "upstream_failed"), run
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        if pgid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pgid_file.read_text()), signal.SIGTERM)
        proc.wait(timeout=60)


def run_states(db_path: Path) -> dict[str, dict[str, Any]]:
    """``{run_id: {"state", "run_type", "tasks": {task_id: state}}}`` of the DAG's runs (unmapped tasks)."""
    with sqlite3.connect(db_path) as db:
        runs: dict[str, dict[str, Any]] = {
            run_id: {"state": state, "run_type": run_type, "tasks": {}}
            for run_id, state, run_type in db.execute(
                "select run_id, state, run_type from dag_run where dag_id=?", (DAG_ID,)
            )
        }
        for run_id, task_id, state in db.execute(
            "select run_id, task_id, state from task_instance where dag_id=? and map_index=-1", (DAG_ID,)
        ):
            runs[run_id]["tasks"][task_id] = state
    return runs
