"""The org's modules: list them once, and name an unknown module with its close matches before any other call.

Zoho's own answer to a misspelled module is unhelpful: a COQL query ``from Leeds`` fails with
``INVALID_QUERY`` ("invalid query formed"), and nothing says which name was wrong. ``GET
/crm/{version}/settings/modules`` (scope ``ZohoCRM.settings.modules.READ``; Zoho's v8 OpenAPI ``modules.json``:
``{"modules": [{"api_name", "module_name", "plural_label", "api_supported", ...}]}``, one unpaged answer, 204
when none) lists every module of the org, so one call per run can say "Unknown module 'Leeds' … did you mean
'Leads'?". A token without that scope gets ``None`` from :func:`list_modules_or_none`: the run goes on and
Zoho's own answers judge the module, as before. No Airflow import here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_zohocrm.zoho.errors import ZohoResponseError, ZohoScopeError, ZohoValidationError

if TYPE_CHECKING:
    from airflow_provider_zohocrm.zoho.client import ZohoCRMClient

#: How many close matches a message names, and how close they must be (difflib's ratio).
MAX_SUGGESTIONS = 3
SUGGESTION_CUTOFF = 0.6


@dataclass(frozen=True)
class CrmModule:
    """One module as Zoho lists it: ``api_name`` is what the API takes, ``label`` what the CRM shows."""

    api_name: str
    label: str
    api_supported: bool

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> CrmModule:
        """One entry of ``modules[]``; raises ZohoResponseError when it has no api_name."""
        name = item.get("api_name")
        if not isinstance(name, str) or not name.strip():
            raise ZohoResponseError(f"Zoho listed a module without an api_name: {sorted(item)!r}")
        label = item.get("plural_label") or item.get("module_name") or name
        # An answer without the flag is taken as usable: only an explicit false rules a module out.
        return cls(api_name=name, label=str(label), api_supported=item.get("api_supported") is not False)


def parse_modules(body: Any) -> list[CrmModule]:
    """The modules of one ``settings/modules`` answer; ``None`` (HTTP 204) is no modules."""
    if body is None:
        return []
    if not isinstance(body, Mapping) or not isinstance(body.get("modules"), list):
        raise ZohoResponseError("Zoho's modules answer has no 'modules' list")
    return [CrmModule.from_api(item) for item in body["modules"] if isinstance(item, Mapping)]


def list_modules(client: ZohoCRMClient) -> list[CrmModule]:
    """Every module of the org, in Zoho's order (one call, one credit)."""
    response = client.request("GET", "settings/modules", purpose="modules")
    return parse_modules(None if response.status == 204 else response.body)


def list_modules_or_none(client: ZohoCRMClient) -> list[CrmModule] | None:
    """The org's modules, or ``None`` when the token lacks ``ZohoCRM.settings.modules.READ``: the check is a
    courtesy, so a token made before the scope was documented still runs (Zoho's answers judge the module)."""
    try:
        return list_modules(client)
    except ZohoScopeError:
        return None


def close_matches(name: str, candidates: Iterable[str]) -> list[str]:
    """The names in ``candidates`` closest to ``name`` (case-insensitive), best first, at most MAX_SUGGESTIONS."""
    by_folded: dict[str, str] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), candidate)
    found = difflib.get_close_matches(
        name.casefold(), list(by_folded), n=MAX_SUGGESTIONS, cutoff=SUGGESTION_CUTOFF
    )
    return [by_folded[f] for f in found]


def check_module(modules: Iterable[CrmModule], name: str) -> CrmModule:
    """The org's module named ``name`` (Zoho takes API names case-insensitively).

    Raises ZohoValidationError naming the module and its close matches ("did you mean 'Leads'?") when the
    org has no such module, or when it exists but Zoho's API cannot reach it (``api_supported`` false).
    """
    modules = list(modules)
    folded = name.casefold()
    for module in modules:
        if module.api_name.casefold() == folded:
            if not module.api_supported:
                raise ZohoValidationError(
                    f"Module {name!r} ({module.label}) exists but Zoho's API does not support it."
                )
            return module
    usable = [m for m in modules if m.api_supported]
    # A label ("Leads" shown for a renamed module) may be what the person typed: match labels too, name the API name.
    by_label = {m.label: m.api_name for m in usable}
    suggestions = close_matches(name, [m.api_name for m in usable])
    for label in close_matches(name, by_label):
        if by_label[label] not in suggestions:
            suggestions.append(by_label[label])
    hint = (
        "did you mean " + " or ".join(repr(s) for s in suggestions[:MAX_SUGGESTIONS]) + "?"
        if suggestions
        else "the modules Zoho's API can use: " + (", ".join(m.api_name for m in usable) or "none") + "."
    )
    raise ZohoValidationError(f"Unknown module {name!r}: the org has no module with that API name; {hint}")


def check_modules(modules: Iterable[CrmModule], names: Iterable[str]) -> list[str]:
    """The message of each unknown name (empty: all known), so one run names every typo at once."""
    modules = list(modules)
    problems = []
    for name in dict.fromkeys(names):
        try:
            check_module(modules, name)
        except ZohoValidationError as exc:
            problems.append(str(exc))
    return problems
