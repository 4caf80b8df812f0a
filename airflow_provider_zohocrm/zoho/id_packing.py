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
from array import array
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import overload

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


#: The largest id an :class:`IdArray` holds as a number (unsigned 64 bits); Zoho's 19-digit ids are below 10**19.
ARRAY_MAX = 2**64 - 1


def record_int(rid: str) -> int | None:
    """``rid`` as an int when it is a record id written one way only (ASCII digits, no leading zero) that fits 64
    bits: for those, text and number map one to one, and number order is (length, text) order. Else None."""
    if rid.isascii() and rid.isdigit() and (len(rid) == 1 or rid[0] != "0") and len(rid) <= 20:
        value = int(rid)
        if value <= ARRAY_MAX:
            return value
    return None


class IdArray(Sequence[str]):
    """Record ids in their order, 8 bytes each: an ``array`` of unsigned 64-bit ints, and the rare id that is not
    a canonical record id (see :func:`record_int`) kept as text at its position. Reads as a sequence of str (each
    made when asked), so a million ids take 8 MB where a list of str takes about 80 MB."""

    __slots__ = ("numbers", "texts")

    def __init__(self, ids: Iterable[object] = ()) -> None:
        self.numbers = array("Q")
        #: position → the id as text, for ids that are not canonical record ids (its number slot holds 0)
        self.texts: dict[int, str] = {}
        self.extend(ids)

    def extend(self, ids: Iterable[object]) -> None:
        """Append ``ids`` (str, or int record ids), in order."""
        numbers, texts = self.numbers, self.texts
        if isinstance(ids, IdArray):
            base = len(numbers)
            numbers.extend(ids.numbers)
            texts.update({base + at: text for at, text in ids.texts.items()})
            return
        for rid in ids:
            number = rid if type(rid) is int and 0 <= rid <= ARRAY_MAX else record_int(str(rid))
            if number is None:
                texts[len(numbers)] = str(rid)
                number = 0
            numbers.append(number)

    def __len__(self) -> int:
        return len(self.numbers)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self.numbers)))]
        if index < 0:
            index += len(self.numbers)
        text = self.texts.get(index)
        return text if text is not None else str(self.numbers[index])

    def __iter__(self) -> Iterator[str]:
        if not self.texts:
            return map(str, self.numbers)
        texts = self.texts
        return (texts[i] if i in texts else str(n) for i, n in enumerate(self.numbers))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdArray):
            return self.numbers == other.numbers and self.texts == other.texts
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        shown = ", ".join(repr(rid) for rid in self[:5])
        return f"IdArray([{shown}{', …' if len(self) > 5 else ''}], {len(self):,} ids)"


__all__ = [
    "ARRAY_MAX",
    "PREFIX",
    "IdArray",
    "id_count",
    "pack_ids",
    "record_int",
    "unpack_id_ints",
    "unpack_ids",
]
