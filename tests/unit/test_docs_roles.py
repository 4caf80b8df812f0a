"""The API reference's cross-references: every Sphinx role in the package's docstrings becomes an autorefs link
(or inline code, for a target the reference does not show), and one that names nothing is reported
(``scripts/griffe_sphinx_roles.py``); a role left in a page fails the build (``scripts/mkdocs_roles_check.py``).
Griffe reads the source here, as mkdocstrings does, without the 60 s site build."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import griffe
import pytest

#: needs the docs extra (griffe), which the dependency-floors venv does not install
pytestmark = pytest.mark.docs

REPO = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


roles = _script("griffe_sphinx_roles")
check = _script("mkdocs_roles_check")


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


LOAD_WARNINGS = _Warnings()


@pytest.fixture(scope="module")
def package() -> griffe.Module:
    """The package as mkdocstrings loads it, with the extension; its warnings in ``LOAD_WARNINGS``."""
    logger = logging.getLogger(roles._log.name)
    logger.addHandler(LOAD_WARNINGS)
    try:
        extensions = griffe.load_extensions(roles.SphinxRoles())
        return griffe.load("airflow_provider_zohocrm", search_paths=[str(REPO)], extensions=extensions)  # type: ignore[return-value]
    finally:
        logger.removeHandler(LOAD_WARNINGS)


def _docstrings(obj: griffe.Object) -> dict[str, str]:
    found = {obj.path: obj.docstring.value} if obj.docstring else {}
    for member in obj.members.values():
        if not member.is_alias:
            found.update(_docstrings(member))  # type: ignore[arg-type]
    return found


def test_no_docstring_keeps_a_role_and_every_role_names_something(package: griffe.Module) -> None:
    left = {path: text for path, text in _docstrings(package).items() if roles.ROLE.search(text)}
    assert left == {}
    assert LOAD_WARNINGS.messages == []


def test_roles_become_links_by_the_sphinx_lookup_rules(package: griffe.Module) -> None:
    preflight = package["zoho.preflight"].docstring.value
    # relative (~.client.X), bare name in the module, a method of a class (~.mod.Cls.meth)
    assert "[`ZohoCRMClient`][airflow_provider_zohocrm.zoho.client.ZohoCRMClient]" in preflight
    assert "[`run_preflight()`][airflow_provider_zohocrm.zoho.preflight.run_preflight]" in preflight
    hook = package["hooks.zohocrm.ZohoCRMHook"].docstring.value
    assert "[`token_store`][airflow_provider_zohocrm.hooks.token_store]" in hook  # :mod:`.token_store`


def test_a_target_that_names_nothing_is_a_warning_and_private_ones_are_code(
    package: griffe.Module, caplog: pytest.LogCaptureFixture
) -> None:
    owner = package["zoho.auth.TokenManager"]
    index = {obj.path: obj for obj in roles._walk(package)}
    text = ":class:`NoSuchThing`, :meth:`_single_flight`, :class:`requests.Session`"
    with caplog.at_level(logging.WARNING):
        out = roles.ROLE.sub(lambda m: roles._link(m, owner, index), text)
    assert out == "`NoSuchThing`, `_single_flight()`, `requests.Session`"
    assert [r.getMessage() for r in caplog.records] == [
        "airflow_provider_zohocrm.zoho.auth.TokenManager: Sphinx role :class:`NoSuchThing` names nothing"
    ]


def test_the_build_check_finds_a_role_left_in_a_page() -> None:
    assert check.raw_roles("<p>Uses :class:<code>ZohoCRMClient</code> and <code>:param x:</code></p>")
    assert not check.raw_roles('<p>Uses <a href="#x"><code>ZohoCRMClient</code></a></p>')
    assert not check.raw_roles("<p>Write <code>:class:`~.client.ZohoCRMClient`</code> in a docstring.</p>")
