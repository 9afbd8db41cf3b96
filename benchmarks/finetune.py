"""Fine-tune the default SST-2 model under a time budget and report steps and dev accuracy.

Sets ``torch.set_num_threads`` (1 by default) so CPU runs on a shared machine are comparable.

    python benchmarks/finetune.py --data ../shared/data --time-budget 240 --threads 1 --out /tmp/minilm-sst2-cpu
    python benchmarks/finetune.py --data ../shared/data --device cuda --epochs 2 --out /tmp/minilm-sst2-gpu
    python benchmarks/finetune.py --base mpnet --data ../shared/data --time-budget 1800 --threads 2 \
        --batch-size 32 --gradient-accumulation 4 --max-length 64
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from attnlens.training import finetune_sst2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="minilm (default), mpnet, or a hub id or folder")
    parser.add_argument("--data", default=None, help="folder holding sst2/{train,dev}.tsv")
    parser.add_argument("--out", default=None, help="output folder; default the attnlens cache")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds of training")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gradient-accumulation", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N dev sentences")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = finetune_sst2(base=args.base, data_dir=args.data, out_dir=args.out, time_budget=args.time_budget,
                           epochs=args.epochs, device=args.device,
                           max_steps=args.max_steps, batch_size=args.batch_size, eval_limit=args.eval_limit,
                           gradient_accumulation=args.gradient_accumulation, learning_rate=args.learning_rate,
                           max_length=args.max_length,
                           progress=not args.quiet)
    total = time.perf_counter() - start
    losses = result.losses
    head, tail = losses[: min(50, len(losses))], losses[-min(50, len(losses)):]
    gpu = f", {torch.cuda.get_device_name(args.device)}" if args.device.startswith("cuda") else ""
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores{gpu}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average before {load_before:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    print()
    print("| budget (s) | steps | sentences seen | epochs | train s | steps/s | examples/s | loss first 50 "
          "| loss last 50 | dev accuracy | stopped by | total s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    budget = "-" if args.time_budget is None else f"{args.time_budget:g}"
    print(f"| {budget} | {result.steps} | {result.steps * args.batch_size} | {result.epochs_done:.3f} "
          f"| {result.seconds:.1f} | {result.steps / result.seconds:.2f} | {result.examples_per_second:.2f} "
          f"| {sum(head) / len(head):.3f} "
          f"| {sum(tail) / len(tail):.3f} | {result.dev_accuracy:.4f} | {result.stopped_by} | {total:.1f} |")


if __name__ == "__main__":
    main()
