"""Griffe extension for the API reference: the docstrings' Sphinx cross-reference roles become links.

The docstrings are written for Sphinx (``:class:`~.client.ZohoCRMClient```, ``:func:`run_preflight```,
``:mod:`.token_store```), and the site renders them as Markdown, where a role is literal text. Before a docstring
is rendered, this extension replaces each role with the Markdown that mkdocs-autorefs turns into a link:
``[`ZohoCRMClient`][airflow_provider_zohocrm.zoho.client.ZohoCRMClient]``. A target is looked up the way Sphinx
looks it up: an absolute path; else the names visible where the docstring is (its class, its module, the
packages above it, and what those import); else the one object of the package whose path ends with it. A
leading ``~`` shows only the last name, as in Sphinx.

A target that is not rendered in the reference (private, or outside the package, e.g. ``requests.Session``)
becomes inline code without a link. A target that names nothing is a mistake in a docstring: it becomes inline
code and a warning, which ``mkdocs build --strict`` turns into a failed build. ``scripts/mkdocs_hooks.py``
fails the build on any role left in a page.

Loaded by mkdocstrings (``mkdocs.yml``: ``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import griffe

#: A Sphinx cross-reference role: ``:class:`Target```, ``:py:meth:`~.mod.Cls.meth```, ``:func:`title <target>```.
ROLE = re.compile(
    r":(?:py:)?(?P<role>class|mod|func|meth|attr|data|exc|obj|const):`(?P<body>[^`]+)`(?P<call>\(\))?"
)
#: Packages whose pages are filtered out of the reference (docs/api/package.md).
UNRENDERED = ("example_dags",)

_log = logging.getLogger("mkdocs.plugins.griffe_sphinx_roles")


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of the loaded package once it is loaded (every target can then be looked up)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        index = {obj.path: obj for obj in _walk(pkg)}
        for obj in list(index.values()):
            if obj.docstring is not None and ROLE.search(obj.docstring.value):
                obj.docstring.value = ROLE.sub(lambda m, o=obj: _link(m, o, index), obj.docstring.value)


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def _link(match: re.Match[str], owner: griffe.Object, index: dict[str, griffe.Object]) -> str:
    body = match.group("body").strip()
    title, target = body, body
    explicit = re.fullmatch(r"(?P<title>.*?)\s*<(?P<target>[^>]+)>", body)
    if explicit:
        title, target = explicit.group("title"), explicit.group("target")
    short = target.startswith("~")
    target = target.lstrip("~")
    if not explicit:
        title = target.lstrip(".").rsplit(".", 1)[-1] if short else target.lstrip(".")
    if match.group("call") or match.group("role") in ("func", "meth"):
        title += "()"
    path = _resolve(target, owner, index)
    code = f"`{title}`"
    if path is None:
        if _looks_internal(target):
            _log.warning("%s: Sphinx role :%s:`%s` names nothing", owner.path, match.group("role"), body)
        return code
    if not _rendered(path, index):
        return code
    return f"[{code}][{path}]"


def _looks_internal(target: str) -> bool:
    """A relative or bare name is ours; a dotted absolute path elsewhere (``requests.Session``) is not."""
    return target.startswith(".") or "." not in target or target.startswith("airflow_provider_zohocrm")


def _resolve(target: str, owner: griffe.Object, index: dict[str, griffe.Object]) -> str | None:
    """The path of the object ``target`` names, seen from ``owner``'s docstring; ``None`` if none."""
    if target in index:
        return _final(index[target], index)
    name = target.lstrip(".")
    scope: griffe.Object | None = owner
    while scope is not None:
        found = _member(scope, name)
        if found is not None:
            return _final(found, index)
        scope = scope.parent
    ends = [path for path in index if path.endswith("." + name)]
    return _final(index[ends[0]], index) if len(ends) == 1 else None


def _member(scope: griffe.Object, dotted: str) -> griffe.Object | griffe.Alias | None:
    current: Any = scope
    for part in dotted.split("."):
        try:
            current = current.members[part]
        except (KeyError, AttributeError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return current  # type: ignore[no-any-return]


def _final(obj: griffe.Object | griffe.Alias, index: dict[str, griffe.Object]) -> str | None:
    """An import (alias) stands for what it imports: its target's path if that is in the package."""
    if obj.is_alias:
        path = obj.target_path  # type: ignore[union-attr]
        return path if path in index else None
    return obj.path


def _rendered(path: str, index: dict[str, griffe.Object]) -> bool:
    """Whether the reference shows the object (so a link to it resolves): no private name on its path (the
    pages filter ``^_``), and not in a package the pages leave out."""
    parts = path.split(".")
    if any(part.startswith("_") for part in parts[1:]) or any(part in UNRENDERED for part in parts[1:2]):
        return False
    return path in index
