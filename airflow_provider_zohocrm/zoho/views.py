"""Custom views by name: list a module's views and resolve "Bounced leads" (or an id) to the view.

A user knows a view by the name shown in the CRM, not by its id, so the DAG accepts either. Zoho's Custom Views
API (``GET /crm/{version}/settings/custom_views?module=M``, paged with ``page``/``per_page`` and
``info.more_records``; scope ``ZohoCRM.settings.custom_views.READ``) is read-only: it lists views, it cannot make
one. No Airflow import here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_zohocrm.zoho.errors import ZohoResponseError, ZohoValidationError
from airflow_provider_zohocrm.zoho.validation import validate_module

if TYPE_CHECKING:
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient

#: Views asked for per page (Zoho's documented maximum for this listing is 200).
VIEWS_PER_PAGE = 200
#: A bound on pages, so an answer that always says ``more_records`` cannot loop forever.
MAX_VIEW_PAGES = 50


@dataclass(frozen=True)
class CustomView:
    """One custom view as Zoho lists it; ``display_value`` is what the CRM shows, ``name`` its stored name."""

    id: str
    name: str
    display_value: str
    system_name: str | None
    category: str
    default: bool

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> CustomView:
        """One entry of ``custom_views[]``; raises ZohoResponseError when it has no id."""
        view_id = item.get("id")
        if view_id is None or not str(view_id).strip():
            raise ZohoResponseError(f"Zoho listed a custom view without an id: {dict(item)!r}")
        name = str(item.get("name") or item.get("display_value") or "")
        return cls(
            id=str(view_id),
            name=name,
            display_value=str(item.get("display_value") or name),
            system_name=str(item["system_name"]) if item.get("system_name") else None,
            category=str(item.get("category") or ""),
            default=bool(item.get("default", False)),
        )

    def label(self) -> str:
        """How a person recognises the view in a message: its shown name and its id."""
        return f"{self.display_value!r} ({self.id})"


def parse_custom_views(body: Any) -> tuple[list[CustomView], bool]:
    """(views, more_records) of one answer; ``None`` (HTTP 204) is no views."""
    if body is None:
        return [], False
    if not isinstance(body, Mapping) or not isinstance(body.get("custom_views"), list):
        raise ZohoResponseError("Zoho's custom views answer has no 'custom_views' list")
    views = [CustomView.from_api(item) for item in body["custom_views"] if isinstance(item, Mapping)]
    info = body.get("info")
    more = bool(info.get("more_records")) if isinstance(info, Mapping) else False
    return views, more


def list_custom_views(client: ZohoCRMClient, module: str) -> list[CustomView]:
    """Every custom view of ``module`` the token's user can see, in Zoho's order, each once."""
    module = validate_module(module)
    views: dict[str, CustomView] = {}
    for page in range(1, MAX_VIEW_PAGES + 1):
        response = client.request(
            "GET",
            "settings/custom_views",
            params={"module": module, "page": page, "per_page": VIEWS_PER_PAGE},
            purpose="views",
            module=module,
        )
        found, more = parse_custom_views(None if response.status == 204 else response.body)
        for view in found:
            views.setdefault(view.id, view)
        if not more or not found:
            break
    return list(views.values())


def match_view(views: Iterable[CustomView], module: str, name_or_id: Any) -> CustomView:
    """The view whose id is ``name_or_id`` exactly, else the one whose name or shown name matches it
    case-insensitively (surrounding spaces ignored). Unknown or ambiguous names raise ZohoValidationError,
    listing the views that exist, so the user can copy the right one."""
    views = list(views)
    wanted = str(name_or_id if name_or_id is not None else "").strip()
    if not wanted:
        raise ZohoValidationError(f"Give a custom view name or id for {module}, not {name_or_id!r}.")
    for view in views:
        if view.id == wanted:
            return view
    folded = wanted.casefold()
    hits = [v for v in views if folded in (v.name.strip().casefold(), v.display_value.strip().casefold())]
    if len(hits) == 1:
        return hits[0]
    existing = ", ".join(v.label() for v in views) or "none"
    if hits:
        raise ZohoValidationError(
            f"{len(hits)} {module} custom views are named {wanted!r}: {', '.join(v.label() for v in hits)}."
            " Pass the id of the one you mean."
        )
    raise ZohoValidationError(
        f"No {module} custom view is named {wanted!r} (or has that id). The views that exist: {existing}."
    )


def resolve_view(client: ZohoCRMClient, module: str, name_or_id: Any) -> CustomView:
    """Resolve a view's name (as shown in the CRM) or id to the view, with one listing call.

    An unknown name raises ZohoValidationError naming the views that exist (before any unblock call).
    """
    module = validate_module(module)
    return match_view(list_custom_views(client, module), module, name_or_id)
