"""`attnlens attention-map`: attention before and after Network Diffusion, per layer."""

from __future__ import annotations

import argparse

from attnlens.commands._console import stderr_console
from attnlens.commands.base import add_command
from attnlens.experiments.attention_map import AttentionMapConfig

HELP = ("Draw each layer's head-fused attention before and after network diffusion, with the rollout relevance "
        "of both, as a PNG or an interactive HTML page (chosen by the extension of --out).")


def run(config: AttentionMapConfig, args: argparse.Namespace) -> int:
    from attnlens.experiments.attention_map import attention_map_from_config  # noqa: PLC0415

    path = attention_map_from_config(config)
    stderr_console(args.quiet).print(f"written to {path}", highlight=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "attention-map", help=HELP, config=AttentionMapConfig, run=run)
