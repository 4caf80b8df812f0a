"""Keyset paging of a COQL query on the record id: the way to read more than COQL's 100,000-row offset cap.

Zoho's v8 Query API limitations page: "You can fetch up to 1,00,000 records using pagination with LIMIT and
OFFSET … Refer to the Pagination section to learn how to fetch more than 1,00,000 records." What the docs give to
build on: COQL "sorts the records in ascending order based on the record ID" when the query has no ORDER BY, and
``id`` takes the comparators ``>``, ``<``, ``>=``, ``<=``. So each page is the user's query with ``id > last``
added to its criteria, ``order by id`` and ``limit 2000`` and no offset: ⌈N/2000⌉ calls, no cap, and a record
added or deleted during the scan shifts nothing (offset paging skips a row for every record deleted before the
offset, and reads one twice for every record added before it).

What such a query can be: a plain ``select … from … [where …]``, optionally ``order by id [asc|desc]``. The
criteria are wrapped in parentheses before ``and id > n`` is added, so an ``or`` in them keeps its meaning.
Refused with a clear message, before any call: ``limit``/``offset`` (``validation.validate_coql``), an ORDER BY
on another field (the rows would not come in id order), GROUP BY / HAVING and aggregate functions (rows that are
not records have no id to page by).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.validation import validate_coql

_KEYWORDS = re.compile(r"\b(where|order\s+by|group\s+by|having|limit|offset)\b", re.IGNORECASE)
_AGGREGATE = re.compile(r"\b(count|sum|min|max|avg)\s*\(", re.IGNORECASE)
_ORDER_BY_ID = re.compile(r"^\s*['\"]?id['\"]?(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


def _mask_literals(query: str) -> str:
    """``query`` with the inside of every quoted literal replaced by ``_`` (same length), so keywords and
    parentheses are only found in the query's own text."""
    out = list(query)
    i, n = 0, len(query)
    while i < n:
        quote = query[i]
        if quote not in ("'", '"'):
            i += 1
            continue
        j = i + 1
        while j < n:
            if query[j] == "\\":
                j += 2
                continue
            if query[j] == quote:
                if j + 1 < n and query[j + 1] == quote:  # '' escapes a quote
                    j += 2
                    continue
                break
            j += 1
        for k in range(i + 1, min(j, n)):
            out[k] = "_"
        i = j + 1
    return "".join(out)


def _top_level_keywords(masked: str) -> list[tuple[int, int, str]]:
    """(start, end, keyword) of every clause keyword outside parentheses (a subquery's own clauses excluded)."""
    depth_at = []
    depth = 0
    for ch in masked:
        if ch == "(":
            depth += 1
        depth_at.append(depth)
        if ch == ")":
            depth -= 1
    found = []
    for m in _KEYWORDS.finditer(masked):
        if depth_at[m.start()] == 0:
            found.append((m.start(), m.end(), re.sub(r"\s+", " ", m.group(1).lower())))
    return found


@dataclass(frozen=True)
class KeysetQuery:
    """A COQL select split into what each page reuses: ``head`` (``select … from …``), the user's ``criteria``
    (None: none) and the direction of the id order."""

    head: str
    criteria: str | None
    descending: bool = False

    def page(self, after: int | None, limit: int) -> str:
        """The query for the page after record id ``after`` (None: the first page)."""
        parts = []
        if self.criteria is not None:
            parts.append(f"({self.criteria})")
        if after is not None:
            parts.append(f"id {'<' if self.descending else '>'} {after}")
        where = " and ".join(parts) if parts else "id is not null"  # COQL wants a where clause
        return f"{self.head} where {where} order by id {'desc' if self.descending else 'asc'} limit {limit}"


def keyset_query(query: str) -> KeysetQuery:
    """Split a user's COQL select for keyset paging, or raise :class:`ZohoValidationError` saying why it cannot
    be paged by record id and what to write instead."""
    query = validate_coql(query)  # select … from M …, no limit/offset
    masked = _mask_literals(query)
    keywords = _top_level_keywords(masked)
    head_end = keywords[0][0] if keywords else len(query)
    if _AGGREGATE.search(masked[:head_end]):
        raise ZohoValidationError(
            "The COQL query selects an aggregate (COUNT/SUM/MIN/MAX/AVG): its rows are not records and have no"
            " id to page by. Select record fields, e.g. 'select id from Leads where …'."
        )
    criteria: str | None = None
    descending = False
    seen: list[str] = []
    for n, (_start, end, word) in enumerate(keywords):
        stop = keywords[n + 1][0] if n + 1 < len(keywords) else len(query)
        body = query[end:stop].strip()
        if word in seen:
            raise ZohoValidationError(f"The COQL query has '{word}' twice outside parentheses.")
        seen.append(word)
        if word == "where":
            if "order by" in seen[:-1]:
                raise ZohoValidationError("The COQL query's where clause must come before its order by.")
            if not body:
                raise ZohoValidationError("The COQL query's where clause is empty.")
            criteria = body
        elif word == "order by":
            match = _ORDER_BY_ID.match(body)
            if match is None:
                raise ZohoValidationError(
                    f"The COQL query is ordered by {body!r}: past COQL's 100,000-row offset cap it can only be"
                    " read by paging on the record id (Zoho's way), which needs the rows in id order. Remove the"
                    " order by (rows then come in id order), or order by id."
                )
            descending = (match.group(1) or "asc").lower() == "desc"
        elif word in ("group by", "having"):
            raise ZohoValidationError(
                f"The COQL query has '{word}': grouped rows are not records and have no id to page by. Select"
                " record fields without grouping."
            )
        else:  # limit / offset: validate_coql refused them already; kept for safety
            raise ZohoValidationError(
                "Leave 'limit' and 'offset' out of the COQL query: the hook pages through all rows itself."
            )
    head = query[:head_end].rstrip()
    return KeysetQuery(head=head, criteria=criteria, descending=descending)


__all__ = ["KeysetQuery", "keyset_query"]
