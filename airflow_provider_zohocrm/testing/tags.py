"""Add Tags (``POST /crm/{v}/{module}/actions/add_tags`` and ``/{module}/{id}/actions/add_tags``).

Rules modelled, with their sources (Zoho's "Add Tags to Records" pages v3-v8, the v8 OpenAPI file
``tags_actions.json`` of ``zoho/crm-oas``, the v8 Python SDK ``zohocrmsdk8-0``, and
/work/shared/zoho-crm-notes.md):
- Body ``{"tags": [{"name", "id", "color_code"}], "ids": [...], "over_write": false}``; ``ids`` only in the
  bulk form, at most 500 (more → 400 ``LIMIT_EXCEEDED``). The OAS types ``ids`` as a JSON-array *string*, so a
  string holding a JSON array (or comma-separated ids) is accepted too. ``over_write`` may also come as a
  query parameter (the SDK's ``AddTagsToMultipleRecordsParam``); default false. v2/v2.1's query form (``ids``,
  ``tag_names``) works too.
- A tag's ``id`` takes precedence over its name; an unknown id → 400 ``INVALID_DATA`` "invalid tag id". A new
  name creates the tag; a name longer than 25 characters → 400 ``INVALID_DATA``.
- At most 100 tags per module: a call that would create the 101st → 400 ``LIMIT_EXCEEDED``, nothing changes.
- At most 10 tags per record: that record's item is ``LIMIT_EXCEEDED`` (its tags unchanged); others proceed.
  (The SDK's error enum spells a code ``LIMIT_REACHED``; we use ``LIMIT_EXCEEDED`` as Zoho's docs do.)
- Per-record answers in request order: ``{"code": "SUCCESS", "details": {"id", "tags": [{"name", "id",
  "color_code"}]}, "message": "tags updated successfully", "status": "success"}`` (``details.tags`` = the
  record's tags afterwards, ≤ 10, as the OAS ``DetailsNested``); a locked record → ``RECORD_LOCKED``; an
  unknown id → ``INVALID_DATA`` with ``json_path``. The body also carries ``success_count`` and
  ``locked_count``. HTTP 200 when all succeed, 207 when some do, 400 (same body) when none do (assumed, like
  Unblock Email).
- Scope: the docs name ``ZohoCRM.modules.ALL`` or ``ZohoCRM.modules.{module}.{ALL|WRITE|CREATE}``; the OAS
  names ``ZohoCRM.settings.tags.ALL``. Both readings are accepted (see :func:`accepted_scopes`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .models import JSON, EmulatorConfig, OrgState, Reply, Request, ZohoError, error, tag_credits
from .routing import route

if TYPE_CHECKING:
    from .backend import EmulatorBackend

MAX_IDS = 500
MAX_TAGS_PER_MODULE = 100
MAX_TAGS_PER_RECORD = 10
MAX_TAG_NAME = 25
TAG_ID_BASE = 4_876_876_000_001_140_000
LOCKED_MESSAGE = "Sorry, you cannot perform this operation as the record is locked."


class _Lockable(Protocol):
    @property
    def locked(self) -> bool: ...


class TagCallError(Exception):
    """A call-level error: HTTP status plus Zoho's error body (nothing was changed)."""

    def __init__(self, status: int, code: str, message: str, details: JSON | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.payload: JSON = {"code": code, "details": details or {}, "message": message, "status": "error"}


def accepted_scopes(module: str) -> tuple[str, ...]:
    """Any of these lets a token add tags in ``module`` (docs' and OAS's readings together)."""
    return (
        "ZohoCRM.modules.ALL",
        f"ZohoCRM.modules.{module}.ALL",
        f"ZohoCRM.modules.{module}.WRITE",
        f"ZohoCRM.modules.{module}.CREATE",
        "ZohoCRM.settings.tags.ALL",
        "ZohoCRM.settings.ALL",
    )


@dataclass(slots=True)
class Tag:
    """A tag defined in one module."""

    id: str
    name: str
    color_code: str | None = None

    def to_json(self) -> JSON:
        """The ``{"name", "id", "color_code"}`` shape of answers."""
        return {"name": self.name, "id": self.id, "color_code": self.color_code}


@dataclass
class TagStore:
    """Tags per module and per record; the backend's lock guards every call."""

    max_per_module: int = MAX_TAGS_PER_MODULE
    max_per_record: int = MAX_TAGS_PER_RECORD
    _defs: dict[str, dict[str, Tag]] = field(default_factory=dict)
    _records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _issued: int = 0

    def tags(self, module: str) -> list[Tag]:
        """Tags defined in a module, in creation order."""
        return list(self._defs.get(module, {}).values())

    def by_name(self, module: str, name: str) -> Tag | None:
        """A module's tag by name (case-insensitive, as tag names are in Zoho's UI)."""
        low = name.casefold()
        return next((t for t in self._defs.get(module, {}).values() if t.name.casefold() == low), None)

    def by_id(self, module: str, tag_id: str) -> Tag | None:
        """A module's tag by id."""
        return self._defs.get(module, {}).get(tag_id)

    def define(self, module: str, name: str, color_code: str | None = None) -> Tag:
        """Create a tag (or return the existing one of that name); LIMIT_EXCEEDED past the module limit."""
        existing = self.by_name(module, name)
        if existing is not None:
            return existing
        defs = self._defs.setdefault(module, {})
        if len(defs) >= self.max_per_module:
            raise TagCallError(
                400,
                "LIMIT_EXCEEDED",
                "tags limit exceeded for the module",
                {"limit": self.max_per_module, "api_name": "tags"},
            )
        self._issued += 1
        tag = Tag(str(TAG_ID_BASE + self._issued), name, color_code)
        defs[tag.id] = tag
        return tag

    def record_tags(self, module: str, record_id: str) -> list[str]:
        """Names of a record's tags, in the order they were added."""
        defs = self._defs.get(module, {})
        return [defs[t].name for t in self._records.get((module, record_id), []) if t in defs]

    def record_tag_objects(self, module: str, record_id: str) -> list[Tag]:
        """A record's tags as objects."""
        defs = self._defs.get(module, {})
        return [defs[t] for t in self._records.get((module, record_id), []) if t in defs]

    def apply(self, module: str, record_id: str, tags: list[Tag], over_write: bool) -> bool:
        """Attach tags to one record; False (and no change) when it would exceed the per-record limit."""
        current = [] if over_write else list(self._records.get((module, record_id), []))
        for tag in tags:
            if tag.id not in current:
                current.append(tag.id)
        if len(current) > self.max_per_record:
            return False
        self._records[(module, record_id)] = current
        return True

    # ------------------------------------------------------------------ the HTTP call

    def add_tags_call(
        self,
        module: str,
        record_id: str | None,
        body: bytes,
        query: Mapping[str, str],
        lookup: Callable[[str], _Lockable | None],
    ) -> tuple[int, JSON]:
        """One add_tags request → (HTTP status, JSON body); :class:`TagCallError` for call-level errors."""
        payload = _parse_body(body)
        raw_tags = payload.get("tags")
        if raw_tags is None or raw_tags == []:
            raise TagCallError(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "tags"})
        if not isinstance(raw_tags, list) or not all(isinstance(t, dict) for t in raw_tags):
            raise TagCallError(
                400, "INVALID_DATA", "invalid data", {"api_name": "tags", "expected_data_type": "jsonarray"}
            )
        ids = [record_id] if record_id is not None else _ids(payload.get("ids"))
        if len(ids) > MAX_IDS:
            raise TagCallError(
                400,
                "LIMIT_EXCEEDED",
                "the number of ids exceeds the limit",
                {"limit": MAX_IDS, "api_name": "ids"},
            )
        over_write = _flag(payload.get("over_write", query.get("over_write", False)))
        wanted = self._resolve(module, raw_tags)
        items: list[JSON] = []
        locked = 0
        for i, raw_id in enumerate(ids):
            rid = str(raw_id) if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) else ""
            rec = lookup(rid) if rid.isdigit() else None
            if rec is None:
                details: JSON = (
                    {"id": rid} if record_id is not None else {"json_path": f"$.ids[{i}]", "id": rid}
                )
                items.append(_item("INVALID_DATA", "the related id given seems to be invalid", details))
            elif rec.locked:
                locked += 1
                items.append(_item("RECORD_LOCKED", LOCKED_MESSAGE, {"action": "add_tags", "id": rid}))
            elif not self.apply(module, rid, wanted, over_write):
                items.append(
                    _item(
                        "LIMIT_EXCEEDED",
                        "tags limit exceeded for the record",
                        {"id": rid, "limit": self.max_per_record},
                    )
                )
            else:
                tags_now = [t.to_json() for t in self.record_tag_objects(module, rid)]
                items.append(
                    {
                        "code": "SUCCESS",
                        "details": {"id": rid, "tags": tags_now},
                        "message": "tags updated successfully",
                        "status": "success",
                    }
                )
        ok = sum(1 for it in items if it["status"] == "success")
        status = 200 if ok == len(items) else 207 if ok else 400
        return status, {"data": items, "success_count": str(ok), "locked_count": str(locked)}

    def _resolve(self, module: str, raw_tags: list[JSON]) -> list[Tag]:
        """Tags named by a request (id over name); creates new names only if every tag is valid and fits."""
        resolved: list[Tag | None] = []
        new: list[tuple[str, str | None]] = []
        for i, raw in enumerate(raw_tags):
            tag_id, name, color = raw.get("id"), raw.get("name"), raw.get("color_code")
            if tag_id not in (None, ""):
                tag = self.by_id(module, str(tag_id))
                if tag is None:
                    raise TagCallError(
                        400,
                        "INVALID_DATA",
                        "invalid tag id",
                        {"api_name": "id", "json_path": f"$.tags[{i}].id"},
                    )
                resolved.append(tag)
                continue
            if not isinstance(name, str) or not name.strip():
                raise TagCallError(
                    400,
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "name", "json_path": f"$.tags[{i}].name"},
                )
            if len(name) > MAX_TAG_NAME:
                raise TagCallError(
                    400,
                    "INVALID_DATA",
                    "Invalid data",
                    {"api_name": "name", "json_path": f"$.tags[{i}].name", "maximum_length": MAX_TAG_NAME},
                )
            existing = self.by_name(module, name)
            resolved.append(existing)
            if existing is None and all(n.casefold() != name.casefold() for n, _ in new):
                new.append((name, color if isinstance(color, str) else None))
        if len(self._defs.get(module, {})) + len(new) > self.max_per_module:
            raise TagCallError(
                400,
                "LIMIT_EXCEEDED",
                "tags limit exceeded for the module",
                {"limit": self.max_per_module, "api_name": "tags"},
            )
        for name, color in new:
            self.define(module, name, color)
        out: list[Tag] = []
        for raw, tag in zip(raw_tags, resolved, strict=True):
            found = tag or self.by_name(module, str(raw.get("name")))
            if found is not None and found not in out:
                out.append(found)
        return out


def _item(code: str, message: str, details: JSON) -> JSON:
    return {"code": code, "details": details, "message": message, "status": "error"}


def _parse_body(body: bytes) -> JSON:
    if not body.strip():
        raise TagCallError(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "tags"})
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise TagCallError(400, "INVALID_DATA", "body is not a valid JSON") from exc
    if not isinstance(payload, dict):
        raise TagCallError(400, "INVALID_DATA", "body must be a JSON object")
    return payload


def _ids(value: Any) -> list[Any]:
    """The bulk form's ids: a JSON array, or (OAS) a string holding a JSON array or comma-separated ids."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                json.loads(text)
                if text.startswith("[")
                else [v.strip() for v in text.split(",") if v.strip()]
            )
        except ValueError:
            value = None
    if value is None or value == []:
        raise TagCallError(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "ids"})
    if not isinstance(value, list):
        raise TagCallError(
            400, "INVALID_DATA", "invalid data", {"api_name": "ids", "expected_data_type": "jsonarray"}
        )
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value is None:
        return False
    raise TagCallError(
        400, "INVALID_DATA", "invalid data", {"api_name": "over_write", "expected_data_type": "boolean"}
    )


# ------------------------------------------------------------------------------------------ the service


class TagsService(OrgState):
    """Backend mixin: tags per module and record, and the two add_tags routes."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        super().__init__(config)
        self.tag_store = TagStore()

    def record_tags(self, module: str, record_id: str) -> list[str]:
        """Names of a record's tags, in the order they were added."""
        with self._lock:
            return self.tag_store.record_tags(self._require_module(module).name, record_id)

    def module_record_tags(self, module: str) -> dict[str, list[str]]:
        """``{record_id: [tag names]}`` for every tagged record of a module."""
        with self._lock:
            mod = self._require_module(module)
            return {rid: tags for rid in mod.records if (tags := self.tag_store.record_tags(mod.name, rid))}

    def add_tags_request(self, req: Request, record_id: str | None) -> Reply:
        """Either add_tags form: module, scope, 1 credit per 50 records (``models.tag_credits``), then
        :meth:`TagStore.add_tags_call`."""
        mod = self.module(req.params["module"])
        if mod is None:
            raise ZohoError(400, error("INVALID_MODULE", "the module name given seems to be invalid", {}))
        self.check_scope(req.access_token, *accepted_scopes(mod.name))
        body = req.body
        if not body.strip() and req.query.get("tag_names"):
            body = _legacy_body(req.query, record_id)  # v2 / v2.1: ids and tag_names as query parameters
        self.charge(tag_credits(_id_count(body, record_id)))
        try:
            status, payload = self.tag_store.add_tags_call(
                mod.name, record_id, body, req.query, mod.records.get
            )
        except TagCallError as exc:
            raise ZohoError(exc.status, exc.payload) from exc
        return Reply.json(status, payload)


def _id_count(body: bytes, record_id: str | None) -> int:
    """How many records an Add Tags call names (what its credits are counted by); 1 for the single form."""
    if record_id is not None:
        return 1
    try:
        ids = json.loads(body).get("ids")
    except (ValueError, AttributeError):
        return 1
    if isinstance(ids, str):
        return len([i for i in ids.split(",") if i.strip()])
    return len(ids) if isinstance(ids, list) else 1


def _legacy_body(query: Mapping[str, str], record_id: str | None) -> bytes:
    names = [n.strip() for n in query.get("tag_names", "").split(",") if n.strip()]
    payload: JSON = {"tags": [{"name": n} for n in names]}
    if record_id is None:
        payload["ids"] = query.get("ids", "")
    return json.dumps(payload).encode()


@route("add_tags", "/crm/{ver}/{module}/actions/add_tags", "POST")
def add_tags(backend: EmulatorBackend, req: Request) -> Reply:
    """``POST /crm/{v}/{module}/actions/add_tags``: tags on up to 500 records."""
    return backend.add_tags_request(req, None)


@route("add_tags", "/crm/{ver}/{module}/{id}/actions/add_tags", "POST")
def add_tags_single(backend: EmulatorBackend, req: Request) -> Reply:
    """``POST /crm/{v}/{module}/{id}/actions/add_tags``: tags on one record."""
    return backend.add_tags_request(req, req.params["id"])


@route("admin_tags", "/_emulator/tags/{module}", service="admin")
def admin_tags(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /_emulator/tags/{module}``: every tagged record's tag names (for tests in other processes)."""
    return Reply.json(200, backend.module_record_tags(req.params["module"]))
