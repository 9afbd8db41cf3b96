"""`attnlens study`: the correlation study on any text classifier and dataset."""

from __future__ import annotations

import argparse

from attnlens.commands._console import progress_bar, stderr_console
from attnlens.commands.base import add_command
from attnlens.experiments.study import StudyConfig, StudyOptions, run_and_write_study

HELP = ("Correlate each method's relevance with input-gradient saliency, per method and layer, on any text "
        "classifier and labelled dataset (TSV, CSV, JSONL, a folder, or a Hugging Face dataset).")


def run_correlation_study(config: StudyOptions, args: argparse.Namespace, description: str) -> int:
    """Run a study with a progress bar on stderr, then print its table (shared by `study` and `sst2`)."""
    from attnlens.experiments.study import run_and_write_distances, shard_folder  # noqa: PLC0415

    if config.distances:
        with progress_bar("layer distances", quiet=args.quiet) as update:
            out = run_and_write_distances(config, progress=update)
        console = stderr_console(args.quiet)
        if not args.quiet:
            console.print((out / "distances.md").read_text(encoding="utf-8"), markup=False, highlight=False)
        console.print(f"distances written to {out}", highlight=False)
        return 0
    with progress_bar(description, quiet=args.quiet) as update:
        result = run_and_write_study(config, progress=update)
    if result is None:  # a --shard job, or a rank other than 0: rank 0 / `attnlens merge` writes the outputs
        if config.shard is not None:
            folder = shard_folder(config.out)
            stderr_console(args.quiet).print(f"shard {config.shard} written to {folder}; when every shard is done: "
                                             f"attnlens merge {folder} --out {config.out}", highlight=False)
        return 0
    print_study_table(result, args.quiet, config.saliency)
    return 0


def print_study_table(result, quiet: bool, saliency: str) -> None:
    """The study's table of medians on stderr, and where the files went."""
    from attnlens.viz.tables import rich_table, study_rows  # noqa: PLC0415

    summary = result.summary
    header, rows = study_rows(summary.method_dicts())
    console = stderr_console(quiet)
    console.print(rich_table(header, rows, title=(
        f"{summary.title}: {summary.n_examples} examples, accuracy {summary.accuracy:.4f} — median Spearman ρ "
        f"(relevance vs {saliency} saliency) per layer")))
    console.print(f"results written to {result.out}")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "study", help=HELP, config=StudyConfig,
                run=lambda config, args: run_correlation_study(config, args, "study"))
