"""Reading a whole module of N records through the client, by record id (issue 18): calls, credits, wall time and
peak memory, with the emulator in a process of its own so the two memories are apart.

    python -m benchmarks.large_reads [--sizes 150000,1000000]

Per size, a fresh pair of processes: the emulator seeds N Leads with an email (``add_many_records``, ids 3 apart)
and serves them; the client reads ``select id from Leads where Email is not null`` with ``iter_coql`` (2,000 ids a
call, keyset on id), keeping every id in a set to check that each came once. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

FIRST_ID = 4_876_876_000_000_100_001


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _serve(n: int, conn: Connection) -> None:
    from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator

    backend = EmulatorBackend(EmulatorConfig())
    before = _rss_mb()
    started = time.perf_counter()
    backend.add_many_records("Leads", n, first_id=FIRST_ID, step=3)
    seed_s = time.perf_counter() - started
    seeded_rss = _rss_mb()
    with ZohoCRMEmulator(backend) as em:
        conn.send(
            {
                "url": em.url,
                "client_id": backend.client_id,
                "client_secret": backend.client_secret,
                "refresh_token": backend.refresh_token,
                "seed_s": seed_s,
                "seed_rss_mb": seeded_rss,
                "base_rss_mb": before,
            }
        )
        conn.recv()  # the client is done
        stats = backend.stats
        conn.send(
            {
                "coql_calls": stats["requests"]["coql"],
                "credits": stats["credits_used"],
                "coql_max_reach": stats["coql_max_reach"],
                "server_peak_rss_mb": _rss_mb(),
                "ids": len(backend.module("Leads").records),  # type: ignore[union-attr]
            }
        )


def one(n: int) -> dict[str, Any]:
    """Seed and read ``n`` records; the numbers of one run (run in a fresh process for a clean peak RSS)."""
    import requests

    from airflow_provider_zohocrm.zoho.auth import OAuthCredentials, TokenManager
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient
    from airflow_provider_zohocrm.zoho.datacenters import resolve_endpoints
    from airflow_provider_zohocrm.zoho.sources import whole_module_query

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(n, child))
    server.start()
    info = parent.recv()
    creds = OAuthCredentials(info["client_id"], info["client_secret"], info["refresh_token"])
    tokens = TokenManager(creds, resolve_endpoints("us", info["url"], info["url"]), requests.Session())
    client = ZohoCRMClient(tokens, requests.Session(), timeout=(5.0, 120.0))
    base_rss = _rss_mb()
    started = time.perf_counter()
    seen: set[str] = set()
    rows = 0
    for row in client.iter_coql(whole_module_query("Leads", ["Email"], None, None)):
        seen.add(row["id"])
        rows += 1
    read_s = time.perf_counter() - started
    parent.send("done")
    server_stats = parent.recv()
    server.join(timeout=60)
    return {
        "n": n,
        "rows": rows,
        "unique": len(seen),
        "calls": server_stats["coql_calls"],
        "expected_calls": -(-n // 2000),
        "credits_emulator": server_stats["credits"],
        "credits_client": client.credits_spent,
        "max_offset_plus_limit": server_stats["coql_max_reach"],
        "read_s": round(read_s, 2),
        "client_peak_rss_mb": round(_rss_mb(), 1),
        "client_base_rss_mb": round(base_rss, 1),
        "seed_s": round(info["seed_s"], 2),
        "emulator_base_rss_mb": round(info["base_rss_mb"], 1),
        "emulator_seeded_rss_mb": round(info["seed_rss_mb"], 1),
        "emulator_peak_rss_mb": round(server_stats["server_peak_rss_mb"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="150000,1000000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.large_reads", "--one", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        "| records | COQL calls (⌈N/2000⌉) | max offset+limit | credits (emulator / client) | read wall s"
        " | client peak RSS MB | emulator seed s | emulator RSS MB (empty → seeded → peak) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        assert r["rows"] == r["unique"] == r["n"], r
        print(
            f"| {r['n']:,} | {r['calls']} ({r['expected_calls']}) | {r['max_offset_plus_limit']:,}"
            f" | {r['credits_emulator']} / {r['credits_client']} | {r['read_s']} | {r['client_peak_rss_mb']}"
            f" | {r['seed_s']} | {r['emulator_base_rss_mb']} → {r['emulator_seeded_rss_mb']} →"
            f" {r['emulator_peak_rss_mb']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
