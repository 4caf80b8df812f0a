"""What each verify mode costs (issue 13): calls, credits, wall time and 429s at N candidates.

    python -m benchmarks.verify_modes [--n 10000] [--shares 0.05,0.30] [--latency-ms 100] [--concurrency 10]
                                      [--how dag|operator] [--out benchmarks/results]

For each bounced share p and each mode (``none``, ``sweep``, ``emails``) it seeds a fresh emulator with N Leads
that all have an email, p of them blocked, each with an Emails history that agrees with its block state
(``seed_email_org``), and finds the candidates the way the example DAG's whole-module source does
(``select id from Leads where (Email is not null)``, 2,000 rows per COQL call). Then:

- ``--how dag`` (default): the example DAG with ``airflow dags test --use-executor`` (LocalExecutor, api-server,
  SQLite), conf ``{"sources": [{"module": "Leads", "all": true, "verify": MODE}]}`` (plus ``"min_hours_since_bounce": 24``
  for ``emails``).
- ``--how operator``: the same find step and ``UnblockEmailOperator(max_parallel_calls=C)`` in this process, no
  Airflow scheduler (the calls are the same; the wall time lacks Airflow's fixed overhead).

Credits are computed from the calls with the published weights where known (COQL with LIMIT 2,000: 3 credits,
as secondary sources quote Zoho's API-limits page) and 1 credit per call where none was found (Emails related
list, Unblock Email, Add Tags: **assumed**). The emulator's own counter (1 per call) is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_provider_zohocrm.testing import EmulatorBackend, EmulatorConfig, ZohoCRMEmulator, airflow_cli
from airflow_provider_zohocrm.testing.seed import seed_email_org

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DAG_ID = "zoho_unblock_bounced_emails"
MODES = ("none", "sweep", "emails")
COQL_ROWS, BULK_MAX, EMAILS_PER_PAGE = 2000, 500, 10
#: Credits per call: (weight, source). COQL 1/2/3 for LIMIT 1-200/201-1,000/1,001-2,000 (Zoho's API limits page,
#: quoted in docs/notes §8); the rest 1, assumed (Zoho publishes no weight for them).
CREDITS = {
    "coql": (3, "published (LIMIT 2,000)"),
    "records": (3, "published (Get Records with cvid)"),
    "emails": (1, "assumed"),
    "unblock_bulk": (1, "assumed"),
    "unblock_single": (1, "assumed"),
    "add_tags": (1, "assumed"),
}
CRM_ENDPOINTS = tuple(CREDITS)
#: Of the blocked records: soft (old, unblockable), soft but bounced < 24 h ago, hard, soft at the 5-times
#: limit, soft with a long history. Of the others: never bounced, unblocked since their bounce, no email.
BLOCKED_MIX = {"old_soft": 0.60, "recent_soft": 0.10, "hard": 0.15, "limit": 0.10, "deep_soft": 0.05}
CLEAN_MIX = {"never_bounced": 0.90, "soft_unblocked_since": 0.05, "no_emails": 0.05}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mix(n: int, share: float) -> dict[str, int]:
    """Record counts per seed kind: ``share`` of ``n`` blocked, spread over the blocked kinds."""
    blocked = round(n * share)
    counts = _spread(blocked, BLOCKED_MIX)
    for kind, count in _spread(n - blocked, CLEAN_MIX).items():
        counts[kind] = counts.get(kind, 0) + count
    return {k: v for k, v in counts.items() if v}


def _spread(total: int, shares: dict[str, float]) -> dict[str, int]:
    counts = {kind: int(total * share) for kind, share in shares.items()}
    counts[next(iter(shares))] += total - sum(counts.values())
    return counts


def minimum_calls(mode: str, n: int, targets: int, extra_pages: int) -> dict[str, int]:
    """The fewest calls a mode can make: 1 token + ⌈N/2000⌉ COQL pages, then
    none/sweep: ⌈N/500⌉ unblock calls; emails: N Emails reads (+ one per further page a record needs) and
    ⌈T/500⌉ unblock calls for the T soft (or unknown) targets."""
    base = {"token": 1, "coql": math.ceil(n / COQL_ROWS)}
    if mode == "emails":
        return {**base, "emails": n + extra_pages, "unblock": math.ceil(targets / BULK_MAX)}
    return {**base, "emails": 0, "unblock": math.ceil(n / BULK_MAX)}


def credits_of(requests: dict[str, int]) -> int:
    return sum(requests.get(name, 0) * weight for name, (weight, _) in CREDITS.items())


def seeded_backend(n: int, share: float, latency: float, concurrency: int) -> tuple[EmulatorBackend, Any]:
    backend = EmulatorBackend(EmulatorConfig(latency=latency, concurrency_limit=concurrency))
    t0 = time.perf_counter()
    seeded = seed_email_org(backend, "Leads", counts=mix(n, share))
    log(f"  seeded {n:,} Leads ({share:.0%} blocked) in {time.perf_counter() - t0:.1f} s")
    return backend, seeded


def snapshot(backend: EmulatorBackend) -> dict[str, Any]:
    s = backend.stats
    return {
        "requests": {k: int(v) for k, v in s["requests"].items() if v},
        "token_requests": int(s["token_requests"]),
        "rejected_429": int(s["rejected_429"]),
        "credits_emulator": int(s["credits_used"]),
        "peak_concurrency": int(s["peak_concurrency"]),
    }


def run_operator(em: ZohoCRMEmulator, mode: str, concurrency: int, tmp: Path) -> dict[str, Any]:
    """The DAG's work without the scheduler: the whole-module COQL find, then the operator."""
    from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
    from airflow_provider_zohocrm.operators.unblock_email import UnblockEmailOperator

    os.environ["AIRFLOW_CONN_ZOHOCRM_DEFAULT"] = json.dumps(em.connection())
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # this run's own token cache
    t0 = time.perf_counter()
    hook = ZohoCRMHook()
    ids = [str(r["id"]) for r in hook.iter_coql("select id from Leads where (Email is not null)")]

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pass

    result = UnblockEmailOperator(
        task_id=f"bench_{mode}",
        module="Leads",
        record_ids=ids,
        verify=mode,
        min_hours_since_bounce=24,
        max_parallel_calls=concurrency,
        fail_on=[],
    ).execute({"ti": TI()})  # type: ignore[arg-type]
    return {"wall": time.perf_counter() - t0, "counts": result["counts"], "state": "success"}


def run_dag(
    em: ZohoCRMEmulator, mode: str, home: Path, executor_env: dict[str, str], tag: str
) -> dict[str, Any]:
    env = airflow_cli.airflow_env(
        home,
        REPO / "dags",
        PYTHONPATH=str(REPO),
        **airflow_cli.PLAIN_AIRFLOW,
        **executor_env,
        AIRFLOW_CONN_ZOHOCRM_DEFAULT=json.dumps(em.connection()),
        TMPDIR=str(home / "tmp" / tag),
    )
    (home / "tmp" / tag).mkdir(parents=True, exist_ok=True)
    source: dict[str, Any] = {"module": "Leads", "all": True, "verify": mode}
    if mode == "emails":
        source["min_hours_since_bounce"] = 24
    conf = {"sources": [source]}
    run = airflow_cli.dags_test(
        DAG_ID, conf, env, use_executor=True, timeout=1800, log_path=home / f"dag-{tag}.log"
    )
    states = re.findall(r"DagRun Finished: .*?state=(\w+)", run.output)
    state = states[-1] if states else "unknown"
    if state != "success":
        log(f"  tail of output (full: {home / f'dag-{tag}.log'}):\n{run.output[-3000:]}")
    return {"wall": run.seconds, "state": state}


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    L, C = args.latency_ms / 1000, args.concurrency
    rows: list[dict[str, Any]] = []
    home = Path(tempfile.mkdtemp(prefix="zohocrm-bench-verify-"))
    try:
        executor_env: dict[str, str] = {}
        server = None
        if args.how == "dag":
            airflow_cli.migrate(
                airflow_cli.airflow_env(
                    home, REPO / "dags", PYTHONPATH=str(REPO), **airflow_cli.PLAIN_AIRFLOW
                )
            )
            server = airflow_cli.api_server(
                airflow_cli.airflow_env(
                    home, REPO / "dags", PYTHONPATH=str(REPO), **airflow_cli.PLAIN_AIRFLOW
                ),
                parallelism=C,
            )
            executor_env = {**server.__enter__().executor_env, "ZOHOCRM_MAX_PARALLEL": str(C)}
        try:
            for share in args.shares:
                for mode in MODES:
                    tag = f"{mode}-{int(share * 100)}"
                    log(f"{tag}: N={args.n:,} L={args.latency_ms:g} ms C={C} ({args.how}) …")
                    backend, seeded = seeded_backend(args.n, share, L, C)
                    expected = seeded.expected_outcomes(mode)
                    targets = sum(
                        1
                        for o in seeded.expected_outcomes("emails").values()
                        if o in ("unblocked", "limit_reached")
                    )
                    extra = 0  # newest first: every seeded kind's latest status is on its first page
                    with ZohoCRMEmulator(backend) as em:
                        tmp = home / "tmp" / tag
                        tmp.mkdir(parents=True, exist_ok=True)
                        if args.how == "dag":
                            run = run_dag(em, mode, home, executor_env, tag)
                        else:
                            run = run_operator(em, mode, C, tmp)
                        stats = snapshot(backend)
                    req = stats["requests"]
                    minimum = minimum_calls(mode, args.n, targets, extra)
                    calls = {
                        "token": stats["token_requests"],
                        "coql": req.get("coql", 0),
                        "emails": req.get("emails", 0),
                        "unblock": req.get("unblock_bulk", 0) + req.get("unblock_single", 0),
                    }
                    want = {o: 0 for o in expected.values()}
                    for o in expected.values():
                        want[o] += 1
                    row = {
                        "mode": mode,
                        "n": args.n,
                        "share": share,
                        "how": args.how,
                        "state": run["state"],
                        "wall": run["wall"],
                        "calls": calls,
                        "calls_total": sum(calls.values()),
                        "minimum": minimum,
                        "minimum_total": sum(minimum.values()),
                        "credits": credits_of(req),
                        "credits_emulator": stats["credits_emulator"],
                        "r429": stats["rejected_429"],
                        "peak_concurrency": stats["peak_concurrency"],
                        "expected_outcomes": want,
                        "counts": run.get("counts"),
                        "records_unblocked": int(backend.stats.get("records_unblocked", 0)),
                    }
                    log(
                        f"  → {row['state']} in {row['wall']:.1f} s; calls {calls} (min {minimum});"
                        f" credits {row['credits']}; 429s {row['r429']}"
                    )
                    rows.append(row)
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return rows


def lower_bound(mode: str, n: int, targets: int, latency: float, concurrency: int) -> float:
    """COQL pages one after another, then C calls in flight: Emails reads, then the unblock calls."""
    coql = math.ceil(n / COQL_ROWS) * latency
    if mode == "emails":
        reads = math.ceil(n / concurrency) * latency
        return coql + reads + math.ceil(math.ceil(targets / BULK_MAX) / concurrency) * latency
    return coql + math.ceil(math.ceil(n / BULK_MAX) / concurrency) * latency


def table(rows: list[dict[str, Any]], latency: float, concurrency: int) -> str:
    lines = [
        "| mode | blocked | calls: token + COQL + Emails + unblock = total | minimum | credits | wall time |"
        " lower bound | 429s | ids sent to unblock | unblocked | deferred | not_blocked |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c, want = r["calls"], r["expected_outcomes"]
        targets = sum(want.get(o, 0) for o in ("unblocked", "limit_reached"))
        sent = targets if r["mode"] == "emails" else r["n"]
        unblocked = r["records_unblocked"]
        check = "" if unblocked == want.get("unblocked", 0) else f" (expected {want.get('unblocked', 0):,})"
        lb = lower_bound(r["mode"], r["n"], targets, latency, concurrency)
        lines.append(
            f"| `{r['mode']}` | {r['share']:.0%} | {c['token']} + {c['coql']} + {c['emails']:,} + {c['unblock']:,}"
            f" = {r['calls_total']:,} | {r['minimum_total']:,} | {r['credits']:,} | {r['wall']:.1f} s |"
            f" {lb:.1f} s | {r['r429']} | {sent:,} | {unblocked:,}{check} | {want.get('deferred', 0):,} |"
            f" {want.get('not_blocked', 0):,} |"
        )
    return "\n".join(lines)


def render(rows: list[dict[str, Any]], args: argparse.Namespace, seconds: float) -> str:
    how = (
        "the example DAG, `airflow dags test --use-executor` (LocalExecutor, api-server, SQLite)"
        if args.how == "dag"
        else "the find step and `UnblockEmailOperator(max_parallel_calls=C)` in one process (no scheduler)"
    )
    L, C = args.latency_ms / 1000, args.concurrency
    md = [
        "## Verify modes",
        "",
        f"`python -m benchmarks.verify_modes --n {args.n} --shares {','.join(map(str, args.shares))}"
        f" --latency-ms {args.latency_ms:g} --concurrency {C} --how {args.how}` —"
        f" {getattr(args, 'measured_at', None) or time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU(s)"
        + (f", total {seconds:.0f} s" if seconds else "")
        + ". Wall times come from a 2-CPU machine shared with other jobs: calls, credits and 429s are exact,"
        " wall times are upper bounds"
        + (
            " (for `none` and `sweep` they are almost all Airflow's per-task overhead)."
            if args.how == "dag"
            else "."
        ),
        "",
        f"N = {args.n:,} candidate Leads (the whole-module source: every record with an email, read with COQL,"
        f" 2,000 rows per call), a share of them blocked (of those: 60 % old soft bounce, 10 % soft bounce"
        f" < 24 h old, 15 % hard, 10 % at the 5-unblocks limit, 5 % long history); latency {args.latency_ms:g} ms"
        f" per CRM call, 429 past {C} concurrent calls; run through {how}; `min_hours_since_bounce=24` for"
        " `emails`. Each run starts cold (new emulator, new token cache).",
        "",
        table(rows, L, C),
        "",
        "Credits: COQL 3 per 2,000-row call (the weight published for LIMIT 1,001 to 2,000, as secondary sources"
        " quote it); Emails related list and Unblock Email 1 per call (**assumed**: none found published). Minimum calls: 1 token +"
        " ⌈N/2000⌉ COQL, then `none` and `sweep`: ⌈N/500⌉ unblock; `emails`: N Emails reads (+1 for each further"
        " page a record needs: none here, since the newest email comes first) + ⌈T/500⌉ unblock for the T soft"
        " targets. The example DAG cuts the candidates into whole 500-id batches over at most C mapped tasks"
        " and each task unblocks its own targets, so `emails` makes up to one unblock call per task instead of"
        " ⌈T/500⌉. Lower bound: COQL pages one after another, then C calls in flight (Emails reads, then unblock"
        " calls), each L long; Airflow's fixed overhead (~6 s, see the main benchmark) comes on top. `none` on"
        " a whole-module source sends every record, like `sweep`, but reports the never-blocked ones as"
        " `already_unblocked`; with a source that lists only blocked records (its intended use) it sends only"
        " those.",
        "",
    ]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="candidates (records with an email)")
    p.add_argument("--shares", default="0.05,0.30", help="comma-separated shares of blocked records")
    p.add_argument("--latency-ms", type=float, default=100.0)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--how", choices=("dag", "operator"), default="dag")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--name", default="verify_modes", help="results file name (without .md/.json)")
    p.add_argument("--render", metavar="JSON", help="only re-render the table from a saved verify_modes.json")
    args = p.parse_args(argv)
    args.shares = [float(s) for s in args.shares.split(",") if s.strip()]
    started = time.perf_counter()
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        rows, seconds = saved["rows"], float(saved.get("seconds", 0))
        args.measured_at = saved.get("measured_at") or time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(Path(args.render).stat().st_mtime)
        )
        for key in ("n", "latency_ms", "concurrency", "how"):
            setattr(args, key, saved["args"][key])
        args.shares = saved["args"]["shares"]
    else:
        rows = measure(args)
        seconds = time.perf_counter() - started
    text = render(rows, args, seconds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text(text)
    if not args.render:
        (out / f"{args.name}.json").write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "seconds": seconds,
                    "measured_at": time.strftime("%Y-%m-%d %H:%M"),
                    "rows": rows,
                },
                indent=1,
                default=str,
            )
        )
    print(text)
    return 0 if all(r["state"] == "success" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
