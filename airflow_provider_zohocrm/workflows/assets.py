"""The asset event a run emits (``zohocrm://<conn id>/unblocked``): counts and the unblocked ids, bounded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: At most this many unblocked ids travel in an event's extra (the metadata DB keeps every event); past it,
#: ``unblocked_truncated`` is true and a consumer reads the report (or the unblock tasks' XCom) for the rest.
MAX_IDS_IN_EVENT = 10_000


def asset_extra(report: Mapping[str, Any], results: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
    """``counts`` (module → outcome → n), ``unblocked`` (module → ids, at most :data:`MAX_IDS_IN_EVENT` in all),
    ``unblocked_truncated``, ``dry_run``-free: a dry run or a rejected plan unblocks nothing."""
    unblocked: dict[str, list[str]] = {}
    room = MAX_IDS_IN_EVENT
    truncated = False
    for result in results:
        if not result:
            continue
        ids = [str(i) for i in (result.get("ids") or {}).get("unblocked", [])]
        if result.get("dry_run"):
            continue
        take = ids[: max(room, 0)]
        truncated = truncated or len(take) < len(ids)
        room -= len(take)
        if take:
            unblocked.setdefault(str(result.get("module")), []).extend(take)
    return {
        "counts": report.get("counts", {}),
        "unblocked": unblocked,
        "unblocked_truncated": truncated,
        "approval": report.get("approval"),
    }


__all__ = ["MAX_IDS_IN_EVENT", "asset_extra"]
