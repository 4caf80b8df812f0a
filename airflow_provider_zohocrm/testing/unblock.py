"""Zoho CRM's Unblock Email API: single and bulk, with Zoho's per-record rules.

Rules modelled (Zoho's Unblock Email page, v6 to v8): up to ``max_ids`` (500) ids per bulk call; a permanently
blocked (hard-bounced) address cannot be unblocked; a temporarily blocked one at most 5 times; only ``Email``
and ``Secondary_Email`` can be unblocked; locked records (approval/review) are refused. Bulk answers are
per record in request order, HTTP 200 (all succeeded) / 207 (some) / 400 (none, with the same ``data[]``); an
invalid id carries ``details.json_path`` instead of ``details.id``. Scope: ``ZohoCRM.send_mail.{module}.CREATE``
(v7/v8 docs) or ``ZohoCRM.modules.{module}.UPDATE`` (v6 docs, OAS).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from .models import (
    JSON,
    MAX_UNBLOCKS,
    UNBLOCK_FIELDS,
    UNBLOCK_VERSIONS,
    EmailState,
    Module,
    OrgState,
    Record,
    Reply,
    Request,
    ZohoError,
    error,
    required_list,
)
from .routing import route

if TYPE_CHECKING:
    from .backend import EmulatorBackend

#: Outcome names, also returned by :meth:`UnblockService.predict_unblock`.
Outcome = Literal[
    "unblocked",
    "already_unblocked",
    "permanently_blocked",
    "limit_reached",
    "invalid_record",
    "locked",
    "field_not_available",
]
ITEM_TEXT: dict[str, tuple[str, str]] = {
    "unblocked": ("SUCCESS", "Unblocked successfully"),
    "already_unblocked": ("NOT_ALLOWED", "Email is already unblocked"),
    "permanently_blocked": ("NOT_ALLOWED", "Cannot unblock, Email is blocked permanently"),
    "limit_reached": ("NOT_ALLOWED", "Cannot unblock, email has been unblocked 5 times already"),
    "locked": ("NOT_ALLOWED", "Record is locked or in an approval process"),
    "field_not_available": ("NOT_ALLOWED", "EMAIL, SECONDARY_EMAIL field not available for module"),
}
#: Set by the ``unknown_code`` fault: every known record answers a code no client has seen.
UNKNOWN_CODE_FLAG = "unknown_code"


class UnblockService(OrgState):
    """Zoho's per-record unblock decision, shared by the endpoints and :meth:`predict_unblock`."""

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
                st.unblocked_at.append(self.now())
            rec.unblock_events.append(self.now())
            self._counters["records_unblocked"] += 1
        code, message = ITEM_TEXT[outcome]
        return {
            "code": code,
            "details": {"id": rid},
            "message": message,
            "status": "success" if code == "SUCCESS" else "error",
        }


# --------------------------------------------------------------------------------------------- routes


def _prepare(backend: EmulatorBackend, req: Request) -> tuple[Module, list[str], dict[str, Any]]:
    """Request-level checks shared by both forms: module, scope, body, ``unblock_fields``."""
    mod = backend.module_or_400(req.params["module"])
    if not mod.supports_unblock:
        raise ZohoError(
            400,
            error(
                "INVALID_MODULE",
                "the module name given seems to be invalid",
                {"api_name": req.params["module"]},
            ),
        )
    m = mod.name
    backend.check_scope(
        req.access_token,
        f"ZohoCRM.send_mail.{m}.CREATE",
        "ZohoCRM.send_mail.all.CREATE",
        "ZohoCRM.send_mail.ALL",
        f"ZohoCRM.modules.{m}.UPDATE",
        f"ZohoCRM.modules.{m}.ALL",
        "ZohoCRM.modules.ALL",
    )
    backend.charge()
    body = req.body
    if not body.strip():
        raise ZohoError(
            400, error("MANDATORY_NOT_FOUND", "required field not found", {"api_name": "unblock_fields"})
        )
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ZohoError(400, error("INVALID_DATA", "body is not a valid JSON", {})) from exc
    if not isinstance(payload, dict):
        raise ZohoError(400, error("INVALID_DATA", "body must be a JSON object", {}))
    fields = required_list(payload, "unblock_fields")
    for f in fields:
        if f not in UNBLOCK_FIELDS:
            raise ZohoError(400, error("NOT_ALLOWED", "unknown field provided", {"api_name": str(f)}))
    wanted = list(dict.fromkeys(fields))
    missing = [f for f in wanted if not mod.has_field(f)]
    if missing and backend.config.unavailable_field_style == "request":
        message = ITEM_TEXT["field_not_available"][1]
        raise ZohoError(400, error("NOT_ALLOWED", message, {"api_name": missing[0]}))
    return mod, wanted, payload


@route(
    "unblock_single",
    "/crm/{ver}/{module}/{id}/actions/unblock_email",
    "POST",
    versions=UNBLOCK_VERSIONS,
)
def unblock_single(backend: EmulatorBackend, req: Request) -> Reply:
    """``POST /crm/{v}/{module}/{id}/actions/unblock_email``: wrapped ``{"data": [item]}`` or flat item."""
    mod, wanted, _ = _prepare(backend, req)
    backend.count("ids_sent")
    item = backend._unblock_one(mod, req.params["id"], wanted, None, UNKNOWN_CODE_FLAG in req.flags)
    status = 200 if item["status"] == "success" else 400
    body_out = item if backend.config.single_response_style == "flat" else {"data": [item]}
    return Reply.json(status, body_out)


@route("unblock_bulk", "/crm/{ver}/{module}/actions/unblock_email", "POST", versions=UNBLOCK_VERSIONS)
def unblock_bulk(backend: EmulatorBackend, req: Request) -> Reply:
    """``POST /crm/{v}/{module}/actions/unblock_email`` with ``ids``: per-record answers, 200/207/400."""
    mod, wanted, payload = _prepare(backend, req)
    ids = required_list(payload, "ids")
    limit = backend.config.max_ids
    if len(ids) > limit:
        raise ZohoError(400, error("LIMIT_EXCEEDED", "the number of ids exceeds the limit", {"limit": limit}))
    backend.count("ids_sent", len(ids))
    unknown = UNKNOWN_CODE_FLAG in req.flags
    items = [backend._unblock_one(mod, rid, wanted, f"$.ids[{i}]", unknown) for i, rid in enumerate(ids)]
    ok = sum(1 for it in items if it["status"] == "success")
    status = 200 if ok == len(items) else 207 if ok else 400
    return Reply.json(status, {"data": items})
