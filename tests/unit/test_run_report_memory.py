"""The report's accounting holds ids small (issue 25 item 8: the report task at 1,000,000 records within 250 MB).

`build_run_report` takes each source's ids packed (as `find_candidates` pushes them) or as a list, and checks that
every found id has exactly one outcome without a str, set or Counter entry per id. Its answer is the one the
plain set-and-Counter check gives (a reference copy below), for any ids: repeated, out of order, not canonical.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_zohocrm.zoho.id_packing import pack_ids
from airflow_provider_zohocrm.zoho.run_report import accounting_errors, build_run_report, format_run_report
from airflow_provider_zohocrm.zoho.unblock import Outcome

BASE = 4_876_876_000_000_100_001


def _result(module: str, ids: dict[str, list[str]], pending: list[str] | None = None) -> dict[str, Any]:
    return {
        "module": module,
        "ids": {o.value: ids.get(o.value, []) for o in Outcome},
        "pending": pending or [],
        "calls": 1,
    }


def _reference(found: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The accounting as it was written before (a set of found ids, a Counter of reported ones), per module."""

    def key(rid: str) -> tuple[int, str]:
        return (len(rid), rid)

    wanted: dict[str, set[str]] = {}
    reported: dict[str, Counter[str]] = {}
    for entry in found:
        wanted.setdefault(entry["module"], set()).update(entry["ids"])
    for result in results:
        counter = reported.setdefault(result["module"], Counter())
        for outcome_ids in result["ids"].values():
            counter.update(outcome_ids)
        counter.update(result["pending"])
    out: dict[str, dict[str, list[str]]] = {"lost": {}, "extra": {}, "twice": {}}
    for module in {*wanted, *reported}:
        w, r = wanted.get(module, set()), reported.get(module, Counter())
        out["lost"][module] = sorted(w - set(r), key=key)
        out["extra"][module] = sorted(set(r) - w, key=key)
        out["twice"][module] = sorted((rid for rid, n in r.items() if n > 1), key=key)
    return {name: {m: v for m, v in by_module.items() if v} for name, by_module in out.items()}


_ID = st.one_of(
    st.integers(min_value=0, max_value=60).map(lambda n: str(BASE + n)),  # Zoho-like, overlapping
    st.integers(min_value=0, max_value=9).map(str),
    st.sampled_from(
        ["007", "0", "x1", "18446744073709551615", "18446744073709551616", "99999999999999999999"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    found=st.lists(st.tuples(st.sampled_from(["Leads", "Contacts"]), st.lists(_ID, max_size=25)), max_size=3),
    reported=st.lists(
        st.tuples(
            st.sampled_from(["Leads", "Contacts", "Deals"]),
            st.lists(st.tuples(st.sampled_from(["unblocked", "not_blocked", "error", "pending"]), _ID)),
        ),
        max_size=4,
    ),
    packed=st.booleans(),
)
def test_lost_extra_and_twice_are_what_the_set_and_counter_check_says(
    found: list[tuple[str, list[str]]], reported: list[tuple[str, list[tuple[str, str]]]], packed: bool
) -> None:
    entries = [{"module": m, "ids": ids, "source": i, "repeated": 0} for i, (m, ids) in enumerate(found)]
    results = []
    for module, pairs in reported:
        by_outcome: dict[str, list[str]] = {}
        for outcome, rid in pairs:
            by_outcome.setdefault(outcome, []).append(rid)
        results.append(_result(module, by_outcome, by_outcome.pop("pending", [])))
    given_entries = entries
    if packed and all(rid.isdigit() and (rid == "0" or rid[0] != "0") for _m, ids in found for rid in ids):
        given_entries = [{**e, "ids": pack_ids(e["ids"])} for e in entries]
    report = build_run_report(given_entries, results)
    want = _reference(entries, results)
    assert {k: report[k] for k in ("lost", "extra", "twice")} == want
    assert report["found"] == {m: sum(len(ids) for fm, ids in found if fm == m) for m, _ in found} | {
        m: 0 for m, _ in reported if m not in {fm for fm, _ in found}
    }
    assert [s["found"] for s in report["sources"]] == [len(ids) for _m, ids in found]


def test_packed_and_plain_found_ids_give_the_same_report() -> None:
    rng = random.Random(25)
    ids = [str(BASE + 3 * i) for i in range(5_000)]
    rng.shuffle(ids)  # a view's order, not the id order
    results = [
        _result(
            "Leads", {"unblocked": ids[:10], "not_blocked": ids[10:4_000], "error": ids[:1]}, ids[4_000:4_990]
        )
    ]
    plain = build_run_report([{"module": "Leads", "ids": ids, "source": 0}], results)
    packed = build_run_report([{"module": "Leads", "ids": pack_ids(ids), "source": 0}], results)
    assert packed == plain
    assert packed["found"] == {"Leads": 5_000} and packed["sources"][0]["found"] == 5_000
    assert packed["lost"] == {"Leads": sorted(ids[4_990:], key=int)} and packed["twice"] == {
        "Leads": [ids[0]]
    }
    assert format_run_report(packed) == format_run_report(plain)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "list"])
def test_the_report_holds_ids_in_a_few_bytes_each(packed: bool) -> None:
    """At 200,000 found ids and their outcomes in 10 results, building, printing and checking the report allocates
    at most 40 bytes per id beyond the results and the found ids themselves (measured: about 18). The set and
    Counter of str, and the printout's map of every id to its outcome, took about 160."""
    n, groups = 200_000, 10
    ids = [str(BASE + 3 * i) for i in range(n)]
    per = n // groups
    results = [
        _result(
            "Leads",
            {"unblocked": ids[g * per : g * per + 20], "not_blocked": ids[g * per + 20 : (g + 1) * per]},
        )
        for g in range(groups)
    ]
    results[0]["messages"] = {ids[0]: "a message"}
    found = [{"module": "Leads", "ids": pack_ids(ids) if packed else ids, "source": 0, "repeated": 0}]
    tracemalloc.start()
    try:
        report = build_run_report(found, results)
        text = format_run_report(report)
        problems = accounting_errors(report)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == [] and report["found_total"] == report["total"] == n
    assert f"{n:,} candidate record(s) found, {n:,} reported" in text
    assert f"(unblocked, 1):\n  Leads {ids[0]}: a message" in text  # placed under its own outcome
    assert peak / n <= 40, f"{peak / n:.0f} bytes per id"


def test_results_read_one_at_a_time_are_not_held() -> None:
    """The report step may hand the mapped results over one at a time (Airflow's lazy sequence, item by item):
    the report then keeps none of their str ids, and its peak is about one result plus 17 bytes an id. Each result
    is decoded from JSON inside the measurement, as an XCom pull does."""
    n, groups = 200_000, 10
    ids = [str(BASE + 3 * i) for i in range(n)]
    per = n // groups
    texts = [
        json.dumps(_result("Leads", {"not_blocked": ids[g * per : (g + 1) * per]})) for g in range(groups)
    ]
    found = [{"module": "Leads", "ids": pack_ids(ids), "source": 0, "repeated": 0}]
    del ids
    tracemalloc.start()
    try:
        report = build_run_report(found, (json.loads(text) for text in texts))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert accounting_errors(report) == [] and report["total"] == n
    assert peak / n <= 50, f"{peak / n:.0f} bytes per id"  # measured 31; holding the results: over 80
