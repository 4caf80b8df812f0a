"""The main job, end to end: the example DAG over Leads AND Contacts against a seeded Zoho CRM emulator, on SQLite,
in real Airflow.

Seeds both modules with records in every email state (never bounced, soft bounces old and fresh, a soft bounce
already unblocked since, hard bounces, the unblock limit, no email at all, a bounce past Zoho's 100-day retention,
an unknown bounce category), and Leads also with records that have two addresses, each with a history of its own
(Email and Secondary_Email are blocked and unblocked one by one). Then it runs ``airflow dags test
zoho_unblock_bounced_emails`` once, with the mode that works for any org out of the box: a whole-module source per
module, verified through each record's Emails list (``verify: "emails"``, ``min_hours_since_bounce: 24``), both
fields for Leads, tagging the records that need a person. It prints the DAG's report, checks the emulator's final
state field by field, and prints the Zoho calls the run made. Full Airflow output: $AIRFLOW_HOME/demo.log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from airflow_provider_zohocrm.testing import (
    EmulatorBackend,
    EmulatorConfig,
    ZohoCRMEmulator,
    airflow_cli,
    seed_email_org,
)
from airflow_provider_zohocrm.testing.seed import seed_address_org

DAG_ID = "zoho_unblock_bounced_emails"
TAG = "Needs person"
NEEDS_PERSON = ("permanently_blocked", "limit_reached")
HEADER = re.compile(r"Zoho CRM Unblock Email report: ([\d,]+) candidate record\(s\) found, ([\d,]+) reported")
TABLE_LINE = re.compile(r"^(?:\w+\s+\|[\s\d,|A-Za-z_]*|-+(?:-\+-+)+)$")
#: A table row whose every count is zero.
ZERO_ROW = re.compile(r"^\w+\s+(?:\|\s+0\s*)+$")
#: The fields the Leads source unblocks (Contacts: Email only, the one-field case).
FIELDS = {"Leads": ("Email", "Secondary_Email"), "Contacts": ("Email",)}
#: Share of each email state among a module's records.
MIX = {
    "never_bounced": 0.40,
    "old_soft": 0.25,
    "recent_soft": 0.05,
    "soft_unblocked_since": 0.08,
    "hard": 0.08,
    "deep_soft": 0.03,
    "buried_soft": 0.03,
    "limit": 0.04,
    "no_emails": 0.02,
    "expired": 0.01,
    "unknown_category": 0.01,
}


def counts(total: int) -> dict[str, int]:
    """Per-kind counts adding up to ``total`` (largest share first gets the rounding), each kind at least 1."""
    out = {kind: max(1, int(total * share)) for kind, share in MIX.items()}
    out["never_bounced"] += total - sum(out.values())
    return out


def report_block(output: str) -> str:
    """The report the DAG printed, shortened: table rows that are zero in every column left out, and each
    needs-person list cut to its first record (the whole report is in demo.log)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "Zoho CRM Unblock Email report:" in line), None)
    if start is None:
        return "(no report found: see demo.log)"
    kept: list[str] = [lines[start][lines[start].index("Zoho CRM Unblock Email report:") :]]
    shown = 0
    per_field = False
    for line in lines[start + 1 :]:
        if ZERO_ROW.match(line):
            continue
        if (
            TABLE_LINE.match(line)
            or line.startswith(("dry run:", "pending:", "plan:"))
            or " per field " in line
        ):
            kept.append(line)
            per_field = " per field " in line
        elif per_field and line.startswith("  "):
            kept.append(line)
        elif line.startswith("Need a person"):
            kept.append(line)
            shown = 0
            per_field = False
        elif line.startswith("  "):
            shown += 1
            if shown <= 1:
                kept.append(line)
        else:
            break
    return "\n".join(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2600, help="Leads to seed")
    parser.add_argument("--contacts", type=int, default=520, help="Contacts to seed")
    parser.add_argument(
        "--two-address-leads", type=int, default=400, help="Leads with two addresses of their own history"
    )
    parser.add_argument("--latency-ms", type=float, default=5.0, help="emulated Zoho latency per API call")
    parser.add_argument("--dry-run", action="store_true", help="run the DAG with dry_run=true")
    args = parser.parse_args()

    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    print(f"[demo] Airflow home {home} (SQLite); migrating the metadata DB …", flush=True)
    # the plain `airflow` script, as a deployment runs it (not the tests' faster launcher): the demo's time is real
    base_env = airflow_cli.airflow_env(
        home, Path(__file__).resolve().parents[1] / "dags", **airflow_cli.PLAIN_AIRFLOW
    )
    airflow_cli.migrate(base_env)

    backend = EmulatorBackend(EmulatorConfig(latency=args.latency_ms / 1000, concurrency_limit=10))
    seeded = {
        "Leads": seed_email_org(backend, "Leads", counts(args.leads)),
        "Contacts": seed_email_org(backend, "Contacts", counts(args.contacts)),
    }
    two_addresses, _kinds = seed_address_org(backend, args.two_address_leads, "Leads")
    # per (module, id, field): what each field must end in. A record of seed_email_org has one address (Email):
    # its Secondary_Email is empty, so not_blocked.
    expected = {
        (m, rid, f): (o if f == "Email" else "not_blocked")
        for m, s in seeded.items()
        for rid, o in s.expected_outcomes("emails").items()
        for f in FIELDS[m]
    }
    expected.update(
        {
            ("Leads", rid, f): truth.outcome
            for rid, by_field in two_addresses.items()
            for f, truth in by_field.items()
        }
    )
    conf = {
        "sources": [
            {
                "module": "Leads",
                "all": True,
                "verify": "emails",
                "min_hours_since_bounce": 24,
                "unblock_fields": list(FIELDS["Leads"]),
            },
            {"module": "Contacts", "all": True, "verify": "emails", "min_hours_since_bounce": 24},
        ],
        "needs_person_tag": TAG,
        "dry_run": args.dry_run,
    }
    with ZohoCRMEmulator(backend) as emulator:
        name, value = emulator.connection_env()
        sizes = ", ".join(f"{len(s.all_ids()):,} {m}" for m, s in seeded.items())
        print(
            f"[demo] Zoho CRM emulator at {emulator.url}: {sizes}, in every email state, and"
            f" {len(two_addresses):,} Leads with two addresses"
        )
        print(f"[demo] airflow dags test {DAG_ID} -c '{json.dumps(conf)}' …", flush=True)
        run = airflow_cli.dags_test(DAG_ID, conf, {**base_env, name: value}, log_path=home / "demo.log")
    output = run.output
    state = run.state or "unknown"
    print()
    print(report_block(output))

    # the emulator's final state, field by field, against what each field must end in; a record is tagged when
    # any of its fields needs a person
    live = not args.dry_run
    wrong = []
    needs_person = {(m, rid) for (m, rid, _f), o in expected.items() if o in NEEDS_PERSON}
    for (module, rid, name), outcome in expected.items():
        unblocks = len(backend.field_unblock_events(module, rid).get(name, []))
        if unblocks != (1 if live and outcome == "unblocked" else 0):
            wrong.append((module, rid, name, outcome, unblocks))
    records = {(m, rid) for (m, rid, _f) in expected}
    for module, rid in sorted(records):
        tagged = TAG in backend.record_tags(module, rid)
        if tagged != (live and (module, rid) in needs_person):
            wrong.append((module, rid, "tag", tagged))
    header = HEADER.search(output)
    reported = header.group(2) if header else "?"
    by_outcome = {o: sum(1 for v in expected.values() if v == o) for o in sorted(set(expected.values()))}

    stats = backend.stats
    requests = stats["requests"]
    print()
    print(f"[demo] DAG run state: {state}")
    print(
        f"[demo] Zoho calls: {requests['token']} token, {requests['coql']} COQL pages,"
        f" {requests['emails']:,} Emails-list reads, {requests['unblock_bulk'] + requests['unblock_single']} unblock,"
        f" {requests['add_tags']} add-tags; {stats['credits_used']:,} credits; {stats['rejected_429']} x HTTP 429"
    )
    print(
        f"[demo] emulator state: {len(records):,} records ({reported} reported: a record with no address is no"
        f" candidate), {len(expected):,} (record, field)"
        f" pairs: {', '.join(f'{n:,} {o}' for o, n in by_outcome.items())}; {len(wrong)} not in the expected state"
    )
    for item in wrong[:10]:
        print(f"[demo]   wrong: {item}")
    print(f"[demo] full Airflow output: {home / 'demo.log'}")
    return 0 if state == "success" and not wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
