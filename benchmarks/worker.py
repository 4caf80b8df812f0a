"""Client-side workloads of the benchmark, each run in a fresh subprocess by ``benchmarks/run.py``.

Prints one JSON line on stdout. The Zoho connection comes from ``AIRFLOW_CONN_ZOHOCRM_DEFAULT`` (the emulator).

Modes:

``sequential``  The same job without Airflow: read the custom view with ``ZohoCRMHook.iter_records`` (collecting
                ids exactly as the DAG's ``find_candidates`` task does for a view source), then send ≤ 500-id batches one after
                another. Also measures the find step's peak memory: the peak RSS mark is reset after imports
                and the token grant (``/proc/self/clear_refs``), then peak RSS (VmHWM) after the find step minus
                RSS before it. (``ru_maxrss`` alone cannot be reset: Airflow's imports peak higher than the
                find step, so it is only the fallback where clear_refs is unavailable.)
``per_record``  What a plain HttpOperator loop does: one single-record unblock call per id, one after another.
``find``        Only the find step (memory measurement without the unblock part).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: ``5`` → /proc/self/clear_refs), so the peak measured after the
    find step is the find step's own and not the import phase's (Airflow's imports peak higher, then free)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def _find(hook, module: str, cvid: str) -> list[str]:
    # The view-source code path of dags/zoho_unblock_bounced_emails.py::find_candidates, line for line
    # (the hook yields each record once, so the DAG keeps the list as read).
    rows = hook.iter_records(module, cvid=str(cvid), fields=["id"])
    return [str(row["id"]) for row in rows]


def _ids_size(ids: list[str]) -> int:
    """Bytes held by the id list itself (list object + the id strings)."""
    return sys.getsizeof(ids) + sum(sys.getsizeof(i) for i in ids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sequential", "per_record", "find"])
    parser.add_argument("--module", default="Leads")
    parser.add_argument("--cvid", required=True)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--limit", type=int, default=0, help="per_record: only the first LIMIT ids")
    args = parser.parse_args()

    from airflow_provider_zohocrm.hooks.zohocrm import ZohoCRMHook
    from airflow_provider_zohocrm.zoho.unblock import UnblockReport

    t0 = time.perf_counter()
    hook = ZohoCRMHook(zohocrm_conn_id="zohocrm_default")
    hook.tokens.get_token()  # the one token call; also loads the HTTP stack before the baseline is taken
    gc.collect()
    reset = _reset_peak()
    baseline = (_status_kib("VmRSS") or 0) * 1024 if reset else _maxrss_bytes()

    t_find = time.perf_counter()
    ids = _find(hook, args.module, args.cvid)
    find_seconds = time.perf_counter() - t_find
    peak_after_find = (_status_kib("VmHWM") or 0) * 1024 if reset else _maxrss_bytes()
    out: dict = {
        "mode": args.mode,
        "n_ids": len(ids),
        "find_seconds": find_seconds,
        "rss_baseline": baseline,
        "rss_find_delta": peak_after_find - baseline,
        "rss_method": "VmHWM after find - VmRSS before (peak reset via clear_refs)"
        if reset
        else "ru_maxrss after find - ru_maxrss before",
        "ids_list_bytes": _ids_size(ids),
    }

    if args.mode == "sequential":
        report = UnblockReport(module=args.module, unblock_fields=["Email"])
        for i in range(0, len(ids), args.batch_size):
            batch = ids[i : i + args.batch_size]
            report.add_answer(batch, hook.unblock_emails(args.module, batch, ["Email"]))
        out["reported"] = report.total
    elif args.mode == "per_record":
        sample = ids[: args.limit] if args.limit else ids
        t_unblock = time.perf_counter()
        for rid in sample:
            hook.unblock_email(args.module, rid, ["Email"])
        out["per_record_ids"] = len(sample)
        out["per_record_seconds"] = time.perf_counter() - t_unblock
    out["total_seconds"] = time.perf_counter() - t0
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
