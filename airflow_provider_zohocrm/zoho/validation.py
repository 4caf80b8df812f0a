"""Input validation shared by the client, the Unblock Email logic and the DAG: module names, record ids, fields,
batch sizes and COQL queries.

One module that imports nothing else of the package but its errors, so client.py and unblock.py both import it
at the top (no import circle). Everything here runs before any call: a bad value never reaches a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_zohocrm.zoho.errors import ZohoValidationError

#: Zoho's standard modules that support Unblock Email (others: custom modules, judged by Zoho).
SUPPORTED_MODULES = (
    "Leads",
    "Contacts",
    "Deals",
    "Accounts",
    "Sales_Orders",
    "Purchase_Orders",
    "Invoices",
    "Quotes",
    "Cases",
)
#: Zoho's documented maximum of ids per bulk call.
MAX_IDS_PER_CALL = 500
UNBLOCKABLE_FIELDS = ("Email", "Secondary_Email")
#: Standard modules that have a Secondary_Email field; custom modules are left to Zoho to judge.
MODULES_WITH_SECONDARY_EMAIL = frozenset({"Leads", "Contacts"})

_MODULE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_LOWER_MODULES = {m.lower().replace("_", ""): m for m in SUPPORTED_MODULES}
_RECORD_ID_RE = re.compile(r"^[0-9]{1,30}$")
_COQL_RE = re.compile(r"^\s*select\s+.+?\s+from\s+([A-Za-z][A-Za-z0-9_]*)\b", re.IGNORECASE | re.DOTALL)
_COQL_PAGING_RE = re.compile(r"\b(limit|offset)\b", re.IGNORECASE)


def validate_module(module: Any) -> str:
    """A module API name: one of Zoho's, or a custom module's API name (letters, digits, underscores)."""
    if not isinstance(module, str) or not _MODULE_RE.fullmatch(module):  # fullmatch: "$" allows "\n"
        raise ZohoValidationError(
            f"Invalid module {module!r}: give the module's API name, e.g. Leads, Contacts or a custom module"
            " such as Bounced_Contacts (letters, digits and underscores)."
        )
    canonical = _LOWER_MODULES.get(module.lower().replace("_", ""))
    if canonical and canonical != module:
        raise ZohoValidationError(f"Invalid module {module!r}: Zoho's API name is {canonical!r}.")
    return module


def validate_record_ids(record_ids: Any) -> list[str]:
    """Zoho record ids as strings: digits only (an id becomes part of a URL path), no duplicates."""
    if isinstance(record_ids, (str, int)):
        record_ids = [record_ids]
    if not isinstance(record_ids, Iterable) or isinstance(record_ids, Mapping):
        raise ZohoValidationError(
            f"record_ids must be a list of Zoho record ids, not {type(record_ids).__name__}"
        )
    ids: list[str] = []
    seen: set[str] = set()
    for value in record_ids:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ZohoValidationError(f"Invalid record id {value!r}: Zoho record ids are strings of digits.")
        text = str(value).strip()
        if not _RECORD_ID_RE.match(text):
            raise ZohoValidationError(f"Invalid record id {value!r}: Zoho record ids contain digits only.")
        if text in seen:
            raise ZohoValidationError(f"Duplicate record id {text!r}: each record may be sent once per run.")
        seen.add(text)
        ids.append(text)
    return ids


def validate_unblock_fields(unblock_fields: Any, module: str) -> list[str]:
    """One or both of Email and Secondary_Email (custom email fields cannot be unblocked)."""
    if isinstance(unblock_fields, str):
        unblock_fields = [unblock_fields]
    if not isinstance(unblock_fields, (list, tuple)) or not unblock_fields:
        raise ZohoValidationError(
            f"unblock_fields must list Email and/or Secondary_Email, not {unblock_fields!r}"
        )
    fields: list[str] = []
    for name in unblock_fields:
        if name not in UNBLOCKABLE_FIELDS:
            raise ZohoValidationError(
                f"Cannot unblock field {name!r}: Zoho unblocks only the system fields Email and"
                " Secondary_Email (custom email fields cannot be unblocked)."
            )
        if name in fields:
            raise ZohoValidationError(f"Field {name!r} is listed twice in unblock_fields.")
        fields.append(name)
    if (
        "Secondary_Email" in fields
        and module in SUPPORTED_MODULES
        and module not in MODULES_WITH_SECONDARY_EMAIL
    ):
        raise ZohoValidationError(f"Module {module!r} has no Secondary_Email field; unblock Email only.")
    return fields


def validate_batch_size(batch_size: Any) -> int:
    """Ids per unblock call: a whole number from 1 to Zoho's 500."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_IDS_PER_CALL
    ):
        raise ZohoValidationError(
            f"batch_size must be a whole number from 1 to {MAX_IDS_PER_CALL} (Zoho's limit per call),"
            f" not {batch_size!r}."
        )
    return batch_size


def validate_unblock_call(
    module: Any, record_ids: Any, unblock_fields: Any
) -> tuple[str, list[str], list[str]]:
    """The checks the operator makes, for callers of the hook/client: an id or module becomes part of the URL
    path, so nothing unchecked may reach it; 1 to 500 ids per call."""
    module = validate_module(module)
    ids = validate_record_ids(record_ids)
    if not 1 <= len(ids) <= MAX_IDS_PER_CALL:
        raise ZohoValidationError(
            f"One unblock call takes 1 to {MAX_IDS_PER_CALL} record ids (Zoho's limit), not {len(ids)}."
        )
    return module, ids, validate_unblock_fields(unblock_fields, module)


def validate_coql(query: Any) -> str:
    """A COQL select without limit/offset (the client adds them)."""
    if not isinstance(query, str) or not _COQL_RE.match(query):
        raise ZohoValidationError(
            f"Invalid COQL query {query!r}: expected 'select <fields> from <Module> …'."
        )
    if _COQL_PAGING_RE.search(re.sub(r"'(?:[^'\\]|\\.)*'", "''", query)):
        raise ZohoValidationError(
            "Leave 'limit' and 'offset' out of the COQL query: the hook pages through all rows itself."
        )
    return query.strip().rstrip(";")


def coql_module(query: Any) -> str:
    """The module a COQL select reads (its ``from``), as the module's API name: the records it yields live
    there, so that is where to unblock them.

    A standard module written in another case (``from leads``) is given its API name (``Leads``); anything else
    must be a valid API name. Raises :class:`ZohoValidationError` when ``query`` is not a COQL select.
    """
    match = _COQL_RE.match(validate_coql(query))
    assert match is not None  # validate_coql matched it
    name = match.group(1)
    return validate_module(_LOWER_MODULES.get(name.lower().replace("_", ""), name))
