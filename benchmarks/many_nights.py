"""Many nights on a large org (issue 18): rolling coverage at a budget, beside a full nightly ``emails`` check and a
nightly ``sweep``, on the same simulated org. Prints Markdown tables.

    python -m benchmarks.many_nights [--leads 200000] [--nights 14] [--budget 20000] [--bounces-per-day 300]
                                     [--policy-hours 24] [--emails-nights 14] [--read-1m]

**How it runs.** No Airflow: each night drives the same steps as a run of the example DAG for one source, in one
process, so that 14 nights of 200,000 records take minutes, not hours. A night is: a fresh client (a new run),
the whole-module COQL read of the candidates, then

- ``rolling``: ``hooks/coverage_run.run_source_once`` (claim, plan ``budget`` records, run the job with a
  checkpoint, commit: the DAG's ``find_candidates`` → ``unblock_emails`` → ``report`` steps) on an in-memory
  store in place of the Airflow Variable;
- ``emails``: ``run_unblock`` with ``verify="emails"`` over every candidate (no budget);
- ``sweep``: ``run_unblock`` with ``verify="sweep"`` over every candidate.

The emulator runs in the same process. Between nights its clock moves one day (``backend.advance``) and new soft
bounces arrive: ``--bounces-per-day`` records, chosen at random among those not blocked, get an email that
bounced at a random time in the past 24 hours and are blocked. The policy (``min_hours_since_bounce``) is
``--policy-hours``. A bounce is *eligible* once it is that old; the tables give the days from eligible to the
first unblock of that record after the bounce, the bounces never unblocked by the end, the records whose Emails
list was never read, and the unblocks sent while the record's latest bounce was younger than the policy (a
sweep does not check, so it sends them; the ``emails`` modes must send none).

``--read-1m`` also reads 1,000,000 records once (``benchmarks.large_reads``, client and emulator in processes of
their own).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

DAY = 86_400.0


class MemoryVariables:
    """The store's three Variable calls, in memory (the simulation has no Airflow)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


@dataclass
class Night:
    number: int
    read: int
    credits: int
    calls: int
    wall_s: float
    unblocked: int


@dataclass
class Outcome:
    mode: str
    nights: list[Night] = field(default_factory=list)
    latencies_days: list[float] = field(default_factory=list)
    bounces: int = 0
    never_unblocked: int = 0
    never_read: int = 0
    young_unblocks: int = 0
    wall_s: float = 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def simulate(
    mode: str,
    *,
    leads: int,
    nights: int,
    budget: int,
    bounces_per_day: int,
    policy_hours: float,
    parallel: int,
    seed: int = 18,
) -> Outcome:
    import requests

    from airflow_provider_zohocrm.hooks.coverage_run import run_source_once
    from airflow_provider_zohocrm.hooks.coverage_store import CoverageStore
    from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator
    from airflow_provider_zohocrm.testing.emails import bounced, sent
    from airflow_provider_zohocrm.zoho.addresses import addresses_by_id, coql_with_fields
    from airflow_provider_zohocrm.zoho.auth import OAuthCredentials, TokenManager
    from airflow_provider_zohocrm.zoho.client import RetryPolicy, ZohoCRMClient
    from airflow_provider_zohocrm.zoho.datacenters import resolve_endpoints
    from airflow_provider_zohocrm.zoho.sources import whole_module_query
    from airflow_provider_zohocrm.zoho.unblock_job import UnblockPlan, run_unblock

    rng = random.Random(seed)
    backend = EmulatorBackend(EmulatorConfig())
    backend.add_many_records("Leads", leads, first_id=4_876_876_000_000_100_001, step=7)
    ids = sorted(backend.records("Leads"), key=int)
    out = Outcome(mode)
    bounces: list[tuple[str, float]] = []
    blocked: set[str] = set()
    store = CoverageStore("simulation", "Leads.all", MemoryVariables(), settle_seconds=0.0)
    # the addresses come with the ids, as the DAG reads a verify="emails" source (no extra call)
    query = coql_with_fields(whole_module_query("Leads", ["Email"], None, None), ["Email"])
    started_all = time.perf_counter()
    with ZohoCRMEmulator(backend) as em:
        creds = OAuthCredentials(backend.client_id, backend.client_secret, backend.refresh_token)
        for night in range(1, nights + 1):
            now = backend.now()
            for rid in ids:  # unblocked since the last night: may bounce again
                if rid in blocked and backend.unblock_events("Leads", rid):
                    last = backend.unblock_events("Leads", rid)[-1]
                    if last > max(t for r, t in bounces if r == rid):
                        blocked.discard(rid)
                if not blocked:
                    break
            for rid in rng.sample([r for r in ids if r not in blocked], bounces_per_day):
                at = now - rng.uniform(0, DAY)
                backend.add_email("Leads", rid, sent_at=at - 60, status=[sent(), bounced(at)])
                backend.set_email_state("Leads", rid, blocked="temporary")
                bounces.append((rid, at))
                blocked.add(rid)
            backend.reset_stats()
            tokens = TokenManager(creds, resolve_endpoints("us", em.url, em.url), requests.Session())
            client = ZohoCRMClient(
                tokens, retry=RetryPolicy(max_attempts=5, backoff_base=0.01, backoff_max=0.1)
            )
            t0 = time.perf_counter()
            rows = list(client.iter_coql(query))
            candidates = [str(row["id"]) for row in rows]
            addresses = addresses_by_id(rows, ["Email"]) if mode != "sweep" else None
            if mode == "rolling":
                result = run_source_once(
                    client,
                    store,
                    f"night-{night}",
                    candidates,
                    module="Leads",
                    budget=budget,
                    min_hours_since_bounce=policy_hours,
                    max_parallel=parallel,
                    addresses=addresses,
                )
                report = result.report
            else:
                plan = UnblockPlan.build(
                    "Leads",
                    candidates,
                    ["Email"],
                    500,
                    verify=mode,
                    min_hours_since_bounce=policy_hours if mode == "emails" else 0,
                    addresses=addresses,
                    strict=False,
                )
                report = run_unblock(client, plan, parallel)
            wall = time.perf_counter() - t0
            stats = backend.stats
            out.nights.append(
                Night(
                    night,
                    read=int(stats["requests"].get("emails", 0)),
                    credits=int(stats["credits_used"]),
                    calls=sum(int(n) for n in stats["requests"].values()),
                    wall_s=wall,
                    unblocked=len(report.ids["unblocked"]) if report else 0,
                )
            )
            counts = {k: v for k, v in (report.counts if report else {}).items() if v}
            print(f"  {mode} night {night}: {out.nights[-1]} {counts}", file=sys.stderr, flush=True)
            backend.advance(DAY)
        reads = backend.email_list_reads()
    out.wall_s = time.perf_counter() - started_all
    policy = policy_hours * 3600.0
    bounce_times: dict[str, list[float]] = {}
    for rid, at in bounces:
        bounce_times.setdefault(rid, []).append(at)
    for rid, times in bounce_times.items():
        events = backend.unblock_events("Leads", rid)
        times.sort()
        for i, at in enumerate(times):
            until = times[i + 1] if i + 1 < len(times) else math.inf
            after = [e for e in events if at <= e < until]
            out.bounces += 1
            if after:
                out.latencies_days.append(max(0.0, after[0] - (at + policy)) / DAY)
            else:
                out.never_unblocked += 1
            out.young_unblocks += sum(1 for e in after if e - at < policy)
    if mode == "sweep":
        out.never_read = 0  # a sweep sends every record to the bulk unblock; it reads no Emails list
    else:
        out.never_read = len(ids) - len({rid for (_m, rid) in reads})
    return out


def _table(results: list[Outcome], args: argparse.Namespace) -> str:
    lines = [
        f"Org: {args.leads:,} Leads; {args.bounces_per_day:,} new soft bounces a day; policy"
        f" min_hours_since_bounce={args.policy_hours:g}; budget {args.budget:,} Emails reads a night (rolling).",
        "",
        "| mode | nights | credits / night (mean, max) | calls / night (mean) | wall s / night (mean, max)"
        " | Emails reads / night | eligible → unblocked, days (p50 / p95 / max) | bounces never unblocked"
        " | records never read | unblocks of bounces younger than the policy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        credits = [n.credits for n in r.nights]
        walls = [n.wall_s for n in r.nights]
        lat = r.latencies_days
        lines.append(
            f"| {r.mode} | {len(r.nights)} | {statistics.mean(credits):,.0f}, {max(credits):,}"
            f" | {statistics.mean(n.calls for n in r.nights):,.0f}"
            f" | {statistics.mean(walls):.1f}, {max(walls):.1f}"
            f" | {statistics.mean(n.read for n in r.nights):,.0f}"
            f" | {_percentile(lat, 0.5):.2f} / {_percentile(lat, 0.95):.2f} / {max(lat) if lat else math.nan:.2f}"
            f" | {r.never_unblocked:,} of {r.bounces:,} | {r.never_read:,} | {r.young_unblocks:,} |"
        )
    lines += [
        "",
        "Per night (rolling):",
        "",
        "| night | Emails reads | credits | calls | wall s | unblocked |",
    ]
    lines.append("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r.mode != "rolling":
            continue
        for n in r.nights:
            lines.append(
                f"| {n.number} | {n.read:,} | {n.credits:,} | {n.calls:,} | {n.wall_s:.1f} | {n.unblocked:,} |"
            )
    return "\n".join(lines)


def rule_of_thumb(module_size: int, days: int, deferred_due: int = 0) -> int:
    """Emails reads a night for a full cycle every ``days`` nights: ⌈N / K⌉, plus the deferred records due."""
    return math.ceil(module_size / days) + deferred_due


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--nights", type=int, default=14)
    parser.add_argument("--budget", type=int, default=20_000)
    parser.add_argument("--bounces-per-day", type=int, default=300)
    parser.add_argument("--policy-hours", type=float, default=24.0)
    parser.add_argument("--parallel", type=int, default=4, help="Zoho calls in flight (Emails reads)")
    parser.add_argument(
        "--emails-nights", type=int, default=None, help="nights of the full emails check (default: --nights)"
    )
    parser.add_argument("--modes", default="rolling,emails,sweep")
    parser.add_argument("--read-1m", action="store_true", help="also read 1,000,000 records once")
    args = parser.parse_args(argv)
    results = []
    for mode in args.modes.split(","):
        nights = args.emails_nights if mode == "emails" and args.emails_nights else args.nights
        results.append(
            simulate(
                mode,
                leads=args.leads,
                nights=nights,
                budget=args.budget,
                bounces_per_day=args.bounces_per_day,
                policy_hours=args.policy_hours,
                parallel=args.parallel,
            )
        )
    print(_table(results, args))
    print()
    print("Rule of thumb: Emails reads a night for a full cycle every K nights = ⌈N / K⌉ (+ deferred due):")
    print("| records N | K = 1 | K = 7 | K = 10 | K = 14 | K = 30 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (50_000, 200_000, 1_000_000):
        print(f"| {n:,} | " + " | ".join(f"{rule_of_thumb(n, k):,}" for k in (1, 7, 10, 14, 30)) + " |")
    if args.read_1m:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.large_reads", "--one", "1000000"],
            capture_output=True,
            text=True,
            check=True,
        )
        r: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        print()
        print(
            "| records read once | COQL calls | credits | wall s | client peak RSS MB | emulator peak RSS MB |"
        )
        print("|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {r['n']:,} | {r['calls']} | {r['credits_emulator']} | {r['read_s']} | {r['client_peak_rss_mb']}"
            f" | {r['emulator_peak_rss_mb']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
