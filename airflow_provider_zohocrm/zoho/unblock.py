"""Unblock Email: input validation, batching and per-record outcome classification.

Pure logic, no I/O: every input id ends in exactly one outcome, whatever Zoho answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from airflow_provider_zohocrm.zoho.client import SUPPORTED_MODULES, validate_module
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError

#: Zoho's documented maximum of ids per bulk call.
MAX_IDS_PER_CALL = 500
UNBLOCKABLE_FIELDS = ("Email", "Secondary_Email")
#: Standard modules that have a Secondary_Email field; custom modules are left to Zoho to judge.
MODULES_WITH_SECONDARY_EMAIL = frozenset({"Leads", "Contacts"})
_RECORD_ID_RE = re.compile(r"^[0-9]{1,30}$")
_JSON_PATH_RE = re.compile(r"^\$\.ids\[(\d+)\]$")


class Outcome(StrEnum):
    """What happened to one record."""

    UNBLOCKED = "unblocked"
    ALREADY_UNBLOCKED = "already_unblocked"
    PERMANENTLY_BLOCKED = "permanently_blocked"
    LIMIT_REACHED = "limit_reached"
    INVALID_RECORD = "invalid_record"
    NOT_ALLOWED = "not_allowed"
    ERROR = "error"


#: Outcomes after which the record's email is (or already was) unblocked.
DONE_OUTCOMES = frozenset({Outcome.UNBLOCKED, Outcome.ALREADY_UNBLOCKED})
#: Outcomes a person has to look at: Zoho will never unblock these through the API.
NEEDS_PERSON_OUTCOMES = frozenset({Outcome.PERMANENTLY_BLOCKED, Outcome.LIMIT_REACHED})


# -- validation ----------------------------------------------------------------------------------------------


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


def classify_item(item: Mapping[str, Any]) -> Outcome:
    """One of Zoho's per-record answers → an outcome. Keys on code/status; NOT_ALLOWED needs the message,
    because Zoho uses the one code for several situations."""
    code = str(item.get("code") or "").upper()
    status = str(item.get("status") or "").lower()
    if code == "SUCCESS" and status in ("success", ""):
        return Outcome.UNBLOCKED
    message = str(item.get("message") or "").lower()
    if code == "INVALID_DATA":
        return Outcome.INVALID_RECORD
    if code == "NOT_ALLOWED":
        if "already unblocked" in message:
            return Outcome.ALREADY_UNBLOCKED
        if "5 times" in message or "five times" in message:
            return Outcome.LIMIT_REACHED
        if "permanent" in message:
            return Outcome.PERMANENTLY_BLOCKED
        return Outcome.NOT_ALLOWED
    return Outcome.ERROR


def match_items(
    record_ids: Sequence[str], items: Sequence[Mapping[str, Any]]
) -> list[tuple[str, Mapping[str, Any]]]:
    """Pair each sent id with Zoho's answer for it: by ``details.id``, by ``details.json_path``, else by
    position. Ids without an answer get a synthetic ``NO_RESULT`` error item, so none is lost."""
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
    for position, item in unplaced:
        if position < len(record_ids) and record_ids[position] not in answers:
            answers[record_ids[position]] = item
    missing = {
        "code": "NO_RESULT",
        "message": "Zoho's answer had no result for this record",
        "status": "error",
    }
    return [(rid, answers.get(rid, missing)) for rid in record_ids]


@dataclass
class UnblockReport:
    """Per-outcome ids and counts; JSON-serialisable through :meth:`to_dict`."""

    module: str
    unblock_fields: list[str]
    dry_run: bool = False
    ids: dict[str, list[str]] = field(default_factory=lambda: {o.value: [] for o in Outcome})
    messages: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    pending: list[str] = field(default_factory=list)

    def add(self, record_id: str, outcome: Outcome, item: Mapping[str, Any] | None = None) -> None:
        self.ids[outcome.value].append(record_id)
        if item is not None and outcome in (Outcome.ERROR, Outcome.NOT_ALLOWED):
            self.messages[record_id] = f"{item.get('code', '')}: {item.get('message', '')}".strip(": ")

    def add_answer(self, record_ids: Sequence[str], items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Record one call's answer; returns that batch's counts."""
        self.calls += 1
        batch: dict[str, int] = {}
        for record_id, item in match_items(record_ids, items):
            outcome = classify_item(item)
            self.add(record_id, outcome, item)
            batch[outcome.value] = batch.get(outcome.value, 0) + 1
        return batch

    @property
    def counts(self) -> dict[str, int]:
        return {outcome: len(ids) for outcome, ids in self.ids.items()}

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + len(self.pending)

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "unblock_fields": list(self.unblock_fields),
            "dry_run": self.dry_run,
            "total": self.total,
            "counts": self.counts,
            "ids": {k: list(v) for k, v in self.ids.items()},
            "messages": dict(self.messages),
            "calls": self.calls,
            "pending": list(self.pending),
        }


def merge_reports(reports: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Combine the results of several unblock tasks (mapped task instances) into one."""
    merged: dict[str, Any] = {
        "total": 0,
        "counts": {o.value: 0 for o in Outcome},
        "ids": {o.value: [] for o in Outcome},
        "messages": {},
        "calls": 0,
        "pending": [],
        "tasks": 0,
    }
    for report in reports:
        if not report:
            continue
        merged["tasks"] += 1
        merged["total"] += int(report.get("total", 0))
        merged["calls"] += int(report.get("calls", 0))
        merged["pending"].extend(report.get("pending", []))
        merged["messages"].update(report.get("messages", {}))
        for outcome, ids in (report.get("ids") or {}).items():
            merged["ids"].setdefault(outcome, []).extend(ids)
            merged["counts"][outcome] = merged["counts"].get(outcome, 0) + len(ids)
    return merged


def format_table(counts: Mapping[str, int], total: int | None = None) -> str:
    """A plain-text table of outcome counts, for logs and the DAG's report."""
    rows = [(outcome, counts.get(outcome, 0)) for outcome in [o.value for o in Outcome]]
    total = sum(c for _, c in rows) if total is None else total
    width = max(len(name) for name, _ in [*rows, ("total", 0)])
    lines = [f"{'outcome'.ljust(width)} | {'records':>8}", f"{'-' * width}-+-{'-' * 8}"]
    lines += [f"{name.ljust(width)} | {count:>8,}" for name, count in rows]
    lines += [f"{'-' * width}-+-{'-' * 8}", f"{'total'.ljust(width)} | {total:>8,}"]
    return "\n".join(lines)
