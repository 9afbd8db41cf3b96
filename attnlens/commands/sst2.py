"""`attnlens sst2`: the SST-2 correlation study of the thesis (a preset of `attnlens study`)."""

from __future__ import annotations

import argparse

from attnlens.commands.base import add_command
from attnlens.commands.study import run_correlation_study
from attnlens.experiments.sst2 import SST2StudyConfig

HELP = "Correlate attention relevance with input-gradient saliency on SST-2, per method and layer."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "sst2", help=HELP, config=SST2StudyConfig,
                run=lambda config, args: run_correlation_study(config, args, "SST-2 study"))
