"""A many-nights simulation of rolling coverage (issue 26), in the style of ``token_sim.py``: the real coverage
code (the pure model ``zoho/coverage.py``, the store ``hooks/coverage_store.py`` and the run wiring
``hooks/coverage_run.py``: ``plan_sources``, ``dedupe_after_cut``, ``for_task`` and its ``VariableCheckpoint``,
``finish_sources``) over 60 nights of a seeded random org, with the invariants C1-C6 of docs/large-orgs.md checked
after every night.

What is simulated, not real (for speed; the HTTP path is covered by tests/emulator/test_coverage_*.py):

- the org: records added and deleted, soft and hard bounces arriving, dead domains, records whose unblock
  answer is ``error``, Emails lists of one or two pages, one or two email fields;
- the job (``run_unblock``'s role at the checkpoint seam): it loads the checkpoint, reuses its decisions, reads
  within what is left of its budget in Emails calls, saves after the reads and at the end, and folds each
  record's fields into an ``UnblockReport`` the way the job does; its failures are Emails calls and unblock
  calls that fail, tasks killed after either step, and ``fail_on`` (an ``error`` outcome fails the task);
- the DAG's wiring between the steps (``park_groups``: a group's coverage reference), and Airflow's retries;
- Variables: a dict that raises on a chosen write (a failed store write) or "kills" the writer there.

Each history picks its sources (a rolling ``all`` source, and maybe a second ``all`` with a date field, a
rolling view, a nightly sweep, in any order), its fields, budget and lease length; each night picks its run
(live, dry run, approved, rejected, with a reset or not, sometimes a manual trigger next to it) and its faults.

A failing seed raises :class:`InvariantBroken` with the history so far; ``python -m tests.unit.coverage_sim
--seed N`` replays it and prints every night.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_zohocrm.hooks import coverage_run
from airflow_provider_zohocrm.hooks.coverage_store import CoverageBusyError, CoverageLostError, CoverageStore
from airflow_provider_zohocrm.zoho.coverage import CoverageState, _in_ranges, due_share
from airflow_provider_zohocrm.zoho.emails import BUDGET_REASON
from airflow_provider_zohocrm.zoho.per_field import PRECEDENCE
from airflow_provider_zohocrm.zoho.sources import Source, plan_groups
from airflow_provider_zohocrm.zoho.unblock import Outcome, UnblockReport, UnblockRequest
from airflow_provider_zohocrm.zoho.unblock_job import Decision, FieldDecision, UnblockPlan

DAY = 86_400.0
HOUR = 3_600.0
T0 = 1_800_000_000.0
DAG = "zoho_unblock_bounced_emails"
CONN = "zohocrm_default"
POLICY_HOURS = 24.0
_RANK = {o: i for i, o in enumerate(PRECEDENCE)}


class InvariantBroken(AssertionError):
    """An invariant failed; the message names it (``C1`` … ``C6``) and holds the replayable history."""


class _Killed(BaseException):
    """A task process killed (SIGKILL): nothing after this point runs, not even ``finally`` cleanup of ours."""


# -- the org -----------------------------------------------------------------------------------------------------


@dataclass
class Rec:
    emails: dict[str, str | None]
    blocked: dict[str, str | None]  # field -> None | "soft" | "hard"
    bounced_at: dict[str, float]
    dead: bool = False  # check_domain finds no mail host for its domain
    error: bool = False  # Zoho answers its unblock with a code no client knows
    pages: int = 1
    modified: float = 0.0
    in_view: bool = False


@dataclass
class Org:
    rng: random.Random
    fields: tuple[str, ...]
    records: dict[str, Rec] = field(default_factory=dict)
    next_id: int = 4_876_876_000_000_100_000
    #: Emails calls (pages) made tonight, and per record the nights its list was read
    pages_tonight: int = 0
    reads_tonight: dict[str, int] = field(default_factory=dict)
    _cache: dict[Any, list[str]] = field(default_factory=dict)

    def add(self, now: float, n: int) -> None:
        for _ in range(n):
            self.next_id += self.rng.choice((1, 3, 7))
            emails = {f: f"r{self.next_id}.{f}@x.example" for f in self.fields}
            if len(self.fields) > 1 and self.rng.random() < 0.2:
                emails[self.fields[1]] = None
            self.records[str(self.next_id)] = Rec(
                emails,
                dict.fromkeys(self.fields),
                {},
                dead=self.rng.random() < 0.08,
                error=self.rng.random() < 0.03,
                pages=2 if self.rng.random() < 0.1 else 1,
                modified=now,
                in_view=self.rng.random() < 0.5,
            )

    def night(self, now: float) -> None:
        """A day of the org: records added and deleted, bounces arriving, records edited."""
        rng = self.rng
        self.add(now, rng.choice((0, 0, 1, 1, 2, 3)))
        for rid in rng.sample(sorted(self.records), k=min(len(self.records), rng.choice((0, 0, 1, 1, 2)))):
            del self.records[rid]
        for rec in self.records.values():
            if rng.random() < 0.06:
                f = rng.choice(self.fields)
                if rec.emails.get(f) and rec.blocked[f] is None:
                    rec.blocked[f] = "hard" if rng.random() < 0.15 else "soft"
                    rec.bounced_at[f] = now - rng.uniform(0, DAY)
            if rng.random() < 0.05:
                rec.modified = now
        self.pages_tonight = 0
        self.reads_tonight = {}
        self._cache = {}

    def candidates(self, source: dict[str, Any], now: float) -> list[str]:
        key = (id(source), now, len(self.records), self.next_id)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._candidates(source, now)
        return cached

    def _candidates(self, source: dict[str, Any], now: float) -> list[str]:
        with_email = [rid for rid, r in self.records.items() if any(r.emails.values())]
        if source["kind"] == "view":
            return sorted((rid for rid in with_email if self.records[rid].in_view), key=int)
        if "Modified_Time" in str(source.get("query")):
            return sorted(
                (rid for rid in with_email if self.records[rid].modified >= now - 10 * DAY), key=int
            )
        return sorted(with_email, key=int)


# -- a Variables that fails on a chosen write --------------------------------------------------------------------


class SimVariables:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.writes = 0
        #: the write number (1-based, counted tonight) that fails: ("raise" | "kill", n)
        self.fault: tuple[str, int] | None = None
        self.fired = False

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def _hit(self) -> None:
        self.writes += 1
        if self.fault is not None and self.writes == self.fault[1]:
            self.fired = True
            if self.fault[0] == "kill":
                raise _Killed
            raise OSError("the metadata DB refused the write")

    def set(self, key: str, value: str) -> None:
        self._hit()
        self.data[key] = value

    def delete(self, key: str) -> None:
        self._hit()
        self.data.pop(key, None)


# -- the simulated job at the checkpoint seam -------------------------------------------------------------------


def _bounced_iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def judge(rec: Rec, f: str, now: float, check_domain: bool) -> FieldDecision | None:
    """One field after its Emails list was read: None = send it; else its outcome without a call."""
    if not rec.emails.get(f) or rec.blocked[f] is None:
        return FieldDecision(Outcome.NOT_BLOCKED)
    details = {"category": "Temporary", "sub_category": None, "reason": None, "bounced_time": None}
    if rec.blocked[f] == "hard":
        return FieldDecision(Outcome.PERMANENTLY_BLOCKED, {**details, "category": "Permanent"})
    at = rec.bounced_at[f]
    details["bounced_time"] = _bounced_iso(at)
    if now - at < POLICY_HOURS * HOUR:
        return FieldDecision(Outcome.DEFERRED, details, f"bounced {(now - at) / HOUR:.1f} h ago")
    if check_domain and rec.dead:
        return FieldDecision(Outcome.DEFERRED, details, "check_domain: no mail host for x.example")
    return None


@dataclass
class TaskFaults:
    verify_fails_at: int | None = None  # the n-th record read fails (an Emails call error)
    kill_after_verify: bool = False
    unblock_fails: bool = False  # the unblock call fails: every sent record pending
    kill_after_unblock: bool = False  # unblocks applied in the org, the final save never made


def _budget_only(d: Decision) -> bool:
    return (
        not d.send
        and bool(d.settled)
        and all(p.outcome is Outcome.DEFERRED and p.reason == BUDGET_REASON for p in d.settled.values())
    )


class SimJob:
    """One try of one mapped task: what ``run_unblock`` does at the checkpoint seam, on the simulated org."""

    def __init__(self, sim: Simulation, group: dict[str, Any], plan: UnblockPlan, checkpoint: Any) -> None:
        self.sim = sim
        self.group = group
        self.plan = plan
        self.checkpoint = checkpoint
        self.fields = tuple(group["unblock_fields"])

    def run(self, faults: TaskFaults) -> UnblockReport:
        sim, org, plan, ckpt = self.sim, self.sim.org, self.plan, self.checkpoint
        ids = plan.request.record_ids
        now = float(plan.now or sim.now)
        known = {}
        spent = 0
        if ckpt is not None:
            known = {rid: d for rid, d in ckpt.load().items() if rid in set(ids) and not _budget_only(d)}
            spent = ckpt.spent()
        left = None if plan.max_email_checks is None else max(plan.max_email_checks - spent, 0)
        report = plan.new_report()
        decisions: dict[str, Decision] = {}
        calls = 0
        failed_read: str | None = None
        for n, rid in enumerate(ids):
            if rid in known:
                decisions[rid] = known[rid]
                continue
            if faults.verify_fails_at is not None and n >= faults.verify_fails_at:
                failed_read = rid
                break
            rec = org.records.get(rid)
            if rec is None:  # deleted since the candidates were read: the unblock call decides
                decisions[rid] = Decision(rid, self.fields)
                continue
            wanted = [f for f in self.fields if rec.emails.get(f)]
            if not wanted:
                decisions[rid] = Decision(
                    rid, settled={f: FieldDecision(Outcome.NOT_BLOCKED) for f in self.fields}
                )
                continue
            pages = rec.pages if left is None else min(rec.pages, left)
            if pages:
                calls += pages
                org.pages_tonight += pages
                org.reads_tonight[rid] = org.reads_tonight.get(rid, 0) + 1
                if left is not None:
                    left -= pages
            judged_fields = self.fields if pages >= rec.pages else self.fields[: pages and 1]
            settled: dict[str, FieldDecision] = {}
            send: list[str] = []
            for f in self.fields:
                if f not in judged_fields or (pages == 0):
                    settled[f] = FieldDecision(Outcome.DEFERRED, None, BUDGET_REASON)
                    continue
                word = judge(rec, f, now, bool(self.group.get("check_domain")))
                if word is None:
                    send.append(f)
                else:
                    settled[f] = word
            if send and any(s.reason == BUDGET_REASON for s in settled.values()):
                # a half-read record is not sent on a half judgement: its fields wait for a full read
                for f in send:
                    settled[f] = FieldDecision(Outcome.DEFERRED, None, BUDGET_REASON)
                send = []
            decisions[rid] = Decision(rid, tuple(send), settled=settled)
        report.email_checks = calls
        read = {rid: d for rid, d in decisions.items() if not _budget_only(d)}
        ledger: dict[str, dict[str, tuple[Outcome | None, Any, str | None]]] = {}
        if failed_read is not None:
            for rid in ids:
                d = decisions.get(rid)
                if d is None:
                    ledger[rid] = dict.fromkeys(
                        self.fields, (None, None, "not checked: an Emails check failed")
                    )
                else:
                    ledger[rid] = self._settled(d, pending="checked, not unblocked")
            self._fold(report, ids, ledger)
            if ckpt is not None:
                ckpt.save(read, report)
                sim.judged_by_task(report, decisions)
            raise _TaskFailed("an Emails call failed")
        if ckpt is not None:
            reads_only = plan.new_report()
            reads_only.email_checks = calls
            ckpt.save(read, reads_only)
        if faults.kill_after_verify and not plan.dry_run:
            raise _Killed
        for rid in ids:
            ledger[rid] = self._settled(
                decisions[rid], pending="dry run: would be sent" if plan.dry_run else None
            )
        if plan.dry_run:
            self._fold(report, ids, ledger)
            report.would_send = {"+".join(self.fields): [rid for rid in ids if decisions[rid].send]}
            return report
        sending = [rid for rid in ids if decisions[rid].send]
        for rid in sending:
            d = decisions[rid]
            rec = org.records.get(rid)
            for f in d.fields:
                if faults.unblock_fails:
                    ledger[rid][f] = (None, None, "unblock call failed")
                elif rec is None:
                    ledger[rid][f] = (Outcome.INVALID_RECORD, None, None)
                elif rec.error:
                    ledger[rid][f] = (Outcome.ERROR, None, "UNKNOWN_CODE: ?")
                elif rec.blocked[f] == "soft":
                    sim.unblocked(rid, f, now)
                    rec.blocked[f] = None
                    ledger[rid][f] = (Outcome.UNBLOCKED, None, None)
                else:
                    ledger[rid][f] = (Outcome.ALREADY_UNBLOCKED, None, None)
        if faults.kill_after_unblock:
            raise _Killed
        self._fold(report, ids, ledger)
        if ckpt is not None:
            ckpt.save(read, report)
            sim.judged_by_task(report, decisions)
        if faults.unblock_fails:
            raise _TaskFailed("an unblock call failed")
        return report

    def _settled(self, d: Decision, pending: str | None) -> dict[str, tuple[Outcome | None, Any, str | None]]:
        out: dict[str, tuple[Outcome | None, Any, str | None]] = {}
        for f in self.fields:
            if f in d.fields:
                out[f] = (None, None, pending or "to send")
            else:
                known = d.of(f)
                assert known is not None
                out[f] = (known.outcome, known.details, known.reason)
        return out

    def _fold(self, report: UnblockReport, ids: list[str], ledger: dict[str, dict[str, Any]]) -> None:
        """As the job's ledger folds: a record pending if any field is; else its most actionable field."""
        for rid in ids:
            slot = ledger[rid]
            pending = [r for (o, _d, r) in slot.values() if o is None]
            if pending:
                report.add_pending([rid], pending[0])
            else:
                name = min(slot, key=lambda f: (_RANK[slot[f][0]], self.fields.index(f)))
                outcome, details, reason = slot[name]
                report.add(rid, outcome, None, details=details, reason=reason)
            if len(self.fields) > 1:
                report.fields[rid] = {
                    f: (o.value if o is not None else "pending") for f, (o, _d, _r) in slot.items()
                }
                for f, (o, d, r) in slot.items():
                    if r:
                        report.field_reasons[f"{rid} {f}"] = r
                    if o is Outcome.DEFERRED and d:
                        report.field_details[f"{rid} {f}"] = dict(d)


class _TaskFailed(Exception):
    """A try of a task failed (Airflow retries it)."""


# -- the simulation ----------------------------------------------------------------------------------------------


@dataclass
class Night:
    """What one night did (the replayable history's line)."""

    number: int
    kind: str
    reset: bool
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        extra = f" faults={self.faults}" if self.faults else ""
        return f"night {self.number}: {self.kind}{' +reset' if self.reset else ''}{extra} {'; '.join(self.notes)}"


class Simulation:
    def __init__(self, seed: int, nights: int = 60) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.nights = nights
        fields = ("Email", "Secondary_Email") if rng.random() < 0.4 else ("Email",)
        self.org = Org(random.Random(seed * 7919 + 1), fields)
        self.now = T0
        self.org.add(self.now, rng.randint(6, 30))
        self.variables = SimVariables()
        self.lease_seconds = rng.choice((20 * HOUR, 30 * HOUR))
        self.sources = self._sources(fields)
        self.history: list[Night] = []
        #: oracle: per coverage source key, the time each record was last judged in a live run's final save
        self.judged_at: dict[str, float] = {}
        self.too_young: list[tuple[str, str]] = []
        #: per source key: (cycle, clean committed runs in it, every id the source listed during it)
        self.cycle_runs: dict[str, tuple[int, int, set[str]]] = {}
        self.read_in_cycle: dict[str, tuple[int, set[str]]] = {}
        self._parsed: dict[tuple[str, str | None], tuple[CoverageState, Any]] = {}

    def _sources(self, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        rng = self.rng
        budget = rng.randint(2, 9)
        base = {
            "module": "Leads",
            "unblock_fields": list(fields),
            "verify": "emails",
            "min_hours_since_bounce": POLICY_HOURS,
            "check_domain": rng.random() < 0.7,
        }
        query = "select id from Leads where Email is not null"
        chosen = [{**base, "kind": "all", "query": query, "max_email_checks": budget}]
        if rng.random() < 0.35:
            chosen.append(
                {
                    **base,
                    "kind": "all",
                    "query": f"{query} and Modified_Time >= '2026-11-01'",
                    "max_email_checks": rng.randint(2, 6),
                }
            )
        if rng.random() < 0.35:
            chosen.append({**base, "kind": "view", "view": "Bounced", "max_email_checks": rng.randint(2, 6)})
        if rng.random() < 0.35:
            chosen.append(
                {**base, "kind": "all", "query": query, "verify": "sweep", "max_email_checks": None}
            )
        rng.shuffle(chosen)
        return [{**s, "index": i} for i, s in enumerate(chosen)]

    # -- oracle hooks

    def unblocked(self, rid: str, f: str, now: float) -> None:
        rec = self.org.records[rid]
        if now - rec.bounced_at.get(f, now) < POLICY_HOURS * HOUR - 1:
            self.too_young.append((rid, f))

    def judged_by_task(self, report: UnblockReport, decisions: dict[str, Decision]) -> None:
        for rid in (r for ids in report.ids.values() for r in ids):
            d = decisions.get(rid)
            if d is not None and not any(p.reason == BUDGET_REASON for p in d.settled.values()):
                self.judged_at[rid] = self.now

    # -- invariants

    def fail(self, invariant: str, message: str) -> None:
        lines = "\n".join(str(n) for n in self.history)
        raise InvariantBroken(
            f"{invariant} broken (seed {self.seed}, night {len(self.history)}): {message}\n"
            f"replay: python -m tests.unit.coverage_sim --seed {self.seed}\nsources: {self.sources}\n{lines}"
        )

    def _coverage_sources(self) -> list[dict[str, Any]]:
        return [s for s in self.sources if coverage_run.uses_coverage(s)]

    def _states(self) -> dict[str, tuple[CoverageState, dict[str, Any] | None]]:
        if not hasattr(self, "_keys"):
            self._keys = {
                coverage_run.source_key(s): CoverageStore(
                    DAG, coverage_run.source_key(s), self.variables, conn_id=CONN
                ).key
                for s in self._coverage_sources()
            }
        out = {}
        for name, key in self._keys.items():
            raw = self.variables.data.get(key)
            hit = self._parsed.get((name, raw))
            if hit is not None:
                out[name] = hit
                continue
            data = json.loads(raw) if raw else {}
            out[name] = (CoverageState.from_json(data.get("state")), data.get("lease"))
            if len(self._parsed) > 32:
                self._parsed.clear()
            self._parsed[(name, raw)] = out[name]  # the next night starts from this text
        return out

    # -- one night

    def run(self) -> None:
        for number in range(1, self.nights + 1):
            self.night(number)

    def night(self, number: int) -> None:
        rng = self.rng
        self.now = T0 + number * DAY + rng.uniform(-600, 600)
        self.org.night(self.now)
        roll = rng.random()
        kind = (
            "live" if roll < 0.72 else "dry_run" if roll < 0.8 else "approved" if roll < 0.92 else "rejected"
        )
        reset = rng.random() < 0.03
        night = Night(number, kind, reset)
        self.history.append(night)
        v = self.variables
        v.writes, v.fired, v.fault = 0, False, None
        if rng.random() < 0.12:
            v.fault = (rng.choice(("raise", "raise", "kill")), rng.randint(1, 30))
            night.faults.append(f"store write #{v.fault[1]} {v.fault[0]}")
        before = dict(v.data)
        states_before = self._states()
        self.manual_wrote = False
        run_id = f"scheduled__{number}"
        report_done = self._run(run_id, night, kind, reset)
        after = self._states()
        # C6: the run leaves no lease it took (a report killed for good is exempt: its lease lapses)
        for key, (_state, lease) in after.items():
            if lease and lease.get("run_id") == run_id and report_done:
                self.fail("C6", f"run {run_id} left its lease on {key}")
        if (
            report_done is None
        ):  # the run stopped before holding anything (busy, failed plan): nothing changed
            for key, (_state, lease) in after.items():
                if lease and lease.get("run_id") == run_id:
                    self.fail("C6", f"run {run_id} failed at its plan and kept its lease on {key}")
        # C3: a dry run and a rejected plan change no stored state
        if (
            kind in ("dry_run", "rejected")
            and report_done
            and not v.fired
            and not self.manual_wrote
            and v.data != before
        ):
            changed = sorted(k for k in set(v.data) | set(before) if v.data.get(k) != before.get(k))
            self.fail("C3", f"a {kind} changed {changed}")
        self._check_states(states_before, after, night)
        lease_left = [k for k, (_s, lease) in after.items() if lease]
        if lease_left:
            night.notes.append(f"leases left on {lease_left}")

    def _run(self, run_id: str, night: Night, kind: str, reset: bool) -> bool | None:
        """One run; returns True when its report completed (committed or discarded), False when the report died
        for good, None when the run stopped before its tasks."""
        rng, v = self.rng, self.variables
        found = []
        for s in self.sources:
            found.append({"source": s["index"], "module": "Leads", "ids": self.org.candidates(s, self.now)})
        by_index = {s["index"]: s for s in self.sources}
        opts = {
            "settle_seconds": 0.0,
            "sleep": _no_sleep,
            "clock": self._clock,
            "lease_seconds": self.lease_seconds,
        }
        try:
            planned = coverage_run.plan_sources(
                found,
                by_index,
                DAG,
                run_id,
                self.now,
                reset_first=reset,
                conn_id=CONN,
                dry_run=kind == "dry_run",
                variables=v,
                store_options=opts,
            )
        except (CoverageBusyError, OSError, _Killed) as exc:
            night.notes.append(f"plan failed: {type(exc).__name__}")
            return None
        self._check_plans(planned, night)
        if rng.random() < 0.05 and kind != "dry_run":  # a manual trigger next to this run
            other = f"manual__{night.number}"
            snapshot = dict(v.data)
            try:
                coverage_run.plan_sources(
                    found, by_index, DAG, other, self.now, conn_id=CONN, variables=v, store_options=opts
                )
                night.notes.append("manual run planned too")
                self.manual_wrote = True
            except CoverageBusyError:
                if v.data != snapshot:
                    self.fail("C6", "a manual run refused as busy changed the Variables (a lease left?)")
                night.notes.append("manual run refused: busy")
            except (OSError, _Killed):
                night.notes.append("manual run's plan failed")
        kept = coverage_run.dedupe_after_cut(planned)
        sources = {s["index"]: Source.from_dict(s) for s in self.sources}
        groups = plan_groups(
            [(sources[int(e["source"])], e["ids"]) for e in kept], batch_size=4, max_groups=3
        )
        owner = {rid: e["coverage"] for e in kept if e.get("coverage") for rid in e["ids"]}
        for g in groups:
            info = owner.get(g["record_ids"][0]) if g["record_ids"] else None
            g["coverage"] = coverage_run.group_reference(info) if info else None
        plans: list[dict[str, Any] | None] = []
        would_send = 0
        if kind in ("approved", "rejected"):
            plans = [self._task(run_id, i, g, True, night) for i, g in enumerate(groups)]
            for key, raw in v.data.items():  # the plan's would-send records, from its checkpoints
                if key.startswith("zohocrm_coverage_ckpt_") and run_id in key:
                    decisions = json.loads(raw).get("decisions") or {}
                    would_send += sum(1 for d in decisions.values() if d[0])
        results: list[dict[str, Any] | None] = []
        if kind != "rejected":
            results = [self._task(run_id, i, g, kind == "dry_run", night) for i, g in enumerate(groups)]
        # C5 (the budget): Emails calls tonight <= the coverage sources' budgets (+ would-send under approval)
        budget = sum(int(s["max_email_checks"]) for s in self._coverage_sources())
        allowed = budget + (would_send if kind == "approved" else 0)
        if self.org.pages_tonight > allowed and not v.fired:  # a failed checkpoint write loses a try's count
            self.fail(
                "C5", f"{self.org.pages_tonight} Emails calls tonight, budget {budget}, allowed {allowed}"
            )
        for attempt in range(2):  # the report task, retried once
            try:
                coverage_run.finish_sources(
                    kept,
                    groups,
                    results,
                    run_id,
                    planned=plans,
                    conn_id=CONN,
                    reset_first=reset,
                    rejected=kind == "rejected",
                    dry_run=kind == "dry_run",
                    variables=v,
                    store_options=opts,
                )
                return True
            except CoverageLostError as exc:
                night.notes.append(f"report: lost ({str(exc)[:60]})")
                return True
            except OSError:
                night.notes.append(f"report try {attempt + 1} failed (store write)")
            except _Killed:
                night.notes.append(f"report try {attempt + 1} killed")
                if rng.random() < 0.5:
                    return False
        return False

    def _task(
        self, run_id: str, i: int, group: dict[str, Any], dry: bool, night: Night
    ) -> dict[str, Any] | None:
        """One mapped task with Airflow's retries (3 tries); None when it failed for good (or was killed)."""
        rng = self.rng
        request = UnblockRequest(group["module"], list(group["record_ids"]), list(group["unblock_fields"]), 4)
        plan = UnblockPlan(
            request=request,
            dry_run=dry,
            verify=group["verify"],
            min_hours_since_bounce=group["min_hours_since_bounce"],
            max_email_checks=group["max_email_checks"],
            check_domain=group["check_domain"],
        )
        if group["verify"] != "emails":  # the sweep: every candidate sent, no coverage
            if not dry:
                for rid in request.record_ids:
                    rec = self.org.records.get(rid)
                    for f in request.unblock_fields:
                        if rec is not None and rec.blocked.get(f) == "soft":
                            rec.blocked[f] = None
            return {"credits_spent": 1}
        for attempt in range(3):
            checkpoint = None  # each try is a process of its own: a fresh seam
            if group.get("coverage"):
                plan, checkpoint = coverage_run.for_task(group["coverage"], plan, run_id, i, self.variables)
            faults = TaskFaults()
            if rng.random() < 0.04:
                faults.verify_fails_at = rng.randint(0, max(len(request.record_ids) - 1, 0))
            if rng.random() < 0.03:
                faults.kill_after_verify = True
            if rng.random() < 0.04:
                faults.unblock_fails = True
            if rng.random() < 0.03:
                faults.kill_after_unblock = True
            if faults != TaskFaults():
                night.faults.append(f"task {i}{' plan' if dry else ''} try {attempt + 1}: {faults}")
            try:
                report = SimJob(self, group, plan, checkpoint).run(faults)
            except (_TaskFailed, OSError):
                continue
            except _Killed:
                if rng.random() < 0.5:
                    return None  # killed, and the retry never came
                continue
            if report.ids.get("error") and not dry:
                return None  # fail_on: the task fails (its checkpoint is saved)
            return {"credits_spent": report.email_checks, "would_send": report.would_send}
        return None

    def _clock(self) -> float:
        return self.now

    # -- the checks

    def _check_plans(self, planned: list[dict[str, Any]], night: Night) -> None:
        """C2 and C5 on each coverage source's plan."""
        for entry in planned:
            info = entry.get("coverage")
            if not info:
                continue
            plan = info["plan"]
            key = info["key"]
            budget = int(plan["budget"])
            state = CoverageState.from_json(info["claim"]["state"])
            share = due_share(budget)
            if share is not None and len(plan["due"]) > share and not plan["completes_cycle"]:
                self.fail("C2", f"{key}: {len(plan['due'])} due records of a budget of {budget} mid-cycle")
            if not plan["fresh"] and not plan["completes_cycle"]:
                self.fail("C2", f"{key}: the slice did not advance although the cycle has unread records")
            if len(plan["due"]) + len(plan["fresh"]) + sum(len(s) for s in plan["wrapped_segments"]) > budget:
                self.fail("C5", f"{key}: planned more records than its budget {budget}")
            # C5: no record read twice in a cycle except a due deferred one
            cycle, seen = self.read_in_cycle.get(key, (state.cycle, set()))
            if cycle == state.cycle and not info.get("reset"):
                again = [r for r in plan["fresh"] if r in seen]
                if again:
                    self.fail("C5", f"{key}: {again[:5]} planned again in cycle {cycle}")

    def _check_states(
        self,
        before: dict[str, tuple[CoverageState, Any]],
        after: dict[str, tuple[CoverageState, Any]],
        night: Night,
    ) -> None:
        """C4 (nothing marked read without a verdict) and C1 (a cycle ends within its bound) per source."""
        for s in self._coverage_sources():
            key = coverage_run.source_key(s)
            state, _lease = after[key]
            old_state = before[key][0]
            ids = self.org.candidates(s, self.now)
            budget = int(s["max_email_checks"])
            changed = state != old_state
            # C4: a record newly marked read tonight (in this cycle or the next one's early part) was judged tonight.
            # Only ids inside a range that is new tonight can be newly read.
            if changed:
                same_cycle = (
                    state.cycle == old_state.cycle and state.cycle_started_at == old_state.cycle_started_at
                )
                advanced = state.cycle == old_state.cycle + 1
                if same_cycle:
                    old_ranges = set(old_state.covered) | set(old_state.next_covered)
                elif advanced:
                    old_ranges = set(old_state.next_covered)
                else:  # a reset: a new cycle from nothing
                    old_ranges = set()
                ints = [int(r) for r in ids]
                for lo, hi in (*state.covered, *state.next_covered):
                    if (lo, hi) in old_ranges:
                        continue
                    for i in range(bisect.bisect_left(ints, lo), bisect.bisect_right(ints, hi)):
                        rid, n = ids[i], ints[i]
                        was_read = (same_cycle and old_state.is_covered(n)) or (
                            (same_cycle or advanced) and _in_ranges(old_state.next_covered, n)
                        )
                        if rid in state.deferred or was_read:  # a deferral inside a range: by design
                            continue
                        if self.judged_at.get(rid, -math.inf) < self.now - 1:
                            self.fail(
                                "C4",
                                f"{key}: {rid} marked read in cycle {state.cycle} without a verdict tonight",
                            )
            # bookkeeping of what each cycle read (C5)
            cycle, seen = self.read_in_cycle.get(key, (state.cycle, set()))
            if cycle != state.cycle or state.cycle_started_at != old_state.cycle_started_at:
                seen = set()
            seen = set(seen)
            if changed or not seen:
                ints = [int(r) for r in ids]
                for lo, hi in state.covered:
                    seen |= set(ids[bisect.bisect_left(ints, lo) : bisect.bisect_right(ints, hi)])
            self.read_in_cycle[key] = (state.cycle, seen)
            # C1: within ceil(N / ceil(B/2)) + 1 clean runs of the cycle's start (due records take <= half)
            c, runs, listed = self.cycle_runs.get(key, (state.cycle, 0, set()))
            if c != state.cycle or state.cycle_started_at != old_state.cycle_started_at:
                runs, listed = 0, set()
            clean = night.kind in ("live", "approved") and not night.faults
            if clean and changed:
                runs += 1
            listed = listed | set(ids)  # N: every record the source listed during the cycle
            self.cycle_runs[key] = (state.cycle, runs, listed)
            pages = sum(self.org.records[r].pages if r in self.org.records else 1 for r in listed)
            bound = math.ceil(pages / math.ceil(budget / 2)) + 1
            if runs > bound:
                self.fail(
                    "C1", f"{key}: cycle {state.cycle} not over after {runs} clean runs (bound {bound})"
                )


def _no_sleep(_seconds: float) -> None:
    return None


def run_history(seed: int, nights: int = 60) -> Simulation:
    sim = Simulation(seed, nights)
    sim.run()
    return sim


def run_many(seeds: range, nights: int = 60, on_each: Callable[[Simulation], None] | None = None) -> int:
    for seed in seeds:
        sim = run_history(seed, nights)
        if on_each:
            on_each(sim)
    return len(seeds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--nights", type=int, default=60)
    args = parser.parse_args(argv)
    sim = Simulation(args.seed, args.nights)
    try:
        sim.run()
    finally:
        for night in sim.history:
            print(night)
    print("ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
