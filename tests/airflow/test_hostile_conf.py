"""Issue 31 item 3: the shipped example DAG triggered with a conf that sets every param and source key to a hostile
value. A run is either refused before any call (the emulator counts no request) or runs against the DAG's own org
with each value used literally; nothing from the conf reaches a template, another org or host, or a log line as
anything but data. Every key's refusal message: tests/unit/test_workflow_config.py (fast, no DAG run)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_zohocrm.testing import ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import seed_email_org
from tests.airflow.test_workflow_dags import EXAMPLES, run, task_states
from tests.conftest import dag_run_state, emulator_conn_env

pytestmark = pytest.mark.airflow_run

DAG_ID = "zoho_unblock_bounced_emails"
SECRET = "s3cret-variable-value-31"
SECRET_TPL = "{{ var.value.secret }}"
MATH_TPL = "{{ 6*7 }}"
FORGED = "2026-01-01T00:00:00 [error] forged log line"

#: (name, conf, what the refusal must name): each refused before any call to any org.
REFUSED: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "the org, the resolver, a template, a forged log line as keys; every known key hostile too",
        {
            "conn_id": "other_org",  # a working zohocrm connection to a second org
            "dns_options": {"nameservers": ["10.20.30.40", "https://dns.example/dns-query"], "port": 6379},
            MATH_TPL: SECRET_TPL,
            f"x\n{FORGED}": 1,
            "sources": [{"module": "Leads", "all": True, "verify": "emails"}],
            "module": SECRET_TPL,
            "view": MATH_TPL,
            "coql_query": f"select id from Leads where Email = '{SECRET_TPL}'",
            "needs_person_tag": MATH_TPL,
            "reset_coverage": True,
        },
        ["'conn_id'", "'dns_options'", f"'{MATH_TPL}'", "'x\\n" + FORGED + "'"],
    ),
    (
        "a huge list of sources",
        {"sources": [{"module": "Leads", "all": True} for _ in range(2000)]},
        ["2000 sources", "max_map_length"],
    ),
    (
        "a non-string where a string is expected",
        {"sources": [{"module": "Leads", "all": True}], "needs_person_tag": ["not", "a", "tag"]},
        ["needs_person_tag"],
    ),
]


def requests_of(em: ZohoCRMEmulator) -> int:
    return sum(int(n) for n in em.backend.stats["requests"].values())


def test_a_hostile_conf_is_refused_before_any_call_or_used_literally_against_the_dags_own_org(
    airflow_home: Path, emulator: ZohoCRMEmulator, tmp_path: Path
) -> None:
    org = seed_email_org(emulator.backend, counts={"hard": 2, "old_soft": 2})
    with ZohoCRMEmulator() as other:
        seed_email_org(other.backend, counts={"hard": 2, "old_soft": 2})
        other_conn = other.connection("other_org")
        conn_env = {
            **emulator_conn_env(emulator),
            "AIRFLOW_CONN_OTHER_ORG": json.dumps(other_conn),
            "AIRFLOW_VAR_SECRET": SECRET,
        }
        emulator.backend.reset_stats()
        other.backend.reset_stats()
        outputs: list[str] = []
        for name, conf, named in REFUSED:
            out = run(airflow_home, emulator, tmp_path, conf, dag_id=DAG_ID, dags=EXAMPLES, conn_env=conn_env)
            outputs.append(out)
            assert dag_run_state(out) != "success", (name, out[-3000:])
            assert requests_of(emulator) == 0 and requests_of(other) == 0, (name, emulator.backend.stats)
            for text in named:
                assert text in out, (name, text, out[-3000:])
            states = task_states(airflow_home, DAG_ID)
            assert all(s != "success" for s in states.values()), (name, states)

        # the rest, each value as data: a template tag, a batch of one, a coverage restart (this DAG allows it)
        conf = {
            "sources": [{"module": "Leads", "all": True, "verify": "emails", "max_email_checks": 1000}],
            "needs_person_tag": SECRET_TPL,
            "batch_size": 1,
            "unblock_fields": ["Email"],
            "min_hours_since_bounce": 0,
            "check_domain": False,
            "dry_run": False,
            "reset_coverage": True,
        }
        ok = run(airflow_home, emulator, tmp_path, conf, dag_id=DAG_ID, dags=EXAMPLES, conn_env=conn_env)
        outputs.append(ok)
        assert dag_run_state(ok) == "success", ok[-5000:]
        for rid in org.ids["old_soft"]:
            assert len(emulator.backend.unblock_events("Leads", rid)) == 1
        for rid in org.ids["hard"]:
            assert emulator.backend.record_tags("Leads", rid) == [SECRET_TPL]
        assert requests_of(other) == 0, other.backend.stats
        # batch_size 1, used as given: one id per call (Zoho's single-record unblock)
        requests = emulator.backend.stats["requests"]
        assert requests.get("unblock_single", 0) == 2 and requests.get("unblock_bulk", 0) == 0, requests

    # nothing was evaluated, anywhere a person can read: output, log files, the whole metadata DB
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        dump = "\n".join(db.iterdump())
    logs = airflow_home / "logs"
    files = [p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file()] if logs.exists() else []
    for label, text in (
        [("output", o) for o in outputs] + [("metadata DB", dump)] + [("log file", f) for f in files]
    ):
        assert SECRET not in text, label
    assert SECRET_TPL in ok, "the tag is reported as the literal text"
    assert all("'42'" not in o for o in outputs)
    # a value with a newline is quoted (escaped) in the refusal: no line of any output starts with the forged one
    for text in outputs + files:
        assert not any(line.lstrip().startswith(FORGED) for line in text.splitlines())
