"""A token store that Airflow task instances share on any executor.

Inside a task, the (encrypted) token state lives in an Airflow Variable, which every worker reaches through
the Task Execution API — on the LocalExecutor, Celery or Kubernetes alike. Refreshes are serialised twice:
by a file lock among the processes of one machine, and by a short lease Variable among machines. Outside a
task (the UI's Test button, a script) there is no Task API: the store falls back to the machine-local file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from airflow_provider_zohocrm.zoho.auth import FileTokenStore

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

    :param lease_seconds: how long one process may hold the cross-machine refresh lease.
    :param poll_seconds: how often a process waiting for another's refresh looks for the new token.
    """

    def __init__(
        self,
        file_store: FileTokenStore | None = None,
        *,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.5,
        settle_seconds: float = 0.2,
    ) -> None:
        self.files = file_store or FileTokenStore()
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds

    def _use_variables(self) -> bool:
        return in_task_context()

    @staticmethod
    def _variable() -> Any:
        from airflow.providers.common.compat.sdk import Variable

        return Variable

    def load(self, key: str) -> str | None:
        if self._use_variables():
            try:
                value = self._variable().get(VARIABLE_PREFIX + key, default=None)
            except Exception as exc:
                log.warning(
                    "Reading the shared Zoho token failed (%s); using the local cache.", type(exc).__name__
                )
            else:
                if value:
                    return str(value)
        return self.files.load(key)

    def save(self, key: str, blob: str) -> None:
        self.files.save(key, blob)
        if self._use_variables():
            self._variable().set(
                VARIABLE_PREFIX + key,
                blob,
                description="Encrypted Zoho CRM access-token cache (provider-managed)",
            )

    def delete(self, key: str) -> None:
        self.files.delete(key)
        if self._use_variables():
            with contextlib.suppress(Exception):
                self._variable().delete(VARIABLE_PREFIX + key)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with self.files.lock(key):
            if not self._use_variables():
                yield
                return
            owner = self._acquire_lease(key)
            try:
                yield
            finally:
                if owner:
                    self._release_lease(key, owner)

    # -- the cross-machine lease ---------------------------------------------------------------------------

    def _lease_key(self, key: str) -> str:
        return f"{VARIABLE_PREFIX}{key}_lease"

    def _read_lease(self, key: str) -> dict[str, object] | None:
        try:
            raw = self._variable().get(self._lease_key(key), default=None)
            lease = json.loads(raw) if raw else None
        except Exception:
            return None
        return lease if isinstance(lease, dict) else None

    def _acquire_lease(self, key: str) -> str | None:
        """Take the lease, or wait (bounded) while another machine refreshes. Best effort by design: on any
        failure the caller refreshes anyway rather than stall the job."""
        owner = uuid.uuid4().hex
        deadline = time.time() + self.lease_seconds
        start_blob = self.load(key)
        try:
            while time.time() < deadline:
                lease = self._read_lease(key)
                if lease is None or float(str(lease.get("until", 0))) < time.time():
                    self._variable().set(
                        self._lease_key(key),
                        json.dumps({"owner": owner, "until": time.time() + self.lease_seconds}),
                    )
                    time.sleep(self.settle_seconds)  # last writer wins; let concurrent writers land first
                    lease = self._read_lease(key)
                    if lease and lease.get("owner") == owner:
                        return owner
                elif self.load(key) != start_blob:
                    return None  # the holder finished: the caller finds its token in the store
                time.sleep(self.poll_seconds)
        except Exception as exc:
            log.warning("Zoho token lease unavailable (%s); refreshing without it.", type(exc).__name__)
        return None

    def _release_lease(self, key: str, owner: str) -> None:
        lease = self._read_lease(key)
        if lease and lease.get("owner") == owner:
            with contextlib.suppress(Exception):
                self._variable().delete(self._lease_key(key))
