"""MkDocs hooks (``mkdocs.yml``): the benchmark write-ups join the site from where they live.

``bench/README.md`` and ``bench/results/*.md`` stay next to the benchmark code, where a reader of the
repository finds them; the docs link to them as ``../bench/...``, which is right in the repository.
These hooks add those files to the site under ``bench/`` and rewrite such links to the site's
layout, so that ``mkdocs build --strict`` checks them like any other link.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent
OUTSIDE = ("bench/README.md", "bench/results/*.md")
LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")


def on_files(files: Files, config: Any) -> Files:
    for pattern in OUTSIDE:
        for path in sorted(ROOT.glob(pattern)):
            uri = path.relative_to(ROOT).as_posix()
            files.append(File(uri, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """``../bench/x.md`` from a page under ``docs/`` becomes the site's ``bench/x.md``."""
    if Path(page.file.abs_src_path).is_relative_to(ROOT / "bench"):
        return markdown
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target, anchor = match.group(1), match.group(2) or ""
        in_repo = posixpath.normpath(posixpath.join("docs", here, target))
        if "://" in target or not in_repo.startswith("bench/"):
            return match.group(0)
        return f"]({posixpath.relpath(in_repo, here or '.')}{anchor})"

    return LINK.sub(rewrite, markdown)
