"""``python -m airflow_provider_zohocrm <command>``: the provider's command line.

Commands:

- ``check``: the read-only preflight of a connection and a source (see :mod:`airflow_provider_zohocrm.zoho.preflight`).

Each command is one ``_add_<name>(subparsers)`` function that registers its parser and sets ``run``; add a
command by writing one and listing it in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_zohocrm.zoho.params import VERIFY_MODES

PROG = "python -m airflow_provider_zohocrm"


def _add_check(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="read-only preflight: token, scopes, org, view, record count, Emails sample",
        description=(
            "Check a Zoho CRM connection and the source the DAG will read, changing nothing (no unblock, no tag"
            " call). Prints a checklist (✓ ok, ✗ fail with the fix, ! warning, ? unverified, - not needed) and"
            " exits 1 when any check fails."
        ),
    )
    parser.add_argument(
        "--conn-id", default="zohocrm_default", help="Airflow connection id (zohocrm_default)"
    )
    parser.add_argument("--module", default="Leads", help="module API name (Leads)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--view", help="custom view: its name as shown in the CRM, or its id")
    source.add_argument("--coql", dest="coql_query", help="COQL select of the candidates (no limit/offset)")
    source.add_argument(
        "--all",
        dest="all_records",
        action="store_true",
        help="the DAG's all:true source: every record with an Email (verify defaults to emails)",
    )
    parser.add_argument(
        "--verify",
        choices=VERIFY_MODES,
        help="the run's verification mode; 'emails' makes the Emails scope required",
    )
    parser.add_argument("--tag", dest="needs_person_tag", help="the needs_person_tag the run will set")
    parser.add_argument("--count", action="store_true", help="count every record of the source (1 call/200)")
    parser.add_argument(
        "--sample", type=int, default=3, help="records whose Emails lists are read (3; 0: none)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=_run_check)


class _DropShortValueWarning(logging.Filter):
    """Airflow registers every value of a connection's extra with its log masker, secret or not, and warns
    "Skipping masking for a secret as it's too short" about values such as ``data_center: "eu"``. Not a secret,
    nothing to do: keep it out of the checklist."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "too short" not in record.getMessage()


def _run_check(args: argparse.Namespace) -> int:
    logging.getLogger("airflow.sdk._shared.secrets_masker.secrets_masker").addFilter(_DropShortValueWarning())
    from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
    from airflow_provider_zohocrm.zoho.errors import ZohoValidationError

    try:
        report = ZohoCRMHook(zohocrm_conn_id=args.conn_id).preflight(
            module=args.module,
            view=args.view,
            coql_query=args.coql_query,
            all_records=args.all_records,
            verify=args.verify,
            needs_person_tag=args.needs_person_tag,
            count=args.count,
            sample=args.sample,
        )
    except ZohoValidationError as exc:
        print(f"{PROG} check: {exc}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.render())
    return 0 if report.ok else 1


#: Every command's registration function, in the order ``--help`` lists them.
COMMANDS: list[Callable[[Any], None]] = [_add_check]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Airflow provider for Zoho CRM: commands")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
