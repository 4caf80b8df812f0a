"""MkDocs hook: a page may link to a file of the repository outside ``docs/`` the way it does on disk and on a
code host (``../benchmarks/results/latest.md``). The site gets a copy of each such file under ``repo/`` (a
Markdown file is rendered as a page, and the files it links to come along), and the link is rewritten to it.
A ``../`` link to a file that does not exist is left alone, so ``mkdocs build --strict`` reports it."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

PREFIX = "repo"
#: ``[text](target)`` and ``![alt](target)``: the target up to a space, ``#`` or ``)``.
_LINK = re.compile(r"(\]\()([^)\s#]+)")


def _repo_root(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _outside_target(root: Path, docs: Path, page_src: Path, target: str) -> str | None:
    """The repo-relative path of ``target`` (a link in ``page_src``) when it leaves ``docs/`` for a file of the
    repository, else ``None``."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    path = (page_src.parent / target).resolve()
    if not path.is_file() or path.is_relative_to(docs) or not path.is_relative_to(root):
        return None
    return path.relative_to(root).as_posix()


def on_files(files: Files, config: Any) -> Files:
    root, docs = _repo_root(config), Path(config["docs_dir"]).resolve()
    todo = [Path(f.abs_src_path) for f in files.documentation_pages() if f.abs_src_path]
    seen: set[str] = set()
    while todo:
        page = todo.pop()
        for _, target in _LINK.findall(page.read_text(encoding="utf-8")):
            outside = _outside_target(root, docs, page, target)
            if outside is None and page.is_relative_to(docs):
                continue
            if outside is None:  # a link inside a copied file: keep its own neighbours
                candidate = (page.parent / target).resolve()
                if not candidate.is_file() or not candidate.is_relative_to(root):
                    continue
                outside = candidate.relative_to(root).as_posix()
            if outside in seen:
                continue
            seen.add(outside)
            files.append(File.generated(config, f"{PREFIX}/{outside}", abs_src_path=str(root / outside)))
            if outside.endswith(".md"):
                todo.append(root / outside)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    root, docs = _repo_root(config), Path(config["docs_dir"]).resolve()
    if page.file.abs_src_path is None or not Path(page.file.abs_src_path).resolve().is_relative_to(docs):
        return markdown
    src = Path(page.file.abs_src_path).resolve()

    def rewrite(match: re.Match[str]) -> str:
        outside = _outside_target(root, docs, src, match.group(2))
        if outside is None:
            return match.group(0)
        here = posixpath.dirname(page.file.src_uri)
        return match.group(1) + posixpath.relpath(f"{PREFIX}/{outside}", here or ".")

    return _LINK.sub(rewrite, markdown)
