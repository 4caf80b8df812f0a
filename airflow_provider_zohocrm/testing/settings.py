"""Zoho CRM's users and settings APIs: ``users?type=CurrentUser``, ``settings/fields``, ``settings/custom_views``.

Shapes and rules from Zoho's v8 OpenAPI files (``zoho/crm-oas``: ``users.json``, ``fields.json``,
``custom_views.json``) and what Zoho's Python SDK (``zohocrmsdk8-0``) parses:

- ``GET /crm/{v}/users?type=CurrentUser`` → ``{"users": [...], "info": {per_page, count, page, more_records}}``;
  scope ``ZohoCRM.users.READ``. Zoho's SDK calls it (and ``/org``) after every new token unless ``find_user=False``.
- ``GET /crm/{v}/settings/fields?module=M`` → ``{"fields": [{api_name, field_label, display_label, data_type,
  json_type, id, custom_field, system_mandatory, …}]}``; scope ``ZohoCRM.settings.fields.READ``. Zoho's SDK calls
  it before ``get_records`` to learn field types and caches it under its resource path.
- ``GET /crm/{v}/settings/custom_views?module=M`` → ``{"custom_views": [...], "info": {per_page, default, count,
  translation, page, more_records}}``; ``GET /crm/{v}/settings/custom_views/{id}?module=M`` → the same shape with
  one view, **204** when no view of the module has that id; scope ``ZohoCRM.settings.custom_views.READ``.
- ``GET /crm/{v}/settings/modules`` → ``{"modules": [{api_name, module_name, plural_label, singular_label,
  api_supported, id, status, generated_type, …}]}``, every module in one answer (no paging; 204 when none);
  scope ``ZohoCRM.settings.modules.READ`` (``modules.json``). The org's UI-only modules (Home, Feeds) are listed
  with ``api_supported: false``, as Zoho lists them.
- Every one but ``modules``: no ``module`` → 400 ``REQUIRED_PARAM_MISSING`` (``details.param_name``); unknown module → 400
  ``INVALID_MODULE``; missing scope → 401 ``OAUTH_SCOPE_MISMATCH``. ``ZohoCRM.settings.ALL`` covers the settings
  APIs and ``ZohoCRM.users.ALL`` the users API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .crm import int_param
from .models import ID_BASE, JSON, Module, OrgState, Reply, Request, View, ZohoError, error, iso
from .routing import route

if TYPE_CHECKING:
    from .backend import EmulatorBackend

USERS_SCOPES = ("ZohoCRM.users.READ", "ZohoCRM.users.ALL")
FIELDS_SCOPES = ("ZohoCRM.settings.fields.READ", "ZohoCRM.settings.fields.ALL", "ZohoCRM.settings.ALL")
MODULES_SCOPES = (
    "ZohoCRM.settings.modules.READ",
    "ZohoCRM.settings.modules.ALL",
    "ZohoCRM.settings.ALL",
)
#: Modules every org has that Zoho's API cannot reach (listed with ``api_supported: false``).
UI_ONLY_MODULES = ("Home", "Feeds")
VIEWS_SCOPES = (
    "ZohoCRM.settings.custom_views.READ",
    "ZohoCRM.settings.custom_views.ALL",
    "ZohoCRM.settings.ALL",
)
#: ``type`` values of Get Users (users.json); the emulated org has one active, confirmed admin.
USER_TYPES = frozenset(
    {
        "CurrentUser",
        "AllUsers",
        "ActiveUsers",
        "AdminUsers",
        "ActiveConfirmedAdmins",
        "ActiveConfirmedUsers",
        "ConfirmedUsers",
        "AllActiveUsers",
        "ActiveAndDeactive",
        "DeletedUsers",
        "DeactiveUsers",
        "NotConfirmedUsers",
        "DeveloperUsers",
        "ActiveLiteUser",
        "ChildRoleUsers",
        "ParentRoleUsers",
        "SubordinateRoleUsers",
        "ConfirmedReportingUsers",
    }
)
_NO_ADMIN_TYPES = frozenset(
    {
        "DeletedUsers",
        "DeactiveUsers",
        "NotConfirmedUsers",
        "DeveloperUsers",
        "ActiveLiteUser",
        "ChildRoleUsers",
    }
)
TRANSLATION = {
    "public_views": "Public Views",
    "other_users_views": "Other User's Views",
    "shared_with_me": "Shared With Me",
    "created_by_me": "Created By Me",
}
#: Each standard module's record-name field (what Zoho lists besides the email fields).
_NAME_FIELD = {
    "Deals": "Deal_Name",
    "Accounts": "Account_Name",
    "Sales_Orders": "Subject",
    "Purchase_Orders": "Subject",
    "Invoices": "Subject",
    "Quotes": "Subject",
    "Cases": "Subject",
    "Products": "Product_Name",
    "Tasks": "Subject",
    "Campaigns": "Campaign_Name",
}
_UI_TYPE = {"text": 1, "picklist": 2, "email": 25, "boolean": 301, "integer": 32, "datetime": 333}
_JSON_TYPE = {"boolean": "boolean", "integer": "integer"}


class SettingsService(OrgState):
    """The org's user and the metadata the settings APIs describe."""

    def current_user(self) -> JSON:
        """The user the access tokens belong to (the org's only user, an administrator)."""
        uid = str(ID_BASE + 900_001)
        return {
            "id": uid,
            "full_name": "Emulator Admin",
            "first_name": "Emulator",
            "last_name": "Admin",
            "email": "admin@example.com",
            "zuid": "90000001",
            "status": "active",
            "confirm": True,
            "role": {"name": "CEO", "id": str(ID_BASE + 900_101)},
            "profile": {"name": "Administrator", "id": str(ID_BASE + 900_201)},
            "locale": "en_US",
            "country_locale": "en_US",
            "type__s": "Regular User",
            "created_by": {"name": "Emulator Admin", "id": uid},
        }

    def module_list(self) -> list[JSON]:
        """``settings/modules`` entries: the UI-only modules, then the org's modules in the order they were made."""
        with self._lock:
            mods = sorted(self._modules.values(), key=lambda m: m.index)
            entries = [_module_json(name, i + 1, api=False) for i, name in enumerate(UI_ONLY_MODULES)]
            entries += [_module_json(m.name, len(UI_ONLY_MODULES) + m.index + 1, api=True) for m in mods]
            return entries

    def field_metadata(self, module: str) -> list[JSON]:
        """``settings/fields`` entries of a module: its standard fields, email fields, and custom fields."""
        with self._lock:
            mod = self._require_module(module)
            specs: list[tuple[str, str, str, JSON]] = []
            if mod.name in ("Leads", "Contacts"):
                specs += [
                    ("First_Name", "First Name", "text", {}),
                    ("Last_Name", "Last Name", "text", {"system_mandatory": True}),
                    ("Full_Name", "Full Name", "text", {"read_only": True, "field_read_only": True}),
                ]
                if mod.name == "Leads":
                    specs.append(("Company", "Company", "text", {}))
            else:
                name = _NAME_FIELD.get(mod.name, "Name")
                specs.append((name, name.replace("_", " "), "text", {"system_mandatory": True}))
            if mod.has_email:
                specs.append(("Email", "Email", "email", {}))
            if mod.has_secondary_email:
                specs.append(("Secondary_Email", "Secondary Email", "email", {}))
            for api_name, meta in mod.custom_fields.items():
                extra = {k: v for k, v in meta.items() if k not in ("data_type", "field_label")}
                label = str(meta.get("field_label") or api_name.replace("_", " "))
                specs.append((api_name, label, str(meta["data_type"]), {"custom_field": True, **extra}))
            return [
                _field_json(mod, n, api, label, dtype, over)
                for n, (api, label, dtype, over) in enumerate(specs)
            ]


def _field_json(
    mod: Module, n: int, api_name: str, label: str, data_type: str, over: Mapping[str, Any]
) -> JSON:
    """One field as ``settings/fields`` shows it (the keys Zoho's SDK reads to learn the field's type)."""
    fid = str(ID_BASE + mod.index * 1_000_000 + 500 + n)
    values = over.get("pick_list_values") or []
    picklist = [
        {
            "display_value": v,
            "actual_value": v,
            "reference_value": v,
            "sequence_number": i + 1,
            "id": str(int(fid) * 10 + i),
            "type": "used",
        }
        for i, v in enumerate(values)
    ]
    field: JSON = {
        "api_name": api_name,
        "field_label": label,
        "display_label": label,
        "data_type": data_type,
        "json_type": _JSON_TYPE.get(data_type, "string"),
        "id": fid,
        "custom_field": False,
        "system_mandatory": False,
        "read_only": False,
        "field_read_only": False,
        "visible": True,
        "filterable": True,
        "searchable": True,
        "sortable": True,
        "type": "used",
        "created_source": "default",
        "ui_type": _UI_TYPE.get(data_type, 1),
        "length": 100 if data_type == "email" else 120,
        "pick_list_values": picklist,
    }
    field.update({k: v for k, v in over.items() if k != "pick_list_values"})
    if field["custom_field"]:
        field["created_source"] = "crm"
    return field


def _view_json(view: View, module: Module, owner: JSON) -> JSON:
    """One view as Get Custom Views lists it (custom_views.json ``custom_views`` schema)."""
    created = iso(view.created_at)
    return {
        "id": view.cvid,
        "name": view.name,
        "display_value": view.display_value or view.name,
        "system_name": view.system_name,
        "category": view.category,
        "default": view.default,
        "system_defined": view.system_defined,
        "locked": False,
        "favorite": None,
        "offline": False,
        "access_type": "public" if view.category == "public_views" else "only_to_me",
        "created_time": created,
        "modified_time": created,
        "last_accessed_time": None,
        "created_by": owner,
        "modified_by": owner,
        "module": {"api_name": module.name, "id": str(ID_BASE + module.index * 1_000_000 + 1)},
        "sort_by": None,
        "sort_order": None,
    }


def _module_json(name: str, sequence: int, *, api: bool) -> JSON:
    """One ``modules[]`` entry with the fields modules.json marks as most used."""
    singular = name[:-1] if name.endswith("s") else name
    return {
        "id": str(ID_BASE + 800_000 + sequence),
        "api_name": name,
        "module_name": name,
        "plural_label": name.replace("_", " "),
        "singular_label": singular.replace("_", " "),
        "actual_plural_label": name.replace("_", " "),
        "actual_singular_label": singular.replace("_", " "),
        "api_supported": api,
        "creatable": api,
        "editable": api,
        "viewable": True,
        "show_as_tab": True,
        "sequence_number": sequence,
        "generated_type": "default",
        "status": "visible",
        "visibility": 1,
        "access_type": "org_based",
        "parent_module": {},
    }


def _module_param(backend: EmulatorBackend, query: Mapping[str, str]) -> Module:
    """The required ``module`` query parameter: REQUIRED_PARAM_MISSING or INVALID_MODULE like Zoho."""
    name = query.get("module", "").strip()
    if not name:
        raise ZohoError(
            400,
            error(
                "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "module"}
            ),
        )
    mod = backend.module(name)
    if mod is None:
        raise ZohoError(400, error("INVALID_MODULE", "the module name given seems to be invalid", {}))
    return mod


# --------------------------------------------------------------------------------------------- routes


@route("users", "/crm/{ver}/users")
def users(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /crm/{v}/users[?type=CurrentUser]``."""
    backend.check_scope(req.access_token, *USERS_SCOPES)
    kind = req.query.get("type") or "AllUsers"
    if kind not in USER_TYPES:
        raise ZohoError(400, error("INVALID_DATA", "invalid data", {"param_name": "type"}))
    per_page = int_param(req.query, "per_page", 200, 1, 200)
    page = int_param(req.query, "page", 1, 1, None)
    backend.charge()
    if kind in _NO_ADMIN_TYPES or page > 1:
        return Reply(204)
    info = {"per_page": per_page, "count": 1, "page": page, "more_records": False}
    return Reply.json(200, {"users": [backend.current_user()], "info": info})


@route("modules", "/crm/{ver}/settings/modules")
def modules(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /crm/{v}/settings/modules``: every module of the org in one answer."""
    backend.check_scope(req.access_token, *MODULES_SCOPES)
    backend.charge()
    found = backend.module_list()
    return Reply.json(200, {"modules": found}) if found else Reply(204)


@route("fields", "/crm/{ver}/settings/fields")
def fields(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /crm/{v}/settings/fields?module=M``."""
    backend.check_scope(req.access_token, *FIELDS_SCOPES)
    mod = _module_param(backend, req.query)
    backend.charge()
    found = backend.field_metadata(mod.name)
    return Reply.json(200, {"fields": found}) if found else Reply(204)


def _owner(backend: EmulatorBackend) -> JSON:
    user = backend.current_user()
    return {"name": user["full_name"], "id": user["id"], "email": user["email"]}


@route("custom_views", "/crm/{ver}/settings/custom_views")
def custom_views(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /crm/{v}/settings/custom_views?module=M[&page=&per_page=&scope=]``."""
    backend.check_scope(req.access_token, *VIEWS_SCOPES)
    mod = _module_param(backend, req.query)
    per_page = int_param(req.query, "per_page", 200, 1, 200)
    page = int_param(req.query, "page", 1, 1, None)
    backend.charge()
    views = backend.views_of(mod.name)
    category = req.query.get("scope")
    if category:
        views = [v for v in views if v.category == category]
    window = views[(page - 1) * per_page : page * per_page]
    if not window:
        return Reply(204)
    owner = _owner(backend)
    default = next((v.cvid for v in backend.views_of(mod.name) if v.default), None)
    info = {
        "per_page": per_page,
        "default": default,
        "count": len(window),
        "translation": dict(TRANSLATION),
        "page": page,
        "more_records": len(views) > page * per_page,
    }
    return Reply.json(200, {"custom_views": [_view_json(v, mod, owner) for v in window], "info": info})


@route("custom_views", "/crm/{ver}/settings/custom_views/{id}")
def custom_view(backend: EmulatorBackend, req: Request) -> Reply:
    """``GET /crm/{v}/settings/custom_views/{id}?module=M``: one view in the list shape, 204 if unknown."""
    backend.check_scope(req.access_token, *VIEWS_SCOPES)
    mod = _module_param(backend, req.query)
    backend.charge()
    view = backend.view(req.params["id"])
    if view is None or view.module != mod.name:
        return Reply(204)
    info = {"translation": dict(TRANSLATION)}
    return Reply.json(200, {"custom_views": [_view_json(view, mod, _owner(backend))], "info": info})
