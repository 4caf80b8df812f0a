"""The Zoho CRM emulator's backend: one object joining every emulated Zoho service, and the request dispatcher.

Layout (moto-style: state apart from request handling, one module per Zoho service)::

    models.py    state and data: EmulatorConfig, Fault, Record, Module, View, tokens, Reply, Request, OrgState
    routing.py   the route table (@route) and the fault-action registry (@fault_effect / @fault_reply)
    accounts.py  accounts server: OAuth clients and tokens, grant/revoke, throttling, Authorization check
    crm.py       CRM records: modules, records, custom views, org, Get Records paging
    settings.py  CRM settings and users: users?type=CurrentUser, settings/fields, settings/custom_views
    coql.py      COQL parser and evaluation
    unblock.py   Unblock Email (single and bulk) and its per-record rules
    admin.py     scripted faults and the /_emulator/* admin endpoints
    backend.py   this facade: EmulatorBackend + handle() (the server only moves bytes to it)

One ``RLock`` guards all state; latency and fault delays are slept *outside* it so concurrent requests
really overlap (that is what the concurrency limit and the provider's parallelism are tested against).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote, urlsplit

# Every service module registers its routes on import. A new service: add it to this import (its mixin class,
# if it keeps state, to EmulatorBackend's bases) and give each handler a @route(...) line.
from . import accounts, admin, coql, crm, emails, settings, tags, unblock  # noqa: F401
from .accounts import AccountsService, token_fingerprint
from .admin import TOO_MANY, FaultService
from .coql import CoqlError, CoqlQuery, Predicate, parse_coql
from .crm import CrmService
from .emails import EmailsService
from .models import (
    COQL_DEFAULT_LIMIT,
    COQL_MAX_LIMIT,
    COQL_MAX_REACH,
    DEFAULT_SCOPES,
    DISCRETE_PAGE_LIMIT,
    ID_BASE,
    JSON,
    MAX_UNBLOCKS,
    OTHER_MODULES,
    PAGE_TOKEN_RECORD_LIMIT,
    SUPPORTED_VERSIONS,
    UNBLOCK_FIELDS,
    UNBLOCK_MODULES,
    UNBLOCK_VERSIONS,
    EmailState,
    EmulatorConfig,
    Fault,
    Module,
    Record,
    Reply,
    Request,
    View,
    ZohoError,
    error,
)
from .routing import (
    FAULT_ACTIONS,
    FAULT_EFFECTS,
    FAULT_REPLIES,
    FAULT_WRAPS,
    OTHER,
    ROUTES,
    Route,
    endpoint_names,
    match,
)
from .settings import SettingsService
from .tags import TagsService
from .unblock import Outcome, UnblockService

__all__ = [
    "COQL_DEFAULT_LIMIT",
    "COQL_MAX_LIMIT",
    "COQL_MAX_REACH",
    "CRM_ENDPOINTS",
    "DEFAULT_SCOPES",
    "DISCRETE_PAGE_LIMIT",
    "ENDPOINTS",
    "FAULT_ACTIONS",
    "FAULT_ENDPOINTS",
    "ID_BASE",
    "JSON",
    "MAX_UNBLOCKS",
    "OTHER_MODULES",
    "PAGE_TOKEN_RECORD_LIMIT",
    "SUPPORTED_VERSIONS",
    "UNBLOCK_FIELDS",
    "UNBLOCK_MODULES",
    "UNBLOCK_VERSIONS",
    "CoqlError",
    "CoqlQuery",
    "EmailState",
    "EmulatorBackend",
    "EmulatorConfig",
    "Fault",
    "Module",
    "Outcome",
    "Predicate",
    "Record",
    "Reply",
    "Request",
    "View",
    "ZohoError",
    "parse_coql",
]

#: Counted endpoint names (keys of ``stats["requests"]``), ``other`` last.
ENDPOINTS = endpoint_names()
CRM_ENDPOINTS = frozenset(r.name for r in ROUTES if r.service == "crm")
FAULT_ENDPOINTS = frozenset({*ENDPOINTS, "any"})
_NOT_FOUND = error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")
_COUNTERS = (
    "ids_sent",
    "records_unblocked",
    "rejected_429",
    "credits_used",
    "token_requests",
    "tokens_issued",
    "token_throttled",
    "faults_fired",
)


class EmulatorBackend(
    AccountsService, CrmService, SettingsService, UnblockService, FaultService, EmailsService, TagsService
):
    """The emulated Zoho accounts server + CRM org: state, rules, accounting and faults."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        super().__init__(config)
        for name, (has_email, has_secondary) in UNBLOCK_MODULES.items():
            self.add_module(name, has_email=has_email, has_secondary_email=has_secondary)
        for name in OTHER_MODULES:
            self.add_module(name, has_email=False, supports_unblock=False)
        self.client_id, self.client_secret = self.add_client()
        self.refresh_token = self.add_refresh_token(self.client_id, scopes=list(DEFAULT_SCOPES))
        self.reset_stats()

    # ------------------------------------------------------------------ accounting

    @property
    def stats(self) -> JSON:
        """Consistent snapshot of the counters (JSON-able apart from int status keys)."""
        with self._lock:
            snap: JSON = {
                "requests": dict(self._requests),
                "status_counts": {ep: dict(c) for ep, c in self._status_counts.items()},
                **dict(self._counters.items()),
                "peak_concurrency": self._peak,
                "in_flight": self._in_flight,
                # named by fingerprint: the stats endpoint is unauthenticated (issue 31)
                "token_issue_times": {
                    token_fingerprint(rt): list(s.issue_times) for rt, s in self._refresh.items()
                },
                "faults_pending": len(self._faults),
                "credits_by_endpoint": dict(self._credits_by_endpoint),
                "coql_max_reach": self._coql_max_reach,
            }
            snap.update(self._requests)
            return snap

    def reset_stats(self) -> None:
        """Zero every counter (record state and unblock events are kept)."""
        with self._lock:
            names = endpoint_names()
            self._requests = dict.fromkeys(names, 0)
            self._status_counts = {ep: {} for ep in names}
            self._counters = dict.fromkeys(_COUNTERS, 0)
            self._credits_by_endpoint = {}
            self._coql_max_reach = 0
            self._peak = 0

    # ------------------------------------------------------------------ request entry point

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, base_url: str
    ) -> Reply:
        """Answer one HTTP request (``headers`` keys lower-case); the server only moves bytes."""
        split = urlsplit(target)
        path = unquote(split.path)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        req = Request(method, path, query, headers, body, base_url)
        found = match(path)
        if path.startswith("/_emulator/"):
            return self._serve_admin(found, req)
        rt: Route | None = None
        if found is not None and found[0].service != "admin":
            rt, req.params = found
        req.endpoint = rt.name if rt is not None else OTHER
        with self._lock:
            self._requests[req.endpoint] = self._requests.get(req.endpoint, 0) + 1
            if req.endpoint == "token":
                self._counters["token_requests"] += 1
            faults = self._due_faults(req.endpoint)
        terminal: str | None = None
        wrap: Fault | None = None
        for f in faults:
            if f.action in FAULT_EFFECTS:
                FAULT_EFFECTS[f.action](self, req, f)
            elif f.action in FAULT_WRAPS:
                wrap = wrap or f
            elif terminal is None:
                terminal = f.action

        def serve() -> Reply:
            if rt is None:
                return Reply.json(404, _NOT_FOUND)
            return self._serve_crm(rt, req) if rt.service == "crm" else self._serve_accounts(rt, req)

        if terminal is not None:
            reply = FAULT_REPLIES[terminal]()
        elif wrap is not None:
            reply = FAULT_WRAPS[wrap.action](self, req, wrap, serve)
        else:
            reply = serve()
        with self._lock:
            counts = self._status_counts.setdefault(req.endpoint, {})
            key = 0 if reply.reset else reply.status
            counts[key] = counts.get(key, 0) + 1
        return reply

    def _serve_accounts(self, rt: Route, req: Request) -> Reply:
        """The accounts server: no Authorization, its own error shape (``{"error": …}``)."""
        if not rt.allows(req.method):
            methods = "/".join(sorted(rt.methods))
            return Reply.json(400, {"error": "invalid_request", "error_description": f"use {methods}"})
        try:
            return rt.handler(self, req)
        except ZohoError as exc:
            return exc.reply

    def _serve_crm(self, rt: Route, req: Request) -> Reply:
        """The CRM API: concurrency limit, latency, authentication, method, handler, credits header."""
        limit = self.config.concurrency_limit
        with self._lock:
            if limit is not None and self._in_flight >= limit:
                self._counters["rejected_429"] += 1
                return Reply.json(429, TOO_MANY)
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            if self.config.latency > 0:
                time.sleep(self.config.latency)
            with self._lock:
                charged = self._counters["credits_used"]
                try:
                    req.token = self.authenticate(req.headers)
                    if not rt.allows(req.method):
                        raise ZohoError(
                            400,
                            error(
                                "INVALID_REQUEST_METHOD", "The http request method type is not a valid one"
                            ),
                        )
                    reply = rt.handler(self, req)
                except ZohoError as exc:
                    reply = exc.reply
                used = self._counters["credits_used"]
                if used > charged:
                    ep = req.endpoint
                    self._credits_by_endpoint[ep] = self._credits_by_endpoint.get(ep, 0) + used - charged
                if used * 2 >= self.config.credits_per_day:
                    reply.headers["X-API-CREDITS-REMAINING"] = str(max(0, self.config.credits_per_day - used))
                return reply
        finally:
            with self._lock:
                self._in_flight -= 1

    def _serve_admin(self, found: tuple[Route, dict[str, str]] | None, req: Request) -> Reply:
        """``/_emulator/*``: not counted in stats, no faults, bad input answers 400 ``{"error": …}``."""
        if found is None or found[0].service != "admin" or not found[0].allows(req.method):
            return Reply.json(404, {"error": f"unknown admin endpoint {req.method} {req.path}"})
        rt, req.params = found
        try:
            return rt.handler(self, req)
        except (KeyError, TypeError, ValueError) as exc:
            return Reply.json(400, {"error": str(exc)})
