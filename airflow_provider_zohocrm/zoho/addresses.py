"""A record's email addresses, read with its id at no extra call (issue 19).

Per-address verification needs each candidate's ``Email`` and ``Secondary_Email``. The source read that lists
the ids can carry them: a custom view read takes them in ``fields=`` (``client.iter_records(module, cvid=…,
fields=view_fields(unblock_fields))``), and a COQL select in its select list (``client.iter_coql(
coql_with_fields(query, unblock_fields))``). :func:`addresses_by_id` turns the rows into
``{id: {field: address or None}}`` for :func:`~airflow_provider_zohocrm.zoho.emails.check_addresses`.

Pure: builds strings and reads rows; the client does the calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_zohocrm.zoho.emails import ADDRESS_FIELDS
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.validation import validate_coql

_SELECT_RE = re.compile(r"^(\s*select\s+)(.+?)(\s+from\s+)", re.IGNORECASE | re.DOTALL)


def address_fields(unblock_fields: Iterable[str]) -> list[str]:
    """The address fields to read for ``unblock_fields``, in Zoho's order; unknown names are refused."""
    chosen = list(dict.fromkeys(unblock_fields))
    unknown = [f for f in chosen if f not in ADDRESS_FIELDS]
    if unknown:
        raise ZohoValidationError(f"unknown email field(s) {unknown}; Zoho unblocks {list(ADDRESS_FIELDS)}")
    return [f for f in ADDRESS_FIELDS if f in chosen]


#: Zoho's standard modules that have a ``Secondary_Email`` field (the other modules Unblock Email serves have
#: ``Email`` only, and a read naming a field a module lacks is refused).
MODULES_WITH_SECONDARY_EMAIL = frozenset({"Leads", "Contacts"})


def fields_to_read(module: str, unblock_fields: Iterable[str]) -> list[str]:
    """The address fields to read with the ids: the fields to unblock, and every other address field the
    module has. The record's other address comes free with the read, and the rule on a mail sent to several of
    the record's addresses needs it whatever fields are unblocked (issue 27)."""
    chosen = address_fields(unblock_fields)
    if module.lower() in {m.lower() for m in MODULES_WITH_SECONDARY_EMAIL}:
        chosen = address_fields([*chosen, "Secondary_Email"])
    return chosen


def view_fields(unblock_fields: Iterable[str]) -> list[str]:
    """``fields=`` of a records/view read that lists ids with their addresses."""
    return ["id", *address_fields(unblock_fields)]


def coql_with_fields(query: str, unblock_fields: Iterable[str]) -> str:
    """The COQL select with the address fields added to its select list (names already there, in any case,
    are not repeated): ``select id from Leads where …`` → ``select id, Email, Secondary_Email from Leads
    where …``. The where clause, and anything after it, is untouched."""
    query = validate_coql(query)
    match = _SELECT_RE.match(query)
    if match is None:  # validate_coql accepted it, so this is unreachable in practice
        raise ZohoValidationError(
            f"Invalid COQL query {query!r}: expected 'select <fields> from <Module> …'."
        )
    head, selected, middle = match.group(1), match.group(2), match.group(3)
    present = {item.strip().lower() for item in selected.split(",")}
    extra = [f for f in address_fields(unblock_fields) if f.lower() not in present]
    if not extra:
        return query
    return f"{head}{selected.rstrip()}, {', '.join(extra)}{middle}{query[match.end() :]}"


def addresses_by_id(
    rows: Iterable[Mapping[str, Any]], unblock_fields: Sequence[str]
) -> dict[str, dict[str, str | None]]:
    """``{id: {field: address or None}}`` from view or COQL rows, in row order (a repeated id keeps its
    first row): each of ``unblock_fields``, and every other address field the row holds (the record's other
    address, for the rule on a mail to several addresses). Keys are matched without case (a COQL select that
    wrote ``email`` may be answered with ``email`` as the key). A value that is not a non-empty string counts as
    no address."""
    fields = address_fields(unblock_fields)
    out: dict[str, dict[str, str | None]] = {}
    for row in rows:
        folded = {str(k).lower(): k for k in row}
        id_key = folded.get("id", "id")
        if row.get(id_key) is None:
            continue
        record_id = str(row.get(id_key))
        if record_id in out:
            continue
        found: dict[str, str | None] = {}
        for name in ADDRESS_FIELDS:
            key = folded.get(name.lower())
            if key is None and name not in fields:
                continue
            value = row.get(key) if key is not None else None
            found[name] = value.strip() if isinstance(value, str) and value.strip() else None
        out[record_id] = found
    return out


__all__ = [
    "MODULES_WITH_SECONDARY_EMAIL",
    "address_fields",
    "addresses_by_id",
    "coql_with_fields",
    "fields_to_read",
    "view_fields",
]
