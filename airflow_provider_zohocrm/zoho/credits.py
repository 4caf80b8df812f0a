"""What each Zoho CRM call costs in API credits, by the client's own weight table, so a run can print the credits
it spent (Zoho's ``X-API-CREDITS-REMAINING`` header only appears once half the org's daily credits are used).

Zoho's "API limits" page: "Each API call made will result in a reduction of 1 credit. However, for some APIs,
credit reduction would be different." The weights used here, with their sources:

- **COQL** by the query's LIMIT: 1 credit for 1-200 rows, 2 for 201-1,000, 3 for 1,001-2,000 (Zoho's Query API
  overview: "API Credits based on the value of LIMIT"). No LIMIT means COQL's default of 200: 1 credit.
- **Get Records with a custom view** (``cvid``): 3 credits (secondary copies of Zoho's v8 weight table). Every page
  of a view listing carries the ``cvid``, so every page costs 3.
- **Add Tags to multiple records**: 1 credit per 50 records, rounded up (secondary: Zoho's Vertical Solutions
  API-limits page, same platform). The single-record form: 1.
- **Everything else** 1, including the Emails related list and Unblock Email, which have no line of their own in
  Zoho's table (an assumption).

A call counts when Zoho answered it (2xx, or a 4xx other than 401 and 429): a refused token, a throttled call, a
5xx or a lost connection is assumed free. This is an estimate of what Zoho books, not Zoho's own count. Kept apart
from the emulator's table on purpose: the emulator is the oracle this count is tested against.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from typing import Any

#: (highest LIMIT, credits) steps of a COQL call.
COQL_CREDITS_BY_LIMIT: tuple[tuple[int, int], ...] = ((200, 1), (1000, 2), (2000, 3))
#: COQL's LIMIT when a query gives none.
COQL_DEFAULT_LIMIT = 200
#: Credits of one Get Records call with ``cvid``.
VIEW_RECORDS_CREDITS = 3
#: Records per credit of an Add Tags call.
TAG_RECORDS_PER_CREDIT = 50

_LIMIT_RE = re.compile(r"\blimit\s+(?:\d+\s*,\s*)?(\d+)(?:\s+offset\s+\d+)?\s*;?\s*$", re.IGNORECASE)
_ADD_TAGS_BULK_RE = re.compile(r"^[A-Za-z0-9_]+/actions/add_tags$")


def coql_credits(select_query: str) -> int:
    """Credits of one COQL call, by the LIMIT at the end of its query (COQL's default 200 when none)."""
    match = _LIMIT_RE.search(select_query or "")
    limit = int(match.group(1)) if match else COQL_DEFAULT_LIMIT
    for upto, credits in COQL_CREDITS_BY_LIMIT:
        if limit <= upto:
            return credits
    return COQL_CREDITS_BY_LIMIT[-1][1]


def call_credits(method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None) -> int:
    """Credits one call costs (``path`` below ``/crm/{version}/``, as the client's ``request`` takes it)."""
    path = path.strip("/").split("?", 1)[0]
    method = method.upper()
    if method == "POST" and path == "coql" and isinstance(json, Mapping):
        return coql_credits(str(json.get("select_query") or ""))
    if method == "GET" and "/" not in path and params and params.get("cvid"):
        return VIEW_RECORDS_CREDITS
    if method == "POST" and _ADD_TAGS_BULK_RE.match(path) and isinstance(json, Mapping):
        ids = json.get("ids")
        count = len(ids) if isinstance(ids, list) else 1
        return max(1, math.ceil(count / TAG_RECORDS_PER_CREDIT))
    return 1


class CreditCounter:
    """A thread-safe running total (the operator may call Zoho from several threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent = 0

    def add(self, credits: int) -> None:
        with self._lock:
            self._spent += credits

    @property
    def spent(self) -> int:
        with self._lock:
            return self._spent


__all__ = [
    "COQL_CREDITS_BY_LIMIT",
    "TAG_RECORDS_PER_CREDIT",
    "VIEW_RECORDS_CREDITS",
    "CreditCounter",
    "call_credits",
    "coql_credits",
]
