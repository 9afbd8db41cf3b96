"""Command line: `attnlens <command> [options]`; a thin layer over `attnlens.experiments`.

Exit codes: 0 success, 1 runtime error, 2 usage error or bad input (one line on stderr;
`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

COMMANDS = ("sst2", "finetune", "explain", "attention_map")  # modules in attnlens/commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnlens", description="Explain what Transformer and Mamba models look "
                                     "at, and measure how faithful the explanations are.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables on stderr")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"attnlens.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("attnlens"):
                continue  # command not built in this version
            raise
        module.add_parser(subparsers)
    return parser


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
    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            return int(args.run(args) or 0)
    except (ValueError, TypeError) as err:
        if args.debug:
            raise
        print(f"attnlens: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
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
