"""MkDocs hook: the build fails on a Sphinx role left as literal text in a page (``:class:`X``` shows as
``:class:<code>X</code>`` in the HTML). ``scripts/griffe_sphinx_roles.py`` turns the docstrings' roles into links;
a role it does not know, or one written in a Markdown page, ends here."""

from __future__ import annotations

import re
from typing import Any

from mkdocs.exceptions import PluginError

#: A role as Markdown renders it: the role name, then the target as inline code (a role quoted in a code span,
#: `<code>:class:`X`</code>`, is text about roles, not one).
RAW_ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|exc|obj|const|ref|doc|term):<code>")


def raw_roles(html: str) -> list[str]:
    """Each raw role in a page's HTML, with a little context."""
    return [html[max(0, m.start() - 40) : m.end() + 40] for m in RAW_ROLE.finditer(html)]


def on_post_page(output: str, page: Any, config: Any) -> str:
    found = raw_roles(output)
    if found:
        raise PluginError(
            f"{page.file.src_uri}: {len(found)} Sphinx role(s) rendered as literal text, e.g. {found[0]!r}."
            " Use a role scripts/griffe_sphinx_roles.py converts (class, mod, func, meth, attr, data, exc, obj),"
            " or a Markdown link."
        )
    return output
