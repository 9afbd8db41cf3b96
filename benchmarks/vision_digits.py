"""Localisation of every image method on the placed-digits task, for the tiny ViT and Vision Mamba.

Trains the two models of :func:`attnlens.training.vision.train_placed_digits_models` (or reads them
from ``--models DIR``), draws held-out placed digits (digits of ``split="test"``, never seen in
training), computes each method's patch map with :func:`attnlens.experiments.image_maps.image_maps`,
upsamples it bilinearly to the canvas and scores it:

- pointing game (Zhang et al., ECCV 2016) with tolerance 0: the map's maximum on the digit's ink
  (the paper's 15 px would cover most of a 16 px canvas);
- top patch in the digit's quadrant (chance 25 %);
- mIoU and AP of the map against the ink (Chefer et al., CVPR 2021, map thresholded at its mean);
- baseline: a uniformly random map.

Vision Mamba twice: with the recipe's causal convolution of kernel 1, and with the official
kernel 4 (trained here into ``conv4/``), whose convolution shifts each patch into the next three
tokens before the scan that hidden attention describes.

Intervals are 95 % Wilson intervals of a proportion, and bootstrap percentiles for mIoU. Writes a
markdown table to stdout and ``benchmarks/results/vision_digits.md`` (and JSON beside it).

    python benchmarks/vision_digits.py [--models DIR] [--examples 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from attnlens.datasets.placed_digits import placed_digits
from attnlens.experiments.image_maps import check_image_methods, image_maps
from attnlens.methods.patch_map import upsample_patch_map
from attnlens.metrics import pointing_game, segmentation_scores
from attnlens.models import load_adapter

RESULTS = Path(__file__).resolve().parent / "results"
ALPHAS = ("0.5", "0.8", "0.9")
COMMON = ["raw", "diffusion", "rollout", "diffused_rollout", "selective"]


def wilson(hits: float, count: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    z = 1.959964
    p = hits / count
    centre = (p + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(p * (1 - p) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return centre - half, centre + half


def scores(maps: torch.Tensor, data, grid: tuple[int, int]) -> dict[str, float]:
    """Pointing, top-patch quadrant rate, mIoU and AP of `(B, rows, columns)` patch maps."""
    size = data.images.shape[-1]
    pixels = upsample_patch_map(maps.double(), (size, size))
    pointing = pointing_game(pixels, data.masks, tolerance=0)
    rows, columns = grid
    flat = maps.flatten(1).argmax(dim=1)
    row, column = flat // columns, flat % columns
    quadrant = (row >= rows // 2).long() * 2 + (column >= columns // 2).long()
    segmentation = segmentation_scores(pixels, data.masks)
    miou = segmentation["miou"]
    generator = torch.Generator().manual_seed(0)
    boot = torch.stack([miou[torch.randint(0, len(miou), (len(miou),), generator=generator)].mean()
                        for _ in range(1000)])
    count = len(pointing)
    return {"pointing": float(pointing.mean()), "pointing_ci": wilson(float(pointing.sum()), count),
            "quadrant": float((quadrant == data.quadrants).double().mean()),
            "quadrant_ci": wilson(float((quadrant == data.quadrants).sum()), count),
            "miou": float(miou.mean()), "miou_ci": (float(boot.quantile(0.025)), float(boot.quantile(0.975))),
            "ap": float(segmentation["average_precision"].mean())}


def evaluate(adapter, data, names: list[str], batch: int) -> dict[str, dict]:
    methods = check_image_methods(adapter, names, alpha=list(ALPHAS), threshold=["0.5"])
    chunks = []
    for start in range(0, len(data.labels), batch):
        chunks.append(image_maps(adapter, data.images[start:start + batch], methods))
    maps = torch.cat([c.maps for c in chunks])
    logits = torch.cat([c.logits for c in chunks])
    grid = tuple(maps.shape[-2:])
    out = {"accuracy": float((logits.argmax(dim=1) == data.labels).double().mean())}
    for index, name in enumerate(chunks[0].methods):
        out[name] = scores(maps[:, index], data, grid)
    generator = torch.Generator().manual_seed(1)
    out["random map"] = scores(torch.rand(maps[:, 0].shape, generator=generator, dtype=torch.float64), data, grid)
    return out


def table(results: dict[str, dict]) -> str:
    lines = ["| model | method | pointing (tol. 0) | 95 % CI | top patch in quadrant | mIoU | 95 % CI | AP |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model, rows in results.items():
        for name, row in rows.items():
            if name in ("accuracy", "training"):
                continue
            lines.append(f"| {model} | {name} | {row['pointing']:.3f} | {row['pointing_ci'][0]:.3f}–"
                         f"{row['pointing_ci'][1]:.3f} | {row['quadrant']:.3f} | {row['miou']:.3f} | "
                         f"{row['miou_ci'][0]:.3f}–{row['miou_ci'][1]:.3f} | {row['ap']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="folder with vit/, vim/ and conv4/vim/ (missing ones are "
                        "trained into it; default: a new temporary folder)")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7, help="seed of the held-out draws")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from attnlens.training.vision import PlacedDigitsRecipe, train_placed_digits_models

    recipe = PlacedDigitsRecipe()
    folder = Path(args.models) if args.models else Path(tempfile.mkdtemp(prefix="placed-digits-"))
    official_kernel = dataclasses.replace(recipe, vim={**recipe.vim, "conv": 4})  # d_conv of the official Vims
    started = time.perf_counter()
    if not (folder / "vit").is_dir() or not (folder / "vim").is_dir():
        train_placed_digits_models(folder, recipe=recipe, progress=False)
    if not (folder / "conv4" / "vim").is_dir():
        train_placed_digits_models(folder / "conv4", recipe=official_kernel, models=("vim",), progress=False)
    trained = time.perf_counter() - started
    data = placed_digits(args.examples, recipe.size, args.seed, split="test")
    results = {}
    vim_extra = ["mamba_attr", "released_rollout", "released_mamba_attr", "released_raw"]
    for model, path, extra in (("ViT", folder / "vit", ["gae"]), ("Vim", folder / "vim", vim_extra),
                               ("Vim, d_conv 4", folder / "conv4" / "vim", vim_extra)):
        adapter = load_adapter(str(path) if model == "ViT" else f"vim={path}")
        results[model] = evaluate(adapter, data, COMMON + extra, args.batch)
        record = path / "attnlens_training.json"
        if record.is_file():
            results[model]["training"] = json.loads(record.read_text())
    header = (f"Held-out placed digits: {args.examples} images of {recipe.size} px (digits of split='test', seed "
              f"{args.seed}); models trained with PlacedDigitsRecipe() ({f'{trained:.0f} s of training' if trained > 1 else 'read from ' + str(folder)}); "
              f"{args.threads} torch thread(s). Classification accuracy: ViT {results['ViT']['accuracy']:.3f}, "
              f"Vim {results['Vim']['accuracy']:.3f} (d_conv 1, the recipe's), Vim with the official kernel "
              f"d_conv 4 {results['Vim, d_conv 4']['accuracy']:.3f}.")
    text = header + "\n\n" + table(results) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vision_digits.md").write_text(text, encoding="utf-8")
    (RESULTS / "vision_digits.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
