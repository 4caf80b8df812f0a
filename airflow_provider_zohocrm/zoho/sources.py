"""Where the example DAG finds its candidates, checked before any call; and how it cuts them into mapped tasks.

A run takes a list of sources, one module each: a custom view (``view`` by name or id, or ``cvid``), a COQL
query (``coql_query``, whose ``from`` names the module), or the whole module (``all: true``: every record with an
email, optionally only those whose ``date_field`` is at or after ``since``, or within the last ``days``). Each
source says how its candidates are verified (``verify``: ``none``, ``emails`` or ``sweep``). The single-module
params (``module``, ``view``/``cvid``, ``coql_query``, ``verify``, …) are a shorthand for a one-source list.

Everything here is pure (no I/O, no Airflow): :func:`sources_from_params` checks every value, so a bad one fails
the DAG's first task before any Zoho call; :func:`plan_groups` spreads the candidates of every source over at most
``max_groups`` mapped task instances in total, one module per group.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from airflow_provider_zohocrm.zoho.addresses import coql_with_fields, fields_to_read, view_fields
from airflow_provider_zohocrm.zoho.emails import ADDRESS_FIELDS
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.params import (
    VERIFY_MODES,
    parse_batch_size,
    parse_cvid,
    parse_dns_options,
    parse_emails_options,
    parse_flag,
    parse_tag,
    parse_verify,
    refuse_unknown_keys,
)
from airflow_provider_zohocrm.zoho.validation import (
    MAX_IDS_PER_CALL,
    UNBLOCKABLE_FIELDS,
    coql_module,
    validate_batch_size,
    validate_coql,
    validate_module,
    validate_unblock_fields,
)

#: Keys a source may have.
SOURCE_KEYS = frozenset(
    {
        "module",
        "view",
        "cvid",
        "coql_query",
        "all",
        "date_field",
        "since",
        "days",
        "unblock_fields",
        "verify",
        "min_hours_since_bounce",
        "max_email_checks",
        "check_domain",
    }
)
#: The keys that say where candidates come from; a source has exactly one.
KIND_KEYS = ("view", "cvid", "coql_query", "all")
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Source:
    """One validated source. ``query`` is the COQL select to run (given, or built for ``all``)."""

    index: int
    module: str
    kind: str  # "view" | "cvid" | "coql" | "all"
    unblock_fields: list[str]
    verify: str
    min_hours_since_bounce: float = 0.0
    max_email_checks: int | None = None
    view: str | None = None
    cvid: str | None = None
    query: str | None = None
    check_domain: bool = False

    @property
    def reads_addresses(self) -> bool:
        """verify="emails" judges each field by its own address: the source's read returns them with the ids."""
        return self.verify == "emails"

    def read_query(self) -> str:
        """The COQL select to run: the addresses added to the select list when they are needed (no extra call)."""
        assert self.query is not None
        if not self.reads_addresses:
            return self.query
        return coql_with_fields(self.query, fields_to_read(self.module, self.unblock_fields))

    def read_fields(self) -> list[str]:
        """``fields=`` of the view read."""
        return (
            view_fields(fields_to_read(self.module, self.unblock_fields)) if self.reads_addresses else ["id"]
        )

    def describe(self) -> str:
        """How the report names the source: ``#1 Leads view 'Bounced leads' (verify none)``."""
        what = {
            "view": f"view {self.view!r}",
            "cvid": f"view {self.cvid}",
            "coql": f"COQL {self.query!r}",
            "all": f"all records ({self.query!r})",
        }[self.kind]
        return f"#{self.index + 1} {self.module} {what} (verify {self.verify})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Source:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class RunSettings:
    """The run-wide params besides the sources."""

    conn_id: str
    batch_size: int
    dry_run: bool
    needs_person_tag: str | None
    sources: list[Source] = field(default_factory=list)
    #: ``check_domain``'s resolver options (None: the system's resolver).
    dns_options: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = [s.to_dict() for s in self.sources]
        return data


# -- single values ---------------------------------------------------------------------------------------------
# The rules live in zoho/params.py (one set for the operator, the sources, the preflight and the CLI); these names
# stay for callers of the sources API.

validate_flag = parse_flag
validate_verify = parse_verify
validate_cvid = parse_cvid
validate_tag = parse_tag


def _since(source: Mapping[str, Any], now: datetime, where: str) -> str | None:
    """The COQL literal of the lower bound on ``date_field``: a date stays a date, days count back from now."""
    since, days = source.get("since"), source.get("days")
    if since is not None and days is not None:
        raise ZohoValidationError(f"{where}: give 'since' or 'days', not both.")
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= 36_500:
            raise ZohoValidationError(f"{where}: days must be a positive number of days, not {days!r}.")
        start = now.astimezone(UTC) - timedelta(days=days)
        return start.replace(microsecond=0).isoformat()
    if since is None:
        return None
    text = str(since).strip() if isinstance(since, (str, date)) else None
    if text and _DATE_RE.match(text):
        try:
            date.fromisoformat(text)
        except ValueError:
            text = None
        else:
            return text
    if text:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None:
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            return moment.replace(microsecond=0).isoformat()
    raise ZohoValidationError(
        f"{where}: since must be a date (2026-01-31) or a date-time (2026-01-31T00:00:00+00:00), not {since!r}."
    )


def whole_module_query(
    module: str, unblock_fields: Sequence[str], date_field: str | None, since: str | None
) -> str:
    """``select id from M where (Email is not null) [and DATE_FIELD >= 'since']``: every record with an
    address to unblock (paging is the client's)."""
    has_email = " or ".join(f"{name} is not null" for name in unblock_fields)
    where = f"({has_email})" if len(unblock_fields) > 1 else has_email
    if date_field and since:
        where += f" and {date_field} >= '{since}'"
    return f"select id from {module} where {where}"


# -- sources ---------------------------------------------------------------------------------------------------


def validate_source(
    raw: Any,
    index: int,
    *,
    defaults: Mapping[str, Any],
    now: datetime,
) -> Source:
    """One source, checked whole: a bad key, module, view, query, field or number names the source."""
    where = f"source #{index + 1}"
    if not isinstance(raw, Mapping):
        raise ZohoValidationError(f"{where} must be an object such as {{'module': 'Leads', 'view': '…'}}.")
    refuse_unknown_keys(raw, SOURCE_KEYS, where)
    given = [k for k in KIND_KEYS if raw.get(k) not in (None, "", False)]
    if len(given) != 1:
        raise ZohoValidationError(
            f"{where} needs exactly one of 'view' (a name or id), 'cvid', 'coql_query' or 'all': true"
            + (f", not {' and '.join(given)}." if given else ".")
        )
    kind = given[0]
    try:
        return _build_source(raw, index, kind, defaults, now)
    except ZohoValidationError as exc:
        if exc.message.startswith("source #"):
            raise
        raise ZohoValidationError(f"{where}: {exc.message}") from None


def _build_source(
    raw: Mapping[str, Any], index: int, kind: str, defaults: Mapping[str, Any], now: datetime
) -> Source:
    where = f"source #{index + 1}"
    module_given = raw.get("module") or None
    view = cvid = query = None
    if kind == "coql_query":
        query = validate_coql(raw["coql_query"])
        module = coql_module(query)
        if module_given is not None and module_given != module:
            raise ZohoValidationError(
                f"module {module_given!r} differs from the COQL query's module {module!r} (its 'from'):"
                " the ids would be unblocked in the wrong module. Drop 'module' or make them agree."
            )
        kind = "coql"
    else:
        module = validate_module(module_given or defaults.get("module") or "Leads")
    unblock_fields = validate_unblock_fields(
        raw.get("unblock_fields", defaults.get("unblock_fields", ["Email"])), module
    )
    if kind == "view":
        value = raw["view"]
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise ZohoValidationError(f"view must be a custom view's name or id, not {value!r}.")
        view = str(value).strip()
    elif kind == "cvid":
        cvid = validate_cvid(raw["cvid"])
    elif kind == "all" and raw["all"] is not True:
        raise ZohoValidationError(f"'all' must be true, not {raw['all']!r}.")
    date_field = raw.get("date_field")
    since = _since(raw, now, where) if kind == "all" else None
    if kind != "all" and any(raw.get(k) is not None for k in ("date_field", "since", "days")):
        raise ZohoValidationError("date_field, since and days narrow an 'all' source only.")
    if kind == "all":
        if date_field is not None and (
            not isinstance(date_field, str) or not _FIELD_RE.fullmatch(date_field)
        ):
            raise ZohoValidationError(f"date_field must be a field's API name, not {date_field!r}.")
        if bool(date_field) != bool(since):
            raise ZohoValidationError(
                "give date_field together with since or days (e.g. date_field 'Modified_Time', days 30)."
            )
        query = whole_module_query(module, unblock_fields, date_field, since)
    verify_default = "emails" if kind == "all" else "none"
    verify = validate_verify(raw.get("verify") or defaults.get("verify") or verify_default)
    hours_raw = raw.get("min_hours_since_bounce")
    checks_raw = raw.get("max_email_checks")
    if verify == "emails":  # run-wide values are defaults for emails sources only
        hours_raw = hours_raw if hours_raw is not None else defaults.get("min_hours_since_bounce", 0)
        checks_raw = checks_raw if checks_raw is not None else defaults.get("max_email_checks")
    hours, checks = parse_emails_options(verify, hours_raw, checks_raw)
    domain_raw = raw.get("check_domain")
    if domain_raw is None:
        domain_raw = defaults.get("check_domain") if verify == "emails" else False
    check_domain = validate_flag(domain_raw if domain_raw is not None else False, "check_domain")
    if check_domain and verify != "emails":
        raise ZohoValidationError(
            f"check_domain looks up the domains of soft bounces read from the Emails lists: it needs verify"
            f" 'emails', not {verify!r}."
        )
    return Source(
        index=index,
        module=module,
        kind=kind,
        unblock_fields=unblock_fields,
        verify=verify,
        min_hours_since_bounce=hours,
        max_email_checks=checks,
        view=view,
        cvid=cvid,
        query=query,
        check_domain=check_domain,
    )


#: Shorthand params that name a source; with them the run has one source and ``sources`` must be empty.
SHORTHAND_KIND_PARAMS = ("view", "cvid", "coql_query")


def sources_from_params(
    params: Mapping[str, Any], *, now: datetime | None = None, max_sources: int | None = None
) -> RunSettings:
    """Every DAG param checked, with no call: the list form (``sources``) or the single-module shorthand.

    Run-wide values (``unblock_fields``, ``verify``, ``min_hours_since_bounce``, ``max_email_checks``,
    ``module``) are defaults for list sources that leave them out.
    """
    now = now or datetime.now(UTC)
    conn_id = params.get("conn_id") or "zohocrm_default"
    if not isinstance(conn_id, str) or not conn_id.strip():
        raise ZohoValidationError(f"conn_id must be a connection id, not {conn_id!r}.")
    settings = RunSettings(
        conn_id=conn_id.strip(),
        batch_size=parse_batch_size(params.get("batch_size", MAX_IDS_PER_CALL)),
        dry_run=validate_flag(params.get("dry_run", False), "dry_run"),
        needs_person_tag=validate_tag(params.get("needs_person_tag")),
    )
    verify = params.get("verify")
    if verify not in (None, ""):
        validate_verify(verify)
    defaults = {
        "module": params.get("module") or None,
        "unblock_fields": params.get("unblock_fields") or ["Email"],
        "verify": verify or None,
        "min_hours_since_bounce": params.get("min_hours_since_bounce") or 0,
        "max_email_checks": params.get("max_email_checks"),
        "check_domain": params.get("check_domain"),
    }
    listed = params.get("sources") or []
    shorthand = {k: params[k] for k in SHORTHAND_KIND_PARAMS if params.get(k) not in (None, "")}
    if listed and shorthand:
        raise ZohoValidationError(
            f"Give either 'sources' or the single-module {'/'.join(shorthand)} param, not both."
        )
    if not isinstance(listed, list):
        raise ZohoValidationError(f"sources must be a list of sources, not {type(listed).__name__}.")
    if not listed:
        if not shorthand:
            raise ZohoValidationError(
                "Set the 'cvid' param (a custom view of bounced records), 'view' (its name), 'coql_query',"
                " or 'sources' (e.g. [{'module': 'Leads', 'all': true}])."
            )
        single = {**shorthand}
        if params.get("module"):
            single["module"] = params["module"]
        for key in ("min_hours_since_bounce", "max_email_checks", "check_domain"):
            if params.get(key) not in (None, 0, False):
                single[key] = params[key]
        listed = [single]
    if max_sources is not None and len(listed) > max_sources:
        raise ZohoValidationError(
            f"{len(listed)} sources, but one run maps at most {max_sources} task instances ([core]"
            " max_map_length) and each holds one source: merge sources or split the run."
        )
    sources = [validate_source(raw, i, defaults=defaults, now=now) for i, raw in enumerate(listed)]
    dns_options = parse_dns_options(params.get("dns_options")) or None
    if any(source.check_domain for source in sources):
        from airflow_provider_zohocrm.zoho.domains import DomainChecker  # dnspython only when used

        DomainChecker.from_options(dns_options, build=True)  # a resolver that cannot be built fails here
    return RunSettings(
        conn_id=settings.conn_id,
        batch_size=settings.batch_size,
        dry_run=settings.dry_run,
        needs_person_tag=settings.needs_person_tag,
        sources=sources,
        dns_options=dns_options,
    )


# -- fan-out -----------------------------------------------------------------------------------------------------


def _largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (whole numbers that add up to ``total``)."""
    weight_sum = sum(weights)
    if weight_sum == 0:
        return [0] * len(weights)
    exact = [total * w / weight_sum for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _slots(batches: Sequence[int], max_groups: int) -> list[int]:
    """Mapped task instances per source: one per batch while the run has room, else spread in proportion to
    each source's batches; every source with candidates gets at least one, and none more than its batches."""
    active = [i for i, n in enumerate(batches) if n]
    slots = [0] * len(batches)
    if not active:
        return slots
    budget = max(max_groups, len(active))
    if sum(batches) <= budget:
        return list(batches)
    for i in active:
        slots[i] = 1
    extra = _largest_remainder(budget - len(active), [batches[i] - 1 for i in active])
    for i, add in zip(active, extra, strict=True):
        slots[i] += add
    return slots


def plan_groups(
    candidates: Sequence[tuple[Source, Sequence[str]]],
    *,
    batch_size: int,
    max_groups: int,
    needs_person_tag: str | None = None,
    addresses: Mapping[str, Mapping[str, Mapping[str, str | None]]] | None = None,
    dns_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The mapped task instances of a run: whole batches of each source's ids spread over at most
    ``max_groups`` groups in total (more only when more sources have candidates, since a group holds one
    source), each group the kwargs of one ``UnblockEmailOperator`` (``expand_kwargs``). A source's
    ``max_email_checks`` is split over its groups in proportion to their ids, and a source gets no more groups
    than its budget, so every group may read at least one Emails list.

    ``addresses`` (module → id → field → address, as the sources read them): each ``verify="emails"`` group
    carries its own records' addresses, every address of each record (the rule on a mail to several of a
    record's addresses needs them all, whatever fields the group unblocks)."""
    validate_batch_size(batch_size)
    if max_groups < 1:
        raise ZohoValidationError(f"max_groups must be at least 1, not {max_groups}")
    batches = [-(-len(ids) // batch_size) for _, ids in candidates]
    for i, (source, _) in enumerate(candidates):
        if source.verify == "emails" and source.max_email_checks is not None:
            batches[i] = min(batches[i], source.max_email_checks)
    slots = _slots(batches, max_groups)
    groups: list[dict[str, Any]] = []
    for (source, ids), n_groups in zip(candidates, slots, strict=True):
        if not ids:
            continue
        parts = _split_even(list(ids), batch_size, n_groups)
        budgets: list[int | None] = [None] * len(parts)
        if source.verify == "emails" and source.max_email_checks is not None:
            # one check each first (a source has no more groups than checks), the rest in proportion to ids
            rest = _largest_remainder(source.max_email_checks - len(parts), [len(p) for p in parts])
            budgets = [1 + r for r in rest]
        known = (addresses or {}).get(source.module, {})
        for part, budget in zip(parts, budgets, strict=True):
            own = (
                {rid: _address_fields_of(known[rid]) for rid in part if rid in known}
                if source.reads_addresses and known
                else None
            )
            groups.append(
                {
                    "module": source.module,
                    "record_ids": part,
                    "unblock_fields": list(source.unblock_fields),
                    "verify": source.verify,
                    "min_hours_since_bounce": source.min_hours_since_bounce,
                    "max_email_checks": budget,
                    "needs_person_tag": needs_person_tag,
                    "addresses": own,
                    "check_domain": source.check_domain,
                    "dns_options": dict(dns_options) if source.check_domain and dns_options else None,
                }
            )
    return groups


def _address_fields_of(row: Mapping[str, str | None]) -> dict[str, str | None]:
    """The address fields of a record's row (nothing else goes to the task's XCom)."""
    return {name: row[name] for name in ADDRESS_FIELDS if name in row}


def _split_even(ids: list[str], batch_size: int, n_groups: int) -> list[list[str]]:
    """``ids`` in ``n_groups`` groups of whole batches (the last batch may be short), sizes differing by at
    most one batch."""
    n_batches = -(-len(ids) // batch_size)
    n_groups = max(1, min(n_groups, n_batches))
    per_group, extra = divmod(n_batches, n_groups)
    out: list[list[str]] = []
    start = 0
    for g in range(n_groups):
        size = (per_group + (1 if g < extra else 0)) * batch_size
        out.append(ids[start : start + size])
        start += size
    return out


def dedupe_candidates(
    candidates: Sequence[tuple[Source, Sequence[str]]],
) -> tuple[list[tuple[Source, list[str]]], dict[int, int]]:
    """Each record once per module: a record two sources of one module both list goes with the first; returns
    the candidates and, per source index, how many of its ids an earlier source already had."""
    seen: dict[str, set[str]] = {}
    out: list[tuple[Source, list[str]]] = []
    repeated: dict[int, int] = {}
    for source, ids in candidates:
        known = seen.setdefault(source.module, set())
        kept = []
        for rid in ids:
            rid = str(rid)
            if rid in known:
                repeated[source.index] = repeated.get(source.index, 0) + 1
                continue
            known.add(rid)
            kept.append(rid)
        out.append((source, kept))
    return out, repeated


__all__ = [
    "KIND_KEYS",
    "SOURCE_KEYS",
    "UNBLOCKABLE_FIELDS",
    "VERIFY_MODES",
    "RunSettings",
    "Source",
    "dedupe_candidates",
    "plan_groups",
    "sources_from_params",
    "validate_flag",
    "validate_source",
    "whole_module_query",
]
