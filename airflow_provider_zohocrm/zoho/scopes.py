"""OAuth scopes: which Zoho CRM scopes each step of the job needs, and whether a granted set covers them.

Zoho writes a scope as ``ZohoCRM.<group>[.<resource>].<operation>``, e.g. ``ZohoCRM.modules.Leads.READ``,
``ZohoCRM.settings.custom_views.READ``, ``ZohoCRM.send_mail.Leads.CREATE``, ``ZohoCRM.coql.READ``. A granted
scope covers a needed one when:

- the operation is ``ALL`` (every operation), or ``WRITE`` for ``CREATE``/``UPDATE``/``DELETE`` (Zoho's docs
  list WRITE next to CREATE, UPDATE and DELETE as "edit records");
- the resource is left out (``ZohoCRM.modules.ALL``, ``ZohoCRM.settings.ALL``, ``ZohoCRM.modules.READ``), or is
  ``all`` (``ZohoCRM.send_mail.all.CREATE``): every resource of the group.

Zoho compares scopes without regard to case (its OpenAPI spec writes ``ZohoCRM.settings.tags.all``), so this
does too. The token response carries the granted scopes in ``scope`` (space separated) in Zoho's CRM docs;
some other Zoho docs leave the field out, so an empty scope means "unknown", never "none".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_WRITE_COVERS = frozenset({"create", "update", "delete", "write"})


@dataclass(frozen=True)
class ScopeNeed:
    """What one step needs: any one of ``alternatives`` will do (Zoho's docs name several for some APIs)."""

    step: str
    alternatives: tuple[str, ...]
    why: str

    def describe(self) -> str:
        return " or ".join(self.alternatives)


def parse_scopes(scope: str | Iterable[str] | None) -> list[str]:
    """The granted scopes from a token response's ``scope`` (space or comma separated), in order, each once."""
    if scope is None:
        return []
    parts = scope.replace(",", " ").split() if isinstance(scope, str) else [str(s).strip() for s in scope]
    return list(dict.fromkeys(p for p in parts if p))


def _split(scope: str) -> tuple[str, str, str, str] | None:
    """(service, group, resource, operation), lower-cased; resource is "" when the scope leaves it out."""
    parts = scope.strip().lower().split(".")
    if len(parts) == 3:
        return parts[0], parts[1], "", parts[2]
    if len(parts) >= 4:
        return parts[0], parts[1], ".".join(parts[2:-1]), parts[-1]
    return None


def covers(granted: str, needed: str) -> bool:
    """True when the granted scope ``granted`` allows what ``needed`` names."""
    have, want = _split(granted), _split(needed)
    if have is None or want is None:
        return granted.strip().lower() == needed.strip().lower()
    h_service, h_group, h_resource, h_op = have
    w_service, w_group, w_resource, w_op = want
    if h_service != w_service or h_group != w_group:
        return False
    if h_resource not in ("", "all", w_resource):
        return False
    return h_op == w_op or h_op == "all" or (h_op == "write" and w_op in _WRITE_COVERS)


def granted_by(granted: Iterable[str], need: ScopeNeed) -> str | None:
    """The first granted scope that satisfies ``need``, or ``None``."""
    scopes = list(granted)
    for alternative in need.alternatives:  # the first-named reading first (e.g. send_mail before modules)
        for scope in scopes:
            if covers(scope, alternative):
                return scope
    return None


# -- what the job's steps need (Zoho's v8 docs unless said otherwise) -------------------------------------------


def org_read() -> ScopeNeed:
    return ScopeNeed("org", ("ZohoCRM.org.READ",), "read the org's details (the connection test)")


def module_read(module: str) -> ScopeNeed:
    return ScopeNeed(
        f"read {module}", (f"ZohoCRM.modules.{module}.READ",), f"read the {module} records of a view"
    )


def custom_views_read() -> ScopeNeed:
    return ScopeNeed(
        "custom views", ("ZohoCRM.settings.custom_views.READ",), "find a custom view by its name"
    )


def modules_read() -> ScopeNeed:
    return ScopeNeed(
        "modules",
        ("ZohoCRM.settings.modules.READ",),
        "name an unknown module with its close matches before any other call",
    )


def coql_read() -> ScopeNeed:
    return ScopeNeed("COQL", ("ZohoCRM.coql.READ",), "run a coql_query source")


def emails_read() -> ScopeNeed:
    return ScopeNeed(
        "Emails related list",
        ("ZohoCRM.modules.emails.READ",),
        "read each record's Emails list (verify='emails', and the preflight's sample)",
    )


def unblock(module: str) -> ScopeNeed:
    # v7/v8 docs name send_mail; the v6 docs and Zoho's OpenAPI spec name modules.{module}.UPDATE.
    return ScopeNeed(
        f"unblock {module}",
        (f"ZohoCRM.send_mail.{module}.CREATE", f"ZohoCRM.modules.{module}.UPDATE"),
        "the Unblock Email call",
    )


def add_tags(module: str) -> ScopeNeed:
    # The v8 docs page names the module scopes (ALL, WRITE or CREATE); the OpenAPI spec ZohoCRM.settings.tags.all.
    return ScopeNeed(
        f"tag {module}",
        (f"ZohoCRM.modules.{module}.CREATE", "ZohoCRM.settings.tags.ALL"),
        "tag the records that need a person (needs_person_tag)",
    )


#: The modules the example DAG's demo runs on: the default of :func:`token_scopes`.
EXAMPLE_MODULES = ("Leads", "Contacts")


def job_needs(modules: Iterable[str]) -> list[ScopeNeed]:
    """Every step of the example DAG and the preflight on these modules, with every source kind (view by name,
    COQL, whole module), ``verify="emails"`` and ``needs_person_tag``: the widest run the DAG can make."""
    needs = [org_read(), modules_read(), custom_views_read(), coql_read(), emails_read()]
    for module in modules:
        needs += [module_read(module), unblock(module), add_tags(module)]
    return needs


def token_scopes(modules: Iterable[str] = EXAMPLE_MODULES) -> str:
    """The scopes to paste into the Zoho API console's *Generate Code* box (comma-separated) for a refresh token
    that passes the preflight and runs the example DAG on ``modules``.

    Where Zoho's documents disagree on a step's scope (unblock: ``send_mail`` or ``modules.UPDATE``; tags: the
    module's ``CREATE`` or ``settings.tags.ALL``), every alternative is asked for, so the token works whichever
    reading Zoho's server applies. No wildcard: the token can do the job and nothing else.
    """
    scopes = [scope for need in job_needs(modules) for scope in need.alternatives]
    return ",".join(dict.fromkeys(scopes))
