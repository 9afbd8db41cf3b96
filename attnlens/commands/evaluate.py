"""`attnlens evaluate`: faithfulness of every explanation, one table methods × metrics."""

from __future__ import annotations

import argparse

from attnlens.commands._console import progress_bar, stderr_console
from attnlens.commands.base import add_command
from attnlens.experiments.evaluate import EvaluateConfig

HELP = ("Measure how faithful each explanation is to the model on any text dataset: AOPC comprehensiveness and "
        "sufficiency (ERASER), Kendall τ with leave-one-out, the model-randomisation sanity check and the "
        "position-only baseline; one table methods × metrics with CI95 and Wilcoxon tests against rollout.")


def run(config: EvaluateConfig, args: argparse.Namespace) -> int:
    from attnlens.experiments.evaluate import run_and_write_evaluation  # noqa: PLC0415
    from attnlens.experiments.evaluate_outputs import evaluation_rows  # noqa: PLC0415
    from attnlens.viz.tables import rich_table  # noqa: PLC0415

    with progress_bar("evaluate", quiet=args.quiet) as update:
        result = run_and_write_evaluation(config, progress=update)
    console = stderr_console(args.quiet)
    header, rows = evaluation_rows(result.summary)
    console.print(rich_table(header, rows, title=f"faithfulness, {result.summary['n_examples']} examples: median "
                                                 "[CI95], p vs rollout"))
    console.print(f"results written to {result.out}", highlight=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "evaluate", help=HELP, config=EvaluateConfig, run=run)
