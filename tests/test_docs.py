"""The API reference (mkdocs.yml, docs/): one page per public package, and the griffe extensions it relies on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_INTERNAL_PACKAGES = {"commands"}  # the CLI's own modules; `attnlens --help` documents them


def _public_packages() -> list[str]:
    return sorted(
        path.parent.name for path in (ROOT / "attnlens").glob("*/__init__.py")
        if not path.parent.name.startswith("_") and path.parent.name not in _INTERNAL_PACKAGES
    )


def test_every_public_package_has_an_api_page_in_the_nav():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for package in _public_packages():
        page = ROOT / "docs" / "api" / f"{package}.md"
        assert page.is_file(), f"docs/api/{package}.md is missing"
        assert re.search(rf"^::: attnlens\.{package}$", page.read_text(encoding="utf-8"), re.MULTILINE)
        assert f"api/{package}.md" in config, f"mkdocs.yml's nav does not list api/{package}.md"


def test_extensions_show_exports_shadowed_by_submodules_and_read_example_sections():
    griffe = pytest.importorskip("griffe", reason="the docs extra (pip install -e '.[docs]') is not installed")
    if not hasattr(griffe.Extension, "on_package"):
        pytest.skip("griffe < 2 (the docs extra asks for mkdocstrings-python>=2.0)")
    extensions = griffe.load_extensions(f"{ROOT / 'docs' / 'griffe_attnlens.py'}:DocstringMarkup",
                                        f"{ROOT / 'docs' / 'griffe_attnlens.py'}:ExportedOverSubmodule")
    package = griffe.load("attnlens", search_paths=[str(ROOT)], extensions=extensions, resolve_aliases=False)
    training = package["training"]
    assert training["finetune_sst2"].is_function
    experiments = package["experiments"]
    # `attnlens.experiments.attention_map` is the function at run time, not the submodule
    assert experiments["attention_map"].is_function
    assert experiments["compute_attention_map"].is_function
    kinds = {section.kind.value for section in experiments["compute_attention_map"].docstring.parse("google")}
    assert "examples" in kinds
    assert "`AttentionMap`" in experiments["compute_attention_map"].docstring.value
