"""`attnlens explain`: a token heatmap of what one prediction looked at, and a table of the numbers.

Results go to stdout (the prediction line, the heatmap and the table, or with ``--json`` one JSON
document); notes, warnings and progress go to stderr, which ``--quiet`` silences.
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from attnlens.commands._console import stderr_console
from attnlens.commands.base import add_command
from attnlens.experiments.explain import ExplainConfig

HELP = ("Explain one prediction (a classifier's class or a Mamba LM's next token) as a token heatmap; results on "
        "stdout, notes on stderr.")


def _stdout_console() -> Console:
    """A console on stdout; wide when stdout is not a terminal (a file, a pipe) so tables do not wrap."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _print_result(result, out: Console, err: Console, top: int) -> None:
    from attnlens.viz.token_heatmap import token_heatmap_text, token_table  # noqa: PLC0415

    out.print(result.prediction_line(), highlight=False, markup=False)
    header = f"explaining {result.target_label!r}"
    if result.target != result.prediction:
        header += (f" (the model predicted {result.prediction_label!r}; "
                   f"p({result.target_label!r}) = {float(result.probabilities[result.target]):.2f})")
    out.print(f"{header} with {result.method}:", highlight=False, markup=False)
    out.print(token_heatmap_text(result.tokens, result.relevance, special=result.special,
                                 color_system=out.color_system))
    out.print(token_table(result.tokens, result.relevance, saliency=result.saliency, special=result.special, top=top))
    if bool(result.special.any()):
        share = float(result.relevance[result.special].sum())
        err.print(f"colours are scaled over the words; special tokens (grey) hold {share:.2f} of the relevance",
                  highlight=False, markup=False)


def run(config: ExplainConfig, args: argparse.Namespace) -> int:
    from attnlens.experiments.explain import ROLLOUT_NOTE, explain_config  # noqa: PLC0415

    results = explain_config(config)
    err = stderr_console(args.quiet)
    if config.json:
        documents = [result.to_dict() for result in results]
        print(json.dumps(documents if config.file is not None else documents[0], indent=2, ensure_ascii=False))
    else:
        out = _stdout_console()
        for index, result in enumerate(results):
            if index:
                out.print()
            _print_result(result, out, err, config.top)
    if results[0].method == "rollout":
        labels = sorted({result.target_label for result in results}, key=[r.target_label for r in results].index)
        err.print(f"note: {ROLLOUT_NOTE} ({', '.join(repr(label) for label in labels)})", highlight=False,
                  markup=False)
    if results[0].html is not None:
        err.print(f"HTML written to {results[0].html}", highlight=False, markup=False)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    add_command(subparsers, "explain", help=HELP, config=ExplainConfig, run=run)
