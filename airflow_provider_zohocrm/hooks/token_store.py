"""A token store that Airflow task instances share on any executor.

Inside a task, the (encrypted) token state lives in an Airflow Variable, which every worker reaches through
the Task Execution API — on the LocalExecutor, Celery or Kubernetes alike. Refreshes are serialised twice:
by a file lock among the processes of one machine (atomic), and by a lease among machines, written into the same
Variable so that one read returns both the token and who is refreshing it (best effort: the Task Execution API has
no compare-and-set, see docs/ARCHITECTURE.md "Token sharing protocol"). Outside a
task (the UI's Test button, a script) there is no Task API: the store falls back to the machine-local file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_zohocrm.zoho.auth import FileTokenStore, LeaseStatus

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "zohocrm_token_cache_"
#: A read of the shared Variable this recent (seconds) stands in for the lease read before a claim; the claim's
#: pause grows by the same amount, so the read→write gap it must cover still fits (see ``_acquire_lease``).
FRESH_READ_SECONDS = 0.01
ENVELOPE_FORMAT = "zohocrm-lease-1"


def in_task_context() -> bool:
    """True inside a running task instance, where Variables go through the Task Execution API."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


class AirflowVariableTokenStore:
    """Variables when running in a task, the local file store always (fast path and fallback).

    :param lease_seconds: the shortest lease; :class:`~airflow_provider_zohocrm.zoho.auth.TokenManager` asks
        for one that outlasts its worst-case grant.
    :param poll_seconds: the longest pause of a process waiting for another machine's refresh (it polls faster
        at first: a grant usually takes well under a second).
    :param settle_seconds: the shortest pause between writing the lease and reading it back; it grows to twice
        the slowest Variable call this process has seen, so a slow Variable API does not open the race.
    """

    def __init__(
        self,
        file_store: FileTokenStore | None = None,
        *,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.5,
        settle_seconds: float = 0.05,
        max_settle_seconds: float = 3.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.files = file_store or FileTokenStore()
        #: wall clock (lease expiry), durations, pauses: a simulation replaces them (tests/unit/token_sim.py)
        self.clock, self.monotonic, self.sleep = clock, monotonic, sleep
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.max_settle_seconds = max_settle_seconds
        self._recent_calls: list[float] = []
        self._leased: dict[str, str] = {}  # key -> owner of the lease this process holds
        self._until: dict[str, float] = {}  # key -> when the lease this process holds ends
        self._saved_under_lease: set[str] = set()
        self._observed: dict[str, str | None] = {}  # the store's blob a lease wait ended on ("changed")
        #: per key, what the last Variable read held: (state blob, lease, self.monotonic() of the answer)
        self._seen: dict[str, tuple[str | None, dict[str, Any] | None, float]] = {}
        self._calls = 0
        #: when a test or benchmark sets a list: (call, wall-clock start, seconds) of every Variable call
        self.trace: list[tuple[str, float, float]] | None = None
        #: what this process did (for tests and benchmarks)
        self.lease_stats: dict[str, float] = dict.fromkeys(
            ("acquired", "lost_race", "waits", "settle_max", "variable_calls", "variable_seconds"), 0.0
        )

    def _use_variables(self) -> bool:
        return in_task_context()

    @staticmethod
    def _variable() -> Any:
        from airflow.providers.common.compat.sdk import Variable

        return Variable

    def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        wall = self.clock()
        started = self.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            took = self.monotonic() - started
            if self.trace is not None:
                self.trace.append((getattr(fn, "__name__", "call"), wall, took))
            self._calls += 1
            self.lease_stats["variable_calls"] += 1
            self.lease_stats["variable_seconds"] += took
            if self._calls > 1:  # the first call of a process pays for lazy imports: not a round trip
                self._recent_calls = [*self._recent_calls[-7:], took]

    def load(self, key: str) -> str | None:
        if self._use_variables():
            try:
                state, _lease = self._read(key)
            except Exception as exc:
                log.warning(
                    "Reading the shared Zoho token failed (%s); using the local cache.", type(exc).__name__
                )
            else:
                if state:
                    return state
        return self.files.load(key)

    def _read(self, key: str) -> tuple[str | None, dict[str, Any] | None]:
        """The shared Variable: (state blob, lease); remembered for the lease protocol. Raises on API errors."""
        self._uncache(VARIABLE_PREFIX + key)
        self._seen.pop(key, None)  # until this read succeeds, nothing is known of the Variable
        raw = self._timed(self._variable().get, VARIABLE_PREFIX + key, default=None)
        state, lease = _unpack(raw)
        self._seen[key] = (state, lease, self.monotonic())
        return state, lease

    @staticmethod
    def _uncache(name: str) -> None:
        """Drop this process's cached copy (``[secrets] use_cache``): a cached "free" read would let a claim
        write a stale state over a fresh token, and a cached lease would keep a waiter waiting."""
        with contextlib.suppress(Exception):
            from airflow.sdk.execution_time.cache import SecretCache

            SecretCache.invalidate_variable(name)

    def _write(self, key: str, state: str | None, lease: dict[str, Any] | None) -> None:
        """The shared Variable: the bare blob when no lease is held (what a reader of any version expects),
        an envelope with the lease while one is."""
        value = _pack(state, lease)
        if value is None:
            self._timed(self._variable().delete, VARIABLE_PREFIX + key)
        else:
            self._timed(
                self._variable().set,
                VARIABLE_PREFIX + key,
                value,
                description="Encrypted Zoho CRM access-token cache (provider-managed)",
            )
        self._seen.pop(key, None)  # only a read tells what the Variable holds (others may write after us)

    def load_local(self, key: str) -> str | None:
        """This machine's copy only (no Task API call): what a process that held this machine's lock left."""
        return self.files.load(key)

    def save_local(self, key: str, blob: str) -> None:
        """Update this machine's copy only (with a state just read from the shared Variable)."""
        self.files.save(key, blob)

    def save(self, key: str, blob: str) -> None:
        """The lease holder's save ends its lease (no release round trip). A save keeps a live lease of another
        task that its caller's read just saw (an invalidation, a failure record, a refresh without the lease, a
        holder whose claim interleaved with another's). Without such a read it writes this machine's copy only."""
        self.files.save(key, blob)
        if self._use_variables():
            seen = self._seen.get(key)
            if key in self._leased:
                self._saved_under_lease.add(key)
            elif seen is None:
                return  # the caller's read failed: a blind write could end a lease it cannot see
            lease = seen[1] if seen is not None and _live(seen[1], self.clock()) else None
            if lease is not None and lease.get("owner") == self._leased.get(key):
                lease = None  # ours: the save ends it
            self._write(key, blob, lease)

    def delete(self, key: str) -> None:
        self.files.delete(key)
        if self._use_variables():
            with contextlib.suppress(Exception):
                self._variable().delete(VARIABLE_PREFIX + key)

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """This machine's lock (flock): atomic among the processes sharing the cache directory."""
        return self.files.lock(key)

    def wait_unlocked(self, key: str) -> bool:
        """Wait (shared) until no process of this machine holds its lock; True if one did."""
        return self.files.wait_unlocked(key)

    def try_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        return self.files.try_lock(key)

    # -- the cross-machine lease ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(
        self, key: str, *, hold_seconds: float, wait: bool, since: str | None = None
    ) -> Iterator[LeaseStatus]:
        """The cross-machine refresh lease, held at most ``hold_seconds`` (at least ``lease_seconds``).

        Yields ``held`` (refresh), ``busy`` (another machine holds it and ``wait`` is false), ``changed`` (we
        waited and the holder left something in the store: :meth:`observed` has it) or ``unavailable`` (the
        Variable API failed: refresh without it; this machine's lock still bounds it to one grant per machine).
        ``since``: the store's blob as the caller last read it ("changed" is relative to it).
        """
        if not self._use_variables():
            yield "held"
            return
        owner = uuid.uuid4().hex
        status = self._acquire_lease(key, owner, max(hold_seconds, self.lease_seconds), wait, since)
        if status == "held":
            self._leased[key] = owner
        try:
            yield status
        finally:
            if status == "held":
                self._leased.pop(key, None)
                self._until.pop(key, None)
                if key in self._saved_under_lease:
                    self._saved_under_lease.discard(key)  # the save replaced the lease already
                else:
                    self._release_lease(key, owner)

    def _settle(self) -> float:
        """At least ``settle_seconds``, and at least the slowest of this process's recent Variable calls."""
        slowest = max(self._recent_calls, default=0.0)
        return min(self.max_settle_seconds, max(self.settle_seconds, slowest))

    def _current(self, key: str) -> tuple[str | None, dict[str, Any] | None]:
        """The Variable as read within ``FRESH_READ_SECONDS`` (the caller's own store read), else read now."""
        seen = self._seen.get(key)
        if seen is not None and self.monotonic() - seen[2] <= FRESH_READ_SECONDS:
            return seen[0], seen[1]
        return self._read(key)

    def _acquire_lease(self, key: str, owner: str, hold: float, wait: bool, since: str | None) -> LeaseStatus:
        """Claim, pause, read back: the last writer wins. A claim rewrites the state it read next to the lease,
        so the read that found the store without a usable token is also the read that found the lease free.
        A second claimer that read "free" before our claim landed lands its own within its read→write gap; the
        pause covers that gap (see the protocol)."""
        started = self.monotonic()
        polls = 0
        try:
            while True:
                if polls:
                    self._read(key)  # the state and the lease in one Variable read; an error: "unavailable"
                state, lease = self._current(key)
                if (state or self.files.load(key)) != since:
                    # the holder finished, or someone saved since the caller's read (never claim from a stale
                    # state): the caller finds the token (or the error) in it
                    self._observed[key] = state or self.files.load(key)
                    return "changed"
                if not _live(lease, self.clock()):
                    until = self.clock() + hold
                    claim = {"owner": owner, "until": until, "host": socket.gethostname()}
                    self._write(key, state, claim)
                    settle = self._settle() + FRESH_READ_SECONDS
                    self.lease_stats["settle_max"] = max(self.lease_stats["settle_max"], settle)
                    self.sleep(settle)  # let a concurrent claimer land before we read back
                    now_state, lease = self._read(key)
                    if lease and lease.get("owner") == owner:
                        self._until[key] = until
                        self.lease_stats["acquired"] += 1
                        return "held"
                    self.lease_stats["lost_race"] += 1
                    if now_state != state:
                        self._observed[key] = now_state
                        return "changed"
                if not wait:
                    return "busy"
                if self.monotonic() - started > 2 * hold:
                    log.warning("Waited %.0f s for the Zoho token lease; refreshing without it.", 2 * hold)
                    return "unavailable"
                self.lease_stats["waits"] += 1
                self.sleep(min(self.poll_seconds, 0.025 * 2 ** min(polls // 8, 5)))  # 25 ms at first
                polls += 1
        except Exception as exc:
            log.warning("Zoho token lease unavailable (%s); refreshing without it.", type(exc).__name__)
            return "unavailable"

    def lease_until(self, key: str) -> float | None:
        """When the lease this process holds on ``key`` ends (the grant under it must end before)."""
        return self._until.get(key)

    def observed(self, key: str) -> str | None:
        """The store's blob that ended the last lease wait with "changed" (once; ``None`` if there is none)."""
        return self._observed.pop(key, None)

    def _release_lease(self, key: str, owner: str) -> None:
        """After a failed refresh (nothing saved): let the next machine try at once."""
        with contextlib.suppress(Exception):
            state, lease = self._read(key)
            if lease and lease.get("owner") == owner:
                self._write(key, state, None)


def _pack(state: str | None, lease: dict[str, Any] | None) -> str | None:
    if lease is None:
        return state
    return json.dumps({"format": ENVELOPE_FORMAT, "state": state, "lease": lease})


def _unpack(raw: object) -> tuple[str | None, dict[str, Any] | None]:
    """(state blob, lease) from the Variable: a bare Fernet blob (no lease), or a claim's envelope."""
    if not raw:
        return None, None
    text = str(raw)
    if not text.startswith("{"):
        return text, None
    try:
        data = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(data, dict) or data.get("format") != ENVELOPE_FORMAT:
        return None, None
    lease = data.get("lease")
    state = data.get("state")
    return (str(state) if state else None), (lease if isinstance(lease, dict) else None)


def _live(lease: dict[str, Any] | None, now: float) -> bool:
    """A lease binds until it expires; a holder's save replaces it (the Variable then holds the bare blob)."""
    return lease is not None and float(lease.get("until") or 0) >= now
