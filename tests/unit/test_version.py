"""One source of truth for the version: ``airflow_provider_zohocrm.__version__``. pyproject.toml takes it through
setuptools' ``attr:`` (which reads a plain literal without importing the package), and Airflow's provider info
reports it. (The wheel's file name is checked where a wheel is built: tests/test_dag_e2e.py.)"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import airflow_provider_zohocrm
from airflow_provider_zohocrm import __version__, get_provider_info

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_takes_the_version_from_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"], "a second version in pyproject.toml"
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "airflow_provider_zohocrm.__version__"}


def test_the_version_is_a_literal_that_setuptools_reads_without_import() -> None:
    """setuptools' ``attr:`` evaluates a top-level ``__version__ = "<literal>"`` with ``ast.literal_eval``; any
    other form makes it import the package (and its imports) at build time."""
    tree = ast.parse(Path(airflow_provider_zohocrm.__file__).read_text())
    values = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
    ]
    assert values == [__version__]


def test_the_version_is_pep_440_and_the_provider_info_reports_it() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", __version__)
    assert get_provider_info()["versions"] == [__version__]
