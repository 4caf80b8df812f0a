"""The example DAG end to end in real Airflow (``airflow dags test``) against the emulator: every source kind,
every verify mode, several modules in one run, and bad params refused before any Zoho call."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    CONTACTS_BOUNCED_VIEW_ID,
    Fault,
    ZohoCRMEmulator,
    expected_outcome,
    seed_demo_org,
)
from airflow_provider_zohocrm.testing.seed import seed_email_org
from airflow_provider_zohocrm.zoho.per_field import PRECEDENCE
from airflow_provider_zohocrm.zoho.unblock import Outcome
from tests.conftest import (
    RECORD_OUTCOMES,
    REPO,
    assert_no_secrets,
    dag_run_state,
    emulator_conn_env,
    outcomes_of,
    run_dag_test,
)

pytestmark = pytest.mark.airflow_run

DAG_ID = "zoho_unblock_bounced_emails"
REPORT_RE = re.compile(
    r"(\d[\d,]*) candidate record\(s\) found, (\d[\d,]*) reported, (\d[\d,]*) unblock call"
)
HEAD_RE = re.compile(r"^outcome\s+\|(.*)$", re.MULTILINE)
ROW_RE = re.compile(r"^(\w+)\s+\|((?:\s*[\d,]+\s*\|)*\s*[\d,]+)\s*$", re.MULTILINE)
OUTCOMES = [o.value for o in Outcome]
TAG = "Needs person"


#: A task's stdout as the console shows it under an executor: ``<time> [info     ] <line> [task.stdout]``.
TASK_STDOUT_RE = re.compile(r"^\S+ \[\w+\s*\] (.*?) \[task\.stdout\]$", re.MULTILINE)


def module_tables(output: str) -> dict[str, dict[str, int]]:
    """The report table as ``{column: {outcome: n}}`` (a column per module, and ``total``)."""
    output = TASK_STDOUT_RE.sub(r"\1", output)
    match = REPORT_RE.search(output)
    assert match, output[-4000:]
    rest = output[match.end() :]
    head = HEAD_RE.search(rest)
    assert head, rest[:2000]
    columns = [c.strip() for c in head.group(1).split("|")]
    table: dict[str, dict[str, int]] = {c: {} for c in columns}
    for name, cells in ROW_RE.findall(rest[head.end() :])[: len(OUTCOMES) + 1]:
        for column, cell in zip(columns, cells.split("|"), strict=True):
            table[column][name] = int(cell.strip().replace(",", ""))
    return table


def report_of(output: str) -> tuple[tuple[int, int, int], dict[str, int]]:
    """(found, reported, unblock calls) from the report's header, and its total column per outcome."""
    match = REPORT_RE.search(TASK_STDOUT_RE.sub(r"\1", output))
    assert match, output[-4000:]
    head = tuple(int(g.replace(",", "")) for g in match.groups())
    return head, module_tables(output)["total"]  # type: ignore[return-value]


def run(home: Path, em: ZohoCRMEmulator, tmp_path: Path, conf: dict[str, Any], **env: str) -> str:
    proc = run_dag_test(home, conf, {**emulator_conn_env(em), "TMPDIR": str(tmp_path), **env})
    output = proc.stdout + proc.stderr
    assert_no_secrets(output, em)
    return output


def mapped_results(home: Path) -> dict[int, dict[str, Any]]:
    """``{map_index: unblock_emails result}`` of the newest run, from the metadata DB."""
    with sqlite3.connect(home / "airflow.db") as db:
        run_id = db.execute(
            "select run_id from dag_run where dag_id=? order by id desc limit 1", (DAG_ID,)
        ).fetchone()[0]
        rows = db.execute(
            "select map_index, value from xcom where dag_id=? and run_id=? and task_id='unblock_emails'"
            " and key='return_value'",
            (DAG_ID, run_id),
        ).fetchall()
    return {int(i): json.loads(v) if isinstance(v, (str, bytes)) else v for i, v in rows}


def outcomes_by_record(home: Path) -> dict[tuple[str, str], list[str]]:
    """``{(module, id): [outcome, …]}`` over every mapped task of the newest run."""
    return outcomes_of(mapped_results(home).values())


def total_requests(em: ZohoCRMEmulator) -> int:
    return sum(int(n) for n in em.backend.stats["requests"].values())


# -- the single-module shorthand (module + cvid / coql_query) keeps working ---------------------------------------


def test_mixed_org_past_2000_records_every_record_accounted(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    backend = emulator.backend
    seeded = seed_demo_org(backend, n_bounced=2600, n_clean=300)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    deleted = tuple(seeded.of("temporary")[i] for i in (3, 700, 1500))  # deleted by a user mid-run
    backend.add_fault(Fault(endpoint="unblock_bulk", action="delete_records", on_call=1, ids=deleted))
    expected = {rid: expected_outcome(backend, "Leads", rid, ["Email"]) for rid in found}
    expected.update({rid: Outcome.INVALID_RECORD.value for rid in deleted})
    before = {rid: backend.record("Leads", rid) for rid in seeded.of("clean")}

    output = run(airflow_home, emulator, tmp_path, {"module": "Leads", "cvid": BOUNCED_VIEW_ID})
    assert dag_run_state(output) == "success", output[-5000:]

    (n_found, n_reported, n_calls), rows = report_of(output)
    assert n_found == n_reported == len(found) == 2600
    want = {o: sum(1 for v in expected.values() if v == o) for o in OUTCOMES}
    assert rows == {**want, "total": 2600}
    assert all(want[o] > 0 for o in RECORD_OUTCOMES)
    # the emulator's final state, record by record
    for rid, outcome in expected.items():
        if rid in deleted:
            continue
        events = backend.unblock_events("Leads", rid)
        assert len(events) == (1 if outcome == Outcome.UNBLOCKED.value else 0), (rid, outcome)
    assert all(backend.record("Leads", rid) == before[rid] for rid in before), (
        "a record outside the view changed"
    )
    stats = backend.stats
    assert n_calls == stats["requests"]["unblock_bulk"] == -(-2600 // 500)
    assert stats["requests"]["unblock_single"] == 0
    assert stats["ids_sent"] == 2600
    assert stats["requests"]["records"] == 13  # 2,600 / 200 per page, past 2,000 by page token
    assert stats["requests"]["emails"] == 0, "verify defaults to none for a view"
    assert stats["token_requests"] == 1


def test_coql_source_and_grouping_beyond_max_map_length(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    backend = emulator.backend
    seeded = seed_demo_org(backend, n_bounced=1300)
    query = "select id from Leads where Email_Bounce_Status = 'Temporary'"
    temporary = [
        r
        for r in seeded.bounced()
        if backend.record("Leads", r)["fields"].get("Email_Bounce_Status") == "Temporary"
    ]
    output = run(
        airflow_home,
        emulator,
        tmp_path,
        {"coql_query": query, "batch_size": 100},
        AIRFLOW__CORE__MAX_MAP_LENGTH="4",
    )
    assert dag_run_state(output) == "success", output[-5000:]
    assert "→ 4 mapped task(s)" in output
    (n_found, n_reported, n_calls), _ = report_of(output)
    assert n_found == n_reported == len(temporary)
    assert n_calls == backend.stats["requests"]["unblock_bulk"] == -(-len(temporary) // 100)
    assert backend.stats["requests"]["coql"] == 1


def test_coql_source_unblocks_in_the_module_its_query_reads(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    """Issue 9 finding 2: a Contacts query used to be unblocked in Leads (the default module), so every record
    came back invalid_record. The module now comes from the query's ``from``."""
    backend = emulator.backend
    seeded = seed_demo_org(backend, n_bounced=300, n_contacts_bounced=120)
    query = "select id from Contacts where Email_Bounce_Status = 'Temporary'"
    ids = [
        r
        for r in seeded.bounced("Contacts")
        if backend.record("Contacts", r)["fields"].get("Email_Bounce_Status") == "Temporary"
    ]
    expected = {rid: expected_outcome(backend, "Contacts", rid, ["Email"]) for rid in ids}
    output = run(airflow_home, emulator, tmp_path, {"coql_query": query})
    assert dag_run_state(output) == "success", output[-5000:]
    tables = module_tables(output)
    assert list(tables) == ["Contacts", "total"]
    assert tables["Contacts"]["invalid_record"] == 0
    assert tables["Contacts"]["unblocked"] == sum(1 for o in expected.values() if o == "unblocked") > 0
    for rid, outcome in expected.items():
        assert len(backend.unblock_events("Contacts", rid)) == (1 if outcome == "unblocked" else 0), rid


def test_dry_run_changes_nothing(airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path) -> None:
    seeded = seed_demo_org(emulator.backend, n_bounced=700)
    output = run(airflow_home, emulator, tmp_path, {"cvid": BOUNCED_VIEW_ID, "dry_run": True})
    assert dag_run_state(output) == "success", output[-5000:]
    assert "dry run: 700 record(s) would be sent" in output
    stats = emulator.backend.stats
    assert stats["requests"]["unblock_bulk"] == stats["requests"]["unblock_single"] == 0
    assert all(not emulator.backend.unblock_events("Leads", r) for r in seeded.bounced())


# -- bad params: refused in the first task (or by the Param schema), before any Zoho call --------------------------


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({}, "Set the 'cvid' param"),
        (
            {
                "module": "Leads",
                "coql_query": "select id from Contacts where Email_Bounce_Status = 'Temporary'",
            },
            "module 'Leads' differs from the COQL query's module 'Contacts'",
        ),
        ({"cvid": "Bounced leads"}, "pass a view's name as 'view'"),
        ({"cvid": BOUNCED_VIEW_ID, "min_hours_since_bounce": 24}, "needs verify 'emails'"),
        ({"cvid": BOUNCED_VIEW_ID, "unblock_fields": ["Phone"]}, "Invalid input for param unblock_fields"),
        (
            {"sources": [{"module": "Leads", "all": True, "verify": "bogus"}]},
            "Invalid input for param sources",
        ),
        (
            {"sources": [{"module": "Contacts", "all": True, "days": 30}]},
            "date_field together with since or days",
        ),
    ],
    ids=[
        "no-source",
        "coql-module-mismatch",
        "cvid-name",
        "policy-without-emails",
        "field",
        "verify",
        "days",
    ],
)
def test_bad_params_fail_before_any_zoho_call(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, conf: dict[str, Any], message: str
) -> None:
    seed_demo_org(emulator.backend, n_bounced=20)
    output = run(airflow_home, emulator, tmp_path, conf)
    assert dag_run_state(output) in ("failed", None), output[-5000:]
    assert message in output, output[-5000:]
    assert emulator.backend.stats["token_requests"] == 0
    assert total_requests(emulator) == 0, emulator.backend.stats["requests"]


def test_unknown_view_name_fails_before_any_unblock_call_and_lists_the_views(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    seed_demo_org(emulator.backend, n_bounced=20)
    conf = {
        "sources": [
            {"module": "Contacts", "view": "Bounced contacts"},
            {"module": "Leads", "view": "Hard bounces"},
        ]
    }
    output = run(airflow_home, emulator, tmp_path, conf)
    assert dag_run_state(output) == "failed", output[-5000:]
    assert "source #2: No Leads custom view is named 'Hard bounces'" in output
    assert f"'Bounced leads' ({BOUNCED_VIEW_ID})" in output
    requests = emulator.backend.stats["requests"]
    assert requests["custom_views"] == 2, "both names resolved before any record is read"
    assert requests["records"] == requests["unblock_bulk"] == requests["unblock_single"] == 0


# -- several modules in one run -------------------------------------------------------------------------------------


def test_two_modules_by_view_name_in_one_run_share_one_concurrency_bound(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    backend = emulator.backend
    seeded = seed_demo_org(backend, n_bounced=1200, n_contacts_bounced=150)
    both = ["Email", "Secondary_Email"]
    expected = {
        ("Leads", r): expected_outcome(backend, "Leads", r, ["Email"]) for r in seeded.bounced("Leads")
    }
    # two fields: one unblock call per field, each record counted under its most actionable field (issue 19)
    rank = {o.value: i for i, o in enumerate(PRECEDENCE)}
    per_field = {
        r: [expected_outcome(backend, "Contacts", r, [f]) for f in both] for r in seeded.bounced("Contacts")
    }
    expected |= {("Contacts", r): min(outcomes, key=rank.__getitem__) for r, outcomes in per_field.items()}
    conf = {
        "sources": [
            {"module": "Leads", "view": "Bounced leads"},
            {"module": "Contacts", "view": "bounced CONTACTS", "unblock_fields": both},
        ],
        "batch_size": 200,
    }
    output = run(airflow_home, emulator, tmp_path, conf, ZOHOCRM_MAX_PARALLEL="3")
    assert dag_run_state(output) == "success", output[-5000:]
    assert f"Bounced contacts' ({CONTACTS_BOUNCED_VIEW_ID})" in output
    assert "1,350 ids → 3 mapped task(s) over Contacts, Leads." in output, (
        "3 tasks in total, not 3 per module"
    )
    results = mapped_results(airflow_home)
    assert sorted(r["module"] for r in results.values()) == ["Contacts", "Leads", "Leads"]

    got = outcomes_by_record(airflow_home)
    assert set(got) == set(expected), "a record was lost or invented"
    assert {key: outcomes for key, outcomes in got.items() if len(outcomes) != 1} == {}
    assert {key: got[key][0] for key in expected} == expected
    tables = module_tables(output)
    for module in ("Leads", "Contacts"):
        want = {o: sum(1 for (m, _), v in expected.items() if m == module and v == o) for o in OUTCOMES}
        assert tables[module] == {**want, "total": sum(want.values())}
    assert tables["total"]["total"] == len(expected) == 1350
    for (module, rid), outcome in expected.items():
        unblocked = "unblocked" in per_field[rid] if module == "Contacts" else outcome == "unblocked"
        assert len(backend.unblock_events(module, rid)) == (1 if unblocked else 0), (module, rid)
    stats = backend.stats
    assert stats["requests"]["custom_views"] == 2
    assert stats["requests"]["unblock_bulk"] == 6 + 2  # Contacts: one call per field
    assert stats["token_requests"] == 1


# -- the three verify modes, each record in its expected outcome -------------------------------------------------------

EMAIL_COUNTS = {
    "never_bounced": 3,
    "recent_soft": 2,
    "old_soft": 3,
    "soft_unblocked_since": 2,
    "hard": 2,
    "deep_soft": 2,
    "buried_soft": 2,
    "limit": 2,
    "no_emails": 2,
    "expired": 2,
    "unknown_category": 1,
}


@pytest.mark.parametrize("mode", ["emails", "sweep", "none"])
def test_whole_module_sources_in_each_verify_mode_put_every_record_in_its_expected_outcome(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path, mode: str
) -> None:
    backend = emulator.backend
    leads = seed_email_org(backend, "Leads", EMAIL_COUNTS, seed=1)
    contacts = seed_email_org(backend, "Contacts", EMAIL_COUNTS, seed=2)
    expected = {("Leads", r): o for r, o in leads.expected_outcomes(mode).items()}
    expected |= {("Contacts", r): o for r, o in contacts.expected_outcomes(mode).items()}
    policy = {"min_hours_since_bounce": 24} if mode == "emails" else {}
    conf = {
        "sources": [
            {"module": "Leads", "all": True, "verify": mode, **policy},
            {"module": "Contacts", "all": True, "verify": mode, **policy},
        ],
        "needs_person_tag": TAG,
    }
    output = run(airflow_home, emulator, tmp_path, conf)
    assert dag_run_state(output) == "success", output[-5000:]

    got = outcomes_by_record(airflow_home)
    assert set(got) == set(expected)
    assert {key: got[key] for key in expected if got[key] != [expected[key]]} == {}
    tables = module_tables(output)
    assert tables["total"]["total"] == len(expected)
    for (module, rid), outcome in expected.items():
        assert len(backend.unblock_events(module, rid)) == (1 if outcome == "unblocked" else 0), (module, rid)
        tagged = TAG in backend.record_tags(module, rid)
        assert tagged == (outcome in ("permanently_blocked", "limit_reached")), (module, rid, outcome)
    stats = backend.stats
    sent = sum(1 for o in expected.values() if o in ("unblocked", "limit_reached"))
    if mode == "emails":
        assert stats["ids_sent"] == sent, "only the soft bounces reach the unblock call"
        assert stats["requests"]["emails"] >= len(expected)
        for module, rid in (key for key, o in expected.items() if o == "permanently_blocked"):
            assert f"  {module} {rid}: " in output, "the report names a hard bounce with Zoho's reason"
    else:
        assert stats["ids_sent"] == len(expected)
        assert stats["requests"]["emails"] == 0
    assert stats["requests"]["add_tags"] == 2, "one tag call per module"
    assert stats["requests"]["coql"] == 2


def test_nothing_found_in_any_module_still_reports(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    conf = {"sources": [{"module": "Leads", "all": True}, {"module": "Contacts", "all": True}]}
    output = run(airflow_home, emulator, tmp_path, conf)
    assert dag_run_state(output) == "success", output[-5000:]
    assert "0 candidate record(s) found, 0 reported, 0 unblock call(s)" in output
    assert emulator.backend.stats["requests"]["coql"] == 2


# -- a pip user gets the example DAG -----------------------------------------------------------------------------------


def test_the_wheel_ships_the_example_dag_and_dags_folder_has_the_same_file(tmp_path: Path) -> None:
    from airflow_provider_zohocrm.example_dags import EXAMPLE_DAG

    assert (REPO / "dags" / "zoho_unblock_bounced_emails.py").read_bytes() == EXAMPLE_DAG.read_bytes()
    src = tmp_path / "src"  # build from a copy: `build` writes build/ and *.egg-info next to the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "airflow_provider_zohocrm",
        src / "airflow_provider_zohocrm",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # an isolated build, as users' tools do (it fetches the build backend pyproject.toml names)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from airflow_provider_zohocrm import __version__

    (wheel,) = (tmp_path / "dist").glob("airflow_provider_zohocrm-*.whl")
    assert wheel.name == f"airflow_provider_zohocrm-{__version__}-py3-none-any.whl"  # one version everywhere
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("airflow_provider_zohocrm/example_dags/zoho_unblock_bounced_emails.py")
    assert shipped == EXAMPLE_DAG.read_bytes()
