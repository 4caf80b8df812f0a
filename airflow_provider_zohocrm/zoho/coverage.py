"""Rolling coverage of a source under a nightly budget (issue 18, part 2), as pure data and functions.

A source with a budget of B Emails checks a night does not start from the top every night: each run continues in
record-id order where the previous run of the same DAG and source stopped, wrapping around to the lowest id when it
reaches the end, so consecutive runs cover the whole module. One pass over every record is a *cycle*.

The state (:class:`CoverageState`) is small and JSON-serialisable, stored by the caller (an Airflow Variable per DAG
and source: ``hooks/coverage_store.py``):

- ``covered``: the id ranges already read in this cycle (inclusive ``[low, high]`` pairs of record ids, merged).
  Normally one range from the cycle's lowest id to the *cursor*; a run that failed part-way leaves a gap (its
  unread records), and a deferred record rechecked ahead of the cursor adds a one-id range, so the list stays
  short. Ids are stored as strings (19 digits do not survive a JavaScript number in the UI).
- ``deferred``: records whose bounce was too young to act on, with the time they are due (bounded by
  :data:`MAX_DEFERRED`). A due record is checked first on the next run, before the rolling slice, without
  waiting for the cycle.
- the cycle's number and start, how many records it has read, the module's size at the last run.

A run: :func:`plan_run` chooses the work for budget B (due deferred records first, then the next uncovered ids
after the cursor, wrapping into a new cycle when the end is reached: never an id twice in one run, never an id
already read in this cycle). The tasks read the planned ids and record a :class:`Verdict` per id in a
:class:`RunCheckpoint` (a retried task reads only the ids without a verdict). :func:`apply_outcomes` then moves the
state forward only over ids that reached a verdict: a record that was planned but not read (a failed task, a spent
budget) stays uncovered and comes first in the next run's slice. :func:`summarize` gives the report's numbers.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

#: Deferred records kept at most (the soonest due are kept; the others are met again in the next cycle).
MAX_DEFERRED = 20_000
FORMAT = "zohocrm-coverage-1"
#: The back-off of a record read but not actionable for a reason with no known end (``check_domain`` found its
#: domain dead): a day after the first such read, doubling with each one after it, at most :data:`RETRY_MAX`.
RETRY_BASE_SECONDS = 86_400.0
RETRY_MAX_SECONDS = 16 * 86_400.0

Range = tuple[int, int]


@dataclass(frozen=True)
class Verdict:
    """What reading one record ended in: ``done`` (an outcome: unblocked, not blocked, refused, error …),
    ``deferred`` (its bounce was too young: check it again at ``due``, epoch seconds) or ``retry`` (read, but not
    actionable for a reason with no known end, e.g. a dead domain: check it again after a growing back-off,
    :func:`retry_due`)."""

    kind: Literal["done", "deferred", "retry"]
    due: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("done", "deferred", "retry") or (self.kind == "deferred") != (
            self.due is not None
        ):
            raise ValueError("a Verdict is 'done', 'retry', or 'deferred' with a due time")


DONE = Verdict("done")
RETRY = Verdict("retry")


def retry_due(strikes: int, now: float) -> float:
    """When a record read ``strikes`` times in a row with a ``retry`` verdict is due again: a day after the first,
    then 2, 4, 8 days, at most :data:`RETRY_MAX_SECONDS` (C2: such records never take a run's whole budget, so
    the back-off only saves credits)."""
    backoff: float = RETRY_BASE_SECONDS * float(2 ** max(strikes - 1, 0))
    return now + min(backoff, RETRY_MAX_SECONDS)


@dataclass(frozen=True)
class CoverageState:
    """Where one (DAG, source) stands; see the module docstring."""

    cycle: int = 1
    cycle_started_at: float = 0.0
    covered: tuple[Range, ...] = ()
    read_this_cycle: int = 0
    runs_this_cycle: int = 0
    module_size: int | None = None
    deferred: Mapping[str, float] = field(default_factory=dict)
    #: Ranges read for the *next* cycle: a run that wrapped past the end while some of its records in this cycle
    #: stayed unread (a failed task) read the start of the next cycle early; those are not read again in it.
    next_covered: tuple[Range, ...] = ()
    next_read: int = 0
    #: ``retry`` verdicts in a row per deferred record (the back-off's exponent); only ids also in ``deferred``.
    strikes: Mapping[str, int] = field(default_factory=dict)

    @property
    def cursor(self) -> str | None:
        """The last record id reached in this cycle's leading range (None: the cycle has not started)."""
        return str(self.covered[0][1]) if self.covered else None

    def is_covered(self, record_id: int) -> bool:
        return _in_ranges(self.covered, record_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "cycle": self.cycle,
            "cycle_started_at": self.cycle_started_at,
            "covered": [[str(lo), str(hi)] for lo, hi in self.covered],
            "read_this_cycle": self.read_this_cycle,
            "runs_this_cycle": self.runs_this_cycle,
            "module_size": self.module_size,
            "deferred": dict(self.deferred),
            "next_covered": [[str(lo), str(hi)] for lo, hi in self.next_covered],
            "next_read": self.next_read,
            **({"strikes": dict(self.strikes)} if self.strikes else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CoverageState:
        """A state written by :meth:`to_json`; None or an empty mapping is a fresh state."""
        if not data:
            return cls()
        if data.get("format") != FORMAT:
            raise ValueError(f"not a coverage state of format {FORMAT!r}: {data.get('format')!r}")
        return cls(
            cycle=int(data["cycle"]),
            cycle_started_at=float(data["cycle_started_at"]),
            covered=tuple((int(lo), int(hi)) for lo, hi in data.get("covered", [])),
            read_this_cycle=int(data.get("read_this_cycle", 0)),
            runs_this_cycle=int(data.get("runs_this_cycle", 0)),
            module_size=data.get("module_size"),
            deferred={str(k): float(v) for k, v in (data.get("deferred") or {}).items()},
            next_covered=tuple((int(lo), int(hi)) for lo, hi in data.get("next_covered", [])),
            next_read=int(data.get("next_read", 0)),
            strikes={str(k): int(v) for k, v in (data.get("strikes") or {}).items()},
        )


def reset(now: float) -> CoverageState:
    """A fresh state (the DAG's reset param): a new cycle from the lowest id, nothing deferred."""
    return CoverageState(cycle=1, cycle_started_at=now)


@dataclass(frozen=True)
class RunPlan:
    """This run's work, in reading order: ``due`` (deferred records now due), ``fresh`` (the rolling slice in
    this cycle) and ``wrapped`` (the start of the next cycle, when the slice reached the end with budget left)."""

    due: tuple[str, ...]
    fresh: tuple[str, ...]
    #: the next cycle's part, in segments: a segment ends where it skipped a record this run reads in the old
    #: cycle (a range of the new cycle must not span it).
    wrapped_segments: tuple[tuple[str, ...], ...]
    completes_cycle: bool
    module_size: int
    budget: int | None
    #: deferred records the source no longer lists (deleted, or left the view): forgotten by apply_outcomes
    gone: tuple[str, ...] = ()

    @property
    def wrapped(self) -> tuple[str, ...]:
        return tuple(rid for segment in self.wrapped_segments for rid in segment)

    @property
    def ids(self) -> list[str]:
        return [*self.due, *self.fresh, *self.wrapped]


def due_share(budget: int | None) -> int | None:
    """The most due deferred records a run reads before its slice (C2): half the budget, rounded down, so the
    slice after the cursor always gets at least half (at least one record). None: no budget, no limit."""
    return None if budget is None else budget // 2


def plan_run(state: CoverageState, candidates: Iterable[str], budget: int | None, now: float) -> RunPlan:
    """Choose this run's records from the source's ``candidates`` (every id it lists now, any order).

    ``budget`` None reads every candidate once (a full cycle per run). Due deferred records come first but take
    at most :func:`due_share` of the budget; the slice after the cursor gets the rest, and what the slice leaves
    unused (the cycle's end) goes to the remaining due records (C2: the slice always advances).
    """
    if budget is not None and budget < 1:
        raise ValueError(f"budget must be at least 1 (or None), not {budget}")
    ordered = sorted({int(c) for c in candidates})
    present = set(ordered)
    left = math.inf if budget is None else budget
    due_ids = sorted(
        (rid for rid, at in state.deferred.items() if at <= now and int(rid) in present),
        key=lambda rid: (state.deferred[rid], int(rid)),
    )
    share = due_share(budget)
    due = due_ids[: len(due_ids) if share is None else min(share, len(due_ids))]
    left -= len(due)
    waiting = {int(rid) for rid, at in state.deferred.items() if at > now}  # checked when due, not before
    taken = {int(rid) for rid in due}
    fresh: list[int] = []
    for rid in ordered:
        if left <= 0:
            break
        if rid in taken or rid in waiting or state.is_covered(rid):
            continue
        fresh.append(rid)
        left -= 1
    # Nothing uncovered precedes the slice's last id (the slice takes the first uncovered ids in order).
    uncovered_after = any(
        rid not in taken and rid not in waiting and not state.is_covered(rid)
        for rid in ordered[bisect.bisect_right(ordered, fresh[-1]) if fresh else 0 :]
    )
    completes = not uncovered_after
    segments: list[list[str]] = [[]]
    in_fresh = set(fresh)
    if completes and left > 0:
        # the slice reached the end with budget left: the due records it did not take, then the next cycle
        more = [rid for rid in due_ids[len(due) :] if int(rid) not in in_fresh][
            : int(min(left, len(due_ids)))
        ]
        due += more
        left -= len(more)
        taken |= {int(rid) for rid in more}
        in_run = taken | in_fresh
        for rid in ordered:
            if left <= 0:
                break
            if rid in in_run:
                segments.append([])  # read in the old cycle this run: the new cycle's range stops here
                continue
            if rid in waiting or _in_ranges(state.next_covered, rid):
                continue
            segments[-1].append(str(rid))
            left -= 1
    return RunPlan(
        due=tuple(due),
        fresh=tuple(str(r) for r in fresh),
        wrapped_segments=tuple(tuple(seg) for seg in segments if seg),
        completes_cycle=completes,
        module_size=len(ordered),
        budget=budget,
        gone=tuple(rid for rid in state.deferred if int(rid) not in present),
    )


def apply_outcomes(
    state: CoverageState, plan: RunPlan, verdicts: Mapping[str, Verdict], now: float
) -> CoverageState:
    """The state after this run: ranges grow only over ids with a verdict; deferred records are kept with their
    due time (bounded); a cycle ends only when its last uncovered records all reached a verdict."""
    gone = set(plan.gone)
    deferred = {rid: at for rid, at in state.deferred.items() if rid not in gone}
    strikes = {rid: n for rid, n in state.strikes.items() if rid in deferred}
    covered = list(state.covered)
    read = state.read_this_cycle
    for (
        rid
    ) in plan.due:  # rechecks: done -> leaves the list; deferred again -> new due time; no verdict -> stays
        verdict = verdicts.get(rid)
        if verdict is None:
            continue
        _note_deferred(deferred, strikes, [rid], verdicts, now)
        covered = _add_range(covered, (int(rid), int(rid)))  # read in this cycle: not again by the slice
    for run in _runs_with_verdicts(plan.fresh, verdicts):
        covered = _add_range(covered, (int(run[0]), int(run[-1])))
        read += len(run)
        _note_deferred(deferred, strikes, run, verdicts, now)
    following = list(state.next_covered)
    next_read = state.next_read
    for segment in plan.wrapped_segments:  # the next cycle's first records
        for run in _runs_with_verdicts(segment, verdicts):
            following = _add_range(following, (int(run[0]), int(run[-1])))
            next_read += len(run)
            _note_deferred(deferred, strikes, run, verdicts, now)
    all_fresh_done = all(rid in verdicts for rid in plan.fresh)
    cycle, started, runs = state.cycle, state.cycle_started_at or now, state.runs_this_cycle + 1
    if plan.completes_cycle and all_fresh_done:
        cycle, started, runs = cycle + 1, now, 1 if following else 0
        covered, read, following, next_read = following, next_read, [], 0
    if len(deferred) > MAX_DEFERRED:
        deferred = dict(sorted(deferred.items(), key=lambda kv: (kv[1], int(kv[0])))[:MAX_DEFERRED])
        strikes = {rid: n for rid, n in strikes.items() if rid in deferred}
    return replace(
        state,
        cycle=cycle,
        cycle_started_at=started,
        covered=tuple(covered),
        read_this_cycle=read,
        runs_this_cycle=runs,
        module_size=plan.module_size,
        deferred=deferred,
        next_covered=tuple(following),
        next_read=next_read,
        strikes=strikes,
    )


@dataclass(frozen=True)
class CoverageSummary:
    """The report's numbers for one source."""

    read_this_run: int
    planned_this_run: int
    unread_this_run: int
    module_size: int
    cycle: int
    cycle_progress_percent: float
    runs_per_cycle: int | None
    deferred_total: int
    deferred_due_next_run: int

    def describe(self) -> str:
        runs = f"{self.runs_per_cycle} runs" if self.runs_per_cycle is not None else "every run"
        return (
            f"read {self.read_this_run:,} of {self.module_size:,} records this run"
            f"{f' ({self.unread_this_run:,} planned but not read)' if self.unread_this_run else ''};"
            f" cycle {self.cycle} is {self.cycle_progress_percent:.1f}% done; a full cycle takes {runs} at this"
            f" budget; {self.deferred_due_next_run:,} deferred record(s) due by the next run"
        )


def summarize(
    before: CoverageState,
    after: CoverageState,
    plan: RunPlan,
    verdicts: Mapping[str, Verdict],
    next_run_at: float,
) -> CoverageSummary:
    """Records read this run, module size, cycle progress, runs per full cycle, deferred due next run."""
    planned = plan.ids
    read = sum(1 for rid in planned if rid in verdicts)
    size = plan.module_size
    budget = plan.budget
    return CoverageSummary(
        read_this_run=read,
        planned_this_run=len(planned),
        unread_this_run=len(planned) - read,
        module_size=size,
        cycle=after.cycle,
        cycle_progress_percent=100.0 * min(after.read_this_cycle, size) / size if size else 100.0,
        runs_per_cycle=max(1, math.ceil(size / budget)) if budget else None,
        deferred_total=len(after.deferred),
        deferred_due_next_run=sum(1 for at in after.deferred.values() if at <= next_run_at),
    )


@dataclass
class RunCheckpoint:
    """The verdicts one task of one run reached so far, keyed by record id: saved after each batch so a retried
    try reads only :meth:`pending` ids and reuses the rest. JSON: ids grouped by kind (small)."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)

    def record(self, record_id: str, verdict: Verdict) -> None:
        self.verdicts[str(record_id)] = verdict

    def pending(self, ids: Sequence[str]) -> list[str]:
        return [rid for rid in ids if rid not in self.verdicts]

    def to_json(self) -> dict[str, Any]:
        return {
            "done": [rid for rid, v in self.verdicts.items() if v.kind == "done"],
            "deferred": {rid: v.due for rid, v in self.verdicts.items() if v.kind == "deferred"},
            "retry": [rid for rid, v in self.verdicts.items() if v.kind == "retry"],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RunCheckpoint:
        out = cls()
        for rid in (data or {}).get("done", []):
            out.verdicts[str(rid)] = DONE
        for rid, due in ((data or {}).get("deferred") or {}).items():
            out.verdicts[str(rid)] = Verdict("deferred", float(due))
        for rid in (data or {}).get("retry") or []:
            out.verdicts[str(rid)] = RETRY
        return out

    @classmethod
    def merged(cls, parts: Iterable[RunCheckpoint]) -> RunCheckpoint:
        out = cls()
        for part in parts:
            out.verdicts.update(part.verdicts)
        return out


# -- ranges ----------------------------------------------------------------------------------------------------


def _in_ranges(ranges: Sequence[Range], value: int) -> bool:
    i = bisect.bisect_right(ranges, (value, math.inf)) - 1  # type: ignore[arg-type]
    return i >= 0 and ranges[i][0] <= value <= ranges[i][1]


def _add_range(ranges: list[Range], new: Range) -> list[Range]:
    """``ranges`` (sorted, disjoint) with ``new`` merged in (overlapping ranges join)."""
    out: list[Range] = []
    lo, hi = new
    for r_lo, r_hi in ranges:
        if r_hi < lo or r_lo > hi:
            out.append((r_lo, r_hi))
        else:
            lo, hi = min(lo, r_lo), max(hi, r_hi)
    out.append((lo, hi))
    out.sort()
    return out


def _runs_with_verdicts(ids: Sequence[str], verdicts: Mapping[str, Verdict]) -> list[list[str]]:
    """Maximal stretches of consecutive ``ids`` (id order) that all have a verdict."""
    runs: list[list[str]] = []
    current: list[str] = []
    for rid in ids:
        if rid in verdicts:
            current.append(rid)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _note_deferred(
    deferred: dict[str, float],
    strikes: dict[str, int],
    run: Sequence[str],
    verdicts: Mapping[str, Verdict],
    now: float,
) -> None:
    """Each read record's place in the deferred list: gone when done, its due time when deferred, a growing
    back-off after ``retry`` verdicts in a row (:func:`retry_due`)."""
    for rid in run:
        verdict = verdicts[rid]
        if verdict.kind == "retry":
            strikes[rid] = strikes.get(rid, 0) + 1
            deferred[rid] = retry_due(strikes[rid], now)
            continue
        strikes.pop(rid, None)
        if verdict.kind == "deferred":
            assert verdict.due is not None
            deferred[rid] = verdict.due
        else:
            deferred.pop(rid, None)


__all__ = [
    "DONE",
    "MAX_DEFERRED",
    "RETRY",
    "RETRY_BASE_SECONDS",
    "RETRY_MAX_SECONDS",
    "CoverageState",
    "CoverageSummary",
    "RunCheckpoint",
    "RunPlan",
    "Verdict",
    "apply_outcomes",
    "due_share",
    "plan_run",
    "reset",
    "retry_due",
    "summarize",
]
