"""CPU (or GPU) benchmark: `attnlens image`'s computation per image against the model's forward pass.

For each model shape (random weights time the same as trained ones):

- floor: the model's forward alone (``adapter.predict``, no gradients), what showing a prediction
  costs;
- maps: :func:`attnlens.experiments.image_maps.image_maps` — one trace (forward with attention or,
  for Vision Mamba, the hidden attention of every layer in both directions, and one backward pass
  for the gradient methods) and every method of the thesis's row: raw, rollout, diffused rollout
  (α = 0.9) and Mamba-Attr (Vim) or GAE (ViT);
- for Vim, the authors' structure: their per-(r, c) loop (``authors_loop`` of
  ``bench_hidden_attention.py``: a running product of ``exp(Δ·A)`` factors per pair, vectorised over
  channels and states) for one layer and direction, time-capped and extrapolated, times
  2 × layers; this is the hidden attention alone (no forward, no methods), a lower bound of
  their cost.

Rounds alternate floor and maps; the best of each is reported. One torch thread by default
(the 2-core CPU is shared; say so with the numbers).

    python benchmarks/bench_image_maps.py [--models vim-small,vit-b16] [--batch 1] [--rounds 3] [--cap 20]
    python benchmarks/bench_image_maps.py --models vim-small --methods raw,rollout,diffused_rollout  # no backward pass
    python benchmarks/bench_image_maps.py --device cuda --batch 32 --threads 16
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hidden_attention import authors_loop  # noqa: E402

from attnlens.experiments.image_maps import check_image_methods, default_image_methods, image_maps  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def build(name: str, device: str):
    torch.manual_seed(0)
    if name == "vit-b16":
        from transformers import ViTConfig, ViTForImageClassification

        from attnlens.models.hf_vit import ViTAdapter

        config = ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072, num_labels=1000,
                           attn_implementation="eager")
        return ViTAdapter(ViTForImageClassification(config).eval().to(device))
    from attnlens.models.vim import VisionMamba, vim_config
    from attnlens.models.vim_adapter import VimAdapter

    return VimAdapter(VisionMamba(vim_config(name)).eval(), device=device)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(function, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    function()
    sync(device)
    return time.perf_counter() - start


def authors_seconds(adapter, cap: float) -> tuple[float, float]:
    """Their loop for one layer and direction at this model's shape (Δ, A, B, C of a real trace), × 2L."""
    config = adapter.model.config
    channels, states, n = config.d_inner, config.d_state, config.seq_len
    g = torch.Generator().manual_seed(0)
    delta = torch.nn.functional.softplus(torch.randn(1, channels, n, generator=g) - 2.0)
    A = -torch.exp(torch.log(torch.arange(1, states + 1, dtype=torch.float32)).expand(channels, states))
    B, C = torch.randn(1, states, n, generator=g), torch.randn(1, states, n, generator=g)
    seconds, done = authors_loop(delta, A, B, C, cap=cap)
    return seconds / done * 2 * config.depth, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vim-small,vit-b16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cap", type=float, default=20.0, help="seconds for the authors' loop before extrapolating")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: the model's default row)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON results file (default: benchmarks/results/image_maps_<device>.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"# attnlens image maps, {args.device}, batch {args.batch}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print("| model | methods | floor s/image | maps s/image | maps / floor | authors' loop s/image | authors / maps |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        adapter = build(name, args.device)
        names = args.methods.split(",") if args.methods else default_image_methods(adapter)
        methods = check_image_methods(adapter, names, alpha=0.9)
        height, width = adapter.preprocessing.size
        pixels = torch.randn(args.batch, 3, height, width, generator=torch.Generator().manual_seed(1)).to(args.device)
        image_maps(adapter, pixels, methods)  # warm-up
        floors, full = [], []
        for _ in range(args.rounds):
            floors.append(timed(lambda: adapter.predict(pixels), args.device) / args.batch)
            full.append(timed(lambda: image_maps(adapter, pixels, methods), args.device) / args.batch)
        floor, maps = min(floors), min(full)
        authors, done = (authors_seconds(adapter, args.cap) if name.startswith("vim") and args.device == "cpu"
                         else (float("nan"), 1.0))
        row = {"model": name, "methods": [m.name for m in methods], "batch": args.batch, "threads": args.threads,
               "device": args.device, "floor_s": floor, "maps_s": maps, "ratio": maps / floor,
               "authors_s": authors, "authors_fraction_done": done, "authors_over_maps": authors / maps}
        rows.append(row)
        how = "" if done >= 1 else f" (extrapolated from {done:.1%})"
        print(f"| {name} | {', '.join(row['methods'])} | {floor:.3f} | {maps:.3f} | {maps / floor:.2f}x | "
              f"{authors:.0f}{how} | {authors / maps:.0f}x |", flush=True)
    out = Path(args.out) if args.out else RESULTS / f"image_maps_{args.device}.json"
    out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
