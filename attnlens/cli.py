"""Command line: `attnlens <command> [options]`; a thin layer over `attnlens.experiments`.

Exit codes: 0 success, 1 runtime error, 2 usage error or bad input (one line on stderr;
`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import warnings

from attnlens._checks import ArgumentError, ArgumentTypeError
from attnlens._options import option_names
from attnlens.commands import attention_map, evaluate, explain, finetune, image, image_study, merge, sst2, study

COMMANDS = (study, sst2, merge, explain, attention_map, image, image_study, finetune, evaluate)  # listed statically: a broken command is an error


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"attnlens: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="attnlens", description="Explain what Transformer and Mamba models look at, and "
                           "measure how faithful the explanations are.")
    from attnlens import __version__  # noqa: PLC0415

    parser.add_argument("--version", action="version", version=f"attnlens {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables on stderr")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def _message(err: Exception, config_class: type | None) -> str:
    """The error's first line; an argument error names the option the user typed (`--batch-size`)."""
    if isinstance(err, (ArgumentError, ArgumentTypeError)) and config_class is not None:
        names = option_names(config_class)
        text = err.render(names.get(err.argument, err.argument))
    else:
        text = str(err)
    return text.splitlines()[0] if text else type(err).__name__


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
    config_class = getattr(args, "config_class", None)
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
        print(f"attnlens: error: {_message(err, config_class)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnlens: interrupted", file=sys.stderr)
        if threading.active_count() > 1:  # compiled solves still running in worker threads: do not wait for them
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(130)  # outputs are written atomically and shards line by line: nothing is half-written
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI reports every failure in one line
        if args.debug:
            raise
        print(f"attnlens: error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
