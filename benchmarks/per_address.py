"""Record-level vs per-address verification on the emulator's 800-record two-address org (issue 19).

    PYTHONPATH=. .venv/bin/python -m benchmarks.per_address [--records 800] [--seed 19]

Each run gets a fresh emulator seeded by ``seed_address_org`` (both addresses of each record with a history of
its own, interleaved, with noise). ``record-level`` is today's ``verify="emails"``: ``check_bounce`` (the
record's latest email, every type) and, for ``soft``/``unknown``, one call with both fields. ``per-address``
reads each record's Emails list once (``type=sent_from_crm``), judges each field by the latest mail to its own
address, and sends only the qualifying fields (grouped by field set, or one field per call). The truth is the
seed's own. Prints a table: counts only, no timings.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import requests

from airflow_provider_zohocrm.testing import EmulatorBackend, ZohoCRMEmulator
from airflow_provider_zohocrm.testing.seed import ADDRESS_MIN_HOURS, seed_address_org
from airflow_provider_zohocrm.zoho.addresses import addresses_by_id, coql_with_fields
from airflow_provider_zohocrm.zoho.auth import OAuthCredentials, TokenManager
from airflow_provider_zohocrm.zoho.client import ZohoCRMClient
from airflow_provider_zohocrm.zoho.datacenters import resolve_endpoints
from airflow_provider_zohocrm.zoho.emails import Verdict, check_addresses, check_bounce
from airflow_provider_zohocrm.zoho.per_field import plan_unblock_calls, qualifying_fields

FIELDS = ("Email", "Secondary_Email")


def _client(em: ZohoCRMEmulator) -> ZohoCRMClient:
    b = em.backend
    tokens = TokenManager(
        OAuthCredentials(b.client_id, b.client_secret, b.refresh_token),
        resolve_endpoints("us", em.url, em.url),
        requests.Session(),
    )
    return ZohoCRMClient(tokens)


def run(mode: str, n: int, seed: int) -> dict[str, int]:
    backend = EmulatorBackend()
    truth, _ = seed_address_org(backend, n, seed=seed)
    with ZohoCRMEmulator(backend) as em:
        client = _client(em)
        now = datetime.fromtimestamp(backend.now(), UTC)
        query = coql_with_fields("select id from Leads where Last_Name is not null", FIELDS)
        addresses = addresses_by_id(client.iter_coql(query), FIELDS)
        sending: dict[str, tuple[str, ...]] = {}
        for rid, found in addresses.items():
            if mode == "record-level":
                check = check_bounce(client, "Leads", rid, now=now, min_hours_since_bounce=ADDRESS_MIN_HOURS)
                sending[rid] = FIELDS if check.verdict in (Verdict.SOFT, Verdict.UNKNOWN) else ()
            else:
                checks = check_addresses(
                    client, "Leads", rid, found, now=now, min_hours_since_bounce=ADDRESS_MIN_HOURS
                )
                sending[rid] = qualifying_fields(checks)
        calls = plan_unblock_calls(sending, 500, one_field_per_call=mode == "per-address, one field per call")
        for call in calls:
            client.unblock_emails("Leads", call.ids, call.fields)
        stats = backend.stats
        should = spent_right = spent_wrong = wrong_state = 0
        for rid, fields in truth.items():
            events = backend.field_unblock_events("Leads", rid)
            state = backend.record("Leads", rid)["email"]
            for name, t in fields.items():
                should += t.outcome == "unblocked"
                done = bool(events[name])
                spent_right += done and t.outcome == "unblocked"
                spent_wrong += done and t.outcome != "unblocked"
                wrong_state += state[name]["blocked"] != t.blocked_after
        return {
            "fields that should be unblocked": should,
            "unblocked of those": spent_right,
            "unblocks spent on live bounces": spent_wrong,
            "fields not in the expected state": wrong_state,
            "Emails calls": stats["requests"].get("emails", 0),
            "unblock calls": stats["requests"].get("unblock_bulk", 0),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=800)
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    modes = ["record-level", "per-address, by field set", "per-address, one field per call"]
    results = {m: run(m, args.records, args.seed) for m in modes}
    rows = list(next(iter(results.values())))
    width = max(len(r) for r in rows)
    print(f"{'':{width}} | " + " | ".join(modes))
    print("-" * width + "-|-" + "-|-".join("-" * len(m) for m in modes))
    for row in rows:
        print(f"{row:{width}} | " + " | ".join(f"{results[m][row]:>{len(m)}}" for m in modes))


if __name__ == "__main__":
    main()
