"""Zoho's COQL: a recursive-descent parser for the subset the provider and users need, and its evaluation.

Rules modelled (Zoho's COQL page): ``select … from … [where …] [order by …] [limit [offset,] n | n offset m]``;
default limit 200, at most 2,000 rows per call, ``offset + limit`` ≤ 100,000 (v7+); ``info.more_records``; an
empty result is HTTP 204; scope ``ZohoCRM.coql.READ`` plus read access to the module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


@dataclass
class CoqlQuery:
    """Parsed ``select … from … [where …] [order by …] [limit …]``."""

    fields: list[str]
    module: str
    where: Predicate | None
    order: list[tuple[str, bool]]
    limit: int
    offset: int


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
        return float(raw) if "." in raw else int(raw)
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    raise CoqlError("SYNTAX_ERROR", f"expected a value, got {raw!r}")


def _compare(left: Any, op: str, right: Any) -> bool:
    """SQL-ish comparison: NULL matches nothing; numbers compare as numbers; strings case-insensitively."""
    if left is None:
        return False
    try:
        lnum: Any = float(left) if isinstance(right, int | float) and not isinstance(right, bool) else None
    except (TypeError, ValueError):
        lnum = None
    if lnum is not None:
        a: Any = lnum
        b: Any = float(right)
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
        if self.is_kw("where"):
            self.i += 1
            where = self.or_expr()
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
        return CoqlQuery(fields, module, where, order, limit, offset)

    def or_expr(self) -> Predicate:
        return self._joined("or", self.and_expr, any)

    def and_expr(self) -> Predicate:
        return self._joined("and", self.atom, all)

    def _joined(
        self, word: str, operand: Callable[[], Predicate], combine: Callable[[Iterable[bool]], bool]
    ) -> Predicate:
        """``operand (word operand)*``: ``and`` binds tighter than ``or`` because or_expr's operand is and_expr."""
        parts = [operand()]
        while self.is_kw(word):
            self.i += 1
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        return lambda r: combine(p(r) for p in parts)

    def atom(self) -> Predicate:
        if self.peek() == ("op", "("):
            self.i += 1
            inner = self.or_expr()
            self.expect_op(")")
            return inner
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
            values = [_literal(*self.take())]
            while self.peek() == ("op", ","):
                self.i += 1
                values.append(_literal(*self.take()))
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
        value = _literal(vkind, vraw)
        return lambda r: _compare(r.value(name), op, value)


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
    backend.charge()
    matches = [r for r in backend._matches(mod, None, 0) if q.where is None or q.where(r)]
    for name, desc in reversed(q.order):
        if name == "id":
            matches.sort(key=lambda r: int(r.id), reverse=desc)
        else:
            present = [r for r in matches if r.value(name) is not None]
            absent = [r for r in matches if r.value(name) is None]
            present.sort(key=lambda r: str(r.value(name)).casefold(), reverse=desc)
            matches = present + absent if not desc else absent + present
    window = matches[q.offset : q.offset + q.limit]
    if not window:
        return Reply(204)
    data = [{"id": r.id, **{f: r.value(f) for f in q.fields if f != "id"}} for r in window]
    more = len(matches) > q.offset + q.limit
    return Reply.json(200, {"data": data, "info": {"count": len(data), "more_records": more}})
