"""Zoho's COQL: a recursive-descent parser for the subset the provider and users need, and its evaluation.

Rules modelled (Zoho's COQL page): ``select … from … [where …] [order by …] [limit [offset,] n | n offset m]``;
default limit 200, at most 2,000 rows per call, ``offset + limit`` ≤ 100,000 (v7+: "You can fetch up to 1,00,000
records using pagination with LIMIT and OFFSET", v8 Limitations page); ``info.more_records``; an empty result is
HTTP 204; scope ``ZohoCRM.coql.READ`` plus read access to the module. Rows come in ascending record-id order
unless the query says otherwise ("By default, the system sorts the records in ascending order based on the
record ID"). Record ids are 19-digit integers: criteria on ``id`` compare them exactly (a float holds only 15-16
digits), whether the literal is a number or a quoted string of digits. Credits by LIMIT: 1 / 2 / 3 for
1-200 / 201-1,000 / 1,001-2,000 (see ``models.coql_credits``).

Speed: a query ordered by id (the default) walks the module's sorted id list from the first id its criteria
allow (``id > n`` / ``>=`` / ``<`` / ``<=`` / ``=`` joined by ``and``) and stops after ``offset + limit + 1``
matches, so keyset paging over 1,000,000 records costs O(page) per call, not O(module).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from .models import (
    COQL_DEFAULT_LIMIT,
    COQL_MAX_LIMIT,
    COQL_MAX_REACH,
    JSON,
    Record,
    Reply,
    Request,
    ZohoError,
    coql_credits,
    error,
)
from .routing import route

if TYPE_CHECKING:
    from .backend import EmulatorBackend


class CoqlError(Exception):
    """Internal: a COQL query the emulator (like Zoho) refuses."""

    def __init__(self, code: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}


_COQL_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.|'')*')|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)|(?P<word>[A-Za-z_][A-Za-z0-9_.$]*))"
)
Predicate = Callable[[Record], bool]
#: Inclusive (lowest, highest) record id a criterion allows; None: unbounded on that side.
IdRange = tuple[int | None, int | None]
_ANY_ID: IdRange = (None, None)


@dataclass
class CoqlQuery:
    """Parsed ``select … from … [where …] [order by …] [limit …]``; ``id_range`` bounds the ids the where
    clause can match (exact for ``and``-joined id comparisons, unbounded otherwise)."""

    fields: list[str]
    module: str
    where: Predicate | None
    order: list[tuple[str, bool]]
    limit: int
    offset: int
    id_range: IdRange = _ANY_ID

    @property
    def by_id(self) -> bool:
        """Rows in record-id order: no ORDER BY (Zoho's default) or ``order by id [asc|desc]``."""
        return not self.order or (len(self.order) == 1 and self.order[0][0].lower() == "id")

    @property
    def descending(self) -> bool:
        return bool(self.order) and self.order[0][1]


def _tokenize(text: str) -> list[tuple[str, str]]:
    """Split a COQL string into (kind, text) tokens."""
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip().rstrip(";")
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _COQL_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CoqlError("SYNTAX_ERROR", f"unexpected character near {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(kind: str, raw: str) -> Any:
    """Python value of a literal token."""
    if kind == "str":
        return raw[1:-1].replace("''", "'").replace("\\'", "'")
    if kind == "num":
        return Decimal(raw) if "." in raw else int(raw)
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    raise CoqlError("SYNTAX_ERROR", f"expected a value, got {raw!r}")


def _exact_number(value: Any) -> int | Decimal | None:
    """``value`` as an exact number (int or Decimal, never float: a 19-digit record id does not fit a float's
    53-bit mantissa), or None when it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _compare(left: Any, op: str, right: Any) -> bool:
    """SQL-ish comparison: NULL matches nothing; numbers compare exactly as numbers; strings
    case-insensitively."""
    if left is None:
        return False
    numeric = isinstance(right, int | float | Decimal) and not isinstance(right, bool)
    lnum = _exact_number(left) if numeric else None
    if lnum is not None:
        a: Any = lnum
        b: Any = right if not isinstance(right, float) else Decimal(repr(right))
    else:
        a, b = str(left).casefold(), str(right).casefold()
        if isinstance(left, bool) or isinstance(right, bool):
            a, b = str(left).lower(), str(right).lower()
    if op == "=":
        return bool(a == b)
    if op in ("!=", "<>"):
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == ">":
        return bool(a > b)
    if op == "<=":
        return bool(a <= b)
    return bool(a >= b)


class _CoqlParser:
    """Recursive-descent parser for the COQL subset the provider and users need."""

    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        #: Set by :meth:`comparison` when the criterion just parsed is ``id <op> <integer>``.
        self.last_id_comparison: tuple[str, int] | None = None

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def is_kw(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() in words

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise CoqlError("SYNTAX_ERROR", "unexpected end of query")
        self.i += 1
        return tok

    def expect_kw(self, word: str) -> None:
        if not self.is_kw(word):
            tok = self.peek()
            raise CoqlError("SYNTAX_ERROR", f"expected {word.upper()} near {tok[1] if tok else 'end'!r}")
        self.i += 1

    def expect_op(self, op: str) -> None:
        tok = self.take()
        if tok != ("op", op):
            raise CoqlError("SYNTAX_ERROR", f"expected {op!r}, got {tok[1]!r}")

    def ident(self) -> str:
        kind, text = self.take()
        if kind != "word":
            raise CoqlError("SYNTAX_ERROR", f"expected a field name, got {text!r}")
        return text

    def integer(self) -> int:
        kind, text = self.take()
        if kind != "num" or "." in text or int(text) < 0:
            raise CoqlError("SYNTAX_ERROR", f"expected a non-negative integer, got {text!r}")
        return int(text)

    def parse(self) -> CoqlQuery:
        self.expect_kw("select")
        fields = [self.ident()]
        while self.peek() == ("op", ","):
            self.i += 1
            fields.append(self.ident())
        self.expect_kw("from")
        module = self.ident()
        where: Predicate | None = None
        id_range = _ANY_ID
        if self.is_kw("where"):
            self.i += 1
            where, id_range = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.is_kw("order"):
            self.i += 1
            self.expect_kw("by")
            while True:
                name = self.ident()
                desc = False
                if self.is_kw("asc", "desc"):
                    desc = self.take()[1].lower() == "desc"
                order.append((name, desc))
                if self.peek() != ("op", ","):
                    break
                self.i += 1
        limit, offset = COQL_DEFAULT_LIMIT, 0
        if self.is_kw("limit"):
            self.i += 1
            first = self.integer()
            if self.peek() == ("op", ","):
                self.i += 1
                offset, limit = first, self.integer()
            else:
                limit = first
                if self.is_kw("offset"):
                    self.i += 1
                    offset = self.integer()
        if self.peek() is not None:
            raise CoqlError("SYNTAX_ERROR", f"unexpected token {self.peek()[1]!r}")  # type: ignore[index]
        if limit < 1:
            raise CoqlError("SYNTAX_ERROR", "limit must be at least 1")
        return CoqlQuery(fields, module, where, order, limit, offset, id_range)

    def or_expr(self) -> tuple[Predicate, IdRange]:
        return self._joined("or", self.and_expr, any)

    def and_expr(self) -> tuple[Predicate, IdRange]:
        return self._joined("and", self.atom, all)

    def _joined(
        self,
        word: str,
        operand: Callable[[], tuple[Predicate, IdRange]],
        combine: Callable[[Iterable[bool]], bool],
    ) -> tuple[Predicate, IdRange]:
        """``operand (word operand)*``: ``and`` binds tighter than ``or`` because or_expr's operand is and_expr.
        The id range of an ``and`` is the intersection of its parts'; an ``or`` is left unbounded."""
        first = operand()
        parts = [first]
        while self.is_kw(word):
            self.i += 1
            parts.append(operand())
        if len(parts) == 1:
            return first
        preds = [p for p, _ in parts]
        if word == "and":
            lows = [lo for _, (lo, _hi) in parts if lo is not None]
            highs = [hi for _, (_lo, hi) in parts if hi is not None]
            bounds: IdRange = (max(lows) if lows else None, min(highs) if highs else None)
        else:
            bounds = _ANY_ID
        return (lambda r: combine(p(r) for p in preds)), bounds

    def atom(self) -> tuple[Predicate, IdRange]:
        if self.peek() == ("op", "("):
            self.i += 1
            inner = self.or_expr()
            self.expect_op(")")
            return inner
        self.last_id_comparison = None
        pred = self.comparison()
        found = self.last_id_comparison
        return pred, (_id_bounds(*found) if found is not None else _ANY_ID)

    def comparison(self) -> Predicate:
        """One criterion (``is [not] null``, ``[not] in``, ``[not] like``, a comparison)."""
        name = self.ident()
        if self.is_kw("is"):
            self.i += 1
            negate = self.is_kw("not")
            if negate:
                self.i += 1
            self.expect_kw("null")
            return lambda r: (r.value(name) in (None, "")) != negate
        negate = self.is_kw("not")
        if negate:
            self.i += 1
        if self.is_kw("in"):
            self.i += 1
            self.expect_op("(")
            values = [_id_literal(name, _literal(*self.take()))]
            while self.peek() == ("op", ","):
                self.i += 1
                values.append(_id_literal(name, _literal(*self.take())))
            self.expect_op(")")
            return lambda r: (
                r.value(name) is not None and any(_compare(r.value(name), "=", v) for v in values) != negate
            )
        if self.is_kw("like"):
            self.i += 1
            kind, raw = self.take()
            if kind != "str":
                raise CoqlError("SYNTAX_ERROR", "LIKE needs a quoted pattern")
            pattern = "".join(
                ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in _literal(kind, raw)
            )
            rx = re.compile(pattern, re.IGNORECASE | re.DOTALL)
            return lambda r: (
                r.value(name) is not None and (rx.fullmatch(str(r.value(name))) is not None) != negate
            )
        if negate:
            raise CoqlError("SYNTAX_ERROR", "NOT must be followed by IN or LIKE")
        kind, op = self.take()
        if kind != "op" or op not in ("=", "!=", "<>", "<", ">", "<=", ">="):
            raise CoqlError("SYNTAX_ERROR", f"expected a comparison operator after {name!r}")
        vkind, vraw = self.take()
        if vkind == "word" and vraw.lower() == "null":
            raise CoqlError("SYNTAX_ERROR", "use IS NULL / IS NOT NULL to compare with null")
        value = _id_literal(name, _literal(vkind, vraw))
        self.last_id_comparison = (op, value) if name.lower() == "id" and isinstance(value, int) else None
        return lambda r: _compare(r.value(name), op, value)


def _id_literal(name: str, value: Any) -> Any:
    """A record id given as a quoted string of digits (``id > '4876…'``) is the same integer as unquoted."""
    if name.lower() == "id" and isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _id_bounds(op: str, value: int) -> IdRange:
    """The inclusive id range ``id <op> value`` allows."""
    return {
        "=": (value, value),
        ">": (value + 1, None),
        ">=": (value, None),
        "<": (None, value - 1),
        "<=": (None, value),
    }.get(op, _ANY_ID)


def parse_coql(text: str) -> CoqlQuery:
    """Parse a COQL query or raise :class:`CoqlError` (SYNTAX_ERROR)."""
    return _CoqlParser(text).parse()


# --------------------------------------------------------------------------------------------- route


@route("coql", "/crm/{ver}/coql", "POST")
def coql(backend: EmulatorBackend, req: Request) -> Reply:
    """``POST /crm/{v}/coql`` with ``{"select_query": "…"}``: ≤ 2,000 rows per call, offset+limit ≤ 100,000."""
    token, body = req.access_token, req.body
    backend.check_scope(token, "ZohoCRM.coql.READ", "ZohoCRM.coql.ALL")
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("select_query"), str):
        raise ZohoError(
            400,
            error(
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                {"param_name": "select_query"},
            ),
        )
    try:
        q = parse_coql(payload["select_query"])
    except CoqlError as exc:
        raise ZohoError(400, error(exc.code, exc.message, exc.details)) from exc
    mod = backend.module(q.module)
    if mod is None:
        raise ZohoError(
            400,
            error(
                "INVALID_QUERY",
                "invalid query formed",
                {"reason": "module not supported", "module": q.module},
            ),
        )
    backend.check_read_scope(token, mod.name)
    backend._coql_max_reach = max(backend._coql_max_reach, q.offset + q.limit)  # asked for, even if refused
    if q.limit > COQL_MAX_LIMIT:
        raise ZohoError(
            400, error("LIMIT_EXCEEDED", "limit exceeded", {"by": "limit", "limit": COQL_MAX_LIMIT})
        )
    if q.offset + q.limit > COQL_MAX_REACH:
        raise ZohoError(
            400,
            error(
                "LIMIT_EXCEEDED",
                "offset and limit exceed 100000",
                {"by": "offset", "limit": COQL_MAX_REACH},
            ),
        )
    backend.charge(coql_credits(q.limit))
    if q.by_id:
        matches = _walk_by_id(mod.order, mod.records, q)
    else:
        matches = [r for r in backend._matches(mod, None, 0) if q.where is None or q.where(r)]
        for name, desc in reversed(q.order):
            if name.lower() == "id":
                matches.sort(key=lambda r: int(r.id), reverse=desc)
            else:
                present = [r for r in matches if r.value(name) is not None]
                absent = [r for r in matches if r.value(name) is None]
                present.sort(key=lambda r: str(r.value(name)).casefold(), reverse=desc)
                matches = present + absent if not desc else absent + present
    window = matches[q.offset : q.offset + q.limit]
    if not window:
        return Reply(204)
    # Zoho matches field names without case; the row's keys are the names as written, or the API names
    api_names = {f: _api_name(mod, f) for f in q.fields if f.lower() != "id"}
    as_written = backend.config.coql_keys == "as_written"
    data = [
        {"id": r.id, **{(f if as_written else api): r.value(api) for f, api in api_names.items()}}
        for r in window
    ]
    more = len(matches) > q.offset + q.limit
    return Reply.json(200, {"data": data, "info": {"count": len(data), "more_records": more}})


def _api_name(mod: Any, name: str) -> str:
    """The module's field API name that ``name`` spells in another case (``email`` → ``Email``), else
    ``name``: the fields any of the module's records hold are the known ones."""
    folded = name.lower()
    for rec in mod.records.values():
        for key in rec.fields:
            if key.lower() == folded:
                return str(key)
    return name


def _walk_by_id(order: list[int], records: dict[str, Record], q: CoqlQuery) -> list[Record]:
    """The first ``offset + limit + 1`` matches in id order (ascending, or descending for ``order by id
    desc``), starting where the where clause's id range starts: enough for the window and ``more_records``."""
    low, high = q.id_range
    start = bisect.bisect_left(order, low) if low is not None else 0
    stop = bisect.bisect_right(order, high) if high is not None else len(order)
    positions = range(stop - 1, start - 1, -1) if q.descending else range(start, stop)
    need = q.offset + q.limit + 1
    found: list[Record] = []
    for i in positions:
        rec = records[str(order[i])]
        if q.where is None or q.where(rec):
            found.append(rec)
            if len(found) >= need:
                break
    return found
