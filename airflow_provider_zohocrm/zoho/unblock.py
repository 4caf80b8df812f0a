"""Unblock Email: input validation, batching and per-record outcome classification.

Pure logic, no I/O: every input id ends in exactly one outcome, whatever Zoho answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.redact import redact_addresses

# Validation used to live here; "X as X" keeps the old import paths working (an explicit re-export).
from airflow_provider_zohocrm.zoho.validation import MAX_IDS_PER_CALL as MAX_IDS_PER_CALL
from airflow_provider_zohocrm.zoho.validation import (
    MODULES_WITH_SECONDARY_EMAIL as MODULES_WITH_SECONDARY_EMAIL,
)
from airflow_provider_zohocrm.zoho.validation import SUPPORTED_MODULES as SUPPORTED_MODULES
from airflow_provider_zohocrm.zoho.validation import UNBLOCKABLE_FIELDS as UNBLOCKABLE_FIELDS
from airflow_provider_zohocrm.zoho.validation import validate_batch_size as validate_batch_size
from airflow_provider_zohocrm.zoho.validation import validate_module as validate_module
from airflow_provider_zohocrm.zoho.validation import validate_record_ids as validate_record_ids
from airflow_provider_zohocrm.zoho.validation import validate_unblock_fields as validate_unblock_fields

log = logging.getLogger(__name__)
_JSON_PATH_RE = re.compile(r"^\$\.ids\[(\d+)\]$")


class Outcome(StrEnum):
    """What happened to one record."""

    UNBLOCKED = "unblocked"
    ALREADY_UNBLOCKED = "already_unblocked"
    #: nothing was blocked: the latest email did not bounce (verify="emails"), or Zoho answered "already
    #: unblocked" to a record sent without a check (verify="sweep"). No unblock was spent on it.
    NOT_BLOCKED = "not_blocked"
    #: left for a later run: a soft bounce younger than ``min_hours_since_bounce``, or the email-check budget
    #: ran out before the record was checked (the reason is in the report's ``reasons``).
    DEFERRED = "deferred"
    PERMANENTLY_BLOCKED = "permanently_blocked"
    LIMIT_REACHED = "limit_reached"
    INVALID_RECORD = "invalid_record"
    NOT_ALLOWED = "not_allowed"
    ERROR = "error"


#: Outcomes after which the record's email is not blocked (unblocked now, before, or never blocked).
DONE_OUTCOMES = frozenset({Outcome.UNBLOCKED, Outcome.ALREADY_UNBLOCKED, Outcome.NOT_BLOCKED})
#: Outcomes a person has to look at: Zoho will never unblock these through the API.
NEEDS_PERSON_OUTCOMES = frozenset({Outcome.PERMANENTLY_BLOCKED, Outcome.LIMIT_REACHED})
#: Outcomes whose report entry carries the bounce ``details`` (category, sub-category, reason, time).
DETAILED_OUTCOMES = NEEDS_PERSON_OUTCOMES | {Outcome.DEFERRED}


@dataclass(frozen=True)
class UnblockRequest:
    """A validated unblock job."""

    module: str
    record_ids: list[str]
    unblock_fields: list[str]
    batch_size: int = MAX_IDS_PER_CALL

    @classmethod
    def build(
        cls, module: Any, record_ids: Any, unblock_fields: Any, batch_size: Any = MAX_IDS_PER_CALL
    ) -> UnblockRequest:
        """Validate everything before any call is made; errors name the bad value."""
        module = validate_module(module)
        return cls(
            module=module,
            record_ids=validate_record_ids(record_ids),
            unblock_fields=validate_unblock_fields(unblock_fields, module),
            batch_size=validate_batch_size(batch_size),
        )

    def batches(self) -> list[list[str]]:
        size = self.batch_size
        return [self.record_ids[i : i + size] for i in range(0, len(self.record_ids), size)]


def split_batches(record_ids: Sequence[str], batch_size: int, max_groups: int) -> list[list[str]]:
    """Split ids into groups for mapped tasks: one batch per group while at most ``max_groups`` groups are
    needed, else whole batches spread evenly over ``max_groups`` groups (Airflow's ``max_map_length``)."""
    validate_batch_size(batch_size)
    if max_groups < 1:
        raise ZohoValidationError(f"max_groups must be at least 1, not {max_groups}")
    n_batches = -(-len(record_ids) // batch_size)
    if n_batches == 0:
        return []
    groups = min(n_batches, max_groups)
    per_group, extra = divmod(n_batches, groups)
    out: list[list[str]] = []
    start = 0
    for g in range(groups):
        size = (per_group + (1 if g < extra else 0)) * batch_size
        out.append(list(record_ids[start : start + size]))
        start += size
    return out


# -- classification --------------------------------------------------------------------------------------------


# NOT_ALLOWED reasons, matched on a normalised message (lower case, punctuation as spaces, number words as
# digits) so that case, punctuation, "five"/"5" and word order do not matter. Zoho's wording is not a contract:
# the phrases come from its docs ("Email is already unblocked", "Cannot unblock, email has been unblocked 5 times
# already", "Cannot unblock, Email is blocked permanently"), the variants from what such texts become.
_NOT_ALLOWED_PATTERNS: tuple[tuple[Outcome, re.Pattern[str]], ...] = (
    # before "already": the limit message says "unblocked 5 times already"
    (Outcome.LIMIT_REACHED, re.compile(r"\b5 ?times?\b|\bunblock(?:ed|s)? limit\b|\blimit (?:of )?5\b")),
    (Outcome.PERMANENTLY_BLOCKED, re.compile(r"\bpermanent(?:ly)?\b")),
    (Outcome.ALREADY_UNBLOCKED, re.compile(r"\balready unblocked\b|\bunblocked already\b")),
)
#: NOT_ALLOWED reasons known to mean "not allowed" (locked record, approval, missing field): no warning.
_KNOWN_NOT_ALLOWED = re.compile(r"\blocked\b|\bapproval\b|\bnot available\b|\breview\b")
_NUMBER_WORDS = {"five": "5", "one": "1", "two": "2", "three": "3", "four": "4"}


def normalise_message(message: str) -> str:
    """Lower case, every run of non-alphanumerics one space, number words as digits: ``"FIVE-times!"`` →
    ``"5 times"``."""
    words = re.sub(r"[^0-9a-z]+", " ", message.lower()).split()
    return " ".join(_NUMBER_WORDS.get(word, word) for word in words)


def not_allowed_outcome(message: str) -> Outcome | None:
    """The outcome a NOT_ALLOWED message means, or ``None`` when the wording is not recognised (the outcome is
    then ``not_allowed`` and the caller should log the raw text: Zoho may have changed it)."""
    text = normalise_message(message)
    for outcome, pattern in _NOT_ALLOWED_PATTERNS:
        if pattern.search(text):
            return outcome
    return Outcome.NOT_ALLOWED if _KNOWN_NOT_ALLOWED.search(text) else None


def classify_item(item: Mapping[str, Any]) -> Outcome:
    """One of Zoho's per-record answers → an outcome. Keys on code/status; NOT_ALLOWED needs the message,
    because Zoho uses the one code for several situations."""
    code = str(item.get("code") or "").upper()
    status = str(item.get("status") or "").lower()
    if code == "SUCCESS" and status in ("success", ""):
        return Outcome.UNBLOCKED
    if code == "INVALID_DATA":
        return Outcome.INVALID_RECORD
    if code == "NOT_ALLOWED":
        return not_allowed_outcome(str(item.get("message") or "")) or Outcome.NOT_ALLOWED
    return Outcome.ERROR


def _warn_unrecognised(items: Iterable[Mapping[str, Any]]) -> None:
    """One WARNING per unrecognised NOT_ALLOWED wording in a batch, with Zoho's raw text: a change of wording
    on Zoho's side then shows on the first run instead of hiding in ``not_allowed``."""
    texts: dict[str, int] = {}
    for item in items:
        if str(item.get("code") or "").upper() == "NOT_ALLOWED":
            raw = str(item.get("message") or "")
            if not_allowed_outcome(raw) is None:
                texts[raw] = texts.get(raw, 0) + 1
    for raw, count in texts.items():
        log.warning(
            "Zoho answered NOT_ALLOWED with a message this provider does not recognise, for %d record(s):"
            " %r. Reported as not_allowed; if Zoho changed its wording, please report it.",
            count,
            raw,
        )


def match_items(
    record_ids: Sequence[str], items: Sequence[Mapping[str, Any]]
) -> list[tuple[str, Mapping[str, Any]]]:
    """Pair each sent id with Zoho's answer for it: by ``details.id``, by ``details.json_path``, else by
    position (only when Zoho answered as many items as ids were sent). Ids without an answer get a synthetic
    ``NO_RESULT`` error item, so none is lost."""
    wanted = set(record_ids)
    answers: dict[str, Mapping[str, Any]] = {}
    by_path: list[tuple[int, Mapping[str, Any]]] = []
    unplaced: list[tuple[int, Mapping[str, Any]]] = []
    # Three passes, most reliable first, so a weaker clue never takes a record an explicit answer names.
    for position, item in enumerate(items):
        details = item.get("details") if isinstance(item.get("details"), Mapping) else {}
        assert isinstance(details, Mapping)
        item_id = str(details.get("id")) if details.get("id") is not None else None
        path = _JSON_PATH_RE.match(str(details.get("json_path") or ""))
        if item_id is not None:
            # An answer that names a record is that record's answer or nobody's: one naming a record not sent,
            # or one already answered (a duplicate), is never placed on another record (that would report,
            # e.g., "unblocked" for a record Zoho said nothing about).
            if item_id in wanted and item_id not in answers:
                answers[item_id] = item
        elif path:
            by_path.append((int(path.group(1)), item))
        else:
            unplaced.append((position, item))
    for index, item in by_path:
        if index < len(record_ids) and record_ids[index] not in answers:
            answers[record_ids[index]] = item
    # Position is a clue only when Zoho answered as many items as ids were sent; otherwise an item may sit at
    # another record's place (one dropped or added), so the ids it could belong to get NO_RESULT instead.
    if len(items) == len(record_ids):
        for position, item in unplaced:
            if record_ids[position] not in answers:
                answers[record_ids[position]] = item
    missing = {
        "code": "NO_RESULT",
        "message": "Zoho's answer had no result for this record",
        "status": "error",
    }
    return [(rid, answers.get(rid, missing)) for rid in record_ids]


@dataclass
class UnblockReport:
    """Per-outcome ids and counts; JSON-serialisable through :meth:`to_dict`.

    Every id given to a task is in exactly one outcome list or in ``pending`` (with its reason in
    ``pending_reasons``): ids of a dry run, of a call that failed, and of calls never sent after a failure.
    """

    module: str
    unblock_fields: list[str]
    dry_run: bool = False
    ids: dict[str, list[str]] = field(default_factory=lambda: {o.value: [] for o in Outcome})
    messages: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    pending: list[str] = field(default_factory=list)
    pending_reasons: dict[str, str] = field(default_factory=dict)
    verify: str = "none"
    #: bounce details for needs-person and deferred ids: category, sub_category, reason, bounced_time.
    details: dict[str, dict[str, str | None]] = field(default_factory=dict)
    #: why each deferred id was deferred.
    reasons: dict[str, str] = field(default_factory=dict)
    email_checks: int = 0
    tag_calls: int = 0
    tagged: list[str] = field(default_factory=list)
    tag_errors: list[str] = field(default_factory=list)
    #: COQL calls that read the records' addresses (verify="emails" when the source did not pass them).
    read_calls: int = 0
    #: DNS queries of ``check_domain``.
    dns_queries: int = 0
    #: Why ``check_domain`` stopped asking DNS in this task (consecutive timeouts), "" when it did not; and how
    #: many domains were then not looked up (their fields were sent as without the check).
    dns_stopped: str = ""
    dns_unchecked: int = 0
    #: With more than one field: every (record, field) pair's outcome (``pending`` when it has none yet).
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    #: With more than one field: bounce details (``"<id> <field>"``) of needs-person and deferred fields.
    field_details: dict[str, dict[str, str | None]] = field(default_factory=dict)
    #: With more than one field: why a field ended as it did (deferred, error, pending), ``"<id> <field>"``.
    field_reasons: dict[str, str] = field(default_factory=dict)
    #: A dry run's plan: the ids each unblock call would carry, per field set (``"Email+Secondary_Email"``).
    would_send: dict[str, list[str]] = field(default_factory=dict)
    planned_calls: int = 0

    def add(
        self,
        record_id: str,
        outcome: Outcome,
        item: Mapping[str, Any] | None = None,
        *,
        details: Mapping[str, str | None] | None = None,
        reason: str | None = None,
    ) -> None:
        self.ids[outcome.value].append(record_id)
        if item is not None and outcome in (Outcome.ERROR, Outcome.NOT_ALLOWED):
            self.messages[record_id] = redact_addresses(
                f"{item.get('code', '')}: {item.get('message', '')}".strip(": ")
            )
        if outcome in DETAILED_OUTCOMES:
            if details is None:  # no Emails check: Zoho's unblock answer is all we know
                message = redact_addresses(str(item.get("message") or "")) if item is not None else ""
                details = {
                    "category": None,
                    "sub_category": None,
                    "reason": message or None,
                    "bounced_time": None,
                }
            self.details[record_id] = dict(details)
        if outcome is Outcome.DEFERRED:
            self.reasons[record_id] = reason or "deferred"

    def add_pending(self, record_ids: Iterable[str], reason: str) -> None:
        """Ids that got no outcome in this run (not sent, or their call failed), with why."""
        for record_id in record_ids:
            self.pending.append(record_id)
            self.pending_reasons[record_id] = reason

    def add_answer(
        self,
        record_ids: Sequence[str],
        items: Sequence[Mapping[str, Any]],
        *,
        remap: Mapping[Outcome, Outcome] | None = None,
        details: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> dict[str, int]:
        """Record one call's answer; returns that batch's counts.

        :param remap: outcomes to report differently (sweep mode: "already unblocked" means never blocked).
        :param details: bounce details known from the Emails check, per id.
        """
        self.calls += 1
        batch: dict[str, int] = {}
        pairs = match_items(record_ids, items)
        _warn_unrecognised(item for _, item in pairs)
        for record_id, item in pairs:
            outcome = classify_item(item)
            outcome = (remap or {}).get(outcome, outcome)
            known = (details or {}).get(record_id)
            self.add(record_id, outcome, item, details=known)
            batch[outcome.value] = batch.get(outcome.value, 0) + 1
        return batch

    @property
    def counts(self) -> dict[str, int]:
        return {outcome: len(ids) for outcome, ids in self.ids.items()}

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + len(self.pending)

    def plan_text(self) -> str:
        """A dry run's log: what reading cost, and the unblock calls a live run would make."""
        would = sum(len(ids) for ids in self.would_send.values())
        sends = ", ".join(f"{key} {len(ids)}" for key, ids in self.would_send.items()) or "none"
        return (
            f"Dry run plan for {self.module} (verify={self.verify}), {self.total} record(s); read with"
            f" {self.email_checks} Emails call(s), {self.read_calls} address read(s), {self.dns_queries} DNS"
            f" quer(ies); would make {self.planned_calls} unblock call(s) for {would} (record, field set)"
            f" pair(s): {sends}; nothing written:\n{format_table(self.counts, self.total)}"
        )

    def summary_text(self) -> str:
        """A live run's log: calls made and a table of outcomes (per field too, with two fields)."""
        text = (
            f"Unblock Email on {self.module} (verify={self.verify}), {self.total} record(s), {self.calls} unblock"
            f" call(s), {self.email_checks} Emails call(s), {self.tag_calls} tag call(s):\n"
            + format_table(self.counts, self.total)
        )
        if self.fields:
            text += (
                "\nPer field (each record above counts once, under its most actionable field):\n"
                + field_tables(self.fields)
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "unblock_fields": list(self.unblock_fields),
            "dry_run": self.dry_run,
            "verify": self.verify,
            "total": self.total,
            "counts": self.counts,
            "ids": {k: list(v) for k, v in self.ids.items()},
            "messages": dict(self.messages),
            "details": {k: dict(v) for k, v in self.details.items()},
            "reasons": dict(self.reasons),
            "calls": self.calls,
            "email_checks": self.email_checks,
            "tag_calls": self.tag_calls,
            "tagged": list(self.tagged),
            "tag_errors": list(self.tag_errors),
            "pending": list(self.pending),
            "pending_reasons": dict(self.pending_reasons),
            "read_calls": self.read_calls,
            "dns_queries": self.dns_queries,
        } | self._optional()

    def _optional(self) -> dict[str, Any]:
        """Per-field detail (more than one field) and a dry run's plan: only when there is some, so the
        one-field report and its XCom stay as they were."""
        out: dict[str, Any] = {}
        if self.fields:
            out["fields"] = {rid: dict(v) for rid, v in self.fields.items()}
            out["field_details"] = {k: dict(v) for k, v in self.field_details.items()}
            out["field_reasons"] = dict(self.field_reasons)
        if self.dns_stopped:
            out["dns_stopped"] = self.dns_stopped
            out["dns_unchecked"] = self.dns_unchecked
        if self.dry_run:
            out["would_send"] = {k: list(v) for k, v in self.would_send.items()}
            out["planned_calls"] = self.planned_calls
        return out


def merge_reports(reports: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Combine the results of several unblock tasks (mapped task instances) into one."""
    merged: dict[str, Any] = {
        "total": 0,
        "counts": {o.value: 0 for o in Outcome},
        "ids": {o.value: [] for o in Outcome},
        "messages": {},
        "details": {},
        "reasons": {},
        "calls": 0,
        "email_checks": 0,
        "tag_calls": 0,
        "tagged": [],
        "tag_errors": [],
        "pending": [],
        "pending_reasons": {},
        "read_calls": 0,
        "dns_queries": 0,
        "fields": {},
        "would_send": {},
        "tasks": 0,
    }
    for report in reports:
        if not report:
            continue
        merged["tasks"] += 1
        merged["total"] += int(report.get("total", 0))
        for key in ("calls", "email_checks", "tag_calls", "read_calls", "dns_queries"):
            merged[key] += int(report.get(key, 0))
        merged["fields"].update(report.get("fields") or {})
        for key, ids in (report.get("would_send") or {}).items():
            merged["would_send"].setdefault(key, []).extend(ids)
        for key in ("pending", "tagged", "tag_errors"):
            merged[key].extend(report.get(key, []))
        for key in ("messages", "details", "reasons", "pending_reasons"):
            merged[key].update(report.get(key, {}))
        for outcome, ids in (report.get("ids") or {}).items():
            merged["ids"].setdefault(outcome, []).extend(ids)
            merged["counts"][outcome] = merged["counts"].get(outcome, 0) + len(ids)
    return merged


def _described(record_id: str, details: Mapping[str, str | None] | None) -> str:
    parts = [details.get(k) for k in ("category", "sub_category", "reason")] if details else []
    text = "; ".join(p for p in parts if p)
    return f"{record_id} ({text})" if text else record_id


def _preview(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" … (+{len(items) - limit} more)" if len(items) > limit else "")


def needs_person_lines(report: UnblockReport, limit: int = 10) -> list[str]:
    """One log line per needs-person outcome that has records, with Zoho's reason for the first ``limit``."""
    return [
        f"{len(ids)} record(s) {outcome} need a person: "
        + _preview([_described(rid, report.details.get(rid)) for rid in ids], limit)
        for outcome in sorted(NEEDS_PERSON_OUTCOMES)
        if (ids := report.ids[outcome])
    ]


def deferred_line(report: UnblockReport, limit: int = 10) -> str:
    """The log line of the deferred records, each with why."""
    ids = report.ids[Outcome.DEFERRED]
    return f"{len(ids)} record(s) deferred to a later run: " + _preview(
        [f"{rid} ({report.reasons.get(rid)})" for rid in ids], limit
    )


def format_table(counts: Mapping[str, int], total: int | None = None) -> str:
    """A plain-text table of outcome counts, for logs and the DAG's report. When ``total`` is larger than the
    outcomes' sum, the difference shows as a ``pending`` row (ids not sent or whose call failed), so the rows
    always add up to the total."""
    rows = [(outcome, counts.get(outcome, 0)) for outcome in [o.value for o in Outcome]]
    rows += [(outcome, n) for outcome, n in counts.items() if outcome not in {o.value for o in Outcome} and n]
    outcomes_sum = sum(c for _, c in rows)
    total = outcomes_sum if total is None else total
    if total > outcomes_sum:
        rows.append(("pending", total - outcomes_sum))
    width = max(len(name) for name, _ in [*rows, ("total", 0)])
    lines = [f"{'outcome'.ljust(width)} | {'records':>8}", f"{'-' * width}-+-{'-' * 8}"]
    lines += [f"{name.ljust(width)} | {count:>8,}" for name, count in rows]
    lines += [f"{'-' * width}-+-{'-' * 8}", f"{'total'.ljust(width)} | {total:>8,}"]
    return "\n".join(lines)


def field_counts(fields: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, int]]:
    """Field → outcome → (record, field) pairs, from a report's per-field outcomes."""
    table: dict[str, dict[str, int]] = {}
    for slot in fields.values():
        for name, outcome in slot.items():
            column = table.setdefault(name, {})
            column[outcome] = column.get(outcome, 0) + 1
    return table


def field_lines(fields: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One line per field: ``Email: 884 unblocked, 1,470 not_blocked (2,354 records)``, outcomes in report order."""
    order = [o.value for o in Outcome] + ["pending"]
    lines = []
    for name, column in field_counts(fields).items():
        known = sorted(column, key=lambda o: order.index(o) if o in order else len(order))
        parts = ", ".join(f"{column[o]:,} {o}" for o in known if column[o])
        lines.append(f"{name}: {parts} ({sum(column.values()):,} records)")
    return lines


def field_tables(fields: Mapping[str, Mapping[str, str]]) -> str:
    """A plain-text table of (record, field) outcomes: one row per outcome, one column per field."""
    table = field_counts(fields)
    names = list(table)
    outcomes = [o.value for o in Outcome] + sorted({o for c in table.values() for o in c} - set(Outcome))
    outcomes = [o for o in outcomes if any(table[n].get(o) for n in names)]
    width = max(len(name) for name in [*outcomes, "outcome", "total"])
    widths = [max(8, len(n)) for n in names]
    lines = [
        f"{'outcome'.ljust(width)} | " + " | ".join(n.rjust(w) for n, w in zip(names, widths, strict=True)),
        f"{'-' * width}-+-" + "-+-".join("-" * w for w in widths),
    ]
    for outcome in [*outcomes, "total"]:
        cells = [sum(table[n].values()) if outcome == "total" else table[n].get(outcome, 0) for n in names]
        lines.append(
            f"{outcome.ljust(width)} | "
            + " | ".join(f"{c:,}".rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)
