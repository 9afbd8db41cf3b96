"""Build a subcommand's parser from its config dataclass, and the config from the parsed options.

Each field with :func:`attnlens._options.option` metadata becomes one option: its type comes from
the annotation (``bool`` → a switch, ``tuple[str, ...]`` → a comma list, ``int``/``float``/``str``,
optional when ``| None``), its help and choices from the metadata, and its default from the field,
shown in ``--help``. A field without a default is required; a positional field whose default is
None may be omitted. The command line never restates an
option and never mutates a config.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable

from attnlens._options import choices_of, option_names


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(","))  # empty entries are kept, so validation reports them


def _base_type(annotation: object) -> object:
    """``int | None`` → int; ``tuple[str, ...]`` stays a tuple annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return args[0]
    return annotation


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """Add one argument per option field of `config_class` to `parser`."""
    hints = typing.get_type_hints(config_class)
    names = option_names(config_class)
    for item in dataclasses.fields(config_class):
        meta = item.metadata
        if "help" not in meta:
            continue
        kind = _base_type(hints[item.name])
        has_default = item.default is not dataclasses.MISSING or item.default_factory is not dataclasses.MISSING
        default = item.default if item.default is not dataclasses.MISSING else (
            item.default_factory() if has_default else None)
        choices = choices_of(item)
        text = meta["help"].replace("%", "%%")  # argparse formats help with %
        if typing.get_origin(kind) is tuple and choices:
            text += f"; one or more of {', '.join(choices)}"
        if has_default and default is not None and kind is not bool:
            text += f" (default: {_shown(default).replace('%', '%%')})"
        kwargs: dict = {"help": text, "dest": item.name}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if meta.get("positional"):
            kwargs.pop("dest")
            many = typing.get_origin(kind) is tuple
            if has_default and default is None and not many:  # an optional positional (given another way)
                parser.add_argument(item.name, type=str, nargs="?", default=None, **kwargs)
                continue
            parser.add_argument(item.name, type=str, nargs="+" if many else None, **kwargs)
            continue
        flag = names[item.name]
        if kind is bool:
            if default:
                parser.add_argument(f"--no-{item.name.replace('_', '-')}", action="store_false", **kwargs)
            else:
                parser.add_argument(flag, action="store_true", **kwargs)
            continue
        if typing.get_origin(kind) is tuple:
            kwargs.update(type=_comma_list, default=default)
        else:
            kwargs.update(type=kind if kind in (int, float, str) else str, default=default)
            if choices is not None and typing.get_origin(kind) is not tuple:
                kwargs["choices"] = list(choices)
        if not has_default:
            kwargs["required"] = True
            kwargs.pop("default", None)
        parser.add_argument(flag, **kwargs)


def config_from_args(config_class: type, args: argparse.Namespace):
    """A new `config_class` from the parsed options (fields without option metadata keep their default)."""
    values = {item.name: getattr(args, item.name) for item in dataclasses.fields(config_class)
              if "help" in item.metadata and hasattr(args, item.name)}
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
    return config_class(**values)


def add_command(subparsers: argparse._SubParsersAction, name: str, *, help: str, config: type,  # noqa: A002
                run: Callable[[object, argparse.Namespace], int]) -> argparse.ArgumentParser:
    """Register subcommand `name` whose options come from `config` and which calls `run(config, args)`."""
    parser = subparsers.add_parser(name, help=help.replace("%", "%%"), description=help,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, config)
    parser.set_defaults(run=lambda args: run(config_from_args(config, args), args), config_class=config)
    return parser
