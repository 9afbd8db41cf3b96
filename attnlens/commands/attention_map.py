"""`attnlens attention-map`: attention before and after Network Diffusion, per layer."""

from __future__ import annotations

import argparse

from attnlens.commands._console import stderr_console

HELP = ("Draw each layer's head-fused attention before and after network diffusion, with the rollout relevance "
        "of both, as a PNG or an interactive HTML page (chosen by the extension of --out).")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("attention-map", help=HELP, description=HELP)
    parser.add_argument("--model", required=True, help="hub id or local folder of a text classifier")
    parser.add_argument("--text", required=True, help="the sentence to draw")
    parser.add_argument("--out", required=True, help="output file: .png for a PNG, .html for an interactive page "
                        "(checked before the model loads; written atomically; missing folders are created)")
    parser.add_argument("--alpha", type=float, default=0.9, help="diffusion strength in [0, 1) (default: %(default)s)")
    parser.add_argument("--html", action="store_true", help="optional: insist on an HTML page (--out must end in "
                        ".html; the extension alone already decides)")
    parser.add_argument("--reduce", default="cls", choices=["cls", "max", "mean"], help="relevance row reduction")
    parser.add_argument("--top-k", type=int, help="keep the k largest entries per row before diffusion")
    parser.add_argument("--head-fusion", default="mean", choices=["mean", "max", "min"])
    parser.add_argument("--no-residual", action="store_true", help="rollout without the residual identity")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from attnlens.experiments.attention_map import attention_map  # noqa: PLC0415

    # the format follows the extension of --out; --html only insists on .html (checked before loading)
    html = True if args.html else None
    path = attention_map(args.model, args.text, alpha=args.alpha, out=args.out, html=html, reduce=args.reduce,
                         top_k=args.top_k, head_fusion=args.head_fusion, residual=not args.no_residual,
                         device=args.device)
    stderr_console(args.quiet).print(f"written to {path}", highlight=False)
    return 0
