"""`attnlens finetune`: the default SST-2 classifier from all-MiniLM-L6-v2, or a Mamba one (`--arch mamba`)."""

from __future__ import annotations

import argparse

from attnlens.commands._console import stderr_console
from attnlens.commands.base import add_command
from attnlens.training.finetune import FinetuneConfig

HELP = ("Fine-tune an SST-2 classifier (default base: the bundled all-MiniLM-L6-v2) and save it as the default model; "
        "--arch mamba trains a Mamba classifier (from a Mamba LM --base, or from scratch).")


def run(config: FinetuneConfig, args: argparse.Namespace) -> int:
    from attnlens.training import finetune_from_config  # noqa: PLC0415

    result = finetune_from_config(config, progress=not args.quiet)
    console = stderr_console(args.quiet)
    console.print(f"saved to {result.out_dir}: {result.steps} steps ({result.epochs_done:.3f} epochs, stopped by "
                  f"{result.stopped_by}) in {result.seconds:.1f} s; SST-2 dev accuracy {result.dev_accuracy:.4f}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "finetune", help=HELP, config=FinetuneConfig, run=run)
