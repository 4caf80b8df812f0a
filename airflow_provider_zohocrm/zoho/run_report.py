"""The example DAG's report: the mapped tasks' results per module and in total, checked against what was found.

Pure (no I/O, no Airflow). Every candidate id of every source must end in exactly one outcome of its module, or
in ``pending`` (a dry run, or ids a failed task never sent); :func:`build_run_report` says which ids were lost
or reported twice, so the DAG can fail the run instead of printing totals that do not add up.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from airflow_provider_zohocrm.zoho.id_packing import ARRAY_MAX, IdArray, id_count, record_int, unpack_id_ints
from airflow_provider_zohocrm.zoho.per_field import PRECEDENCE
from airflow_provider_zohocrm.zoho.unblock import NEEDS_PERSON_OUTCOMES, Outcome, field_lines

_RANK = {o.value: i for i, o in enumerate(PRECEDENCE)}

#: Ids listed per needs-person outcome in the printed report (all of them are in the returned dict).
LIST_LIMIT = 50


def _outcomes() -> list[str]:
    return [o.value for o in Outcome]


def format_module_table(
    counts: Mapping[str, Mapping[str, int]],
    modules: Sequence[str],
    pending: Mapping[str, int] | None = None,
) -> str:
    """One row per outcome, one column per module and a total column; a total row at the bottom. ``pending``
    (per module: records without an outcome, e.g. every record a dry run or an approval plan would send) is a
    row of its own when there are any, so each column adds up to the records found in every mode."""
    outcomes = _outcomes() + sorted({o for c in counts.values() for o in c} - set(_outcomes()))
    waiting = {m: int((pending or {}).get(m, 0)) for m in modules}
    if any(waiting.values()):
        outcomes.append("pending")
    columns = [*modules, "total"]

    def cell(outcome: str, column: str) -> int:
        if outcome == "pending":
            return sum(waiting.values()) if column == "total" else waiting.get(column, 0)
        if column == "total":
            return sum(counts.get(m, {}).get(outcome, 0) for m in modules)
        return counts.get(column, {}).get(outcome, 0)

    width = max(len(name) for name in [*outcomes, "outcome", "total"])
    widths = [max(8, len(c)) for c in columns]
    head = f"{'outcome'.ljust(width)} | " + " | ".join(
        c.rjust(w) for c, w in zip(columns, widths, strict=True)
    )
    rule = f"{'-' * width}-+-" + "-+-".join("-" * w for w in widths)
    lines = [head, rule]
    for outcome in outcomes:
        values = [f"{cell(outcome, c):,}".rjust(w) for c, w in zip(columns, widths, strict=True)]
        lines.append(f"{outcome.ljust(width)} | " + " | ".join(values))
    lines.append(rule)
    totals = [f"{sum(cell(o, c) for o in outcomes):,}".rjust(w) for c, w in zip(columns, widths, strict=True)]
    lines.append(f"{'total'.ljust(width)} | " + " | ".join(totals))
    return "\n".join(lines)


def build_run_report(
    found: Iterable[Mapping[str, Any]], results: Iterable[Mapping[str, Any] | None]
) -> dict[str, Any]:
    """Merge the mapped tasks' reports per module and check them against the candidates found.

    :param found: per source ``{"module", "ids", "source", "repeated"}`` (``ids`` after dedupe per module).
    :param results: the ``UnblockEmailOperator`` results (``module``, ``ids`` per outcome, ``pending``, ``calls``,
        and, where the operator has them, ``email_checks``, ``tag_calls``, ``details``, ``messages``).
    :returns: ``modules`` (order of first appearance), ``found``/``counts``/``ids`` per module, run totals,
        ``needs_person`` with details, and ``lost``/``extra``/``twice`` per module (empty when all adds up).
    """
    found_ids: dict[str, _FoundIds] = {}
    sources: list[dict[str, Any]] = []
    for entry in found:
        module = str(entry["module"])
        entry_ids = entry.get("ids", [])
        found_ids.setdefault(module, _FoundIds()).add(entry_ids)
        sources.append(
            {k: entry.get(k) for k in ("source", "module", "repeated")} | {"found": id_count(entry_ids)}
        )
    modules = list(found_ids)
    counts: dict[str, dict[str, int]] = {m: dict.fromkeys(_outcomes(), 0) for m in modules}
    # module → outcome → ids, 8 bytes each: no reference to a result's lists is kept, so a caller may hand the
    # results over one at a time (a million ids as str in lists take about 80 MB)
    ids: dict[str, dict[str, IdArray]] = {m: {o: IdArray() for o in _outcomes()} for m in modules}
    pending: dict[str, list[str]] = {m: [] for m in modules}
    pending_reasons: dict[str, str] = {}
    details: dict[str, dict[str, Any]] = {}
    messages: dict[str, str] = {}
    totals = Counter[str]()
    tasks = 0
    #: module → id → field → outcome, for results with more than one field (per-field detail)
    fields: dict[str, dict[str, dict[str, str]]] = {}
    field_details: dict[str, dict[str, Any]] = {}
    field_problems: list[str] = []
    would_send: dict[str, dict[str, list[str]]] = {}
    field_needs_person: list[tuple[str, str, str, str]] = []  # (module, id, field, outcome)
    dns_stopped: list[str] = []  # why check_domain stopped asking DNS, one per task that stopped
    for result in results:
        if not result:
            continue
        tasks += 1
        module = str(result.get("module") or "")
        if module not in counts:  # a module nobody searched: still shown, and flagged below as extra ids
            modules.append(module)
            found_ids.setdefault(module, _FoundIds())
            counts[module] = dict.fromkeys(_outcomes(), 0)
            ids[module] = {o: IdArray() for o in _outcomes()}
            pending[module] = []
        for outcome, outcome_ids in (result.get("ids") or {}).items():
            ids[module].setdefault(outcome, IdArray()).extend(outcome_ids)
            counts[module][outcome] = counts[module].get(outcome, 0) + len(outcome_ids)
        pending[module].extend(str(i) for i in result.get("pending") or [])
        reasons = result.get("pending_reasons") or {}
        if isinstance(reasons, Mapping):
            pending_reasons.update({str(k): str(v) for k, v in reasons.items()})
        field_problems.extend(_field_problems(module, result))
        for rid, slot in (result.get("fields") or {}).items():
            fields.setdefault(module, {})[str(rid)] = dict(slot)
            for name, outcome in slot.items():
                if outcome in {o.value for o in NEEDS_PERSON_OUTCOMES}:
                    field_needs_person.append((module, str(rid), str(name), str(outcome)))
        for key, info in (result.get("field_details") or {}).items():
            field_details[f"{module}:{key}"] = dict(info) if isinstance(info, Mapping) else {}
        if result.get("dns_stopped"):
            dns_stopped.append(str(result["dns_stopped"]))
        for key, plan_ids in (result.get("would_send") or {}).items():
            would_send.setdefault(module, {}).setdefault(str(key), []).extend(str(i) for i in plan_ids)
        for key in (
            "calls",
            "email_checks",
            "tag_calls",
            "read_calls",
            "dns_queries",
            "dns_unchecked",
            "planned_calls",
        ):
            value = result.get(key)
            totals[key] += (
                int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
            )
        for rid, info in (result.get("details") or {}).items():
            details[f"{module}:{rid}"] = dict(info) if isinstance(info, Mapping) else {"reason": str(info)}
        for rid, message in (result.get("messages") or {}).items():
            messages[f"{module}:{rid}"] = str(message)
    lost: dict[str, list[str]] = {}
    extra: dict[str, list[str]] = {}
    twice: dict[str, list[str]] = {}
    for module in modules:
        tally = found_ids[module].tally()
        for outcome_ids in ids[module].values():
            tally.report_all(outcome_ids)
        tally.report_all(pending[module])
        lost[module], extra[module], twice[module] = tally.lost(), tally.extra(), tally.twice()
    # per record (one field), or per (record, field) with that field's bounce details; in module order
    needs_person: dict[str, list[dict[str, Any]]] = {
        outcome: [] for outcome in sorted(o.value for o in NEEDS_PERSON_OUTCOMES)
    }
    for m in modules:
        for outcome, entries in needs_person.items():
            entries.extend(
                {"module": m, "id": rid, **details.get(f"{m}:{rid}", {})}
                for rid in ids[m].get(outcome, [])
                if rid not in fields.get(m, {})
            )
        for fm, rid, name, outcome in field_needs_person:
            if fm == m:
                needs_person[outcome].append(
                    {"module": m, "id": rid, "field": name, **field_details.get(f"{m}:{rid} {name}", {})}
                )
    return {
        "modules": modules,
        "sources": sources,
        "found": {m: found_ids[m].count for m in modules},
        "found_total": sum(v.count for v in found_ids.values()),
        "counts": counts,
        "ids": ids,
        "pending": pending,
        "pending_reasons": pending_reasons,
        "total": sum(sum(c.values()) for c in counts.values()) + sum(len(p) for p in pending.values()),
        "calls": totals["calls"],
        "email_checks": totals["email_checks"],
        "tag_calls": totals["tag_calls"],
        "read_calls": totals["read_calls"],
        "dns_queries": totals["dns_queries"],
        "dns_stopped": dns_stopped,
        "dns_unchecked": totals["dns_unchecked"],
        "planned_calls": totals["planned_calls"],
        "fields": fields,
        "would_send": would_send,
        "field_problems": field_problems,
        "tasks": tasks,
        "needs_person": needs_person,
        "details": details,
        "messages": messages,
        "lost": {m: v for m, v in lost.items() if v},
        "extra": {m: v for m, v in extra.items() if v},
        "twice": {m: v for m, v in twice.items() if v},
    }


def accounting_errors(report: Mapping[str, Any]) -> list[str]:
    """What does not add up, per module, in words; empty when every found id has exactly one outcome."""
    problems = []
    for key, words in (
        ("lost", "without outcome"),
        ("extra", "reported but never found"),
        ("twice", "reported twice"),
    ):
        for module, module_ids in report[key].items():
            problems.append(f"{module}: {len(module_ids)} id(s) {words} (e.g. {', '.join(module_ids[:5])})")
    problems.extend(report.get("field_problems") or [])
    return problems


def _field_problems(module: str, result: Mapping[str, Any]) -> list[str]:
    """With more than one field: every record of the result has exactly one outcome per field, and is counted
    under its most actionable field outcome (``pending`` when a field has none)."""
    wanted = [str(f) for f in result.get("unblock_fields") or []]
    if len(wanted) < 2:
        return []
    slots = result.get("fields") or {}
    record_outcome = {
        str(rid): o for o, outcome_ids in (result.get("ids") or {}).items() for rid in outcome_ids
    }
    record_outcome |= dict.fromkeys((str(r) for r in result.get("pending") or []), "pending")
    bad: list[str] = []
    for rid, outcome in record_outcome.items():
        slot = slots.get(rid)
        if slot is None or sorted(slot) != sorted(wanted):
            bad.append(f"{rid} (fields {sorted(slot or {})}, not {sorted(wanted)})")
            continue
        values = list(slot.values())
        top = "pending" if "pending" in values else min(values, key=lambda o: _RANK.get(o, len(_RANK)))
        if top != outcome:
            bad.append(f"{rid} (counted {outcome}, its fields say {top})")
    extra = sorted(set(map(str, slots)) - set(record_outcome))
    bad += [f"{rid} (fields reported, record not)" for rid in extra]
    if not bad:
        return []
    return [
        f"{module}: {len(bad)} record(s) whose per-field outcomes do not add up (e.g. {'; '.join(bad[:5])})"
    ]


def format_run_report(report: Mapping[str, Any], *, dry_run: bool = False, tag: str | None = None) -> str:
    """The text the report task prints: header, table per module with a total column, records needing a
    person with Zoho's bounce reason, pending ids, and per-record messages."""
    modules = report["modules"]
    lines = [
        f"Zoho CRM Unblock Email report: {report['found_total']:,} candidate record(s) found,"
        f" {report['total']:,} reported, {report['calls']:,} unblock call(s),"
        f" {report['email_checks']:,} email check(s), {report['tag_calls']:,} tag call(s).",
    ]
    if modules:
        pending = {m: len(report["pending"].get(m, [])) for m in modules}
        lines.append(format_module_table(report["counts"], modules, pending))
    else:
        lines.append("(no source listed any record)")
    for module, slots in (report.get("fields") or {}).items():
        if slots:
            lines.append(
                f"{module} per field (each record above is counted once, under its most actionable field):"
            )
            lines.extend(f"  {line}" for line in field_lines(slots))
    pending_total = sum(len(v) for v in report["pending"].values())
    if dry_run:
        plan = [
            f"{module} {key} {len(plan_ids):,}"
            for module, by_fields in (report.get("would_send") or {}).items()
            for key, plan_ids in by_fields.items()
        ]
        lines.append(f"dry run: {pending_total:,} record(s) would be sent; nothing was changed.")
        lines.append(
            f"plan: {report.get('planned_calls', 0):,} unblock call(s) ({', '.join(plan) or 'none'}); every"
            f" other outcome above is final, reached by reading alone ({report['email_checks']:,} Emails"
            f" call(s), {report.get('read_calls', 0):,} address read(s), {report.get('dns_queries', 0):,} DNS"
            " quer(ies))."
        )
    elif pending_total:
        lines.append(f"pending: {pending_total:,} record(s) not sent (see pending_reasons).")
    stopped = report.get("dns_stopped") or []
    if stopped:
        lines.append(
            f"check_domain: {len(stopped):,} task(s) stopped asking DNS ({stopped[0]});"
            f" {report.get('dns_unchecked', 0):,} domain(s) not looked up, their fields sent as without the check."
        )
    for outcome, records in report["needs_person"].items():
        if not records:
            continue
        tagged = f", tagged {tag!r}" if tag and not dry_run else ""
        lines.append(f"Need a person ({outcome}, {_needs_person_count(records)}{tagged}):")
        for rec in records[:LIST_LIMIT]:
            why = _bounce_words(rec)
            on = f" {rec['field']}" if rec.get("field") else ""
            lines.append(f"  {rec['module']} {rec['id']}{on}" + (f": {why}" if why else ""))
        if len(records) > LIST_LIMIT:
            lines.append(f"  … and {len(records) - LIST_LIMIT:,} more (all in the report's XCom)")
    for outcome, keys in _messages_by_outcome(report).items():
        lines.append(f"{MESSAGE_HEADINGS.get(outcome, 'Messages')} ({outcome}, {len(keys):,}):")
        for key in keys[:LIST_LIMIT]:
            lines.append(f"  {key.replace(':', ' ', 1)}: {report['messages'][key]}")
        if len(keys) > LIST_LIMIT:
            lines.append(f"  … and {len(keys) - LIST_LIMIT:,} more (all in the report's XCom)")
    return "\n".join(lines)


def _needs_person_count(entries: Sequence[Mapping[str, Any]]) -> str:
    """A needs-person heading's count: records (a record with both fields listed counts once), and, when any
    entry is a (record, field) pair, the pairs as such. These records are the ones tagged; the module table
    counts each record once under its most actionable outcome, so a record whose other field failed is counted
    there under ``error``, and one with a field at its limit and the other permanently blocked under
    ``permanently_blocked``."""
    records = len({(e["module"], e["id"]) for e in entries})
    pairs = sum(1 for e in entries if e.get("field"))
    whole = len(entries) - pairs  # one-field results list the record itself
    if not pairs:
        return f"{records:,} record(s)"
    if not whole:
        return f"{records:,} record(s), {pairs:,} (record, field) pair(s)"
    return f"{records:,} record(s), listed as {pairs:,} (record, field) pair(s) + {whole:,} record(s)"


#: The heading of each outcome whose records are listed with Zoho's message.
MESSAGE_HEADINGS = {"not_allowed": "Not allowed by Zoho", "error": "Errors"}


def _messages_by_outcome(report: Mapping[str, Any]) -> dict[str, list[str]]:
    """The ``module:id`` keys of the per-record messages, grouped by the record's outcome (``not_allowed``,
    ``error``, then any other), so each is printed under its own heading."""
    keys = set(report["messages"])
    outcome_of: dict[str, str] = {}  # only the ids with a message (a map of every id took ~100 MB at 1M ids)
    for module, by_outcome in report["ids"].items():
        if not any(key.startswith(f"{module}:") for key in keys):
            continue
        for outcome, outcome_ids in by_outcome.items():
            for rid in outcome_ids:
                if (key := f"{module}:{rid}") in keys:
                    outcome_of[key] = outcome
    grouped: dict[str, list[str]] = {outcome: [] for outcome in MESSAGE_HEADINGS}
    for key in report["messages"]:
        grouped.setdefault(outcome_of.get(key, "other"), []).append(key)
    return {outcome: keys for outcome, keys in grouped.items() if keys}


def _bounce_words(rec: Mapping[str, Any]) -> str:
    """``Permanently blocked / Invalid Email Address, bounced 2026-…: "Mailbox does not exist."``"""
    kind = " / ".join(str(rec[k]) for k in ("category", "sub_category") if rec.get(k))
    when = f"bounced {rec['bounced_time']}" if rec.get("bounced_time") else ""
    head = ", ".join(part for part in (kind, when) if part)
    reason = f'"{rec["reason"]}"' if rec.get("reason") else ""
    return ": ".join(part for part in (head, reason) if part)


def _id_key(rid: str) -> tuple[int, str]:
    return (len(rid), rid)


#: Ids sorted per chunk of this size, then merged, when the found ids are not in order (bounds the sort's lists).
_SORT_CHUNK = 1 << 16


class _FoundIds:
    """The ids found for one module, held small: a million 19-digit ids take 8 MB as unsigned 64-bit ints in an
    ``array`` (as str in a list and a set, over 100 MB). Takes packed values (``zids1:…``, decoded one id at a
    time) or lists of ids; an id that is not a canonical record id is kept as text."""

    def __init__(self) -> None:
        self.count = 0  # every id given, repeats included (the "found" figure)
        self._chunks: list[array[int]] = []
        self._texts: set[str] = set()

    def add(self, ids: str | Sequence[Any]) -> None:
        """One source's ids: packed, or a list."""
        size = id_count(ids)
        numbers = array("Q", [0]) * size  # allocated once at its final size
        values: Iterable[Any] = unpack_id_ints(ids) if isinstance(ids, str) else ids
        kept = 0
        for value in values:
            number = value if type(value) is int and 0 <= value <= ARRAY_MAX else record_int(str(value))
            if number is None:
                self._texts.add(str(value))
                continue
            numbers[kept] = number
            kept += 1
        del numbers[kept:]
        self.count += size
        self._chunks.append(numbers)

    def tally(self) -> _Tally:
        numbers = self._chunks[0] if len(self._chunks) == 1 else array("Q", b"".join(self._chunks))
        return _Tally(_sorted_unique(numbers), self._texts)


def _sorted_unique(numbers: array[int]) -> array[int]:
    """``numbers`` in increasing order without repeats. Ids read in id order are returned as they are; otherwise
    chunks are sorted and merged, so no list of a million ints (40 MB) is ever built."""
    if all(a < b for a, b in pairwise(numbers)):
        return numbers
    chunks = [array("Q", sorted(numbers[i : i + _SORT_CHUNK])) for i in range(0, len(numbers), _SORT_CHUNK)]
    out = array("Q")
    previous = -1
    for number in heapq.merge(*chunks):
        if number != previous:
            out.append(number)
            previous = number
    return out


class _Tally:
    """How many outcomes each found id of one module got (0, 1, or 2 meaning "two or more": one byte per id), and
    the reported ids that were never found. What ``Counter`` and ``set`` of str did, at about 9 bytes per id."""

    def __init__(self, numbers: array[int], texts: set[str]) -> None:
        self._numbers = numbers
        self._hits = bytearray(len(numbers))
        self._text_hits = dict.fromkeys(texts, 0)
        self._unknown = Counter[str]()
        self._next = 0  # where the next reported id probably is: the results list ids in the order found

    def report_all(self, ids: IdArray | Iterable[Any]) -> None:
        """Count one outcome for each of ``ids``."""
        if isinstance(ids, IdArray):
            texts = ids.texts
            for at, number in enumerate(ids.numbers):
                if at in texts:
                    self._report_text(texts[at])
                else:
                    self._report_number(number)
            return
        for raw in ids:
            rid = str(raw)
            value = record_int(rid)
            if value is None:
                self._report_text(rid)
            else:
                self._report_number(value)

    def _report_text(self, rid: str) -> None:
        if rid in self._text_hits:
            self._text_hits[rid] = min(self._text_hits[rid] + 1, 2)
        else:
            self._unknown[rid] += 1

    def _report_number(self, number: int) -> None:
        numbers, size = self._numbers, len(self._numbers)
        at = self._next
        if not (at < size and numbers[at] == number):
            at = bisect_left(numbers, number)
            if at == size or numbers[at] != number:
                self._unknown[str(number)] += 1
                return
        if self._hits[at] < 2:
            self._hits[at] += 1
        self._next = at + 1

    def lost(self) -> list[str]:
        """Found ids with no outcome, in :func:`_id_key` order."""
        lost = [str(n) for n, h in zip(self._numbers, self._hits, strict=True) if not h]
        return self._in_order(lost, [t for t, h in self._text_hits.items() if not h])

    def extra(self) -> list[str]:
        """Reported ids never found, in :func:`_id_key` order."""
        return sorted(self._unknown, key=_id_key)

    def twice(self) -> list[str]:
        """Ids reported more than once, found or not, in :func:`_id_key` order."""
        twice = [str(n) for n, h in zip(self._numbers, self._hits, strict=True) if h > 1]
        more = [t for t, h in self._text_hits.items() if h > 1] + [
            r for r, n in self._unknown.items() if n > 1
        ]
        return self._in_order(twice, more)

    @staticmethod
    def _in_order(numbered: list[str], texts: list[str]) -> list[str]:
        # ``numbered`` is in _id_key order already (canonical ids, increasing): sort only when texts join it
        return sorted(numbered + texts, key=_id_key) if texts else numbered
