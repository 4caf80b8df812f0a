"""The main job, end to end: the example DAG against a seeded Zoho CRM emulator, on SQLite, in real Airflow.

Starts the emulator (2,600 bounced Leads in every bounce state: more than 2,000 so paging needs page tokens,
more than 500 so unblocking takes several batches), runs ``airflow dags test zoho_unblock_bounced_emails``,
prints the DAG's report, then checks the emulator's final state record by record.
Full Airflow output: $AIRFLOW_HOME/demo.log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from airflow_provider_zohocrm.testing import (
    BOUNCED_VIEW_ID,
    EmulatorBackend,
    EmulatorConfig,
    ZohoCRMEmulator,
    airflow_cli,
    expected_outcome,
    seed_demo_org,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bounced", type=int, default=2600, help="bounced Leads to seed")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="emulated Zoho latency per API call")
    parser.add_argument("--dry-run", action="store_true", help="run the DAG with dry_run=true")
    args = parser.parse_args()

    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    print(f"[demo] Airflow home {home} (SQLite); migrating the metadata DB …", flush=True)
    base_env = airflow_cli.airflow_env(home, Path(__file__).resolve().parents[1] / "dags")
    airflow_cli.migrate(base_env)

    backend = EmulatorBackend(EmulatorConfig(latency=args.latency_ms / 1000, concurrency_limit=10))
    seed_demo_org(backend, n_bounced=args.bounced)
    found = backend.view_ids(BOUNCED_VIEW_ID)
    expected = {rid: expected_outcome(backend, "Leads", rid, ["Email"]) for rid in found}
    with ZohoCRMEmulator(backend) as emulator:
        name, value = emulator.connection_env()
        conf = {"cvid": BOUNCED_VIEW_ID, "dry_run": args.dry_run}
        print(
            f"[demo] Zoho CRM emulator at {emulator.url}: {len(found):,} bounced Leads in view {BOUNCED_VIEW_ID}"
        )
        print(f"[demo] airflow dags test zoho_unblock_bounced_emails -c '{json.dumps(conf)}' …", flush=True)
        run = airflow_cli.dags_test(
            "zoho_unblock_bounced_emails", conf, {**base_env, name: value}, log_path=home / "demo.log"
        )
    output = run.output
    state = run.state or "unknown"
    report = re.search(r"Zoho CRM Unblock Email report:.*?\n(?:.*\|.*\n|[-+]+\n)+", output)
    print()
    print(report.group(0) if report else "(no report found: see demo.log)")
    for line in re.findall(r"^(?:Need a person|dry run:).*$", output, re.MULTILINE):
        print(line[:300] + (" …" if len(line) > 300 else ""))

    stats = backend.stats
    wrong = [
        rid
        for rid, outcome in expected.items()
        if len(backend.unblock_events("Leads", rid))
        != (1 if outcome == "unblocked" and not args.dry_run else 0)
    ]
    print()
    print(f"[demo] DAG run state: {state}")
    print(
        f"[demo] Zoho calls: {stats['requests']['token']} token, {stats['requests']['records']} view pages,"
        f" {stats['requests']['unblock_bulk']} bulk unblock; {stats['credits_used']} credits;"
        f" {stats['rejected_429']} x HTTP 429"
    )
    print(
        f"[demo] emulator state: {sum(1 for o in expected.values() if o == 'unblocked')} records were unblockable;"
        f" {len(wrong)} record(s) not in the expected state"
    )
    print(f"[demo] full Airflow output: {home / 'demo.log'}")
    return 0 if state == "success" and not wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
