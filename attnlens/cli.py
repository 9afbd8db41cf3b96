"""Command line: `attnlens <command> [options]`; a thin layer over `attnlens.experiments`.

Exit codes: 0 success, 1 runtime error, 2 usage error or bad input (one line on stderr;
`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings

COMMANDS = ("sst2", "finetune", "explain", "attention_map")  # modules in attnlens/commands
# library argument names that differ from the command-line option they come from
_LIBRARY_NAMES = {"out_dir": "out", "data_dir": "data", "model_name_or_path": "model", "texts": "text"}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"attnlens: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="attnlens", description="Explain what Transformer and Mamba models look at, and "
                           "measure how faithful the explanations are.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables on stderr")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"attnlens.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("attnlens"):
                continue  # command not built in this version
            raise
        module.add_parser(subparsers)
    return parser


def _option_names(parser: argparse.ArgumentParser, command: str | None) -> dict[str, str]:
    """Library argument name → the option a user typed (`batch_size` → `--batch-size`)."""
    names: dict[str, str] = {}
    parsers = [parser]
    for action in parser._actions:  # noqa: SLF001 - argparse keeps subparsers here
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:  # noqa: SLF001
            parsers.append(action.choices[command])
    for each in parsers:
        for action in each._actions:  # noqa: SLF001
            if action.option_strings:
                names[action.dest] = max(action.option_strings, key=len)
    for library, dest in _LIBRARY_NAMES.items():
        if dest in names and library not in names:
            names[library] = names[dest]
    return names


def _in_user_terms(message: str, names: dict[str, str]) -> str:
    """Replace `library_name` in a message by the command-line option it came from."""
    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", lambda m: f"`{names.get(m.group(1), m.group(1))}`", message)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"attnlens: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads <= 0:
            print(f"attnlens: error: Expected `--threads` to be a positive integer, but got {args.threads}.",
                  file=sys.stderr)
            return 2
        import torch  # noqa: PLC0415

        torch.set_num_threads(args.threads)
    names = _option_names(parser, args.command)
    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            elif not args.debug:
                warnings.showwarning = _one_line_warning  # restored by catch_warnings
            return int(args.run(args) or 0)
    except (ValueError, TypeError) as err:
        if args.debug:
            raise
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"attnlens: error: {_in_user_terms(text, names)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnlens: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI reports every failure in one line
        if args.debug:
            raise
        print(f"attnlens: error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
