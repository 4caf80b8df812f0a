"""Every relative link in README.md and the docs site's pages (docs/**/*.md) points at a file of the repository,
and a ``#anchor`` into a Markdown file names one of its headings: a page moved or a heading renamed shows here,
not as a reader's dead link. (``mkdocs build --strict`` in CI checks the built site the same way.)"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
#: ``[text](target)`` / ``![alt](target)``; the target ends at a space (a title follows) or ``)``.
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where a ``](`` is not a link."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "``", line))
    return "\n".join(lines)


def slugify(heading: str) -> str:
    """The anchor of a heading, as Python-Markdown's ``toc`` (MkDocs) makes it; GitHub agrees for ours."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    found = set()
    for line in _prose(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            found.add(slugify(match.group(1)))
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(_prose(page.read_text(encoding="utf-8")))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)  # http:, https:, mailto:
    ]


def test_the_pages_and_their_links_are_found() -> None:
    assert REPO / "docs" / "index.md" in PAGES and len(PAGES) > 10
    assert "docs/connection.md" in relative_links(REPO / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or not file.is_relative_to(REPO):
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_slugs_match_the_site() -> None:
    assert slugify("Getting a refresh token (self-client walkthrough)") == (
        "getting-a-refresh-token-self-client-walkthrough"
    )
    assert slugify("Zoho's limits, handled") == "zohos-limits-handled"
    assert slugify("The example DAG: `dags/zoho_unblock_bounced_emails.py`") == (
        "the-example-dag-dagszoho_unblock_bounced_emailspy"
    )
