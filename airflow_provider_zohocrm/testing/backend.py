"""State, protocol rules, accounting and scripted faults of the Zoho CRM emulator.

Everything Zoho-specific lives here so it can be tested and steered without sockets; ``server.py`` only moves
bytes.  One ``RLock`` guards all state; latency and fault delays are slept *outside* it so concurrent requests
really overlap (that is what the concurrency limit and the provider's parallelism are tested against).
"""

from __future__ import annotations

import bisect
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

JSON = dict[str, Any]

SUPPORTED_VERSIONS = frozenset({"v2.1", "v3", "v4", "v5", "v6", "v7", "v8"})
#: Unblock Email exists from v6 on (Zoho's docs for v6, v7 and v8).
UNBLOCK_VERSIONS = frozenset({"v6", "v7", "v8"})
UNBLOCK_FIELDS = ("Email", "Secondary_Email")
MAX_UNBLOCKS = 5
DISCRETE_PAGE_LIMIT = 2000
PAGE_TOKEN_RECORD_LIMIT = 100_000
COQL_MAX_LIMIT = 2000
COQL_DEFAULT_LIMIT = 200
COQL_MAX_REACH = 100_000
DEFAULT_SCOPES = (
    "ZohoCRM.modules.ALL",
    "ZohoCRM.send_mail.all.CREATE",
    "ZohoCRM.coql.READ",
    "ZohoCRM.settings.ALL",
    "ZohoCRM.org.READ",
)
ENDPOINTS = ("token", "revoke", "org", "records", "coql", "unblock_single", "unblock_bulk", "other")
CRM_ENDPOINTS = frozenset({"org", "records", "coql", "unblock_single", "unblock_bulk"})
FAULT_ENDPOINTS = frozenset({*ENDPOINTS, "any"})
FAULT_ACTIONS = frozenset(
    {
        "500",
        "502",
        "503",
        "429",
        "reset",
        "delay",
        "html200",
        "empty200",
        "missing_data",
        "unknown_code",
        "revoke_access_tokens",
        "revoke_refresh_token",
        "expire_page_tokens",
        "delete_records",
    }
)
#: Modules Zoho's Unblock Email API accepts, with (has Email, has Secondary_Email).
UNBLOCK_MODULES: dict[str, tuple[bool, bool]] = {
    "Leads": (True, True),
    "Contacts": (True, True),
    "Deals": (True, False),
    "Accounts": (True, False),
    "Sales_Orders": (True, False),
    "Purchase_Orders": (True, False),
    "Invoices": (True, False),
    "Quotes": (True, False),
    "Cases": (True, False),
}
#: Modules that exist but are not supported by Unblock Email (so INVALID_MODULE can be tested).
OTHER_MODULES = ("Products", "Tasks", "Campaigns")
ID_BASE = 4_876_876_000_000_000_000

#: Outcome names, also returned by :meth:`EmulatorBackend.predict_unblock`.
Outcome = Literal[
    "unblocked",
    "already_unblocked",
    "permanently_blocked",
    "limit_reached",
    "invalid_record",
    "locked",
    "field_not_available",
]
_ITEM_TEXT: dict[str, tuple[str, str]] = {
    "unblocked": ("SUCCESS", "Unblocked successfully"),
    "already_unblocked": ("NOT_ALLOWED", "Email is already unblocked"),
    "permanently_blocked": ("NOT_ALLOWED", "Cannot unblock, Email is blocked permanently"),
    "limit_reached": ("NOT_ALLOWED", "Cannot unblock, email has been unblocked 5 times already"),
    "locked": ("NOT_ALLOWED", "Record is locked or in an approval process"),
    "field_not_available": ("NOT_ALLOWED", "EMAIL, SECONDARY_EMAIL field not available for module"),
}


def _hex_token() -> str:
    """Zoho-looking opaque token ``1000.<hex>.<hex>``."""
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


def _required_list(payload: dict[str, Any], name: str) -> list[Any]:
    """A mandatory JSON array of the request body, with Zoho's errors when it is missing or not an array."""
    value = payload.get(name)
    if value is None or value == []:
        raise ZohoError(400, _error("MANDATORY_NOT_FOUND", "required field not found", {"api_name": name}))
    if not isinstance(value, list):
        raise ZohoError(
            400, _error("INVALID_DATA", "invalid data", {"api_name": name, "expected_data_type": "jsonarray"})
        )
    return value


def _error(code: str, message: str, details: JSON | None = None) -> JSON:
    """Zoho's call-level error shape."""
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


def _iso(ts: float) -> str:
    """ISO-8601 time with offset, like Zoho's ``page_token_expiry``."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------- data model


@dataclass
class EmulatorConfig:
    """Knobs of the emulated org; defaults are Zoho's documented limits."""

    latency: float = 0.0
    concurrency_limit: int | None = None
    token_ttl: int = 3600
    token_limit: int = 10
    token_window: int = 600
    throttle_seconds: int = 600
    max_live_tokens: int = 15
    page_token_ttl: int = 86400
    single_response_style: Literal["wrapped", "flat"] = "wrapped"
    legacy_expires: bool = False
    max_ids: int = 500
    require_scope: bool = True
    credits_per_day: int = 50_000
    #: The ``api_domain`` token answers name (default: the emulator's own URL). Set it to a Zoho domain, e.g.
    #: ``https://www.zohoapis.eu``, to test a client's data-center handling with that host routed here.
    advertised_api_domain: str | None = None


@dataclass
class Fault:
    """A scripted failure: hits requests ``on_call`` .. ``on_call + times - 1`` to ``endpoint`` (1-based,
    counted from when the fault was added; ``on_call=None`` means the next request)."""

    endpoint: str = "any"
    action: str = "500"
    on_call: int | None = None
    times: int = 1
    delay: float = 0.0
    #: For ``delete_records``: the records someone deletes just before this request (they become invalid ids).
    ids: tuple[str, ...] = ()
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        """Reject typos early: a silently ignored fault makes a test pass for the wrong reason."""
        if self.endpoint not in FAULT_ENDPOINTS:
            raise ValueError(
                f"unknown fault endpoint {self.endpoint!r}; expected one of {sorted(FAULT_ENDPOINTS)}"
            )
        if self.action not in FAULT_ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {sorted(FAULT_ACTIONS)}")
        if self.times < 1 or (self.on_call is not None and self.on_call < 1):
            raise ValueError("times and on_call must be >= 1")

    @property
    def first(self) -> int:
        """1-based index of the first request this fault hits."""
        return self.on_call or 1

    @property
    def done(self) -> bool:
        """Consumed once it fired ``times`` times."""
        return self.fired >= self.times


@dataclass(slots=True)
class EmailState:
    """Bounce state of one email field: ``blocked`` is None, "temporary" or "permanent"."""

    blocked: str | None = None
    unblock_count: int = 0


@dataclass(slots=True)
class Record:
    """One CRM record: plain field values plus the bounce state Zoho keeps per email field."""

    id: str
    fields: dict[str, Any] = field(default_factory=dict)
    email: dict[str, EmailState] = field(default_factory=dict)
    locked: bool = False
    unblock_events: list[float] = field(default_factory=list)

    @property
    def bounced(self) -> bool:
        """True when any email field is blocked (what the bounced custom view filters on)."""
        return any(s.blocked is not None for s in self.email.values())

    def value(self, name: str) -> Any:
        """Field value as the API shows it (``id`` included)."""
        return self.id if name == "id" else self.fields.get(name)

    def snapshot(self) -> JSON:
        """JSON-able copy for tests and the admin endpoint."""
        return {
            "id": self.id,
            "fields": dict(self.fields),
            "email": {
                k: {"blocked": v.blocked, "unblock_count": v.unblock_count} for k, v in self.email.items()
            },
            "locked": self.locked,
            "unblock_events": list(self.unblock_events),
        }


@dataclass
class Module:
    """A CRM module with its records kept in id order (views and page tokens walk that order)."""

    name: str
    index: int
    has_email: bool = True
    has_secondary_email: bool = False
    supports_unblock: bool = True
    records: dict[str, Record] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)

    def has_field(self, name: str) -> bool:
        """Whether an unblockable email field exists in this module."""
        return (name == "Email" and self.has_email) or (
            name == "Secondary_Email" and self.has_secondary_email
        )


@dataclass
class View:
    """A custom view: a live filter (like Zoho's) or a fixed id list."""

    cvid: str
    module: str
    name: str
    criteria: Callable[[Record], bool] | None = None
    ids: frozenset[str] | None = None

    def matches(self, rec: Record) -> bool:
        """Membership is evaluated at read time, so unblocked records leave a bounce-filtered view."""
        if self.ids is not None and rec.id not in self.ids:
            return False
        return self.criteria is None or self.criteria(rec)


@dataclass
class _RefreshToken:
    token: str
    client_id: str
    scopes: list[str]
    revoked: bool = False
    issue_times: list[float] = field(default_factory=list)
    attempt_times: list[float] = field(default_factory=list)
    throttled_until: float = 0.0
    live: list[str] = field(default_factory=list)


@dataclass
class _AccessToken:
    token: str
    refresh_token: str
    scopes: list[str]
    expires_at: float
    revoked: bool = False


@dataclass
class _PageToken:
    module: str
    cvid: str | None
    last_id: int
    served: int
    page: int
    expires_at: float


@dataclass
class Reply:
    """What the server writes back; ``reset`` means close the socket without answering."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """JSON reply with the right content type."""
        hdrs = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), hdrs)

    @classmethod
    def html(cls, status: int, text: str) -> Reply:
        """HTML reply, as a proxy or maintenance page would send."""
        return cls(status, text.encode(), {"Content-Type": "text/html;charset=UTF-8"})

    @property
    def payload(self) -> Any:
        """Decoded JSON body (None when empty or not JSON); handy in backend-level tests."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


class ZohoError(Exception):
    """Internal: aborts request handling with a call-level error reply."""

    def __init__(self, status: int, payload: JSON) -> None:
        super().__init__(payload.get("code"))
        self.reply = Reply.json(status, payload)


# --------------------------------------------------------------------------------------------- COQL


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


# --------------------------------------------------------------------------------------------- backend


_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("token", re.compile(r"^/oauth/v2/token/?$")),
    ("revoke", re.compile(r"^/oauth/v2/token/revoke/?$")),
    ("org", re.compile(r"^/crm/(?P<ver>[^/]+)/org/?$")),
    ("coql", re.compile(r"^/crm/(?P<ver>[^/]+)/coql/?$")),
    ("unblock_bulk", re.compile(r"^/crm/(?P<ver>[^/]+)/(?P<module>[^/]+)/actions/unblock_email/?$")),
    (
        "unblock_single",
        re.compile(r"^/crm/(?P<ver>[^/]+)/(?P<module>[^/]+)/(?P<id>[^/]+)/actions/unblock_email/?$"),
    ),
    ("records", re.compile(r"^/crm/(?P<ver>[^/]+)/(?P<module>[^/]+)/?$")),
]
_NOT_FOUND = _error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")
_TOO_MANY = _error("TOO_MANY_REQUESTS", "You have exceeded the concurrency limit. Please try again later.")
_THROTTLED = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "status": "failure",
}


class EmulatorBackend:
    """The emulated Zoho accounts server + CRM org: state, rules, accounting and faults."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._lock = threading.RLock()
        self._offset = 0.0
        self._clients: dict[str, str] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._access: dict[str, _AccessToken] = {}
        self._modules: dict[str, Module] = {}
        self._views: dict[str, View] = {}
        self._page_tokens: dict[str, _PageToken] = {}
        self._faults: list[Fault] = []
        self._in_flight = 0
        self.org_id = "60000000001"
        for name, (has_email, has_secondary) in UNBLOCK_MODULES.items():
            self.add_module(name, has_email=has_email, has_secondary_email=has_secondary)
        for name in OTHER_MODULES:
            self.add_module(name, has_email=False, supports_unblock=False)
        self.client_id, self.client_secret = self.add_client()
        self.refresh_token = self.add_refresh_token(self.client_id, scopes=list(DEFAULT_SCOPES))
        self.reset_stats()

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        """Emulated wall clock: real time plus whatever tests advanced."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward so token windows and expiries are tested without sleeping."""
        with self._lock:
            self._offset += seconds

    # ------------------------------------------------------------------ setup

    def add_client(self, client_id: str | None = None, client_secret: str | None = None) -> tuple[str, str]:
        """Register an OAuth client (self-client) and return (client_id, client_secret)."""
        cid = client_id or "1000." + secrets.token_hex(15).upper()
        secret = client_secret or secrets.token_hex(21)
        with self._lock:
            self._clients[cid] = secret
        return cid, secret

    def add_refresh_token(
        self, client_id: str, refresh_token: str | None = None, scopes: Iterable[str] | None = None
    ) -> str:
        """Issue a refresh token for a client with the given scopes."""
        token = refresh_token or _hex_token()
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown client {client_id!r}")
            self._refresh[token] = _RefreshToken(token, client_id, list(scopes or DEFAULT_SCOPES))
        return token

    def add_module(
        self,
        name: str,
        has_email: bool = True,
        has_secondary_email: bool = False,
        supports_unblock: bool = True,
    ) -> Module:
        """Create a (custom) module; custom modules support Unblock Email like Zoho's."""
        with self._lock:
            if name in self._modules:
                return self._modules[name]
            mod = Module(name, len(self._modules), has_email, has_secondary_email, supports_unblock)
            self._modules[name] = mod
            return mod

    def module(self, name: str) -> Module | None:
        """Module by API name, case-insensitively (Zoho accepts ``leads`` as well as ``Leads``)."""
        with self._lock:
            mod = self._modules.get(name)
            if mod is None:
                low = name.lower()
                mod = next((m for m in self._modules.values() if m.name.lower() == low), None)
            return mod

    def next_id(self, module: str) -> str:
        """A fresh 19-digit id in the module's id range (``4876876000000`` + 6 digits for Leads)."""
        with self._lock:
            mod = self._require_module(module)
            base = ID_BASE + mod.index * 1_000_000
            candidate = max(mod.order[-1] + 1, base + 100_001) if mod.order else base + 100_001
            return str(candidate)

    def add_record(
        self,
        module: str,
        record_id: str | None = None,
        *,
        fields: Mapping[str, Any] | None = None,
        email_blocked: str | None = None,
        email_unblock_count: int = 0,
        secondary_blocked: str | None = None,
        secondary_unblock_count: int = 0,
        locked: bool = False,
    ) -> str:
        """Add one record with a given bounce state; returns its id."""
        with self._lock:
            mod = self._require_module(module)
            rid = record_id or self.next_id(module)
            email: dict[str, EmailState] = {}
            if mod.has_email:
                email["Email"] = EmailState(email_blocked, email_unblock_count)
            if mod.has_secondary_email:
                email["Secondary_Email"] = EmailState(secondary_blocked, secondary_unblock_count)
            self.add_records(module, [Record(rid, dict(fields or {}), email, locked)])
            return rid

    def add_records(self, module: str, records: Iterable[Record]) -> None:
        """Bulk insert (one lock, one sort) so seeding 100,000 records stays fast."""
        with self._lock:
            mod = self._require_module(module)
            fresh = []
            for rec in records:
                if not rec.id.isdigit():
                    raise ValueError(f"record ids are numeric strings, got {rec.id!r}")
                if rec.id not in mod.records:
                    fresh.append(int(rec.id))
                mod.records[rec.id] = rec
            if fresh:
                if mod.order and fresh[0] > mod.order[-1] and fresh == sorted(fresh):
                    mod.order.extend(fresh)
                else:
                    mod.order.extend(fresh)
                    mod.order.sort()

    def add_view(
        self,
        module: str,
        cvid: str | None = None,
        name: str = "Custom view",
        criteria: Callable[[Record], bool] | None = None,
        ids: Iterable[str] | None = None,
    ) -> str:
        """Create a custom view (a live filter and/or a fixed id list); returns its cvid."""
        with self._lock:
            mod = self._require_module(module)
            vid = cvid or str(6_000_000_031_001 + 2 * len(self._views) + 100)
            self._views[vid] = View(
                vid, mod.name, name, criteria, frozenset(ids) if ids is not None else None
            )
            return vid

    def delete_record(self, module: str | None, record_id: str) -> bool:
        """Delete a record (``module=None``: whichever module holds it); later calls see an invalid id."""
        with self._lock:
            for mod in self._modules.values():
                if (module is None or mod.name == module) and record_id in mod.records:
                    del mod.records[record_id]
                    mod.order.remove(int(record_id))
                    return True
            return False

    def set_locked(self, module: str, record_id: str, locked: bool = True) -> None:
        """Put a record in (or out of) an approval process."""
        with self._lock:
            self._require_record(module, record_id).locked = locked

    def set_email_state(
        self,
        module: str,
        record_id: str,
        field_name: str = "Email",
        blocked: str | None = None,
        unblock_count: int | None = None,
    ) -> None:
        """Change the bounce state of one email field (e.g. a new bounce after an unblock)."""
        with self._lock:
            rec = self._require_record(module, record_id)
            st = rec.email.setdefault(field_name, EmailState())
            st.blocked = blocked
            if unblock_count is not None:
                st.unblock_count = unblock_count

    def _require_module(self, name: str) -> Module:
        mod = self.module(name)
        if mod is None:
            raise KeyError(f"unknown module {name!r}")
        return mod

    def _require_record(self, module: str, record_id: str) -> Record:
        rec = self._require_module(module).records.get(record_id)
        if rec is None:
            raise KeyError(f"unknown record {module}/{record_id}")
        return rec

    # ------------------------------------------------------------------ inspection

    def record(self, module: str, record_id: str) -> JSON:
        """Snapshot of one record: fields, per-email-field bounce state, lock and unblock events."""
        with self._lock:
            return self._require_record(module, record_id).snapshot()

    def records(self, module: str) -> dict[str, JSON]:
        """Snapshot of every record of a module, by id."""
        with self._lock:
            return {rid: rec.snapshot() for rid, rec in self._require_module(module).records.items()}

    def unblock_events(self, module: str, record_id: str) -> list[float]:
        """Timestamps of successful unblocks of a record (assert "unblocked exactly once")."""
        with self._lock:
            return list(self._require_record(module, record_id).unblock_events)

    def view_ids(self, cvid: str) -> list[str]:
        """Ids currently listed by a custom view, in id order."""
        with self._lock:
            view = self._views[cvid]
            mod = self._modules[view.module]
            return [str(i) for i in mod.order if view.matches(mod.records[str(i)])]

    def token_issue_times(self, refresh_token: str | None = None) -> list[float]:
        """When access tokens were minted from a refresh token (default: the default one)."""
        with self._lock:
            return list(self._refresh[refresh_token or self.refresh_token].issue_times)

    def secrets(self) -> list[str]:
        """Every client secret, refresh token and access token this org ever had (for leak checks)."""
        with self._lock:
            found = [*self._clients.values(), *self._refresh, *self._access]
        return [value for value in dict.fromkeys(found) if value]

    def live_access_tokens(self, refresh_token: str | None = None) -> list[str]:
        """Access tokens of a refresh token that would currently be accepted."""
        with self._lock:
            rt = self._refresh[refresh_token or self.refresh_token]
            return [t for t in rt.live if self._access_valid(self._access[t])]

    def predict_unblock(self, module: str, record_id: str, fields: Iterable[str] = ("Email",)) -> Outcome:
        """What an unblock of this record would answer now, without changing anything."""
        with self._lock:
            mod = self.module(module)
            if mod is None:
                raise KeyError(f"unknown module {module!r}")
            rec = mod.records.get(record_id)
            if rec is None:
                return "invalid_record"
            return self._evaluate(mod, rec, list(dict.fromkeys(fields)))[0]

    @property
    def stats(self) -> JSON:
        """Consistent snapshot of the counters (JSON-able apart from int status keys)."""
        with self._lock:
            snap: JSON = {
                "requests": dict(self._requests),
                "status_counts": {ep: dict(c) for ep, c in self._status_counts.items()},
                **{k: v for k, v in self._counters.items()},
                "peak_concurrency": self._peak,
                "in_flight": self._in_flight,
                "token_issue_times": {rt: list(s.issue_times) for rt, s in self._refresh.items()},
                "faults_pending": len(self._faults),
            }
            snap.update(self._requests)
            return snap

    def reset_stats(self) -> None:
        """Zero every counter (record state and unblock events are kept)."""
        with self._lock:
            self._requests: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
            self._status_counts: dict[str, dict[int, int]] = {ep: {} for ep in ENDPOINTS}
            self._counters: dict[str, int] = dict.fromkeys(
                (
                    "ids_sent",
                    "records_unblocked",
                    "rejected_429",
                    "credits_used",
                    "token_requests",
                    "tokens_issued",
                    "token_throttled",
                    "faults_fired",
                ),
                0,
            )
            self._peak = 0

    # ------------------------------------------------------------------ tokens

    def revoke_refresh_token(self, refresh_token: str) -> bool:
        """Revoke a refresh token and every access token minted from it."""
        with self._lock:
            rt = self._refresh.get(refresh_token)
            if rt is None:
                return False
            rt.revoked = True
            for at in self._access.values():
                if at.refresh_token == refresh_token:
                    at.revoked = True
            return True

    def revoke_access_tokens(self) -> None:
        """Invalidate every live access token (revocation or expiry mid-run)."""
        with self._lock:
            for at in self._access.values():
                at.revoked = True

    def expire_access_tokens(self) -> None:
        """Make every access token expired now (the refresh token stays usable)."""
        with self._lock:
            now = self.now()
            for at in self._access.values():
                at.expires_at = min(at.expires_at, now - 1)

    def expire_page_tokens(self) -> None:
        """Drop every page token: the next page_token request answers INVALID_DATA."""
        with self._lock:
            self._page_tokens.clear()

    def _access_valid(self, at: _AccessToken) -> bool:
        rt = self._refresh.get(at.refresh_token)
        return not at.revoked and at.expires_at > self.now() and rt is not None and not rt.revoked

    def grant_token(self, params: Mapping[str, str], api_domain: str) -> JSON:
        """``POST /oauth/v2/token``: every answer is HTTP 200; failures carry ``error`` and no token."""
        with self._lock:
            if params.get("grant_type") != "refresh_token":
                return {"error": "unsupported_grant_type"}
            cid = params.get("client_id", "")
            if cid not in self._clients or self._clients[cid] != params.get("client_secret"):
                return {"error": "invalid_client"}
            rt = self._refresh.get(params.get("refresh_token", ""))
            if rt is None or rt.revoked or rt.client_id != cid:
                return {"error": "invalid_code"}
            now = self.now()
            cfg = self.config
            rt.attempt_times = [t for t in rt.attempt_times if t > now - cfg.token_window]
            if now < rt.throttled_until or len(rt.attempt_times) >= cfg.token_limit:
                if now >= rt.throttled_until:
                    rt.throttled_until = now + cfg.throttle_seconds
                rt.attempt_times.append(now)
                self._counters["token_throttled"] += 1
                return dict(_THROTTLED)
            rt.attempt_times.append(now)
            rt.live = [t for t in rt.live if self._access_valid(self._access[t])]
            while len(rt.live) >= cfg.max_live_tokens:
                self._access[rt.live.pop(0)].revoked = True
            token = _hex_token()
            self._access[token] = _AccessToken(token, rt.token, list(rt.scopes), now + cfg.token_ttl)
            rt.live.append(token)
            rt.issue_times.append(now)
            self._counters["tokens_issued"] += 1
            answer: JSON = {
                "access_token": token,
                "scope": " ".join(rt.scopes),
                "api_domain": self.config.advertised_api_domain or api_domain,
                "token_type": "Bearer",
            }
            if cfg.legacy_expires:
                answer["expires_in_sec"] = cfg.token_ttl
                answer["expires_in"] = cfg.token_ttl * 1000
            else:
                answer["expires_in"] = cfg.token_ttl
            return answer

    # ------------------------------------------------------------------ faults

    def add_fault(self, fault: Fault) -> Fault:
        """Script a failure (see :class:`Fault`)."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()

    def _due_faults(self, endpoint: str) -> list[Fault]:
        due = []
        for f in self._faults:
            if f.endpoint in ("any", endpoint):
                f.seen += 1
                if f.first <= f.seen < f.first + f.times:
                    f.fired += 1
                    due.append(f)
        self._faults = [f for f in self._faults if not f.done]
        self._counters["faults_fired"] += len(due)
        return due

    # ------------------------------------------------------------------ request entry point

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, base_url: str
    ) -> Reply:
        """Answer one HTTP request (``headers`` keys lower-case); the server only moves bytes."""
        split = urlsplit(target)
        path = unquote(split.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        if path.startswith("/_emulator/"):
            return self._admin(method, path, body)
        endpoint, route = self._route(path)
        with self._lock:
            self._requests[endpoint] += 1
            if endpoint == "token":
                self._counters["token_requests"] += 1
            faults = self._due_faults(endpoint)
        terminal: str | None = None
        unknown_code = False
        for f in faults:
            if f.action == "delay":
                time.sleep(f.delay)
            elif f.action == "revoke_access_tokens":
                self.revoke_access_tokens()
            elif f.action == "revoke_refresh_token":
                self.revoke_refresh_token(self._request_refresh_token(endpoint, headers, query, body))
            elif f.action == "expire_page_tokens":
                self.expire_page_tokens()
            elif f.action == "delete_records":
                for rid in f.ids:
                    self.delete_record(None, rid)
            elif f.action == "unknown_code":
                unknown_code = True
            elif terminal is None:
                terminal = f.action
        if terminal is not None:
            reply = self._fault_reply(terminal)
        elif endpoint in CRM_ENDPOINTS:
            reply = self._crm(endpoint, route, method, headers, query, body, unknown_code)
        elif endpoint == "token":
            reply = self._token(method, query, headers, body, base_url)
        elif endpoint == "revoke":
            params = {**self._form(headers, body), **query}
            ok = self.revoke_refresh_token(params.get("token", "")) or self._revoke_access(
                params.get("token", "")
            )
            reply = Reply.json(200, {"status": "success"} if ok else {"error": "invalid_code"})
        else:
            reply = Reply.json(404, _NOT_FOUND)
        with self._lock:
            counts = self._status_counts[endpoint]
            key = 0 if reply.reset else reply.status
            counts[key] = counts.get(key, 0) + 1
        return reply

    def _route(self, path: str) -> tuple[str, dict[str, str]]:
        for name, rx in _ROUTES:
            m = rx.match(path)
            if m:
                groups = m.groupdict()
                ver = groups.get("ver")
                if ver is not None and ver not in SUPPORTED_VERSIONS:
                    return "other", {}
                if name.startswith("unblock") and ver not in UNBLOCK_VERSIONS:
                    return "other", {}
                return name, groups
        return "other", {}

    def _revoke_access(self, token: str) -> bool:
        with self._lock:
            at = self._access.get(token)
            if at is None:
                return False
            at.revoked = True
            return True

    def _request_refresh_token(
        self, endpoint: str, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
    ) -> str:
        """The refresh token behind a request (for the revoke_refresh_token fault)."""
        with self._lock:
            if endpoint == "token":
                return {**self._form(headers, body), **query}.get("refresh_token", self.refresh_token)
            at = self._access.get(headers.get("authorization", "").removeprefix("Zoho-oauthtoken ").strip())
            return at.refresh_token if at else self.refresh_token

    @staticmethod
    def _form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        if not body or "json" in headers.get("content-type", ""):
            return {}
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}

    @staticmethod
    def _fault_reply(action: str) -> Reply:
        if action == "500":
            return Reply.json(500, _error("INTERNAL_ERROR", "Internal Server Error"))
        if action in ("502", "503"):
            title = "502 Bad Gateway" if action == "502" else "503 Service Temporarily Unavailable"
            return Reply.html(
                int(action), f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
            )
        if action == "429":
            return Reply.json(429, _TOO_MANY)
        if action == "reset":
            return Reply(0, reset=True)
        if action == "html200":
            return Reply.html(200, "<html><body><h2>Zoho CRM is under maintenance</h2></body></html>")
        if action == "empty200":
            return Reply(200, b"", {"Content-Type": "application/json;charset=UTF-8"})
        return Reply.json(200, {"info": {}})  # missing_data

    def _token(
        self, method: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, base_url: str
    ) -> Reply:
        if method != "POST":
            return Reply.json(400, {"error": "invalid_request", "error_description": "use POST"})
        return Reply.json(200, self.grant_token({**self._form(headers, body), **query}, base_url))

    # ------------------------------------------------------------------ CRM API

    def _crm(
        self,
        endpoint: str,
        route: Mapping[str, str],
        method: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        body: bytes,
        unknown_code: bool,
    ) -> Reply:
        limit = self.config.concurrency_limit
        with self._lock:
            if limit is not None and self._in_flight >= limit:
                self._counters["rejected_429"] += 1
                return Reply.json(429, _TOO_MANY)
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            if self.config.latency > 0:
                time.sleep(self.config.latency)
            with self._lock:
                try:
                    token = self._authenticate(headers)
                    reply = self._dispatch(endpoint, route, method, token, query, body, unknown_code)
                except ZohoError as exc:
                    reply = exc.reply
                used = self._counters["credits_used"]
                if used * 2 >= self.config.credits_per_day:
                    reply.headers["X-API-CREDITS-REMAINING"] = str(max(0, self.config.credits_per_day - used))
                return reply
        finally:
            with self._lock:
                self._in_flight -= 1

    def _authenticate(self, headers: Mapping[str, str]) -> _AccessToken:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme != "Zoho-oauthtoken" or not token.strip():
            raise ZohoError(401, _error("AUTHENTICATION_FAILURE", "Authentication failed"))
        at = self._access.get(token.strip())
        if at is None or not self._access_valid(at):
            raise ZohoError(401, _error("INVALID_TOKEN", "invalid oauth token"))
        return at

    def _check_scope(self, token: _AccessToken, *accepted: str) -> None:
        if not self.config.require_scope:
            return
        have = {s.lower() for s in token.scopes}
        if not have.intersection(a.lower() for a in accepted):
            raise ZohoError(
                401, _error("OAUTH_SCOPE_MISMATCH", "Unauthorized", {"required_scopes": list(accepted)})
            )

    def _charge(self) -> None:
        self._counters["credits_used"] += 1

    def _dispatch(
        self,
        endpoint: str,
        route: Mapping[str, str],
        method: str,
        token: _AccessToken,
        query: Mapping[str, str],
        body: bytes,
        unknown_code: bool,
    ) -> Reply:
        expected = "GET" if endpoint in ("org", "records") else "POST"
        if method != expected:
            raise ZohoError(
                400, _error("INVALID_REQUEST_METHOD", "The http request method type is not a valid one")
            )
        if endpoint == "org":
            self._check_scope(token, "ZohoCRM.org.READ", "ZohoCRM.org.ALL", "ZohoCRM.settings.ALL")
            self._charge()
            return Reply.json(
                200,
                {
                    "org": [
                        {
                            "id": self.org_id,
                            "company_name": "Emulated Zoho Org",
                            "domain_name": f"org{self.org_id}",
                            "primary_email": "admin@example.com",
                            "country_code": "US",
                            "currency": "USD",
                            "time_zone": "UTC",
                            "zgid": self.org_id,
                        }
                    ]
                },
            )
        if endpoint == "coql":
            return self._coql(token, body)
        mod = self.module(route["module"])
        if mod is None:
            raise ZohoError(
                400,
                _error(
                    "INVALID_MODULE",
                    "the module name given seems to be invalid",
                    {"api_name": route["module"]},
                ),
            )
        if endpoint == "records":
            self._check_read_scope(token, mod.name)
            self._charge()
            return self._list(mod, query)
        if not mod.supports_unblock:
            raise ZohoError(
                400,
                _error(
                    "INVALID_MODULE",
                    "the module name given seems to be invalid",
                    {"api_name": route["module"]},
                ),
            )
        m = mod.name
        self._check_scope(
            token,
            f"ZohoCRM.send_mail.{m}.CREATE",
            "ZohoCRM.send_mail.all.CREATE",
            "ZohoCRM.send_mail.ALL",
            f"ZohoCRM.modules.{m}.UPDATE",
            f"ZohoCRM.modules.{m}.ALL",
            "ZohoCRM.modules.ALL",
        )
        self._charge()
        return self._unblock(mod, route.get("id"), body, unknown_code)

    def _check_read_scope(self, token: _AccessToken, module: str) -> None:
        self._check_scope(
            token,
            f"ZohoCRM.modules.{module}.READ",
            f"ZohoCRM.modules.{module}.ALL",
            "ZohoCRM.modules.ALL",
            "ZohoCRM.modules.READ",
        )

    # -- records listing

    @staticmethod
    def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            raise ZohoError(400, _error("INVALID_DATA", f"invalid data for {name}", {"param_name": name}))
        return value

    def _matches(self, mod: Module, view: View | None, start: int) -> Iterator[Record]:
        for i in range(start, len(mod.order)):
            rec = mod.records[str(mod.order[i])]
            if view is None or view.matches(rec):
                yield rec

    def _list(self, mod: Module, query: Mapping[str, str]) -> Reply:
        raw_fields = query.get("fields", "")
        fields = [f.strip() for f in raw_fields.split(",") if f.strip()]
        if not fields:
            raise ZohoError(
                400,
                _error(
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param_name": "fields"},
                ),
            )
        per_page = self._int_param(query, "per_page", 200, 1, 200)
        now = self.now()
        page_token = query.get("page_token")
        cvid = query.get("cvid") or None
        if page_token:
            st = self._page_tokens.get(page_token)
            if st is None or st.expires_at <= now or st.module != mod.name:
                raise ZohoError(
                    400,
                    _error("INVALID_DATA", "Page token is expired or invalid", {"param_name": "page_token"}),
                )
            cvid, skip, page = st.cvid, 0, st.page + 1
            start, served_before = bisect.bisect_right(mod.order, st.last_id), st.served
        else:
            page = self._int_param(query, "page", 1, 1, None)
            if page * per_page > DISCRETE_PAGE_LIMIT:
                raise ZohoError(
                    400,
                    _error(
                        "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                        "cannot fetch more than 2000 records with page; use page_token to fetch more records",
                        {"limit": DISCRETE_PAGE_LIMIT},
                    ),
                )
            skip, start, served_before = (page - 1) * per_page, 0, 0
        view: View | None = None
        if cvid is not None:
            view = self._views.get(cvid)
            if view is None or view.module != mod.name:
                raise ZohoError(400, _error("INVALID_DATA", "invalid data", {"param_name": "cvid"}))
        take = min(per_page, PAGE_TOKEN_RECORD_LIMIT - served_before - skip)
        rows: list[Record] = []
        more = False
        for n, rec in enumerate(self._matches(mod, view, start)):
            if n < skip:
                continue
            if len(rows) >= take:
                more = True
                break
            rows.append(rec)
        if not rows:
            return Reply(204)
        served = served_before + skip + len(rows)
        next_token: str | None = None
        expiry: str | None = None
        if more and served < PAGE_TOKEN_RECORD_LIMIT:
            next_token = secrets.token_hex(24)
            expires = now + self.config.page_token_ttl
            self._page_tokens[next_token] = _PageToken(
                mod.name, cvid, int(rows[-1].id), served, page, expires
            )
            expiry = _iso(expires)
        data = [{"id": r.id, **{f: r.value(f) for f in fields if f != "id"}} for r in rows]
        info = {
            "per_page": per_page,
            "count": len(rows),
            "page": page,
            "sort_by": "id",
            "sort_order": "asc",
            "more_records": more,
            "next_page_token": next_token,
            "previous_page_token": None,
            "page_token_expiry": expiry,
        }
        return Reply.json(200, {"data": data, "info": info})

    # -- COQL

    def _coql(self, token: _AccessToken, body: bytes) -> Reply:
        self._check_scope(token, "ZohoCRM.coql.READ", "ZohoCRM.coql.ALL")
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("select_query"), str):
            raise ZohoError(
                400,
                _error(
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param_name": "select_query"},
                ),
            )
        try:
            q = parse_coql(payload["select_query"])
        except CoqlError as exc:
            raise ZohoError(400, _error(exc.code, exc.message, exc.details)) from exc
        mod = self.module(q.module)
        if mod is None:
            raise ZohoError(
                400,
                _error(
                    "INVALID_QUERY",
                    "invalid query formed",
                    {"reason": "module not supported", "module": q.module},
                ),
            )
        self._check_read_scope(token, mod.name)
        if q.limit > COQL_MAX_LIMIT:
            raise ZohoError(
                400, _error("LIMIT_EXCEEDED", "limit exceeded", {"by": "limit", "limit": COQL_MAX_LIMIT})
            )
        if q.offset + q.limit > COQL_MAX_REACH:
            raise ZohoError(
                400,
                _error(
                    "LIMIT_EXCEEDED",
                    "offset and limit exceed 100000",
                    {"by": "offset", "limit": COQL_MAX_REACH},
                ),
            )
        self._charge()
        matches = [r for r in self._matches(mod, None, 0) if q.where is None or q.where(r)]
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

    # -- Unblock Email

    def _evaluate(self, mod: Module, rec: Record, fields: list[str]) -> tuple[Outcome, list[str]]:
        """Zoho's per-record decision; the one rule used by both unblock and predict_unblock."""
        if rec.locked:
            return "locked", []
        if not all(mod.has_field(f) for f in fields):
            return "field_not_available", []
        states = [(f, rec.email.setdefault(f, EmailState())) for f in fields]
        unblockable = [f for f, s in states if s.blocked == "temporary" and s.unblock_count < MAX_UNBLOCKS]
        if unblockable:
            return "unblocked", unblockable
        if any(s.blocked == "temporary" for _, s in states):
            return "limit_reached", []
        if any(s.blocked == "permanent" for _, s in states):
            return "permanently_blocked", []
        return "already_unblocked", []

    def _unblock_one(
        self, mod: Module, raw_id: Any, fields: list[str], json_path: str | None, unknown_code: bool
    ) -> JSON:
        rid = str(raw_id) if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) else ""
        rec = mod.records.get(rid) if rid.isdigit() else None
        if rec is None:
            details: JSON = {"json_path": json_path} if json_path is not None else {"id": rid}
            return {
                "code": "INVALID_DATA",
                "details": details,
                "message": "Invalid record provided",
                "status": "error",
            }
        if unknown_code:
            return {
                "code": "SOMETHING_NEW",
                "details": {"id": rid},
                "message": "An outcome this client has never seen",
                "status": "error",
            }
        outcome, to_unblock = self._evaluate(mod, rec, fields)
        if outcome == "unblocked":
            for f in to_unblock:
                st = rec.email[f]
                st.blocked = None
                st.unblock_count += 1
            rec.unblock_events.append(self.now())
            self._counters["records_unblocked"] += 1
        code, message = _ITEM_TEXT[outcome]
        return {
            "code": code,
            "details": {"id": rid},
            "message": message,
            "status": "success" if code == "SUCCESS" else "error",
        }

    def _unblock(self, mod: Module, record_id: str | None, body: bytes, unknown_code: bool) -> Reply:
        if not body.strip():
            raise ZohoError(
                400, _error("MANDATORY_NOT_FOUND", "required field not found", {"api_name": "unblock_fields"})
            )
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise ZohoError(400, _error("INVALID_DATA", "body is not a valid JSON", {})) from exc
        if not isinstance(payload, dict):
            raise ZohoError(400, _error("INVALID_DATA", "body must be a JSON object", {}))
        fields = _required_list(payload, "unblock_fields")
        for f in fields:
            if f not in UNBLOCK_FIELDS:
                raise ZohoError(400, _error("NOT_ALLOWED", "unknown field provided", {"api_name": str(f)}))
        wanted = list(dict.fromkeys(fields))
        if record_id is not None:
            self._counters["ids_sent"] += 1
            item = self._unblock_one(mod, record_id, wanted, None, unknown_code)
            status = 200 if item["status"] == "success" else 400
            body_out = item if self.config.single_response_style == "flat" else {"data": [item]}
            return Reply.json(status, body_out)
        ids = _required_list(payload, "ids")
        if len(ids) > self.config.max_ids:
            raise ZohoError(
                400,
                _error(
                    "LIMIT_EXCEEDED", "the number of ids exceeds the limit", {"limit": self.config.max_ids}
                ),
            )
        self._counters["ids_sent"] += len(ids)
        items = [
            self._unblock_one(mod, rid, wanted, f"$.ids[{i}]", unknown_code) for i, rid in enumerate(ids)
        ]
        ok = sum(1 for it in items if it["status"] == "success")
        status = 200 if ok == len(items) else 207 if ok else 400
        return Reply.json(status, {"data": items})

    # ------------------------------------------------------------------ admin

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        """``/_emulator/*``: read and steer the emulator from another process (not counted in stats)."""
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            return Reply.json(400, {"error": "body is not JSON"})
        parts = path.strip("/").split("/")[1:]
        try:
            if method == "GET" and parts == ["stats"]:
                return Reply.json(200, self.stats)
            if method == "GET" and parts == ["health"]:
                return Reply.json(200, {"status": "ok"})
            if method == "GET" and len(parts) == 2 and parts[0] == "records":
                return Reply.json(200, self.records(parts[1]))
            if method == "GET" and len(parts) == 2 and parts[0] == "views":
                return Reply.json(200, {"ids": self.view_ids(parts[1])})
            if method == "POST" and parts == ["faults"]:
                items = payload if isinstance(payload, list) else [payload]
                for item in items:
                    self.add_fault(Fault(**item))
                return Reply.json(200, {"added": len(items)})
            if method == "POST" and parts == ["clear_faults"]:
                self.clear_faults()
                return Reply.json(200, {"status": "ok"})
            if method == "POST" and parts == ["reset_stats"]:
                self.reset_stats()
                return Reply.json(200, {"status": "ok"})
            if method == "POST" and parts == ["advance"]:
                self.advance(float(payload.get("seconds", 0)))
                return Reply.json(200, {"now": self.now()})
            if method == "POST" and parts == ["revoke_access_tokens"]:
                self.revoke_access_tokens()
                return Reply.json(200, {"status": "ok"})
            if method == "POST" and parts == ["expire_access_tokens"]:
                self.expire_access_tokens()
                return Reply.json(200, {"status": "ok"})
            if method == "POST" and parts == ["expire_page_tokens"]:
                self.expire_page_tokens()
                return Reply.json(200, {"status": "ok"})
        except (KeyError, TypeError, ValueError) as exc:
            return Reply.json(400, {"error": str(exc)})
        return Reply.json(404, {"error": f"unknown admin endpoint {method} {path}"})
