"""MkDocs hook: a page may link to a file of the repository outside ``docs/`` the way it does on disk and on a
code host (``../benchmarks/results/latest.md``, ``../README.md``). The site gets a copy of each such file under
``repo/`` (a Markdown file is rendered as a page, and the files it links to come along), and every link, in the
docs and in the copies, is rewritten to where its target is in the site. A ``../`` link to a file that does not
exist is left alone, so ``mkdocs build --strict`` reports it."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

PREFIX = "repo"
#: ``[text](target)`` and ``![alt](target)``: the target up to a space, ``#`` or ``)``.
_LINK = re.compile(r"(\]\()([^)\s#]+)")


def _dirs(config: Any) -> tuple[Path, Path]:
    """The repository's root (where mkdocs.yml is) and the docs directory."""
    return Path(config["config_file_path"]).resolve().parent, Path(config["docs_dir"]).resolve()


def _site_uri(root: Path, docs: Path, source: Path, target: str) -> str | None:
    """Where the file that ``target`` (a link in the file ``source``) names is in the site: its path under
    ``docs/``, or ``repo/<path>`` for any other file of the repository; ``None`` for a URL or a missing file."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"):
        return None
    path = (source.parent / target).resolve()
    if not path.is_file() or not path.is_relative_to(root):
        return None
    if path.is_relative_to(docs):
        return path.relative_to(docs).as_posix()
    return f"{PREFIX}/{path.relative_to(root).as_posix()}"


def on_files(files: Files, config: Any) -> Files:
    root, docs = _dirs(config)
    todo = [Path(f.abs_src_path) for f in files.documentation_pages() if f.abs_src_path]
    copied: set[str] = set()
    while todo:
        source = todo.pop()
        for _, target in _LINK.findall(source.read_text(encoding="utf-8")):
            uri = _site_uri(root, docs, source, target)
            if uri is None or not uri.startswith(f"{PREFIX}/") or uri in copied:
                continue
            copied.add(uri)
            path = root / uri.removeprefix(f"{PREFIX}/")
            files.append(File.generated(config, uri, abs_src_path=str(path)))
            if path.suffix == ".md":
                todo.append(path)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.abs_src_path is None:
        return markdown
    root, docs = _dirs(config)
    source = Path(page.file.abs_src_path).resolve()
    here = posixpath.dirname(page.file.src_uri) or "."

    def rewrite(match: re.Match[str]) -> str:
        uri = _site_uri(root, docs, source, match.group(2))
        if uri is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(uri, here)

    return _LINK.sub(rewrite, markdown)
