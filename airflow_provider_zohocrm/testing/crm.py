"""Zoho CRM's records side: modules, records, custom views, the org, and Get Records paging.

Paging rules modelled (Zoho's Get Records page): ``per_page`` ≤ 200; ``page`` alone reaches the first 2,000
records, then ``DISCRETE_PAGINATION_LIMIT_EXCEEDED``; ``page_token`` (from ``info.next_page_token``) goes on
up to 100,000 records and expires after ``page_token_ttl``; an empty page is HTTP 204 with no body; a custom
view (``cvid``) is a live filter evaluated at read time.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .models import (
    DISCRETE_PAGE_LIMIT,
    ID_BASE,
    JSON,
    PAGE_TOKEN_RECORD_LIMIT,
    VIEW_RECORDS_CREDITS,
    AccessToken,
    EmailState,
    Module,
    OrgState,
    PageToken,
    Record,
    Reply,
    Request,
    View,
    ZohoError,
    error,
    iso,
)
from .routing import route

#: Ids of the system "All <module>" views (custom views added without an id start at 6000000031101).
SYSTEM_VIEW_BASE = 6_000_000_020_001

if TYPE_CHECKING:
    from .backend import EmulatorBackend


class CrmService(OrgState):
    """State operations on modules, records and views (seeding and inspection for tests)."""

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
            # every Zoho module has system views; "All <module>" is the default one and lists every record
            vid = str(SYSTEM_VIEW_BASE + 2 * mod.index)
            label = f"All {name.replace('_', ' ')}"
            self._system_views[vid] = View(
                vid, name, label, None, None, label, "ALLVIEWS", "public_views", True, True, self.now()
            )
            return mod

    def add_field(self, module: str, api_name: str, data_type: str = "text", **metadata: Any) -> None:
        """Declare a field the org added (listed by ``settings/fields``; e.g. a bounce-status picklist)."""
        with self._lock:
            self._require_module(module).custom_fields[api_name] = {"data_type": data_type, **metadata}

    def next_id(self, module: str) -> str:
        """A fresh 19-digit id in the module's id range (``4876876000000`` + 6 digits for Leads)."""
        with self._lock:
            mod = self._require_module(module)
            base = ID_BASE + mod.index * 1_000_000
            return str(max(mod.highest_id + 1, base + 100_001))

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
                mod.highest_id = max(mod.highest_id, max(fresh))
                if mod.order and fresh[0] > mod.order[-1] and fresh == sorted(fresh):
                    mod.order.extend(fresh)
                else:
                    mod.order.extend(fresh)
                    mod.order.sort()

    def add_many_records(
        self,
        module: str,
        count: int,
        *,
        first_id: int | None = None,
        step: int = 1,
        email: bool = True,
    ) -> tuple[int, int]:
        """Seed ``count`` plain records fast (a large org: 1,000,000 in a few seconds): ids ``first_id``,
        ``first_id + step``, … (default: after the module's highest id), each with an ``Email`` address (unless
        ``email`` is false) that is not blocked. Returns the (first, last) id. ``step`` > 1 leaves gaps, as a
        real org's ids have."""
        if count < 0 or step < 1:
            raise ValueError("count must be >= 0 and step >= 1")
        with self._lock:
            mod = self._require_module(module)
            first = first_id if first_id is not None else int(self.next_id(module))
            if first <= mod.highest_id and mod.order:
                raise ValueError(f"first_id {first} is not above the module's highest id {mod.highest_id}")
            ids = range(first, first + count * step, step)
            has_email = mod.has_email and email
            records = mod.records
            for n, rid in enumerate(ids):
                key = str(rid)
                if has_email:
                    records[key] = Record(key, {"Email": f"r{n}@example.com"}, {"Email": EmailState()})
                else:
                    records[key] = Record(key)
            mod.order.extend(ids)
            if count:
                mod.highest_id = max(mod.highest_id, ids[-1])
            return first, (ids[-1] if count else first - step)

    def add_view(
        self,
        module: str,
        cvid: str | None = None,
        name: str = "Custom view",
        criteria: Callable[[Record], bool] | None = None,
        ids: Iterable[str] | None = None,
        *,
        display_value: str | None = None,
        category: str = "public_views",
    ) -> str:
        """Create a custom view (a live filter and/or a fixed id list); returns its cvid."""
        with self._lock:
            mod = self._require_module(module)
            vid = cvid or str(6_000_000_031_001 + 2 * len(self._views) + 100)
            fixed = frozenset(ids) if ids is not None else None
            self._views[vid] = View(
                vid, mod.name, name, criteria, fixed, display_value, None, category, created_at=self.now()
            )
            return vid

    def view(self, cvid: str) -> View | None:
        """A custom view or system view by id."""
        with self._lock:
            return self._views.get(cvid) or self._system_views.get(cvid)

    def views_of(self, module: str) -> list[View]:
        """Every view of a module as Get Custom Views lists them: system views first, then by creation."""
        with self._lock:
            mod = self._require_module(module)
            system = [v for v in self._system_views.values() if v.module == mod.name]
            return system + [v for v in self._views.values() if v.module == mod.name]

    def delete_record(self, module: str | None, record_id: str) -> bool:
        """Delete a record (``module=None``: whichever module holds it); later calls see an invalid id."""
        with self._lock:
            for mod in self._modules.values():
                if (module is None or mod.name == module) and record_id in mod.records:
                    del mod.records[record_id]
                    at = bisect.bisect_left(mod.order, int(record_id))
                    del mod.order[at]
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

    def expire_page_tokens(self) -> None:
        """Drop every page token: the next page_token request answers INVALID_DATA."""
        with self._lock:
            self._page_tokens.clear()

    # -- inspection

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
            view = self.view(cvid)
            if view is None:
                raise KeyError(f"unknown view {cvid!r}")
            mod = self._modules[view.module]
            return [str(i) for i in mod.order if view.matches(mod.records[str(i)])]

    # -- rules shared by the CRM handlers

    def module_or_400(self, name: str | None, code: str = "INVALID_MODULE") -> Module:
        """The module a request names, or Zoho's 400 INVALID_MODULE."""
        mod = self.module(name) if name else None
        if mod is None:
            raise ZohoError(
                400, error(code, "the module name given seems to be invalid", {"api_name": name or ""})
            )
        return mod

    def check_read_scope(self, token: AccessToken, module: str) -> None:
        """Scopes that let a token read a module's records."""
        self.check_scope(
            token,
            f"ZohoCRM.modules.{module}.READ",
            f"ZohoCRM.modules.{module}.ALL",
            "ZohoCRM.modules.ALL",
            "ZohoCRM.modules.READ",
        )

    def org_details(self) -> JSON:
        """The org as ``GET /org`` shows it."""
        return {
            "id": self.org_id,
            "company_name": "Emulated Zoho Org",
            "domain_name": f"org{self.org_id}",
            "primary_email": "admin@example.com",
            "country_code": "US",
            "currency": "USD",
            "time_zone": "UTC",
            "zgid": self.org_id,
        }


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    """An integer query parameter within bounds, or Zoho's 400 INVALID_DATA naming it."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        raise ZohoError(400, error("INVALID_DATA", f"invalid data for {name}", {"param_name": name}))
    return value


# --------------------------------------------------------------------------------------------- routes


@route("org", "/crm/{ver}/org")
def org(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /crm/{v}/org``: the org's details (the SDK reads it after each new token)."""
    backend.check_scope(req.access_token, "ZohoCRM.org.READ", "ZohoCRM.org.ALL", "ZohoCRM.settings.ALL")
    backend.charge()
    return Reply.json(200, {"org": [backend.org_details()]})


@route("records", "/crm/{ver}/{module}")
def records(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /crm/{v}/{module}?fields=…[&cvid=…][&page=…|&page_token=…]``."""
    mod = backend.module_or_400(req.params["module"])
    backend.check_read_scope(req.access_token, mod.name)
    return _list(backend, mod, req.query)


def _list(backend: EmulatorBackend, mod: Module, query: Mapping[str, str]) -> Reply:
    raw_fields = query.get("fields", "")
    fields = [f.strip() for f in raw_fields.split(",") if f.strip()]
    if not fields:
        raise ZohoError(
            400,
            error(
                "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "fields"}
            ),
        )
    per_page = int_param(query, "per_page", 200, 1, 200)
    now = backend.now()
    page_token = query.get("page_token")
    cvid = query.get("cvid") or None
    if page_token:
        st = backend._page_tokens.get(page_token)
        if st is None or st.expires_at <= now or st.module != mod.name:
            raise ZohoError(
                400, error("INVALID_DATA", "Page token is expired or invalid", {"param_name": "page_token"})
            )
        cvid, skip, page = st.cvid, 0, st.page + 1
        start, served_before = bisect.bisect_right(mod.order, st.last_id), st.served
    else:
        page = int_param(query, "page", 1, 1, None)
        if page * per_page > DISCRETE_PAGE_LIMIT:
            raise ZohoError(
                400,
                error(
                    "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                    "cannot fetch more than 2000 records with page; use page_token to fetch more records",
                    {"limit": DISCRETE_PAGE_LIMIT},
                ),
            )
        skip, start, served_before = (page - 1) * per_page, 0, 0
    view: View | None = None
    if cvid is not None:
        view = backend.view(cvid)
        if view is None or view.module != mod.name:
            raise ZohoError(400, error("INVALID_DATA", "invalid data", {"param_name": "cvid"}))
    # Credits: 3 for a custom view's listing (a page_token page continues the same cvid query), else 1.
    backend.charge(VIEW_RECORDS_CREDITS if cvid is not None else 1)
    take = min(per_page, PAGE_TOKEN_RECORD_LIMIT - served_before - skip)
    rows: list[Record] = []
    more = False
    for n, rec in enumerate(backend._matches(mod, view, start)):
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
        expires = now + backend.config.page_token_ttl
        backend._page_tokens[next_token] = PageToken(mod.name, cvid, int(rows[-1].id), served, page, expires)
        expiry = iso(expires)
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
