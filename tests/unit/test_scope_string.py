"""The scope string that README.md and docs/connection.md tell an admin to paste is the one
``zoho.scopes.token_scopes()`` builds (which tests/emulator/test_token_scopes.py proves enough), and it names
every scope the issue found missing from the old list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_zohocrm.zoho.scopes import (
    add_tags,
    coql_read,
    custom_views_read,
    emails_read,
    module_read,
    modules_read,
    org_read,
    parse_scopes,
    token_scopes,
    unblock,
)

REPO = Path(__file__).resolve().parents[2]


def _pasted(path: Path) -> list[str]:
    """The scope strings in the page's ```text blocks."""
    blocks = re.findall(r"```text\n\s*(ZohoCRM\.[^\n]*)\n\s*```", path.read_text(encoding="utf-8"))
    return [b.strip() for b in blocks]


@pytest.mark.parametrize("page", ["README.md", "docs/connection.md"])
def test_the_page_gives_the_string_token_scopes_builds(page: str) -> None:
    assert _pasted(REPO / page) == [token_scopes()]


def test_it_covers_every_step_for_each_module_with_every_documented_alternative() -> None:
    scopes = parse_scopes(token_scopes(["Leads", "Deals"]))
    needs = [org_read(), modules_read(), custom_views_read(), coql_read(), emails_read()]
    needs += [n for m in ("Leads", "Deals") for n in (module_read(m), unblock(m), add_tags(m))]
    assert set(scopes) == {alt for need in needs for alt in need.alternatives}
    assert len(scopes) == len(set(scopes))
    for named in (
        "ZohoCRM.modules.emails.READ",
        "ZohoCRM.settings.custom_views.READ",
        "ZohoCRM.settings.tags.ALL",
        "ZohoCRM.settings.modules.READ",
    ):
        assert named in scopes
    assert not [s for s in scopes if s.endswith(".ALL") and s != "ZohoCRM.settings.tags.ALL"], "no wildcard"
    assert "," in token_scopes() and " " not in token_scopes()  # the API console's Generate Code box
