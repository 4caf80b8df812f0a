"""Per-field decisions (issue 19): which fields of which records go to which unblock call, and the report
where every (record, field) pair ends in exactly one outcome.

Zoho blocks an address, not a record, and an unblock call unblocks every blocked field it names. So a field
that must not be unblocked (a hard bounce, a bounce younger than the policy, an address that never bounced)
must never ride in a call with a field that must: :func:`plan_unblock_calls` groups the ids by the exact set of
fields that qualify for each record, at most ``batch_size`` ids a call.

A record is counted once in per-record tables, under its *most actionable* outcome (:data:`PRECEDENCE`):
failures of the run itself first (``error``, ``not_allowed``, ``invalid_record``), then what needs a person
(``permanently_blocked``, ``limit_reached``), then what a later run does (``deferred``), then what is done
(``unblocked``, ``already_unblocked``, ``not_blocked``). The per-field detail is kept next to it. A record gets
the needs-person tag when *any* of its fields needs a person, so the tagged set is the records whose per-field
outcomes include one of :data:`~airflow_provider_zohocrm.zoho.unblock.NEEDS_PERSON_OUTCOMES` — the same set as
the per-record ``permanently_blocked`` and ``limit_reached`` rows only when no field of theirs failed.

Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_zohocrm.zoho.emails import ADDRESS_FIELDS, BounceCheck, Verdict
from airflow_provider_zohocrm.zoho.errors import ZohoValidationError
from airflow_provider_zohocrm.zoho.unblock import NEEDS_PERSON_OUTCOMES, Outcome
from airflow_provider_zohocrm.zoho.validation import validate_batch_size

#: Most actionable first: a record's outcome in per-record tables is the first of these any field has.
PRECEDENCE: tuple[Outcome, ...] = (
    Outcome.ERROR,
    Outcome.NOT_ALLOWED,
    Outcome.INVALID_RECORD,
    Outcome.PERMANENTLY_BLOCKED,
    Outcome.LIMIT_REACHED,
    Outcome.DEFERRED,
    Outcome.UNBLOCKED,
    Outcome.ALREADY_UNBLOCKED,
    Outcome.NOT_BLOCKED,
)
_RANK = {outcome: i for i, outcome in enumerate(PRECEDENCE)}


def field_key(fields: Iterable[str]) -> tuple[str, ...]:
    """A field set in Zoho's order (Email before Secondary_Email), each once."""
    chosen = set(fields)
    unknown = chosen - set(ADDRESS_FIELDS)
    if unknown:
        raise ZohoValidationError(f"unknown email field(s) {sorted(unknown)}; Zoho unblocks {ADDRESS_FIELDS}")
    return tuple(f for f in ADDRESS_FIELDS if f in chosen)


def outcome_of_check(check: BounceCheck) -> Outcome | None:
    """The field's outcome decided by its check, or None when the field goes to the unblock call (``soft``,
    and ``unknown``, which Zoho's answer decides)."""
    if check.verdict == Verdict.HARD:
        return Outcome.PERMANENTLY_BLOCKED
    if check.verdict == Verdict.NONE:
        return Outcome.NOT_BLOCKED
    if check.verdict == Verdict.DEFERRED:
        return Outcome.DEFERRED
    return None


def qualifying_fields(checks: Mapping[str, BounceCheck]) -> tuple[str, ...]:
    """The fields of one record that go to the unblock call."""
    return field_key(f for f, check in checks.items() if outcome_of_check(check) is None)


def group_by_field_set(fields_by_record: Mapping[str, Iterable[str]]) -> dict[tuple[str, ...], list[str]]:
    """``{("Email",): [ids], ("Email", "Secondary_Email"): [ids]}``: each record under the exact set of its
    qualifying fields, in input order; a record with none is left out (its fields have outcomes already)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for record_id, fields in fields_by_record.items():
        key = field_key(fields)
        if key:
            groups.setdefault(key, []).append(str(record_id))
    return groups


@dataclass(frozen=True)
class UnblockCall:
    """One bulk unblock call: these ids, exactly these fields."""

    fields: tuple[str, ...]
    ids: list[str]


def plan_unblock_calls(
    fields_by_record: Mapping[str, Iterable[str]], batch_size: int, *, one_field_per_call: bool = False
) -> list[UnblockCall]:
    """The unblock calls for per-record field decisions: grouped by field set, at most ``batch_size`` ids each,
    so no call carries a field that must not be unblocked.

    ``one_field_per_call``: one call per field instead (a record with two qualifying fields is in two calls).
    Zoho then answers per (record, field) — with both fields in one call, "Unblocked successfully" means *a*
    field was unblocked, and a field at its 5-unblock limit hides behind the other's success — and a batch
    needs at most one call per field (two) instead of one per field set (three)."""
    size = validate_batch_size(batch_size)
    if one_field_per_call:
        per_field: dict[tuple[str, ...], list[str]] = {}
        for record_id, fields in fields_by_record.items():
            for name in field_key(fields):
                per_field.setdefault((name,), []).append(str(record_id))
        groups = {key: per_field[key] for key in sorted(per_field, key=lambda k: ADDRESS_FIELDS.index(k[0]))}
    else:
        groups = group_by_field_set(fields_by_record)
    return [
        UnblockCall(key, ids[start : start + size])
        for key, ids in groups.items()
        for start in range(0, len(ids), size)
    ]


@dataclass
class FieldReport:
    """Every (record, field) pair in exactly one outcome, with the per-record view beside it."""

    outcomes: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    details: dict[tuple[str, str], dict[str, str | None]] = field(default_factory=dict)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(
        self,
        record_id: str,
        fields: Iterable[str],
        outcome: Outcome | str,
        *,
        details: Mapping[str, str | None] | None = None,
        reason: str = "",
    ) -> None:
        """Give each of ``fields`` of a record an outcome (an unblock call's answer covers every field it
        carried). A pair that already has one is an error: nothing is counted twice."""
        value = Outcome(outcome)
        slot = self.outcomes.setdefault(str(record_id), {})
        for name in field_key(fields):
            if name in slot:
                raise ValueError(f"{record_id} {name} already has outcome {slot[name]}, not also {value}")
            slot[name] = value
            if details:
                self.details[(str(record_id), name)] = dict(details)
            if reason:
                self.reasons[(str(record_id), name)] = reason

    def add_check(self, record_id: str, field_name: str, check: BounceCheck) -> bool:
        """Record a field decided by its check; False (nothing recorded) when it goes to the unblock call."""
        outcome = outcome_of_check(check)
        if outcome is None:
            return False
        with_details = outcome in (Outcome.PERMANENTLY_BLOCKED, Outcome.DEFERRED)
        self.add(
            record_id,
            [field_name],
            outcome,
            details=check.details() if with_details else None,
            reason=check.note,
        )
        return True

    def record_outcome(self, record_id: str) -> Outcome:
        """The record's most actionable outcome (:data:`PRECEDENCE`)."""
        return min(self.outcomes[str(record_id)].values(), key=lambda o: _RANK[o])

    def per_record(self) -> dict[str, list[str]]:
        """Outcome → record ids, each record once (a partition of the records)."""
        table: dict[str, list[str]] = {o.value: [] for o in PRECEDENCE}
        for record_id in self.outcomes:
            table[self.record_outcome(record_id).value].append(record_id)
        return table

    def per_field(self) -> dict[str, dict[str, list[str]]]:
        """Field → outcome → record ids (per field, a partition of the records that sent it)."""
        table: dict[str, dict[str, list[str]]] = {}
        for record_id, slot in self.outcomes.items():
            for name, outcome in slot.items():
                table.setdefault(name, {o.value: [] for o in PRECEDENCE})[outcome.value].append(record_id)
        return table

    def needs_person(self) -> list[str]:
        """Records to tag: any field permanently blocked or at the unblock limit."""
        return [rid for rid, slot in self.outcomes.items() if NEEDS_PERSON_OUTCOMES & set(slot.values())]

    def missing(self, expected: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
        """(record, field) pairs of ``expected`` (record → its fields) with no outcome, plus pairs with an
        outcome that were not expected: empty when the report is complete."""
        want = {(str(r), f) for r, fields in expected.items() for f in fields}
        have = {(r, f) for r, slot in self.outcomes.items() for f in slot}
        return sorted(want ^ have)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: per-record table, per-field table, the pairs, details and reasons."""
        return {
            "per_record": {k: v for k, v in self.per_record().items() if v},
            "per_field": {
                name: {k: v for k, v in table.items() if v} for name, table in self.per_field().items()
            },
            "fields": {rid: {f: o.value for f, o in slot.items()} for rid, slot in self.outcomes.items()},
            "details": {f"{rid} {name}": d for (rid, name), d in self.details.items()},
            "reasons": {f"{rid} {name}": r for (rid, name), r in self.reasons.items()},
        }


__all__ = [
    "PRECEDENCE",
    "FieldReport",
    "UnblockCall",
    "field_key",
    "group_by_field_set",
    "outcome_of_check",
    "plan_unblock_calls",
    "qualifying_fields",
]
