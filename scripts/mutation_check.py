#!/usr/bin/env python3
"""A small mutation check: does each listed bug make the tests that cover its code fail?

Each mutation is one realistic bug: a file, an exact piece of its text (found exactly once), what replaces it,
and the tests that must fail with it (files, and a ``-k`` expression). For each mutation the script copies the
tree to a temporary directory (never touching the working tree), applies the bug there, runs the listed tests
with ``PYTHONPATH`` pointing at the copy, and reports:

- ``killed``: the tests failed (what we want);
- ``SURVIVED``: they passed with the bug in;
- ``not applicable``: the old text is no longer in the file exactly once (the code was rewritten: refresh the
  mutation), so nothing was run;
- ``ERROR``: pytest could not run the tests (a listed file is missing, nothing matched ``-k``, a crash).

Before the mutations, every distinct test selection is run once on the unmutated copy: a selection that fails
there would "kill" every mutation, so it is reported as ``ERROR`` for each of its mutations instead.

Usage (from the repository root; the tests run in series, one pytest process at a time)::

    .venv/bin/python scripts/mutation_check.py            # every mutation
    .venv/bin/python scripts/mutation_check.py --list     # names, files, tests
    .venv/bin/python scripts/mutation_check.py -m precedence-deferred-unblocked -m coql-desc-case

Exit status: 0 when every applicable mutation was killed; 1 when one survived or errored; 2 for bad arguments.
How to add a mutation: docs/development.md, "Mutation check".
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  #: the tree copied (``--root`` to check another checkout)
AUTH = "airflow_provider_zohocrm/zoho/auth.py"
PER_FIELD = "airflow_provider_zohocrm/zoho/per_field.py"
COVERAGE = "airflow_provider_zohocrm/zoho/coverage.py"
COVERAGE_RUN = "airflow_provider_zohocrm/hooks/coverage_run.py"
COVERAGE_STORE = "airflow_provider_zohocrm/hooks/coverage_store.py"
COQL_PAGING = "airflow_provider_zohocrm/zoho/coql_paging.py"
SIM_TESTS = "tests/unit/test_token_simulation.py"
COVERAGE_TESTS = "tests/unit/test_coverage.py"
COVERAGE_RUN_TESTS = "tests/unit/test_coverage_run.py"
COVERAGE_SCENARIO_TESTS = "tests/unit/test_coverage_scenarios.py"
COVERAGE_STORE_TESTS = "tests/unit/test_coverage_store.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  #: relative to the repository root
    old: str  #: exact text, found exactly once in ``file``
    new: str
    tests: tuple[str, ...]  #: test files (or node ids) that must fail
    k: str | None = None  #: pytest ``-k`` expression narrowing ``tests``
    why: str = ""  #: the bug, in words

    def selection(self) -> tuple[tuple[str, ...], str | None]:
        return self.tests, self.k


# The token simulation's tests that patch the protocol themselves ("catches") are left out of every selection:
# a mutation here could make their own patch miss its text and fail for that reason instead.
MUTATIONS: list[Mutation] = [
    # -- the token protocol (zoho/auth.py) ----------------------------------------------------------------------
    Mutation(
        "early-refresh-ignores-backoff",
        AUTH,
        "if _blocked(state, self.clock()) or not self._lock.acquire(blocking=False):",
        "if not self._lock.acquire(blocking=False):",
        (SIM_TESTS,),
        "waits_out or every_schedule",
        "issue 30 mutation 1: an early refresh ignores the back-off another machine's failed grant recorded",
    ),
    Mutation(
        "early-refresh-failure-raises",
        AUTH,
        'log.warning("Early token refresh failed (%s); keeping the current token.", exc)',
        "raise",
        (SIM_TESTS,),
        "stays_closed and early-refresh",
        "a failed early refresh fails the task instead of keeping the working token",
    ),
    Mutation(
        "grant-500-retried",
        AUTH,
        "if response.status_code != 503:",
        "if response.status_code not in (500, 503):",
        (SIM_TESTS,),
        "every_schedule_keeps and 500",
        "a token POST answered HTTP 500 (maybe minted) is sent again",
    ),
    Mutation(
        "rejection-replaced-again",
        AUTH,
        "(first_401 and not rejected.accepted) or ",
        "",
        (SIM_TESTS,),
        "persistent_401_costs or failed_replacement",
        "a replacement rejected at once is replaced again instead of recorded",
    ),
    Mutation(
        "failed-replacement-drops-first-401",
        AUTH,
        "replaces=_carried_401(state, now) or _carried_401(local, now)",
        "replaces=None",
        (SIM_TESTS,),
        "failed_replacement or 401-replacement-fails",
        "issue 30 seed 210: after a failed replacement the next token is replaced once more",
    ),
    Mutation(
        "shared-state-behind-local-taken",
        AUTH,
        "    if not isinstance(token, AccessToken) or not token.issued_at:\n        return False\n    mine",
        "    if True:\n        return False\n    mine",
        (SIM_TESTS,),
        "401-record-overwritten",
        "issue 30 seed 556: the Variable's older token is copied over this machine's rejection record",
    ),
    Mutation(
        "failure-record-forgets-dropped-token",
        AUTH,
        'blocked = {**blocked, "dropped": dropped.issued_at}',
        "pass",
        (SIM_TESTS,),
        "found_stay",
        "issue 30 seed 4108: a failure record that dropped a rejected token is undone by the Variable's older state",
    ),
    Mutation(
        "single-flight-does-not-wait",
        AUTH,
        "with self._lease(wait=True, since=self._last_blob) as status:",
        "with self._lease(wait=False, since=self._last_blob) as status:",
        (SIM_TESTS,),
        "seeded_random_schedules_keep",
        "a task that finds the lease busy grants anyway",
    ),
    # -- per-field outcomes (zoho/per_field.py) -------------------------------------------------------------------
    Mutation(
        "precedence-deferred-unblocked",
        PER_FIELD,
        "    Outcome.DEFERRED,\n    Outcome.UNBLOCKED,\n",
        "    Outcome.UNBLOCKED,\n    Outcome.DEFERRED,\n",
        ("tests/unit/test_per_address.py",),
        None,
        "issue 30 mutation 2: a record deferred on one field and unblocked on the other counts as unblocked",
    ),
    Mutation(
        "record-outcome-least-actionable",
        PER_FIELD,
        "return min(self.outcomes[str(record_id)].values(), key=lambda o: _RANK[o])",
        "return max(self.outcomes[str(record_id)].values(), key=lambda o: _RANK[o])",
        ("tests/unit/test_per_address.py", "tests/unit/test_run_report_fields.py"),
        None,
        "a record's per-record outcome is its least actionable field's",
    ),
    Mutation(
        "hard-bounce-not-blocked",
        PER_FIELD,
        "    if check.verdict == Verdict.HARD:\n        return Outcome.PERMANENTLY_BLOCKED",
        "    if check.verdict == Verdict.HARD:\n        return Outcome.NOT_BLOCKED",
        ("tests/unit/test_per_address.py", "tests/unit/test_plan_addresses.py"),
        None,
        "a hard bounce is reported as not blocked",
    ),
    Mutation(
        "batch-one-too-many",
        PER_FIELD,
        "UnblockCall(key, ids[start : start + size])",
        "UnblockCall(key, ids[start : start + size + 1])",
        ("tests/unit/test_per_address.py", "tests/unit/test_plan_addresses.py"),
        None,
        "an unblock call carries one id more than the batch size (and ids twice)",
    ),
    # -- rolling coverage (zoho/coverage.py, hooks/coverage_run.py, hooks/coverage_store.py; issues 18 and 26) ------
    # The many-nights simulation (test_coverage_simulation.py, about a minute) is listed only where no faster test
    # covers the bug; its own mutants (one per invariant C1-C6) are monkeypatched in-process there.
    Mutation(
        "coverage-range-end-excluded",
        COVERAGE,
        "return i >= 0 and ranges[i][0] <= value <= ranges[i][1]",
        "return i >= 0 and ranges[i][0] <= value < ranges[i][1]",
        (COVERAGE_TESTS, "tests/unit/test_coverage_simulation.py"),
        None,
        "the last id of a covered range counts as not read: it is read twice in a cycle",
    ),
    Mutation(
        "coverage-adjacent-ranges-join",
        COVERAGE,
        "if r_hi < lo or r_lo > hi:",
        "if r_hi < lo - 2 or r_lo > hi + 2:",
        (COVERAGE_TESTS, "tests/unit/test_coverage_simulation.py"),
        None,
        "ranges with one id between them are merged: that id counts as read without being read",
    ),
    Mutation(
        "coverage-zero-budget-accepted",
        COVERAGE,
        "if budget is not None and budget < 1:",
        "if budget is not None and budget < 0:",
        (COVERAGE_TESTS, COVERAGE_SCENARIO_TESTS),
        None,
        "a budget of 0 reads nothing, for ever",
    ),
    Mutation(
        "coverage-cycle-ends-with-unread-records",
        COVERAGE,
        "if plan.completes_cycle and all_fresh_done:",
        "if plan.completes_cycle:",
        (COVERAGE_TESTS,),
        None,
        "a cycle ends although records of its last slice were not read (a failed task): they wait a whole cycle",
    ),
    Mutation(
        "due-share-rounded-up",
        COVERAGE,
        "return None if budget is None else budget // 2",
        "return None if budget is None else (budget + 1) // 2",
        (COVERAGE_TESTS, COVERAGE_SCENARIO_TESTS),
        None,
        "issue 26 C2: due records take ⌈B/2⌉, more than half an odd budget (at B = 1 the whole budget)",
    ),
    Mutation(
        "due-share-at-least-one",
        COVERAGE,
        "return None if budget is None else budget // 2",
        "return None if budget is None else max(1, budget // 2)",
        (COVERAGE_TESTS, COVERAGE_SCENARIO_TESTS),
        None,
        "issue 26 C2: at B = 1 a due record takes the run, so due records can stop the slice for ever",
    ),
    Mutation(
        "retry-backoff-not-growing",
        COVERAGE,
        "strikes[rid] = strikes.get(rid, 0) + 1",
        "strikes[rid] = 1",
        (COVERAGE_SCENARIO_TESTS,),
        None,
        "issue 26: a dead domain is read again every day instead of after 1, 2, 4 … days",
    ),
    Mutation(
        "retry-strikes-not-stored",
        COVERAGE,
        '**({"strikes": dict(self.strikes)} if self.strikes else {}),',
        "",
        (COVERAGE_SCENARIO_TESTS,),
        None,
        "issue 26: the back-off's count is lost when the state is stored, so it never grows past a day",
    ),
    Mutation(
        "retry-backoff-uncapped",
        COVERAGE,
        "return now + min(backoff, RETRY_MAX_SECONDS)",
        "return now + backoff",
        (COVERAGE_SCENARIO_TESTS,),
        None,
        "a dead domain that comes back to life waits months to be read again",
    ),
    Mutation(
        "summary-runs-per-cycle-rounded-down",
        COVERAGE,
        "runs_per_cycle=max(1, math.ceil(size / budget)) if budget else None,",
        "runs_per_cycle=max(1, size // budget) if budget else None,",
        (COVERAGE_TESTS,),
        None,
        "the report promises a cycle one run shorter than it takes",
    ),
    Mutation(
        "coverage-used-without-budget",
        COVERAGE_RUN,
        'return source.get("verify") == "emails" and source.get("max_email_checks") is not None',
        'return source.get("verify") == "emails"',
        (COVERAGE_RUN_TESTS, COVERAGE_SCENARIO_TESTS),
        None,
        "rolling coverage is used by a source that set no budget",
    ),
    Mutation(
        "runs-per-cycle-rounded-down",
        COVERAGE_RUN,
        "return max(1, math.ceil(module_size / budget))",
        "return max(1, module_size // budget)",
        (COVERAGE_RUN_TESTS, COVERAGE_TESTS, COVERAGE_SCENARIO_TESTS),
        None,
        "the rule of thumb promises a cycle one run shorter than it takes",
    ),
    Mutation(
        "dry-run-claim-writes",
        COVERAGE_RUN,
        "    if dry_run or reset_first:\n        return store.peek(",
        "    if reset_first:\n        return store.peek(",
        (COVERAGE_RUN_TESTS,),
        None,
        "issue 26 scenario 8: a dry run takes the lease (writes a Variable; fails next to a live run)",
    ),
    Mutation(
        "task-checkpoint-drops-connection",
        COVERAGE_RUN,
        'ref["conn_id"] = info.get("conn_id")',
        'ref["conn_id"] = None',
        (COVERAGE_RUN_TESTS,),
        None,
        "issue 26: a task saves its verdicts where the report (keyed by connection) never looks: nothing advances",
    ),
    Mutation(
        "checkpoints-deleted-before-commit",
        COVERAGE_RUN,
        '    store.commit(claim, after)\n    if delete:\n        store.delete_checkpoints(run_id, indexes, roles=("", PLAN_ROLE))\n',
        '    if delete:\n        store.delete_checkpoints(run_id, indexes, roles=("", PLAN_ROLE))\n    store.commit(claim, after)\n',
        (COVERAGE_RUN_TESTS,),
        None,
        "issue 26 scenario 6: a commit that fails has lost the run's verdicts (its retry advances nothing)",
    ),
    Mutation(
        "report-deletes-checkpoints-when-collecting",
        COVERAGE_RUN,
        'merged = stores[id(entry)].collect_checkpoints(run_id, by_key.get(str(info["key"]), []))',
        'merged = stores[id(entry)].collect_checkpoints(run_id, by_key.get(str(info["key"]), []), delete=True)',
        (COVERAGE_RUN_TESTS, "tests/emulator/test_coverage_scenarios.py"),
        "commit",
        "issue 26 scenario 6: the report deletes the checkpoints before its commit is stored",
    ),
    Mutation(
        "half-read-record-counted-read",
        COVERAGE_RUN,
        "            if any(v is None for v in deferrals):\n                continue\n",
        "",
        (COVERAGE_SCENARIO_TESTS, COVERAGE_RUN_TESTS),
        None,
        "issue 26 scenario 4: a record with a field the budget left unjudged counts as read",
    ),
    Mutation(
        "budget-unread-record-counted-read",
        COVERAGE_RUN,
        "    if reason == BUDGET_REASON:\n        return None\n",
        "",
        (COVERAGE_RUN_TESTS, COVERAGE_SCENARIO_TESTS),
        None,
        "a record the budget left unread counts as read (deferred) and is skipped for the rest of the cycle",
    ),
    Mutation(
        "coverage-key-drops-connection",
        COVERAGE_STORE,
        "self._parts = (dag_id, source_key) if conn_id is None else (conn_id, dag_id, source_key)",
        "self._parts = (dag_id, source_key)",
        (COVERAGE_STORE_TESTS,),
        None,
        "issue 26: two orgs (connections) of one DAG share one cursor",
    ),
    Mutation(
        "release-rewrites-state",
        COVERAGE_STORE,
        "            else:\n                self.variables.set(self.key, claim.before)",
        "            else:\n                self._write(_state, None)",
        (COVERAGE_STORE_TESTS,),
        None,
        "issue 26 C3: a released claim rewrites the Variable instead of restoring its exact text",
    ),
    Mutation(
        "retried-commit-writes-again",
        COVERAGE_STORE,
        "        if claim.token in commits:\n            return\n",
        "",
        (COVERAGE_STORE_TESTS,),
        None,
        "a retried report step writes its commit a second time (a reset claim's overrides a later run's)",
    ),
    # -- COQL keyset paging ---------------------------------------------------------------------------------------
    Mutation(
        "coql-desc-case",
        COQL_PAGING,
        'descending = (match.group(1) or "asc").lower() == "desc"',
        'descending = (match.group(1) or "asc") == "desc"',
        ("tests/unit/test_coql_paging.py",),
        None,
        "issue 30 mutation 3: ORDER BY id DESC in upper case pages upwards",
    ),
]


@dataclass
class Outcome:
    mutation: Mutation
    status: str
    seconds: float = 0.0
    detail: str = ""
    output: list[str] = field(default_factory=list)


def copy_tree(root: Path, destination: Path) -> None:
    """The files git knows (tracked, and new ones not ignored) as they are in ``root``'s working tree now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = root / name
        if not source.is_file() or source.is_symlink():
            continue  # deleted in the working tree, or a link (the shared .venv)
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def run_tests(
    tree: Path, tests: tuple[str, ...], k: str | None, timeout: float
) -> tuple[int | None, list[str]]:
    """pytest on ``tree`` (its code first on the path); (exit code or None on timeout, last lines of output).
    Listed test files the tree does not have are left out (a test of a branch not merged yet); none left: exit 4."""
    present = [t for t in tests if (tree / t.split("::")[0]).exists()]
    if not present:
        return 4, [f"none of {' '.join(tests)} exists in this tree"]
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *present]
    if k:
        command += ["-k", k]
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, []
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()[-6:]


def check(mutations: list[Mutation], timeout: float, baseline: bool, root: Path = ROOT) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="zohocrm-mutation-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(root, tree)
        broken: dict[tuple[tuple[str, ...], str | None], str] = {}
        if baseline:
            for selection in dict.fromkeys(m.selection() for m in mutations):
                started = time.monotonic()
                code, tail = run_tests(tree, *selection, timeout)
                took = time.monotonic() - started
                if code != 0:
                    broken[selection] = f"fails unmutated (exit {code}): {tail[-1] if tail else 'timeout'}"
                print(
                    f"baseline {' '.join(selection[0])} -k {selection[1]!r}: exit {code}, {took:.0f} s",
                    flush=True,
                )
        for mutation in mutations:
            path = tree / mutation.file
            original = path.read_text() if path.is_file() else None
            if original is None or original.count(mutation.old) != 1:
                found = 0 if original is None else original.count(mutation.old)
                outcomes.append(Outcome(mutation, "not applicable", detail=f"old text found {found} times"))
                print(f"{mutation.name}: not applicable", flush=True)
                continue
            if mutation.selection() in broken:
                outcomes.append(Outcome(mutation, "ERROR", detail=broken[mutation.selection()]))
                continue
            path.write_text(original.replace(mutation.old, mutation.new))
            started = time.monotonic()
            try:
                code, tail = run_tests(tree, mutation.tests, mutation.k, timeout)
            finally:
                path.write_text(original)
            took = time.monotonic() - started
            if code is None:
                status, detail = "killed", f"timeout after {timeout:.0f} s"
            elif code == 1:
                status, detail = "killed", next((line for line in tail if line.startswith("FAILED")), "")
            elif code == 0:
                status, detail = "SURVIVED", tail[-1] if tail else ""
            else:
                status, detail = "ERROR", f"pytest exit {code}: {tail[-1] if tail else ''}"
            outcomes.append(Outcome(mutation, status, took, detail, tail))
            print(f"{mutation.name}: {status} ({took:.0f} s)", flush=True)
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "file", "status", "s", "detail")]
    for o in outcomes:
        rows.append(
            (o.mutation.name, o.mutation.file.rsplit("/", 1)[-1], o.status, f"{o.seconds:.0f}", o.detail[:90])
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)) for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--mutation", action="append", help="run only this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds per pytest run (a timeout kills)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip running each selection unmutated")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to copy (default: this one)")
    args = parser.parse_args(argv)
    chosen = MUTATIONS
    if args.mutation:
        names = {m.name for m in MUTATIONS}
        unknown = sorted(set(args.mutation) - names)
        if unknown:
            parser.error(f"unknown mutation(s) {unknown}; --list shows them")
        chosen = [m for m in MUTATIONS if m.name in args.mutation]
    if args.list:
        for m in chosen:
            print(
                f"{m.name}\n  {m.file}: {m.why}\n  tests: {' '.join(m.tests)}"
                + (f" -k {m.k!r}" if m.k else "")
            )
        return 0
    outcomes = check(chosen, args.timeout, baseline=not args.no_baseline, root=args.root.resolve())
    print()
    print(table(outcomes))
    bad = [o for o in outcomes if o.status in ("SURVIVED", "ERROR")]
    counts = {
        s: sum(o.status == s for o in outcomes) for s in ("killed", "SURVIVED", "not applicable", "ERROR")
    }
    print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for o in bad:
        print(f"\n{o.mutation.name} ({o.status}): {o.mutation.why}")
        print("\n".join(f"  {line}" for line in o.output))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
