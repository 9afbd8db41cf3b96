"""`attnlens merge`: summarise the shards of one study made by separate jobs (`--shard i/N`)."""

from __future__ import annotations

import argparse

from attnlens.commands.base import add_command
from attnlens.commands.study import print_study_table
from attnlens.experiments.study import MergeConfig

HELP = ("Merge the shard files of one study (made with --shard i/N by separate jobs), summarise them and write the "
        "outputs; shards of different runs (config, data or model) are refused.")


def run(config: MergeConfig, args: argparse.Namespace) -> int:
    from attnlens.experiments.study import merge_from_config  # noqa: PLC0415

    result = merge_from_config(config)
    print_study_table(result, args.quiet, result.summary.settings.get("saliency", ""))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "merge", help=HELP, config=MergeConfig, run=run)
