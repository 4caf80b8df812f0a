"""Packed id lists: exact round trip, and the size that keeps a million ids under 5 MB of XCom."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_zohocrm.zoho.id_packing import IdArray, id_count, pack_ids, unpack_id_ints, unpack_ids

BASE = 4_876_876_000_000_000_000


@given(st.lists(st.integers(min_value=0, max_value=10**19 - 1).map(str)))
def test_round_trip_keeps_every_id_in_order(ids: list[str]) -> None:
    assert unpack_ids(pack_ids(ids)) == ids


def test_a_million_ids_with_gaps_stay_under_5_mb() -> None:
    rng = random.Random(18)
    value = BASE
    ids = []
    for _ in range(1_000_000):
        value += rng.randint(1, 100_000)
        ids.append(str(value))
    packed = pack_ids(ids)
    size = len(json.dumps(packed))
    assert size <= 5_000_000, size
    assert len(json.dumps(ids)) > 20_000_000  # what the DAG passed before
    assert unpack_ids(packed) == ids


def test_bad_ids_and_damaged_values_are_refused() -> None:
    with pytest.raises(ValueError, match="not a record id"):
        pack_ids(["12", "x3"])
    with pytest.raises(ValueError, match="zids1"):
        unpack_ids("123,456")
    packed = pack_ids(["1", "2", "3"])
    with pytest.raises(ValueError, match="damaged"):
        unpack_ids(packed.replace("zids1:3:", "zids1:4:"))
    assert unpack_ids(["1", "2"]) == ["1", "2"]


@given(st.lists(st.one_of(st.integers(min_value=0, max_value=2**64 + 5).map(str), st.text(max_size=4))))
def test_id_array_reads_back_every_id_as_text_in_order(ids: list[str]) -> None:
    held = IdArray(ids)
    assert list(held) == ids and len(held) == len(ids) and held == ids
    assert [held[i] for i in range(-len(ids), len(ids))] == ids + ids
    assert held[1:3] == ids[1:3]
    more = IdArray(["5"])
    more.extend(held)
    assert list(more) == ["5", *ids]


def test_id_array_holds_record_ids_in_8_bytes_and_the_odd_one_as_text() -> None:
    held = IdArray(["4876876000000100001", "007", "", "18446744073709551616", 12])
    assert list(held.numbers) == [4876876000000100001, 0, 0, 0, 12]
    assert held.texts == {1: "007", 2: "", 3: "18446744073709551616"}
    assert list(held) == ["4876876000000100001", "007", "", "18446744073709551616", "12"]
    assert [int(rid) for rid in unpack_id_ints(pack_ids(["3", "1", "2"]))] == [3, 1, 2]
    assert id_count(pack_ids(["3", "1", "2"])) == 3 and id_count(["1"]) == 1
