"""Command-line metadata on config dataclass fields: the option, its help and choices.

Library configs declare their options once (``field(default=..., metadata=option("help"))``);
the command line builds its parser from them (:mod:`attnlens.commands.base`) and names the
option a user typed in error messages (:class:`attnlens._checks.ArgumentError`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence


def option(help: str, *, flag: str | None = None, choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
           positional: bool = False, metavar: str | None = None, aliases: Sequence[str] = ()) -> dict:  # noqa: A002
    """Field metadata for a config option.

    Args:
        help: one line for ``--help``.
        flag: the option's spelling when it is not ``--<field-name>`` (``--alpha`` for ``alphas``).
        choices: the allowed values (or a function returning them, for registries filled at import).
        positional: a positional argument instead of an option.
        metavar: how ``--help`` shows the value.
        aliases: library argument names that mean this option in messages (``out_dir`` for ``out``).
    """
    return {"help": help, "flag": flag, "choices": choices, "positional": positional, "metavar": metavar,
            "aliases": tuple(aliases)}


def option_names(config_class: type) -> dict[str, str]:
    """Library argument name → the option a user types (``batch_size`` → ``--batch-size``)."""
    names: dict[str, str] = {}
    for item in dataclasses.fields(config_class):
        meta = item.metadata
        spelled = item.name if meta.get("positional") else (meta.get("flag") or "--" + item.name.replace("_", "-"))
        names[item.name] = spelled
        for alias in meta.get("aliases", ()):
            names.setdefault(alias, spelled)
    return names


def choices_of(item: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed values of a config field, or None."""
    choices = item.metadata.get("choices")
    if callable(choices):
        choices = choices()
    return None if choices is None else tuple(choices)
