"""`attnlens image`: relevance maps of an image classifier, one figure row per image."""

from __future__ import annotations

import argparse

from attnlens.commands._console import progress_bar, stderr_console
from attnlens.commands.base import add_command
from attnlens.experiments.image_maps import ImageConfig

HELP = ("Explain an image classifier (ViT, DeiT, Vision Mamba) on image files: per image a PNG row (the image, then "
        "one relevance overlay per method), the patch maps as .npy and the top predicted classes.")


def run(config: ImageConfig, args: argparse.Namespace) -> int:
    from attnlens.experiments.image_maps import explain_images  # noqa: PLC0415

    console = stderr_console(args.quiet)
    with progress_bar("images", quiet=args.quiet) as advance:
        results = explain_images(config, progress=advance)
    for result in results:
        top = ", ".join(f"{name.split(',')[0]} {p:.2f}" for name, p in result.top)
        console.print(f"{result.image}: {top}", highlight=False)
    console.print(f"written to {config.out}", highlight=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "image", help=HELP, config=ImageConfig, run=run)
