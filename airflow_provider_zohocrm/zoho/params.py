"""The params every entry point shares, each rule stated once: the operator, the DAG's sources, the preflight and
the command line all parse through here, so a value means the same thing wherever it is given.

Values arrive as native types (JSON, ``render_template_as_native_obj``) or as strings (a template rendered without
native types: ``"24"``, ``"None"``, ``" Emails "``). Each ``parse_*`` takes both, returns the normalised value,
and raises :class:`ZohoValidationError` naming the param for anything else, before any call. No Airflow here.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_zohocrm.zoho.emails import ADDRESS_FIELDS
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.tags import validate_tag_names
from airflow_provider_zohocrm.zoho.validation import validate_batch_size

#: How candidates are confirmed before an unblock call: trust the source, read each record's Emails list, or
#: let Zoho's unblock answers classify every candidate (see docs/verify-modes in the README).
VERIFY_MODES = ("none", "emails", "sweep")
#: Spellings of a yes/no param. The empty string is neither: a template that rendered to nothing must not
#: become a live run (fail closed).
TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "0", "off"})
#: Text that a template renders for "no value" (Jinja prints None as "None").
_NO_VALUE_WORDS = frozenset({"", "none", "null"})
_CVID_RE = re.compile(r"^[0-9]{1,30}$")


def refuse_unknown_keys(given: Iterable[str], known: Iterable[str], where: str) -> None:
    """Fail closed on a key nobody reads: a misspelled ``dryrun`` silently ignored would make a live run.

    Names every unknown key with its closest known one (``dryrun`` → ``dry_run``), before any call.
    """
    known = sorted(set(known))
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    named = []
    for key in unknown:
        close = difflib.get_close_matches(_folded(key), {_folded(k): k for k in known}, n=1, cutoff=0.6)
        hint = f" (did you mean {_unfold(close[0], known)!r}?)" if close else ""
        named.append(f"{key!r}{hint}")
    raise ZohoValidationError(
        f"{where} has unknown key(s) {', '.join(named)}; nothing was run. Known keys: {', '.join(known)}."
    )


def _folded(key: str) -> str:
    """A key as a person might mistype it: case, ``-``, spaces and ``_`` ignored (``Dry-Run`` ~ ``dry_run``)."""
    return re.sub(r"[\s_\-]+", "", str(key)).lower()


def _unfold(folded: str, known: Iterable[str]) -> str:
    return next(k for k in known if _folded(k) == folded)


def parse_flag(value: Any, name: str = "dry_run") -> bool:
    """A real boolean, 0/1, or true/false, yes/no, 1/0, on/off in any case. Anything else (``"ture"``, ``""``)
    is an error, never a guess: for ``dry_run`` a guess could be a live run."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ZohoValidationError(
        f"{name} must be true or false (or yes/no, 1/0, on/off), not {value!r}: refusing to guess."
    )


def parse_verify(value: Any, name: str = "verify") -> str:
    """One of :data:`VERIFY_MODES`, case and surrounding spaces ignored."""
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in VERIFY_MODES:
        raise ZohoValidationError(f"{name} must be one of {', '.join(VERIFY_MODES)}, not {value!r}.")
    return str(word)


def parse_min_hours(value: Any) -> float:
    """``min_hours_since_bounce``: a finite number of hours >= 0 (a numeric string is read as a number)."""
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = value
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, float))
        or not math.isfinite(number)
        or number < 0
    ):
        raise ZohoValidationError(f"min_hours_since_bounce must be a number of hours >= 0, not {value!r}.")
    return float(number)


def parse_max_email_checks(value: Any) -> int | None:
    """``max_email_checks``: a whole number of Emails calls >= 1, or None (also ``"None"``/``""``) for no limit.

    0 is refused: "verify by Emails, reading none" defers every record and spends nothing, and many tools read
    0 as "no limit"; ``None`` says that without doubt."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NO_VALUE_WORDS):
        return None
    number: Any = int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ZohoValidationError(
            f"max_email_checks must be a whole number of calls >= 1 (or null for no limit), not {value!r}."
        )
    return number


def _unset(value: Any) -> bool:
    """A value that means "not given" for an option: None, 0, or the text a template renders for them."""
    if value is None or (not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0):
        return True
    return isinstance(value, str) and value.strip().lower() in (_NO_VALUE_WORDS | {"0", "0.0"})


def emails_options_ignored(verify: str, min_hours_since_bounce: Any, max_email_checks: Any) -> list[str]:
    """The names of ``min_hours_since_bounce`` / ``max_email_checks`` that are set although ``verify`` is not
    ``emails`` (the only mode they apply to)."""
    if verify == "emails":
        return []
    given = (("min_hours_since_bounce", min_hours_since_bounce), ("max_email_checks", max_email_checks))
    return [name for name, value in given if not _unset(value)]


def parse_emails_options(
    verify: str, min_hours_since_bounce: Any, max_email_checks: Any, *, strict: bool = True
) -> tuple[float, int | None]:
    """``(min_hours_since_bounce, max_email_checks)`` for a ``verify`` mode already parsed.

    They apply only to ``verify="emails"``; with another mode the result is ``(0.0, None)``. A value set there
    is still checked, and with ``strict`` refused: a source's options are written for that one source, so the
    user likely thinks they limit something they do not. An operator is not strict (its caller warns, see
    :func:`emails_options_ignored`): its options may be fixed in ``partial()`` while ``verify`` varies per
    mapped task instance."""
    ignored = emails_options_ignored(verify, min_hours_since_bounce, max_email_checks)
    if strict and ignored:
        value = min_hours_since_bounce if ignored[0] == "min_hours_since_bounce" else max_email_checks
        raise ZohoValidationError(
            f"{ignored[0]} needs verify 'emails' (verify is {verify!r}), not {value!r}."
        )
    if verify == "emails":
        return parse_min_hours(min_hours_since_bounce), parse_max_email_checks(max_email_checks)
    # checked all the same: a bad value is a mistake whatever the mode
    if "min_hours_since_bounce" in ignored:
        parse_min_hours(min_hours_since_bounce)
    if "max_email_checks" in ignored:
        parse_max_email_checks(max_email_checks)
    return 0.0, None


def parse_tag(value: Any) -> str | None:
    """``needs_person_tag``: one Zoho tag name (zoho/tags.py's rules), or None/blank for no tagging."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ZohoValidationError(f"needs_person_tag must be a tag name (text), not {value!r}.")
    try:
        (name,) = validate_tag_names([value])
    except ZohoValidationError as exc:
        raise ZohoValidationError(f"needs_person_tag: {exc.message}") from None
    return name


def parse_cvid(value: Any) -> str:
    """A custom view id: digits only (it becomes a query parameter; a name belongs in ``view``)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not _CVID_RE.match(str(value).strip()):
        raise ZohoValidationError(
            f"cvid must be the numeric id of a custom view, not {value!r} (pass a view's name as 'view')."
        )
    return str(value).strip()


def parse_batch_size(value: Any) -> int:
    """Ids per unblock call, 1 to 500; a digit string (a template without native types) is read as a number."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return validate_batch_size(value)


def parse_max_parallel(value: Any, name: str = "max_parallel") -> int:
    """Zoho calls in flight at once within one task: a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ZohoValidationError(f"{name} must be a whole number >= 1, not {value!r}")
    return value


def parse_record_ids(value: Any) -> Any:
    """The ids as a list: a template may render one id, or ``"a,b,c"``, as text. Each id's own rules are
    :func:`zoho.validation.validate_record_ids` (applied when the request is built)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


#: The options ``dns_options`` may set.
DNS_OPTION_KEYS = ("nameservers", "port", "timeout")


def parse_dns_options(value: object) -> dict[str, object]:
    """``check_domain``'s resolver options, checked: ``{"nameservers": ["10.0.0.2", …], "port": 53,
    "timeout": 5}``, each optional (``{}``: the system's resolver, port 53, 5 s). A JSON string is read as JSON;
    None or ``""`` is ``{}``.

    Nameservers are IP addresses written exactly (``"127.0.0.1 "``, ``"https://dns.example/"`` or a host name
    are refused: dnspython would fail on them only at run time, which reads as a DNS failure of each domain and
    sends every domain-failure bounce unchecked), at least one when the key is given; the port is an integer
    1-65535; the timeout a number of seconds > 0. Raises :class:`ZohoValidationError` naming the option."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ZohoValidationError(f"dns_options must be an object, not {value!r}") from None
    if not isinstance(value, Mapping):
        raise ZohoValidationError(f"dns_options must be an object, not {value!r}")
    unknown = sorted(str(k) for k in value if k not in DNS_OPTION_KEYS)
    if unknown:
        raise ZohoValidationError(
            f"dns_options: unknown DNS option(s) {unknown}: use {', '.join(DNS_OPTION_KEYS)}"
        )
    out: dict[str, object] = {}
    if "nameservers" in value and value["nameservers"] is not None:
        servers = value["nameservers"]
        if isinstance(servers, str) or not isinstance(servers, Sequence) or not servers:
            raise ZohoValidationError(
                f"dns_options: nameservers must be a non-empty list of IP addresses, not {servers!r}"
            )
        for server in servers:
            try:
                ipaddress.ip_address(server)  # exact: no spaces, no URL, no port, no host name
            except (TypeError, ValueError):
                raise ZohoValidationError(
                    f"dns_options: nameserver {server!r} is not an IP address (write it exactly, e.g."
                    ' "10.0.0.2" or "2001:db8::53": no URL, host name, port or spaces)'
                ) from None
        out["nameservers"] = [str(server) for server in servers]
    if "port" in value and value["port"] is not None:
        port = value["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ZohoValidationError(f"dns_options: port must be an integer 1-65535, not {port!r}")
        out["port"] = port
    if "timeout" in value and value["timeout"] is not None:
        timeout = value["timeout"]
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not timeout > 0
            or timeout != timeout
            or timeout == float("inf")
        ):
            raise ZohoValidationError(
                f"dns_options: timeout must be a number of seconds > 0, not {timeout!r}"
            )
        out["timeout"] = float(timeout)
    return out


#: The address fields of ``addresses`` (Zoho's API names).
_ADDRESS_KEYS = ADDRESS_FIELDS


def parse_addresses(value: Any, fields: Sequence[str]) -> dict[str, dict[str, str | None]] | None:
    """The records' addresses ``{id: {field: address or None}}`` as the sources read them with the ids. Each of
    ``fields`` (the fields to unblock; a missing one is no address) and the record's other address when given
    (the rule on a mail to several addresses needs it). Field names are exactly ``Email`` and
    ``Secondary_Email``: any other key (``email``) is refused, naming it, before any call; read as "no address"
    it would leave a blocked address blocked. None: not given (the job reads them)."""
    if _unset(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ZohoValidationError("addresses must be an object {id: {field: address}}") from None
    if not isinstance(value, Mapping):
        raise ZohoValidationError(
            f"addresses must be an object {{id: {{field: address}}}}, not {type(value).__name__}"
        )
    out: dict[str, dict[str, str | None]] = {}
    for record_id, row in value.items():
        if not isinstance(row, Mapping):
            raise ZohoValidationError(f"addresses[{record_id!r}] must be an object {{field: address}}")
        wrong = [key for key in row if key not in _ADDRESS_KEYS]
        if wrong:
            raise ZohoValidationError(
                f"addresses[{record_id!r}] has the field {str(wrong[0])!r}: address fields are exactly"
                f" {' and '.join(repr(k) for k in _ADDRESS_KEYS)} (case matters)"
            )
        kept: dict[str, str | None] = {}
        for name in [f for f in _ADDRESS_KEYS if f in fields or f in row]:
            address = row.get(name)
            if address is not None and not isinstance(address, str):
                raise ZohoValidationError(f"addresses[{record_id!r}][{name!r}] must be text or null")
            kept[name] = (address.strip() or None) if isinstance(address, str) else None
        out[str(record_id)] = kept
    return out


__all__ = [
    "DNS_OPTION_KEYS",
    "FALSE_WORDS",
    "TRUE_WORDS",
    "VERIFY_MODES",
    "emails_options_ignored",
    "parse_addresses",
    "parse_batch_size",
    "parse_cvid",
    "parse_dns_options",
    "parse_emails_options",
    "parse_flag",
    "parse_max_email_checks",
    "parse_max_parallel",
    "parse_min_hours",
    "parse_record_ids",
    "parse_tag",
    "parse_verify",
]
