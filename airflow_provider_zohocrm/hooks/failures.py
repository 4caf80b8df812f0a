"""The hook's client, as a task log shows its credential and connection failures.

A wrong client secret, a revoked refresh token, the wrong data center, a missing scope or an unreachable accounts
server fails a task. Airflow then logs "Task failed with exception" and the traceback, whose last line is the
exception; our exception's message is already "<cause> Fix: <fix>" in one line (``zoho/errors.py``), but a
traceback of 50 lines through the token manager, tenacity and requests stood between a person and it.

So the client the hook builds logs such a failure once, as one ERROR line with the cause and the fix, before it
leaves the client; logs the full traceback at DEBUG; and raises the exception with its traceback cut at the
client (the frames inside the client and the token manager are in the DEBUG record). A task log then reads: the
cause and the fix, then Airflow's short traceback ending in the same line.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from airflow_provider_zohocrm.zoho.client import ZohoCRMClient, ZohoResponse
from airflow_provider_zohocrm.zoho.errors import (
    ZohoAuthError,
    ZohoConfigError,
    ZohoCRMError,
    ZohoRedirectError,
    ZohoScopeError,
    ZohoTransportError,
    ZohoValidationError,
)

#: What a person fixes in the connection (or the network to Zoho), not in the run's input.
CONNECTION_FAILURES = (ZohoAuthError, ZohoConfigError, ZohoTransportError, ZohoRedirectError)
#: Calls whose missing scope the caller expects and handles (``zoho/modules.py``: the module check is skipped).
SCOPE_OPTIONAL_PURPOSES = frozenset({"modules"})


class FailureLog(Protocol):
    """What the client needs of a logger: the hook's (Airflow's structlog logger) or a ``logging.Logger``."""

    def debug(self, event: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def error(self, event: Any, /, *args: Any, **kwargs: Any) -> Any: ...


def is_connection_failure(exc: ZohoCRMError, purpose: str = "") -> bool:
    """Whether ``exc`` is a failure of the connection a person must fix (not bad input, not an expected gap)."""
    if isinstance(exc, ZohoValidationError) or not isinstance(exc, CONNECTION_FAILURES):
        return False
    return not (isinstance(exc, ZohoScopeError) and purpose in SCOPE_OPTIONAL_PURPOSES)


class FailureReportingClient(ZohoCRMClient):
    """:class:`~airflow_provider_zohocrm.zoho.client.ZohoCRMClient` that reports a connection failure in the
    task log as one line (see the module's docstring).

    :param log: the hook's logger.
    :param conn_id: the connection's id, named in the line.
    """

    def __init__(self, *args: Any, log: FailureLog, conn_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failure_log: FailureLog = log
        self.conn_id = conn_id
        #: False while the preflight runs: its checklist reports the failure itself
        self.report_failures = True
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def request(self, method: str, path: str, **kwargs: Any) -> ZohoResponse:
        try:
            return super().request(method, path, **kwargs)
        except ZohoCRMError as exc:
            if not is_connection_failure(exc, str(kwargs.get("purpose") or "")):
                raise
            self._report(exc)
            raise exc.with_traceback(None)  # noqa: B904 - the same exception, its inner frames cut (in the DEBUG record)

    def _report(self, exc: ZohoCRMError) -> None:
        self.failure_log.debug(
            "Zoho CRM connection %r failed; the full traceback:", self.conn_id, exc_info=exc
        )
        if not self.report_failures:
            return
        with self._lock:  # parallel calls of one task fail alike, or repeat the recorded failure: one line
            if any(seen in exc.message for seen in self._reported):
                return
            self._reported.add(exc.message)
        self.failure_log.error("Zoho CRM connection %r: %s", self.conn_id, exc)
