"""A token store that Airflow task instances share on any executor.

Inside a task, the (encrypted) token state lives in an Airflow Variable, which every worker reaches through
the Task Execution API — on the LocalExecutor, Celery or Kubernetes alike. Refreshes are serialised twice:
by a file lock among the processes of one machine (atomic), and by a lease Variable among machines (best effort:
the Task Execution API has no compare-and-set, see docs/ARCHITECTURE.md "Token sharing protocol"). Outside a
task (the UI's Test button, a script) there is no Task API: the store falls back to the machine-local file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

from airflow_provider_zohocrm.zoho.auth import FileTokenStore, LeaseStatus

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "zohocrm_token_cache_"


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
    ) -> None:
        self.files = file_store or FileTokenStore()
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.max_settle_seconds = max_settle_seconds
        self._recent_calls: list[float] = []
        self._leased: set[str] = set()  # keys whose lease this process holds
        self._saved_under_lease: set[str] = set()
        self._calls = 0
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
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.monotonic() - started
            self._calls += 1
            self.lease_stats["variable_calls"] += 1
            self.lease_stats["variable_seconds"] += took
            if self._calls > 1:  # the first call of a process pays for lazy imports: not a round trip
                self._recent_calls = [*self._recent_calls[-7:], took]

    def load(self, key: str) -> str | None:
        if self._use_variables():
            try:
                value = self._timed(self._variable().get, VARIABLE_PREFIX + key, default=None)
            except Exception as exc:
                log.warning(
                    "Reading the shared Zoho token failed (%s); using the local cache.", type(exc).__name__
                )
            else:
                if value:
                    return str(value)
        return self.files.load(key)

    def load_local(self, key: str) -> str | None:
        """This machine's copy only (no Task API call): what a process that held this machine's lock left."""
        return self.files.load(key)

    def save_local(self, key: str, blob: str) -> None:
        """Update this machine's copy only (with a state just read from the shared Variable)."""
        self.files.save(key, blob)

    def save(self, key: str, blob: str) -> None:
        self.files.save(key, blob)
        if self._use_variables():
            self._timed(
                self._variable().set,
                VARIABLE_PREFIX + key,
                blob,
                description="Encrypted Zoho CRM access-token cache (provider-managed)",
            )
            if key in self._leased:
                self._saved_under_lease.add(key)  # this save also ends the lease (see ``_live``)

    def delete(self, key: str) -> None:
        self.files.delete(key)
        if self._use_variables():
            with contextlib.suppress(Exception):
                self._variable().delete(VARIABLE_PREFIX + key)

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """This machine's lock (flock): atomic among the processes sharing the cache directory."""
        return self.files.lock(key)

    def try_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        return self.files.try_lock(key)

    # -- the cross-machine lease ---------------------------------------------------------------------------

    def _lease_key(self, key: str) -> str:
        return f"{VARIABLE_PREFIX}{key}_lease"

    def _read_lease(self, key: str) -> dict[str, Any] | None:
        """The current lease; raises when the Variable API fails (the caller decides)."""
        raw = self._timed(self._variable().get, self._lease_key(key), default=None)
        try:
            lease = json.loads(raw) if raw else None
        except ValueError:
            return None
        return lease if isinstance(lease, dict) else None

    @contextlib.contextmanager
    def lease(
        self, key: str, *, hold_seconds: float, wait: bool, since: str | None = None
    ) -> Iterator[LeaseStatus]:
        """The cross-machine refresh lease, held at most ``hold_seconds`` (at least ``lease_seconds``).

        Yields ``held`` (refresh), ``busy`` (another machine holds it and ``wait`` is false), ``changed`` (we
        waited and the holder left something in the store: look there first) or ``unavailable`` (the Variable
        API failed: refresh without it; this machine's lock still bounds it to one grant per machine).
        ``since``: the store's blob as the caller last read it ("changed" is relative to it).
        """
        if not self._use_variables():
            yield "held"
            return
        owner = uuid.uuid4().hex
        status = self._acquire_lease(key, owner, max(hold_seconds, self.lease_seconds), wait, since)
        if status == "held":
            self._leased.add(key)
        try:
            yield status
        finally:
            if status == "held":
                self._leased.discard(key)
                if key in self._saved_under_lease:
                    self._saved_under_lease.discard(key)  # void already: its basis is no longer the store
                else:
                    self._release_lease(key, owner)

    def _settle(self) -> float:
        """At least ``settle_seconds``, and at least the slowest of this process's recent Variable calls."""
        slowest = max(self._recent_calls, default=0.0)
        return min(self.max_settle_seconds, max(self.settle_seconds, slowest))

    def _acquire_lease(self, key: str, owner: str, hold: float, wait: bool, since: str | None) -> LeaseStatus:
        """Write the lease, pause, read it back: the last writer wins, and a writer that read "free" before our
        write lands after our read-back only if its read→write gap exceeds our pause plus our read-back's own
        round trip (see the protocol)."""
        start_blob = since
        started = time.monotonic()
        polls = 0
        try:
            while True:
                if polls and self.load(key) != start_blob:
                    return "changed"  # the holder finished: the caller finds its token (or its error)
                if polls % 3 == 0:  # every third round look at the lease; in between only at the store
                    lease = self._read_lease(key)
                    if not _live(lease, start_blob):
                        until = time.time() + hold
                        value = {"owner": owner, "until": until, "host": socket.gethostname()}
                        self._timed(
                            self._variable().set,
                            self._lease_key(key),
                            json.dumps({**value, "basis": _digest(start_blob)}),
                        )
                        settle = self._settle()
                        self.lease_stats["settle_max"] = max(self.lease_stats["settle_max"], settle)
                        time.sleep(settle)  # let a concurrent writer land before we read back
                        lease = self._read_lease(key)
                        if lease and lease.get("owner") == owner:
                            self.lease_stats["acquired"] += 1
                            return "held"
                        self.lease_stats["lost_race"] += 1
                    if not wait:
                        return "busy"
                if time.monotonic() - started > 2 * hold:
                    log.warning("Waited %.0f s for the Zoho token lease; refreshing without it.", 2 * hold)
                    return "unavailable"
                self.lease_stats["waits"] += 1
                time.sleep(min(self.poll_seconds, 0.05 * 2 ** min(polls // 6, 4)))  # 0.05 s at first
                polls += 1
        except Exception as exc:
            log.warning("Zoho token lease unavailable (%s); refreshing without it.", type(exc).__name__)
            return "unavailable"

    def _release_lease(self, key: str, owner: str) -> None:
        """After a failed refresh (nothing saved): let the next machine try at once."""
        with contextlib.suppress(Exception):
            lease = self._read_lease(key)
            if lease and lease.get("owner") == owner:
                self._variable().delete(self._lease_key(key))


def _digest(blob: str | None) -> str:
    return hashlib.sha256((blob or "").encode()).hexdigest()[:16]


def _live(lease: dict[str, Any] | None, current_blob: str | None) -> bool:
    """A lease binds while it has not expired and the store still holds the state its holder started from: a
    holder that saved its result has ended its lease with that same write (no release round trip)."""
    if lease is None or float(lease.get("until") or 0) < time.time():
        return False
    return lease.get("basis") in (None, _digest(current_blob))
