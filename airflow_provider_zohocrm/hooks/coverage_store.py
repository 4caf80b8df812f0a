"""Rolling coverage state (``zoho/coverage.py``) kept in an Airflow Variable per DAG and source, with a guard so
two runs can never advance one cursor at once.

**Where.** One Variable per (DAG, source): ``zohocrm_coverage_<dag>__<source>`` (sanitised, with a short hash when
long). Its value is JSON ``{"format", "state", "lease"}``: the coverage state and, while a run works on it, that
run's lease ``{"run_id", "token", "claimed_at", "until"}``. Per-task verdict checkpoints live in Variables of their
own (``zohocrm_coverage_ckpt_<…>_<run>_<map index>``), one per mapped task so no two tasks write one key; the run's
commit step merges and deletes them.

**The guard.** Airflow Variables have no compare-and-set (neither the Task Execution API nor the metadata DB model
offers one), so the guard is a lease plus a token check at both ends:

1. *Claim* (the run's planning step): read the Variable. A live lease of another run fails this run at once with
   :class:`CoverageBusyError` naming the holder: a manual trigger next to a scheduled run fails fast instead of
   planning from a cursor the other run is about to move. Waiting is not offered: the holder may take hours, and a
   queued second pass would only re-read what the first one covers. An expired lease (``lease_seconds``, or a
   holder that ``holder_is_alive`` says has ended) is taken over. The claim writes this run's lease with a fresh
   random token, pauses (``settle_seconds``), and reads back: another claim written meanwhile wins (last writer),
   and this run fails with :class:`CoverageBusyError`.
2. *Commit* (the run's last step): read the Variable again; only if the lease still carries this run's token is the
   new state written, and the lease cleared in the same write. Otherwise :class:`CoverageLostError`: nothing is
   advanced (the run's verdicts stay in its checkpoints).

Why two runs cannot both advance: every commit needs the lease token it claimed, every claim replaces the token,
and a commit clears it. Of two runs that both believe they hold the lease (their read-backs raced), only the later
claim's token is in the Variable, so only that run can commit; after its commit there is no token, so the other
cannot either. The one window left: a claim written between a commit's read and its write is overwritten by the
commit; that claiming run then fails at its own commit with :class:`CoverageLostError`, having advanced nothing.
Lease times are wall-clock times of the writer (clock skew between workers shortens or lengthens a lease by the
skew).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_zohocrm.zoho.coverage import CoverageState, RunCheckpoint, reset

VARIABLE_PREFIX = "zohocrm_coverage_"
CHECKPOINT_PREFIX = "zohocrm_coverage_ckpt_"
STORE_FORMAT = "zohocrm-coverage-store-1"
#: Airflow's Variable key column holds 250 characters.
_MAX_KEY = 250
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class CoverageBusyError(RuntimeError):
    """Another run holds (or just claimed) the coverage of this source."""


class CoverageLostError(RuntimeError):
    """This run's lease was taken over before its commit: its verdicts were not applied."""


class Variables(Protocol):
    """The three Variable calls the store needs (Airflow's ``Variable`` API, or a test double)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


class AirflowVariables:
    """Airflow Variables: through the Task Execution API inside a task, the metadata DB elsewhere (a script,
    a test against a migrated Airflow home)."""

    def get(self, key: str) -> str | None:
        from airflow_provider_zohocrm.hooks.token_store import in_task_context

        variable = self._variable()
        # the Task SDK's Variable.get takes ``default``; the metadata DB model's ``default_var``
        value = variable.get(key, default=None) if in_task_context() else variable.get(key, default_var=None)
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        self._variable().set(key, value)

    def delete(self, key: str) -> None:
        self._variable().delete(key)

    @staticmethod
    def _variable() -> Any:
        from airflow_provider_zohocrm.hooks.token_store import in_task_context

        if in_task_context():
            from airflow.providers.common.compat.sdk import Variable

            return Variable
        from airflow.models.variable import Variable as DbVariable

        return DbVariable


@functools.lru_cache(maxsize=4096)
def _key(prefix: str, *parts: str) -> str:
    """A Variable key from parts: readable, sanitised, and unique (a hash of the raw parts when shortened)."""
    raw = "\x1f".join(parts)
    readable = prefix + "__".join(_UNSAFE.sub("_", p) for p in parts)
    if len(readable) <= _MAX_KEY and readable == prefix + "__".join(parts):
        return readable
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    return f"{readable[: _MAX_KEY - 17]}_{digest}"


#: Tokens of the latest commits kept in the Variable: a retried commit step that finds its token there knows its
#: earlier try's write was stored (and does not write again).
COMMITS_KEPT = 8


@dataclass(frozen=True)
class Claim:
    """What a run holds between its claim and its commit (pass it to the commit step, e.g. through XCom).

    ``before`` is the Variable's exact text before the claim (None: it did not exist), so that a run that stops
    without committing (a rejected plan, a failed claim of another source) leaves it byte-identical.
    ``leased`` is False for a claim that wrote nothing (a reset run: it takes effect at its commit only)."""

    run_id: str
    token: str
    state: CoverageState
    before: str | None = None
    leased: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "token": self.token,
            "state": self.state.to_json(),
            "before": self.before,
            "leased": self.leased,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Claim:
        before = data.get("before")
        return cls(
            str(data["run_id"]),
            str(data["token"]),
            CoverageState.from_json(data["state"]),
            None if before is None else str(before),
            bool(data.get("leased", True)),
        )


class CoverageStore:
    """The coverage of one (DAG, source), in an Airflow Variable, guarded by a lease (see the module docstring).

    :param lease_seconds: how long a claim holds without a commit (a run that died leaves its lease; the next
        run takes it over once expired). Default 20 hours: less than a nightly schedule, more than a long run.
    :param holder_is_alive: optional check whether the run holding a lease still runs; one that has ended (failed,
        killed) gives its lease up at once.
    """

    def __init__(
        self,
        dag_id: str,
        source_key: str,
        variables: Variables | None = None,
        *,
        conn_id: str | None = None,
        lease_seconds: float = 20 * 3600.0,
        settle_seconds: float = 0.2,
        holder_is_alive: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.dag_id = dag_id
        self.source_key = source_key
        self.conn_id = conn_id
        self.variables: Variables = variables or AirflowVariables()
        self.lease_seconds = lease_seconds
        self.settle_seconds = settle_seconds
        self.holder_is_alive = holder_is_alive
        self.clock = clock
        self.sleep = sleep
        #: the org (connection), the DAG and the source: one cursor each (without a connection id: the key of
        #: releases before issue 26, which one org per DAG shared)
        self._parts = (dag_id, source_key) if conn_id is None else (conn_id, dag_id, source_key)
        self.key = _key(VARIABLE_PREFIX, *self._parts)

    # -- reading and writing the envelope

    def _read_raw(self) -> tuple[str | None, CoverageState, dict[str, Any] | None, list[str]]:
        raw = self.variables.get(self.key)
        if not raw:
            return raw, CoverageState(), None, []
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            raise ValueError(f"Variable {self.key} does not hold a coverage state ({STORE_FORMAT})")
        lease = data.get("lease")
        commits = [str(t) for t in data.get("commits") or []]
        return (
            raw,
            CoverageState.from_json(data.get("state")),
            lease if isinstance(lease, dict) else None,
            commits,
        )

    def _read(self) -> tuple[CoverageState, dict[str, Any] | None]:
        _raw, state, lease, _commits = self._read_raw()
        return state, lease

    def _write(
        self, state: CoverageState, lease: dict[str, Any] | None, commits: list[str] | None = None
    ) -> None:
        payload: dict[str, Any] = {"format": STORE_FORMAT, "state": state.to_json(), "lease": lease}
        if commits:
            payload["commits"] = commits[-COMMITS_KEPT:]
        self.variables.set(self.key, json.dumps(payload, separators=(",", ":")))

    def read(self) -> CoverageState:
        """The current state (a fresh one when the Variable does not exist yet)."""
        return self._read()[0]

    def holder(self) -> dict[str, Any] | None:
        """The live lease, if any: ``{"run_id", "token", "claimed_at", "until"}``."""
        _state, lease = self._read()
        return lease if lease is not None and self._live(lease) else None

    def _live(self, lease: dict[str, Any]) -> bool:
        if float(lease.get("until", 0)) <= self.clock():
            return False
        return self.holder_is_alive is None or self.holder_is_alive(str(lease.get("run_id")))

    # -- the guard

    def claim(self, run_id: str) -> Claim:
        """Take this source's coverage for ``run_id``, or raise :class:`CoverageBusyError`."""
        before, state, lease, commits = self._read_raw()
        if lease is not None and lease.get("run_id") != run_id and self._live(lease):
            raise CoverageBusyError(self._busy_message(lease))
        now = self.clock()
        mine = {
            "run_id": run_id,
            "token": secrets.token_hex(16),
            "claimed_at": now,
            "until": now + self.lease_seconds,
        }
        self._write(state, mine, commits)
        self.sleep(self.settle_seconds)
        state_back, lease_back = self._read()
        if lease_back is None or lease_back.get("token") != mine["token"]:
            other = lease_back or {"run_id": "unknown"}
            raise CoverageBusyError(
                f"Another run ({other.get('run_id')}) claimed the coverage of {self.source_key!r} of DAG"
                f" {self.dag_id!r} at the same moment as {run_id!r}; it proceeds and this run stops, so that the"
                " two never advance one cursor."
            )
        return Claim(run_id, str(mine["token"]), state_back, before)

    def peek(self, run_id: str, *, fresh_state: CoverageState | None = None) -> Claim:
        """A claim that writes nothing: a dry run plans from the stored state, a reset run from
        ``fresh_state`` (its reset takes effect at :meth:`commit`, which then overrides any lease)."""
        before, state, _lease, _commits = self._read_raw()
        return Claim(
            run_id, secrets.token_hex(16), state if fresh_state is None else fresh_state, before, leased=False
        )

    def committed(self, claim: Claim) -> bool:
        """Whether ``claim``'s commit is stored (a retried commit step asks before writing again)."""
        return claim.token in self._read_raw()[3]

    def commit(self, claim: Claim, new_state: CoverageState) -> None:
        """Write ``new_state`` and end the lease, only if ``claim`` still holds it (else CoverageLostError).

        A claim that wrote no lease (a reset run) writes over whatever is stored, a live lease too: that run
        then fails at its own commit and advances nothing. A commit already stored (a retried step) is not
        written again."""
        _raw, _state, lease, commits = self._read_raw()
        if claim.token in commits:
            return
        if claim.leased and (lease is None or lease.get("token") != claim.token):
            who = f"run {lease.get('run_id')!r}" if lease else "a reset or another run's commit"
            raise CoverageLostError(
                f"Run {claim.run_id!r} lost the coverage lease of {self.source_key!r} (DAG {self.dag_id!r}) to"
                f" {who} before committing: its verdicts were not applied to the cursor (they stay in its"
                " checkpoints); the next run reads those records again."
            )
        self._write(new_state, None, [*commits, claim.token])

    def release(self, claim: Claim) -> None:
        """Give the lease up without changing anything: the Variable gets back its exact text from before the
        claim (deleted if it did not exist), if the lease still carries ``claim``'s token."""
        if not claim.leased:
            return
        _raw, _state, lease, _commits = self._read_raw()
        if lease is not None and lease.get("token") == claim.token:
            if claim.before is None:
                self.variables.delete(self.key)
            else:
                self.variables.set(self.key, claim.before)

    def reset(self, now: float | None = None) -> CoverageState:
        """Start over at once (a script; the DAG's reset param goes through :meth:`peek` and :meth:`commit`): a
        fresh cycle, nothing deferred, any lease cleared."""
        fresh = reset(self.clock() if now is None else now)
        self._write(fresh, None)
        return fresh

    def _busy_message(self, lease: dict[str, Any]) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(lease.get("claimed_at", 0))))
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(lease.get("until", 0))))
        return (
            f"Run {lease.get('run_id')!r} has held the coverage of source {self.source_key!r} of DAG"
            f" {self.dag_id!r} since {since} (its lease runs until {until}). Two runs must not advance one cursor:"
            " this run stops. Trigger again once that run has finished, or reset the coverage."
        )

    # -- per-task checkpoints of one run

    def checkpoint_key(self, run_id: str, map_index: int, role: str = "") -> str:
        """A mapped task's checkpoint Variable (``role="plan"``: the approval plan's task of that index)."""
        return _key(CHECKPOINT_PREFIX, *self._parts, run_id, f"{role}{map_index}")

    def save_checkpoint(self, run_id: str, map_index: int, checkpoint: RunCheckpoint) -> None:
        self.variables.set(
            self.checkpoint_key(run_id, map_index), json.dumps(checkpoint.to_json(), separators=(",", ":"))
        )

    def load_checkpoint(self, run_id: str, map_index: int) -> RunCheckpoint:
        raw = self.variables.get(self.checkpoint_key(run_id, map_index))
        return RunCheckpoint.from_json(json.loads(raw) if raw else None)

    def collect_checkpoints(
        self, run_id: str, map_indexes: Iterable[int], *, delete: bool = False
    ) -> RunCheckpoint:
        """Every task's verdicts of a run, merged. Delete them (:meth:`delete_checkpoints`) only once the commit
        that applies them is stored: a commit that fails leaves them for the retried step (C4)."""
        indexes = list(map_indexes)
        merged = RunCheckpoint.merged(self.load_checkpoint(run_id, i) for i in indexes)
        if delete:
            self.delete_checkpoints(run_id, indexes)
        return merged

    def delete_checkpoints(
        self, run_id: str, map_indexes: Iterable[int], roles: Iterable[str] = ("",)
    ) -> None:
        """Remove a run's checkpoint Variables (those that exist)."""
        for i in map_indexes:
            for role in roles:
                key = self.checkpoint_key(run_id, i, role)
                if self.variables.get(key) is not None:
                    self.variables.delete(key)


__all__ = [
    "COMMITS_KEPT",
    "AirflowVariables",
    "Claim",
    "CoverageBusyError",
    "CoverageLostError",
    "CoverageStore",
    "Variables",
]
