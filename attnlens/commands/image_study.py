"""`attnlens image-study`: perturbation, deletion/insertion, pointing game and segmentation of every image method."""

from __future__ import annotations

import argparse

from attnlens.commands._console import progress_bar, stderr_console
from attnlens.commands.base import add_command
from attnlens.experiments.image_study import ImageStudyConfig

HELP = ("Judge image relevance maps by what the model does when patches go (positive/negative perturbation AUC, "
        "deletion/insertion AUC) and by how well they cover the object (pointing game, mIoU, AP; with --masks), for "
        "every method, on an image folder or CSV: one table methods x metrics with 95 % intervals and Wilcoxon tests "
        "against rollout, the curves as a PNG, JSON/CSV/markdown.")


def run(config: ImageStudyConfig, args: argparse.Namespace) -> int:
    from attnlens.experiments.image_study_writers import image_study_markdown  # noqa: PLC0415
    from attnlens.experiments.image_study import run_image_study  # noqa: PLC0415

    console = stderr_console(args.quiet)
    with progress_bar("images", quiet=args.quiet) as advance:
        summary = run_image_study(config, progress=advance)
    if summary is None:
        from attnlens.experiments.image_study_shards import image_shard_folder  # noqa: PLC0415

        console.print(f"shard {config.shard} written to {image_shard_folder(config.out)}; when every shard is done, "
                      f"run the same command with --merge instead of --shard", highlight=False)
        return 0
    console.print(image_study_markdown(summary), highlight=False, markup=False)
    console.print(f"written to {config.out}", highlight=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "image-study", help=HELP, config=ImageStudyConfig, run=run)
