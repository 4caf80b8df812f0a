"""The README's "Run the example DAG yourself" steps, run as written: the section's first bash block becomes a
script, run by a fresh ``bash`` from the checkout's root with a temporary HOME and TMPDIR and no AIRFLOW_*
variables. The run must succeed, the emulator (which the script leaves serving) must show the records changed,
and a normal run must be free of the noise issue 12 names (the masker's "too short" warning, Airflow's "XCom not
found" error)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, seed_demo_org

REPO = Path(__file__).resolve().parents[2]  # the checkout
SECTION = "## Run the example DAG yourself"


def journey_block(readme: str) -> str:
    """The first ```bash block of the README's "Run the example DAG yourself" section."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    blocks = re.findall(r"^```bash\n(.*?)^```", readme[start : end if end > 0 else None], re.S | re.M)
    assert blocks, "the section has no bash block"
    return str(blocks[0])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:  # the emulator, on loopback
        return json.load(answer)


def _column_counts(output: str, outcome: str) -> list[int]:
    """The per-module numbers of one outcome row of the run's report table (modules in the order of the
    sources, then the total); the unblock tasks' own tables come before it."""
    starts = [m.start() for m in re.finditer(r"^Zoho CRM Unblock Email report:", output, re.M)]
    assert starts, "no report printed"
    report = output[starts[-1] :]
    match = re.search(rf"^{outcome}\s*\|(.*)$", report, re.M)
    assert match, f"no {outcome!r} row in the report"
    return [int(cell.strip().replace(",", "")) for cell in match.group(1).split("|")]


def soft_bounced_on_email() -> dict[str, list[str]]:
    """The records the journey's run must unblock, known from the seed alone: the emulator the README starts
    (``python -m airflow_provider_zohocrm.testing``: 60 bounced Leads, seed 42) seeds the same org here, and the
    run unblocks ``Email`` (the DAG's default ``unblock_fields``) of the records whose Email soft-bounced and can
    be unblocked (kind ``temporary``): every one the Leads view lists, and every one of all the Contacts."""
    seeded = seed_demo_org(EmulatorBackend(EmulatorConfig()), n_bounced=60, seed=42)
    return {module: sorted(seeded.of("temporary", module), key=int) for module in ("Leads", "Contacts")}


def test_the_block_is_the_section_s_first_bash_block() -> None:
    readme = "intro\n## Run the example DAG yourself\n\ntext\n```bash\necho one\n```\n```bash\necho two\n```\n## Next\n"
    assert journey_block(readme) == "echo one\n"


@pytest.mark.airflow_run
def test_the_readme_steps_work_in_a_fresh_shell(tmp_path: Path) -> None:
    script = tmp_path / "journey.sh"
    script.write_text(journey_block((REPO / "README.md").read_text()))
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8"}
    log = tmp_path / "journey.log"
    with open(log, "w") as sink:
        # Output to a file, not a pipe: the emulator the script leaves running keeps its copy of the descriptor.
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", str(script)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the emulator it leaves running is ended with it
        )
    try:
        proc.wait(timeout=900)
        output = log.read_text(errors="replace")
        assert proc.returncode == 0, output[-6000:]
        assert re.search(r"DagRun Finished: .*state=success", output), output[-6000:]
        assert "All checks passed." in output  # the preflight step
        assert "Skipping masking for a secret" not in output
        assert "XCom not found" not in output

        export = re.search(r"^export AIRFLOW_CONN_ZOHOCRM_DEFAULT=(.*)$", output, re.M)
        assert export, "the emulator printed no export line"
        connection = json.loads(shlex.split(export.group(1))[0])
        url = connection["extra"]["api_domain"]
        expected = soft_bounced_on_email()
        assert {m: len(ids) for m, ids in expected.items()} == {"Leads": 36, "Contacts": 1}  # the seed's size
        events = 0
        for module, ids in expected.items():
            records = _get(f"{url}/_emulator/records/{module}")
            changed = {
                rid: len(rec["unblock_events"]) for rid, rec in records.items() if rec["unblock_events"]
            }
            assert sorted(changed, key=int) == ids, module  # exactly the records the seed soft-bounced
            assert set(changed.values()) == {1}, f"{module}: unblocked more than once: {changed}"
            events += sum(changed.values())
        # the report agrees with what the emulator saw: Leads, Contacts, total
        assert _column_counts(output, "unblocked") == [
            len(expected["Leads"]),
            len(expected["Contacts"]),
            events,
        ]
        stats = _get(f"{url}/_emulator/stats")
        assert stats["requests"]["add_tags"] >= 1  # the needs-person records were tagged
        assert stats["records_unblocked"] == events
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
