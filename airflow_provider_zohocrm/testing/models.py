"""The emulated org's state: records, modules, views, tokens, config and faults (no request handling here).

Like moto's per-service ``models.py``: plain data classes plus :class:`OrgState`, the container every service
module's mixin works on. The rules that read and change this state live in the service modules
(``accounts``, ``crm``, ``settings``, ``coql``, ``unblock``, ``admin``); ``backend.EmulatorBackend`` joins them.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs

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

# --------------------------------------------------------------------------------------------- API credits
# What each call costs, the emulator's own reading of Zoho's published weights (it is the oracle a client's own
# count is compared with, so it shares no code with ``zoho/credits.py``):
# - COQL by LIMIT: 1 credit for 1-200, 2 for 201-1,000, 3 for 1,001-2,000 (Zoho's Query API overview, v4+ and
#   the vertical-solutions COQL overview: "API Credits based on the value of LIMIT").
# - Get Records with a custom view (``cvid``): 3 credits (secondary copies of Zoho's v8 API-limits weight
#   table; /work/shared/zoho-crm-notes.md section 9). Assumed: a ``page_token`` page of a view listing costs
#   the same as its first page, since the token continues the same cvid query.
# - Add Tags to multiple records: 1 credit per 50 records, rounded up (secondary: Zoho's Vertical Solutions
#   API-limits page, same platform).
# - Everything else 1 ("Each API call made will result in a reduction of 1 credit", Zoho's API limits page).
#   The Emails related list and Unblock Email have no line of their own in the table: 1 each is an assumption.
COQL_CREDIT_STEPS = ((200, 1), (1000, 2), (2000, 3))
VIEW_RECORDS_CREDITS = 3
TAG_RECORDS_PER_CREDIT = 50


def coql_credits(limit: int) -> int:
    """Credits of one COQL call with this LIMIT."""
    for upto, credits in COQL_CREDIT_STEPS:
        if limit <= upto:
            return credits
    return COQL_CREDIT_STEPS[-1][1]


def tag_credits(n_records: int) -> int:
    """Credits of one Add Tags call over ``n_records`` records (at least 1)."""
    return max(1, -(-n_records // TAG_RECORDS_PER_CREDIT))


DEFAULT_SCOPES = (
    "ZohoCRM.modules.ALL",
    "ZohoCRM.send_mail.all.CREATE",
    "ZohoCRM.coql.READ",
    "ZohoCRM.settings.ALL",
    "ZohoCRM.org.READ",
    "ZohoCRM.users.READ",
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


def hex_token() -> str:
    """Zoho-looking opaque token ``1000.<hex>.<hex>``."""
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


def error(code: str, message: str, details: JSON | None = None) -> JSON:
    """Zoho's call-level error shape."""
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


def iso(ts: float) -> str:
    """ISO-8601 time with offset, like Zoho's ``page_token_expiry``."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def required_list(payload: dict[str, Any], name: str) -> list[Any]:
    """A mandatory JSON array of the request body, with Zoho's errors when it is missing or not an array."""
    value = payload.get(name)
    if value is None or value == []:
        raise ZohoError(400, error("MANDATORY_NOT_FOUND", "required field not found", {"api_name": name}))
    if not isinstance(value, list):
        raise ZohoError(
            400, error("INVALID_DATA", "invalid data", {"api_name": name, "expected_data_type": "jsonarray"})
        )
    return value


# --------------------------------------------------------------------------------------------- config, faults

#: What a :class:`Fault` may name. ``routing`` fills both as each service registers its routes and fault actions;
#: the package's ``__init__`` loads every service, so they are complete before any Fault can be made (kept here,
#: not read from ``routing``, so that this module imports nothing of the package: no import circle).
FAULT_ENDPOINTS: set[str] = {"any"}
FAULT_ACTIONS: set[str] = set()


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
    #: Single-record unblock answer: ``wrapped`` ``{"data": [item]}`` (what Zoho's SDKs parse, the default) or
    #: ``flat`` (the bare item, as the v8 OAS example shows).
    single_response_style: Literal["wrapped", "flat"] = "wrapped"
    #: An email field the module lacks (e.g. Secondary_Email on a custom module): ``request`` answers a call-level
    #: 400 NOT_ALLOWED before any id is looked at, like "unknown field provided" (Zoho's error list gives both as
    #: request errors; no doc shows a per-record form); ``record`` answers one NOT_ALLOWED item per id instead.
    unavailable_field_style: Literal["request", "record"] = "request"
    legacy_expires: bool = False
    max_ids: int = 500
    require_scope: bool = True
    credits_per_day: int = 50_000
    #: The ``api_domain`` token answers name (default: the emulator's own URL). Set it to a Zoho domain, e.g.
    #: ``https://www.zohoapis.eu``, to test a client's data-center handling with that host routed here.
    advertised_api_domain: str | None = None
    #: Whether token answers carry ``scope`` (Zoho's CRM docs show it; some other Zoho docs leave it out).
    scope_in_token_answer: bool = True
    #: How an email's ``to`` is written in the Emails list: ``objects`` ``[{"user_name", "email"}]`` (Zoho's
    #: documented shape, the default), ``text`` one string ``"Kim <k@x.org>, Lee <l@y.org>"``, or
    #: ``object_text`` ``[{"email": "Kim <k@x.org>"}]`` (display names inside the address field).
    emails_to_shape: Literal["objects", "text", "object_text"] = "objects"
    #: The keys of COQL rows: ``as_written`` echoes each selected field as the query spelled it (``email``),
    #: ``api_name`` answers the field's API name (``Email``). Values are found case-insensitively either way.
    coql_keys: Literal["as_written", "api_name"] = "as_written"


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
    #: For ``add_records``: the ids of records someone creates just before it (in ``module``, with an Email).
    ids: tuple[str, ...] = ()
    #: For ``add_records``: the module the new records go to.
    module: str = "Leads"
    #: For ``redirect_307``/``redirect_308``: the ``Location`` to send the client to.
    location: str = ""
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


# --------------------------------------------------------------------------------------------- CRM data


@dataclass(slots=True)
class EmailState:
    """Bounce state of one email field: ``blocked`` is None, "temporary" or "permanent".

    ``unblocked_at`` holds the times the API unblocked this field (Zoho unblocks field by field), so tests can
    show which fields an unblock call really reached."""

    blocked: str | None = None
    unblock_count: int = 0
    unblocked_at: list[float] = field(default_factory=list)


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
            #: per email field, when the API unblocked it (which fields each call really reached)
            "field_unblock_events": {k: list(v.unblocked_at) for k, v in self.email.items()},
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
    #: the highest id this module ever held: like Zoho, a deleted record's id is never given again
    highest_id: int = 0
    #: Fields the org added (api name -> metadata overrides, at least ``data_type``), listed by settings/fields.
    custom_fields: dict[str, JSON] = field(default_factory=dict)

    def has_field(self, name: str) -> bool:
        """Whether an unblockable email field exists in this module."""
        return (name == "Email" and self.has_email) or (
            name == "Secondary_Email" and self.has_secondary_email
        )


@dataclass
class View:
    """A custom view: a live filter (like Zoho's) or a fixed id list, with what Get Custom Views shows of it."""

    cvid: str
    module: str
    name: str
    criteria: Callable[[Record], bool] | None = None
    ids: frozenset[str] | None = None
    #: ``display_value`` differs from ``name`` for system views only in localised orgs; default: the name.
    display_value: str | None = None
    #: ``ALLVIEWS``-style name of a system view; None for views users create.
    system_name: str | None = None
    #: Zoho's categories: ``created_by_me``, ``shared_with_me``, ``public_views``, ``other_users_views``.
    category: str = "public_views"
    default: bool = False
    system_defined: bool = False
    created_at: float = 0.0

    def matches(self, rec: Record) -> bool:
        """Membership is evaluated at read time, so unblocked records leave a bounce-filtered view."""
        if self.ids is not None and rec.id not in self.ids:
            return False
        return self.criteria is None or self.criteria(rec)


@dataclass
class PageToken:
    """Where a ``page_token`` listing continues (module, view, last id served, count served so far)."""

    module: str
    cvid: str | None
    last_id: int
    served: int
    page: int
    expires_at: float


# --------------------------------------------------------------------------------------------- OAuth data


@dataclass
class RefreshToken:
    """A refresh token with its scopes and the history the accounts server's limits are computed from."""

    token: str
    client_id: str
    scopes: list[str]
    revoked: bool = False
    issue_times: list[float] = field(default_factory=list)
    attempt_times: list[float] = field(default_factory=list)
    throttled_until: float = 0.0
    live: list[str] = field(default_factory=list)


@dataclass
class AccessToken:
    """An access token minted from a refresh token (it carries the refresh token's scopes)."""

    token: str
    refresh_token: str
    scopes: list[str]
    expires_at: float
    revoked: bool = False


# --------------------------------------------------------------------------------------------- HTTP data


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


@dataclass
class Request:
    """One request as a service handler sees it (``headers`` keys lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    base_url: str
    #: Route name (the key in ``stats["requests"]``) and the route template's ``{…}`` values.
    endpoint: str = "other"
    params: dict[str, str] = field(default_factory=dict)
    #: Set by the dispatcher for CRM routes once the ``Authorization`` header checked out.
    token: AccessToken | None = None
    #: Set by non-terminal fault actions (e.g. ``unknown_code``) for the handler to act on.
    flags: set[str] = field(default_factory=set)

    @property
    def access_token(self) -> AccessToken:
        """The authenticated access token (CRM routes only)."""
        if self.token is None:
            raise RuntimeError(f"{self.endpoint} is not an authenticated route")
        return self.token

    def form(self) -> dict[str, str]:
        """Form-encoded body fields (empty for JSON bodies)."""
        if not self.body or "json" in self.headers.get("content-type", ""):
            return {}
        text = self.body.decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def params_and_form(self) -> dict[str, str]:
        """Form fields overlaid by query parameters (Zoho's accounts server reads both)."""
        return {**self.form(), **self.query}


class ZohoError(Exception):
    """Internal: aborts request handling with a call-level error reply."""

    def __init__(self, status: int, payload: JSON) -> None:
        super().__init__(payload.get("code"))
        self.reply = Reply.json(status, payload)


# --------------------------------------------------------------------------------------------- the state


class OrgState:
    """Every piece of mutable state of one emulated org, guarded by one ``RLock``.

    Service mixins (``accounts.AccountsService``, ``crm.CrmService``, …) subclass this and add the rules.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._lock = threading.RLock()
        self._offset = 0.0
        self._clients: dict[str, str] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._access: dict[str, AccessToken] = {}
        self._modules: dict[str, Module] = {}
        self._views: dict[str, View] = {}
        self._system_views: dict[str, View] = {}
        self._page_tokens: dict[str, PageToken] = {}
        self._faults: list[Fault] = []
        self._in_flight = 0
        self._peak = 0
        self._requests: dict[str, int] = {}
        self._status_counts: dict[str, dict[int, int]] = {}
        self._counters: dict[str, int] = {}
        self._credits_by_endpoint: dict[str, int] = {}
        #: The largest ``offset + limit`` a COQL call asked for since the stats were reset (0: none).
        self._coql_max_reach = 0
        self.org_id = "60000000001"
        self.client_id = ""
        self.client_secret = ""
        self.refresh_token = ""

    # -- clock

    def now(self) -> float:
        """Emulated wall clock: real time plus whatever tests advanced."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward so token windows and expiries are tested without sleeping."""
        with self._lock:
            self._offset += seconds

    # -- accounting shared by every service

    def charge(self, credits: int = 1) -> None:
        """Count API credits for the call being served (most Zoho calls cost 1; see the weights above). The
        dispatcher also books them per endpoint (``stats["credits_by_endpoint"]``)."""
        self._counters["credits_used"] += credits

    def count(self, counter: str, n: int = 1) -> None:
        """Bump a named counter of :attr:`EmulatorBackend.stats <.backend.EmulatorBackend.stats>` (e.g. ``ids_sent``)."""
        self._counters[counter] = self._counters.get(counter, 0) + n

    def check_scope(self, token: AccessToken, *accepted: str) -> None:
        """Zoho's 401 OAUTH_SCOPE_MISMATCH unless the token has one of the accepted scopes (case-insensitive)."""
        if not self.config.require_scope:
            return
        have = {s.lower() for s in token.scopes}
        if not have.intersection(a.lower() for a in accepted):
            raise ZohoError(
                401, error("OAUTH_SCOPE_MISMATCH", "Unauthorized", {"required_scopes": list(accepted)})
            )

    # -- lookups shared by every service

    def module(self, name: str) -> Module | None:
        """Module by API name, case-insensitively (Zoho accepts ``leads`` as well as ``Leads``)."""
        with self._lock:
            mod = self._modules.get(name)
            if mod is None:
                low = name.lower()
                mod = next((m for m in self._modules.values() if m.name.lower() == low), None)
            return mod

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

    def _matches(self, mod: Module, view: View | None, start: int) -> Iterable[Record]:
        """Records of a module in id order from position ``start``, optionally filtered by a view."""
        for i in range(start, len(mod.order)):
            rec = mod.records[str(mod.order[i])]
            if view is None or view.matches(rec):
                yield rec
