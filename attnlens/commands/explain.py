"""`attnlens explain`: a token heatmap of what one prediction looked at."""

from __future__ import annotations

import argparse

from attnlens.commands._console import stderr_console

HELP = "Explain one prediction (a classifier's class or a Mamba LM's next token) as a token heatmap."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("explain", help=HELP, description=HELP)
    parser.add_argument("text", help="the text to explain")
    parser.add_argument("--model", required=True, help="hub id or local folder (text classifier or Mamba LM)")
    parser.add_argument("--target", help="class index, or for a language model a token id or single-token string "
                        "(default: the model's own prediction)")
    parser.add_argument("--method", default="rollout", choices=["rollout", "mamba_attr"])
    parser.add_argument("--start-layer", type=int, default=0, help="first layer composed by rollout")
    parser.add_argument("--html", help="also write an HTML heatmap to this file")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from attnlens.experiments.explain import explain  # noqa: PLC0415
    from attnlens.viz.token_heatmap import token_heatmap_text  # noqa: PLC0415

    target = args.target
    if target is not None and target.lstrip("-").isdigit():
        target = int(target)
    result = explain(args.model, args.text, target=target, method=args.method, html=args.html,
                     start_layer=args.start_layer, device=args.device)
    console = stderr_console(args.quiet)
    console.print(f"explaining {result.target_label!r} ({result.method}):")
    console.print(token_heatmap_text(result.tokens, result.relevance))
    if result.html is not None:
        console.print(f"HTML written to {result.html}")
    return 0
