"""`attnlens explain`: a token heatmap of what one prediction looked at, and a table of the numbers."""

from __future__ import annotations

import argparse

from attnlens.commands._console import stderr_console
from attnlens.commands.base import add_command
from attnlens.experiments.explain import ExplainConfig

HELP = "Explain one prediction (a classifier's class or a Mamba LM's next token) as a token heatmap."


def run(config: ExplainConfig, args: argparse.Namespace) -> int:
    from attnlens.experiments.explain import ROLLOUT_NOTE, explain_config  # noqa: PLC0415
    from attnlens.viz.token_heatmap import token_heatmap_text, token_table  # noqa: PLC0415

    result = explain_config(config)
    console = stderr_console(args.quiet)
    console.print(f"explaining {result.target_label!r} ({result.method}):", highlight=False)
    console.print(token_heatmap_text(result.tokens, result.relevance, special=result.special))
    if bool(result.special.any()):
        share = float(result.relevance[result.special].sum())
        console.print(f"colours are scaled over the words; special tokens (grey) hold {share:.2f} of the relevance",
                      highlight=False)
    console.print(token_table(result.tokens, result.relevance, saliency=result.saliency, special=result.special,
                              top=config.top))
    if result.method == "rollout":
        console.print(f"note: {ROLLOUT_NOTE} ({result.target_label!r})", highlight=False)
    if result.html is not None:
        console.print(f"HTML written to {result.html}", highlight=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "explain", help=HELP, config=ExplainConfig, run=run)
