"""Network Diffusion on CPU: its cost next to the model's, and the exact algorithms side by side.

Runs on one CPU thread (``torch.set_num_threads(1)``). Prints a markdown report and writes it to ``--out``.

    python benchmarks/bench_network_diffusion.py --out benchmarks/results/network_diffusion.md

Part 1, the SST-2 dev set (872 sentences) through minilm-sst2 (6 layers, 12 heads), batches of 32 sentences
grouped by length as in the SST-2 study: wall time of the model's forward + backward (``adapter.trace`` with
input-gradient saliency, what the study runs), then of :func:`network_diffusion` at α = 0.9 on the same
attention, head-fused `(B, 6, n, n)` (what the study's ``diffusion`` methods run) and per head
`(B, 6, 12, n, n)`, for the public function (checks included, CPU default algorithm) and for each exact
algorithm (``svd``, ``cholesky``, ``matmul``; no checks). Also the largest difference between algorithms.

Part 2, synthetic float32 attention (softmax of 3·N(0, 1) logits) in the two GPU benchmark shapes: 24 × 197²
(Vision Mamba small, one image) and 64 × 12 × 66² (a BERT-base batch, head-fused).

Diffusion timings are the best of ``--repeats`` runs; the model is timed once (it is the long part).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from attnlens._checks import _check_mask
from attnlens.datasets.sst2 import load_sst2
from attnlens.methods._common import fuse_heads
from attnlens.methods.network_diffusion import _ALGORITHMS, _network_diffusion_compute, network_diffusion
from attnlens.models.hf_text import load_text_classifier

SHARED = Path(__file__).resolve().parents[2] / "shared"
ALPHA = 0.9


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def part_sst2(args: argparse.Namespace) -> list[str]:
    adapter = load_text_classifier(str(args.model))
    split = load_sst2("dev", data_dir=args.data)
    sentences = split.sentences[: args.limit] if args.limit else split.sentences
    lengths = [len(ids) for ids in adapter.tokenizer(sentences)["input_ids"]]
    batches = _length_batches(lengths, args.batch_size)
    adapter.trace([sentences[batches[0][0]]], saliency="sum_abs")  # warm-up
    model_time = 0.0
    recorded = []
    for batch in batches:
        start = time.perf_counter()
        trace = adapter.trace([sentences[i] for i in batch], saliency="sum_abs")
        model_time += time.perf_counter() - start
        recorded.append((trace.attentions, trace.mask))
    fused = [(fuse_heads(attn, how="mean"), mask) for attn, mask in recorded]
    matrices_fused = sum(a.shape[0] * a.shape[1] for a, _ in fused)
    matrices_heads = sum(a.shape[0] * a.shape[1] * a.shape[2] for a, _ in recorded)

    def run_public(data):
        for attn, mask in data:
            network_diffusion(attn, alpha=ALPHA, mask=mask)

    def run_algorithm(data, algorithm):
        for attn, mask in data:
            _network_diffusion_compute(attn, _check_mask(mask, "mask", attn.shape[0], attn.shape[-1], attn.device),
                                       ALPHA, None, algorithm)

    rows = []
    for label, data, count in (("head-fused (B, 6, n, n)", fused, matrices_fused),
                               ("per head (B, 6, 12, n, n)", recorded, matrices_heads)):
        entries = [("public `network_diffusion` (checks + default `cholesky`)", lambda d=data: run_public(d))]
        entries += [(f"`{name}` only", lambda d=data, a=name: run_algorithm(d, a)) for name in _ALGORITHMS]
        for name, fn in entries:
            seconds = _best(fn, args.repeats)
            rows.append(f"| {label} | {count} | {name} | {seconds:.3f} | {100 * seconds / model_time:.1f} % |")
    worst = 0.0
    for attn, mask in fused:
        mask = _check_mask(mask, "mask", attn.shape[0], attn.shape[-1], attn.device)
        results = [_network_diffusion_compute(attn, mask, ALPHA, None, name) for name in _ALGORITHMS]
        worst = max(worst, max(float((r - results[0]).abs().max()) for r in results[1:]))
    mean_n = sum(lengths) / len(lengths)
    return [
        f"### Part 1: SST-2 dev ({len(sentences)} sentences, mean {mean_n:.1f} tokens, batches of "
        f"{args.batch_size} by length) through {Path(args.model).name}",
        "",
        f"Model forward + backward (`adapter.trace`, saliency `sum_abs`): **{model_time:.2f} s** "
        f"({len(batches)} batches).",
        "",
        "| attention | matrices | diffusion (α = 0.9, float32) | seconds | added to the model time |",
        "|---|---:|---|---:|---:|",
        *rows,
        "",
        f"Largest difference between the three algorithms' results (head-fused, float32): {worst:.2e}.",
        "",
    ]


def part_synthetic(args: argparse.Namespace) -> list[str]:
    generator = torch.Generator().manual_seed(0)
    shapes = [("24 × 197² (Vim-S, one image)", (1, 24, 197, 197)),
              ("64 × 12 × 66² (BERT-base batch)", (64, 12, 66, 66))]
    if args.limit:
        shapes = [(name, (shape[0], min(shape[1], 4), min(shape[2], 20), min(shape[3], 20))) for name, shape in shapes]
    rows = []
    for label, shape in shapes:
        attn = torch.softmax(torch.randn(shape, generator=generator) * 3, dim=-1)
        mask = torch.ones(shape[0], shape[-1], dtype=torch.bool)
        reference = _network_diffusion_compute(attn.double(), mask, ALPHA, None, "svd")
        cells = []
        for name in _ALGORITHMS:
            seconds = _best(lambda a=name: _network_diffusion_compute(attn, mask, ALPHA, None, a), args.repeats)
            error = float((_network_diffusion_compute(attn, mask, ALPHA, None, name).double() - reference).abs().max())
            cells.append(f"{1000 * seconds:.0f} ms ({error:.0e})")
        public = _best(lambda: network_diffusion(attn, alpha=ALPHA, mask=mask), args.repeats)
        rows.append(f"| {label} | {' | '.join(cells)} | {1000 * public:.0f} ms |")
    return [
        "### Part 2: synthetic float32 attention, GPU benchmark shapes, on this CPU",
        "",
        "Milliseconds, best of the repeats; in brackets the largest deviation from the float64 SVD result.",
        "",
        f"| shape | {' | '.join(f'`{name}`' for name in _ALGORITHMS)} | public (checks + default) |",
        "|---|" + "---:|" * (len(_ALGORITHMS) + 1),
        *rows,
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-sst2"))
    parser.add_argument("--data", default=str(SHARED / "data"))
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only, smaller shapes (smoke test)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = "python benchmarks/bench_network_diffusion.py" + (f" --limit {args.limit}" if args.limit else "")
    lines = [
        "## Network Diffusion on CPU",
        "",
        f"Command: `{command}`. Machine: {platform.processor() or platform.machine()}, "
        f"{platform.platform()}, Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"**1 thread** (`torch.set_num_threads(1)`), shared with other jobs (timings are noisy).",
        "",
        *part_sst2(args),
        *part_synthetic(args),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
