"""The asset event a run emits (``zohocrm://<conn id>/unblocked``): counts and the unblocked ids, bounded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: At most this many unblocked ids travel in an event's extra (the metadata DB keeps every event); past it,
#: ``unblocked_truncated`` is true and a consumer reads the report (or the unblock tasks' XCom) for the rest.
MAX_IDS_IN_EVENT = 10_000


def asset_extra(
    report: Mapping[str, Any],
    ids: Mapping[str, Mapping[str, Sequence[str]]],
    unblocked_at: Sequence[tuple[str, int, int]],
) -> dict[str, Any]:
    """``counts`` (module → outcome → n), ``unblocked`` (module → ids, at most :data:`MAX_IDS_IN_EVENT` in all),
    ``unblocked_truncated``, ``dry_run``-free: a dry run or a rejected plan unblocks nothing.

    ``ids`` is the merged report's module → outcome → ids (``build_run_report``: an ``IdArray`` a slice of which
    is a list of str, so the mapped results need not be held); ``unblocked_at`` names, per result that unblocked
    for real and in map-index order, its module, where its unblocked ids start in ``ids[module]["unblocked"]`` and
    how many there are. The ids are taken in that order until the bound."""
    unblocked: dict[str, list[str]] = {}
    room = MAX_IDS_IN_EVENT
    truncated = False
    for module, start, n in unblocked_at:
        take = min(n, max(room, 0))
        truncated = truncated or take < n
        room -= take
        if take:
            unblocked.setdefault(module, []).extend(ids[module]["unblocked"][start : start + take])
    return {
        "counts": report.get("counts", {}),
        "unblocked": unblocked,
        "unblocked_truncated": truncated,
        "approval": report.get("approval"),
    }


__all__ = ["MAX_IDS_IN_EVENT", "asset_extra"]
