"""Record ids packed small for XCom (issue 18: bounded XCom at 1,000,000 records).

A JSON list of 1,000,000 Zoho ids (19 digits each) is about 23 MB, and the example DAG used to pass such lists
from task to task. :func:`pack_ids` keeps the order and stores each id as the difference to the one before it
(zigzag varint: a read in id order has small, positive steps), compressed with zlib and written in base85, so the
value stays a JSON string. Ids must be digits (Zoho's record ids are); the order is kept exactly.

Size (measured in ``tests/unit/test_id_packing.py``): consecutive ids pack to a few KB per million; ids with
random gaps of up to 100,000 between neighbours (an org whose ids interleave with other modules) to about 3.6 MB
per million, since three varint bytes hold a gap below 2**21. **Assumed:** a module's neighbouring ids lie less
than 2**21 apart on average, which keeps a million ids under 5 MB (a wider spread costs one byte per id more).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Iterator, Sequence, Sized

PREFIX = "zids1:"


def _varint(value: int, out: bytearray) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def pack_ids(ids: Iterable[str]) -> str:
    """``ids`` (digit strings, any order) as one compact string; :func:`unpack_ids` gives them back in order."""
    out = bytearray()
    previous = 0
    count = 0
    for rid in ids:
        text = str(rid)
        if not text.isdigit() or (len(text) > 1 and text[0] == "0"):
            raise ValueError(f"not a record id (digits, no leading zero): {text!r}")
        value = int(text)
        delta = value - previous
        _varint(delta * 2 if delta >= 0 else -delta * 2 - 1, out)  # zigzag: small either way
        previous = value
        count += 1
    return PREFIX + f"{count}:" + base64.b85encode(zlib.compress(bytes(out), 6)).decode("ascii")


def unpack_ids(packed: str | Sequence[str]) -> list[str]:
    """The ids :func:`pack_ids` packed, in their order. A plain list of ids is returned as it is (a caller may get
    either: old XComs, or a value a person typed)."""
    if not isinstance(packed, str):
        return [str(rid) for rid in packed]
    return [str(value) for value in unpack_id_ints(packed)]


def unpack_id_ints(packed: str) -> Iterator[int]:
    """The ids :func:`pack_ids` packed, as ints, in their order, one at a time: no str object per id, so a caller
    that keeps them in an ``array`` holds a million ids in 8 MB (as str in a list they take about 76 MB). Raises
    ``ValueError`` at the end when the count in the header does not match (a damaged value)."""
    if not packed.startswith(PREFIX):
        raise ValueError("not a packed id list (expected the 'zids1:' prefix)")
    count_text, _, body = packed[len(PREFIX) :].partition(":")
    data = zlib.decompress(base64.b85decode(body))
    value = 0
    shift = 0
    number = 0
    seen = 0
    for byte in data:
        number |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        delta = number >> 1 if not number & 1 else -((number + 1) >> 1)
        value += delta
        seen += 1
        yield value
        number = 0
        shift = 0
    if seen != int(count_text):
        raise ValueError(f"packed id list is damaged: {seen} ids, expected {count_text}")


def id_count(ids: str | Sized) -> int:
    """How many ids a packed value holds, read from its header (nothing is unpacked), or ``len`` of a plain list."""
    if not isinstance(ids, str):
        return len(ids)
    if not ids.startswith(PREFIX):
        raise ValueError("not a packed id list (expected the 'zids1:' prefix)")
    return int(ids[len(PREFIX) :].partition(":")[0])


__all__ = ["PREFIX", "id_count", "pack_ids", "unpack_id_ints", "unpack_ids"]
