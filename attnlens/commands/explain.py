"""`attnlens explain`: a token heatmap of what one prediction looked at, and a table of the numbers."""

from __future__ import annotations

import argparse

from attnlens.commands._console import stderr_console

HELP = "Explain one prediction (a classifier's class or a Mamba LM's next token) as a token heatmap."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("explain", help=HELP, description=HELP)
    parser.add_argument("text", help="the text to explain")
    parser.add_argument("--model", required=True, help="hub id or local folder (text classifier or Mamba LM)")
    parser.add_argument("--target", help="class index, or for a language model a token id or single-token string "
                        "(default: the model's own prediction). Rollout is class-agnostic: the target changes the "
                        "saliency column (and mamba_attr), not the rollout relevance")
    parser.add_argument("--method", default="rollout", choices=["rollout", "mamba_attr"],
                        help="rollout (any model) or mamba_attr (Mamba models only: needs hidden-attention "
                        "gradients) (default: %(default)s)")
    parser.add_argument("--start-layer", type=int, default=0, help="first layer composed by rollout")
    parser.add_argument("--top", type=int, default=10,
                        help="rows in the table of most relevant tokens, special tokens excluded (default: "
                        "%(default)s)")
    parser.add_argument("--html", help="also write an HTML heatmap with the table to this file (checked before the "
                        "model loads; missing folders are created)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from attnlens._checks import _check_integer  # noqa: PLC0415
    from attnlens.experiments.explain import ROLLOUT_NOTE, explain  # noqa: PLC0415
    from attnlens.viz.token_heatmap import token_heatmap_text, token_table  # noqa: PLC0415

    _check_integer(args.top, "top", low=1)
    target = args.target
    if target is not None and target.lstrip("-").isdigit():
        target = int(target)
    result = explain(args.model, args.text, target=target, method=args.method, html=args.html,
                     start_layer=args.start_layer, device=args.device)
    console = stderr_console(args.quiet)
    console.print(f"explaining {result.target_label!r} ({result.method}):", highlight=False)
    console.print(token_heatmap_text(result.tokens, result.relevance, special=result.special))
    if bool(result.special.any()):
        share = float(result.relevance[result.special].sum())
        console.print(f"colours are scaled over the words; special tokens (grey) hold {share:.2f} of the relevance",
                      highlight=False)
    console.print(token_table(result.tokens, result.relevance, saliency=result.saliency, special=result.special,
                              top=args.top))
    if result.method == "rollout":
        console.print(f"note: {ROLLOUT_NOTE} ({result.target_label!r})", highlight=False)
    if result.html is not None:
        console.print(f"HTML written to {result.html}", highlight=False)
    return 0
