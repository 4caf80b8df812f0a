"""The report step (``workflows.steps.report``) holds one mapped result at a time (issue 25 item 8: the report
task at 1,000,000 records within 250 MB), and its asset extra is the one the results gave (a reference copy of
the old per-result walk below): in map-index order, dry runs and failed groups left out, bounded.

No coverage source here, so the commit step touches no stored state (its coverage tests: tests/emulator)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_provider_zohocrm.workflows import steps
from airflow_provider_zohocrm.workflows.assets import MAX_IDS_IN_EVENT
from airflow_provider_zohocrm.workflows.group import _LazyPull
from airflow_provider_zohocrm.zoho.id_packing import pack_ids
from airflow_provider_zohocrm.zoho.unblock import Outcome

BASE = 4_876_876_000_000_100_001
SETTINGS = {"dry_run": False, "conn_id": "zohocrm_default", "sources": []}


class Result(dict[str, Any]):
    """A mapped task's result that a weak reference can follow (a plain dict cannot)."""


class PullRecorder:
    """A mapped task's XCom pull, for the report's own lazy sequence (``group._LazyPull``): each result made anew,
    and at every pull a count of the earlier results still alive (held by someone)."""

    def __init__(self, make: Callable[[int], Result | None]) -> None:
        self.make = make
        self.alive_at_pull: list[int] = []
        self._refs: list[weakref.ref[Result]] = []

    def __call__(self, index: int) -> Result | None:
        self.alive_at_pull.append(sum(ref() is not None for ref in self._refs))
        result = self.make(index)
        if result is not None:
            self._refs.append(weakref.ref(result))
        return result


def _ids(start: int, n: int) -> list[str]:
    return [str(BASE + 3 * (start + k)) for k in range(n)]


#: (module, first id, ids unblocked, ids not blocked, dry run, failed): modules interleaved, past the bound
PLAN = [
    ("Leads", 0, 6_000, 100, False, False),
    ("Contacts", 10_000, 5_000, 50, False, False),
    ("Leads", 20_000, 0, 40, False, True),
    ("Leads", 30_000, 3_000, 0, False, False),
    ("Contacts", 40_000, 2_000, 10, True, False),
    ("Contacts", 50_000, 1_500, 0, False, False),
]


def _make(i: int) -> Result | None:
    module, start, unblocked, fine, dry_run, failed = PLAN[i]
    if failed:
        return None
    ids = {o.value: [] for o in Outcome}
    ids["unblocked"] = _ids(start, unblocked)
    ids["not_blocked"] = _ids(start + unblocked, fine)
    return Result(module=module, ids=ids, pending=[], calls=1, credits_spent=2, dry_run=dry_run)


def _found() -> list[dict[str, Any]]:
    by_module: dict[str, list[str]] = {}
    for module, start, unblocked, fine, _dry, _failed in PLAN:
        by_module.setdefault(module, []).extend(_ids(start, unblocked + fine))
    return [
        {"source": n, "module": m, "ids": pack_ids(ids), "repeated": 0, "credits_spent": 1}
        for n, (m, ids) in enumerate(by_module.items())
    ]


def _groups() -> list[dict[str, Any]]:
    return [
        {"module": m, "ids": pack_ids(_ids(start, unblocked + fine)), "unblock_fields": ["Email"]}
        for m, start, unblocked, fine, _dry, _failed in PLAN
    ]


def _reference_extra(
    report: Mapping[str, Any], results: Sequence[Mapping[str, Any] | None]
) -> dict[str, Any]:
    """The asset extra as it was computed before, from every result held at once."""
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


def _run(results: Sequence[Any]) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    return steps.report(
        settings=SETTINGS,
        found=_found(),
        groups=_groups(),
        results=results,
        partials=[None] * len(PLAN),
        planned=[],
        decision=None,
        run_id="manual__1",
    )


def test_the_report_step_holds_one_mapped_result_at_a_time() -> None:
    pulled = PullRecorder(_make)
    value, problems, _extra = _run(_LazyPull(pulled, len(PLAN)))
    # each result read once; when the next is pulled, at most the one just handed over is still referenced
    assert len(pulled.alive_at_pull) == len(PLAN)
    assert max(pulled.alive_at_pull) <= 1, pulled.alive_at_pull
    assert value["failed_groups"] == [2]
    assert problems and "1 of 6 unblock task(s) failed (map index 2)" in problems[0]
    assert "Credits spent by this run (client count): 12." in value["text"]  # 2 found + 5 results x 2


def test_the_asset_extra_is_the_results_unblocked_ids_in_map_index_order_bounded() -> None:
    held = [_make(i) for i in range(len(PLAN))]
    value, _problems, extra = _run(_LazyPull(PullRecorder(_make), len(PLAN)))
    assert extra == _reference_extra(value, held)
    assert extra["unblocked_truncated"] is True
    assert [len(v) for v in extra["unblocked"].values()] == [6_000 + 0, 4_000]  # Leads 6,000, Contacts 4,000
    assert extra["unblocked"]["Leads"] == _ids(0, 6_000)
    assert extra["unblocked"]["Contacts"] == _ids(10_000, 4_000)
