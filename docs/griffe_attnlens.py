"""Griffe extensions for the API pages (loaded by mkdocs.yml; not part of the package).

- `DocstringMarkup`: attnlens docstrings head their doctests ``Example:`` (STYLE.md, rule 15),
  which griffe's Google parser does not know (it would render the doctest as plain text), and
  some name objects with Sphinx roles (``:func:`~attnlens.methods.rollout```), which Markdown
  shows verbatim. This reads the first as ``Examples:`` and the roles as code spans.
- `ExportedOverSubmodule`: ``attnlens.methods`` exports ``rollout`` from ``methods/rollout.py``,
  so at run time ``attnlens.methods.rollout`` is the function; griffe keeps the submodule instead
  and a ``::: attnlens.methods`` page would drop every such function. This puts the exported
  object back, as Python does.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import griffe

_EXAMPLE_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_SPHINX_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):`(~?)([^`]+)`")


def _code_span(match: re.Match[str]) -> str:
    shorten, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if shorten else target}`"


class DocstringMarkup(griffe.Extension):
    """Rename each ``Example:`` heading to ``Examples:``; turn Sphinx roles into code spans."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of each object as it is created (before it is parsed)."""
        if obj.docstring is not None:
            text = _EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _SPHINX_ROLE.sub(_code_span, text)


def _modules(module: griffe.Module) -> list[griffe.Module]:
    found = [module]
    for member in module.members.values():
        if not member.is_alias and member.is_module:
            found.extend(_modules(member))
    return found


def _objects(obj: griffe.Object) -> list[griffe.Object | griffe.Alias]:
    found: list[griffe.Object | griffe.Alias] = [obj]
    for member in obj.members.values():
        found.extend([member] if member.is_alias else _objects(member))
    return found


class ExportedOverSubmodule(griffe.Extension):
    """Where a package's ``__all__`` names a submodule's member of the same name, show that member."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Swap the shadowed exports in once the whole package is loaded."""
        modules = _modules(pkg)
        # Resolve every alias first: afterwards paths through a swapped submodule no longer resolve.
        for obj in _objects(pkg):
            if obj.is_alias:
                with contextlib.suppress(griffe.AliasResolutionError, griffe.CyclicAliasError):
                    obj.resolve_target()
        for module in modules:
            for name in [str(export) for export in module.exports or ()]:
                member = module.members.get(name)
                if member is None or member.is_alias or not member.is_module or name not in member.members:
                    continue
                module.set_member(name, griffe.Alias(name, member.members[name], parent=module))
