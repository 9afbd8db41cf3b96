"""mkdocs hook: docs/readme.md is the README. The README links its figures as ``docs/figures/...`` from the
repository root; on the site the page sits in docs/ already, so the page is the README's text with that
prefix dropped."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - mkdocs hook signature
    if page.file.src_uri == "readme.md":
        return README.read_text(encoding="utf-8").replace("](docs/figures/", "](figures/")
    return markdown
