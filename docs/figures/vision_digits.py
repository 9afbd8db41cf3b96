"""Make the README's vision figure: the thesis's row for the tiny ViT and Vision Mamba trained on placed digits.

Rows: held-out placed digits (digits never seen in training), each explained by the tiny ViT and
by the tiny Vision Mamba of ``attnlens.training.vision`` (trained now unless ``--models DIR``
holds them). Columns: the image, then raw attention, rollout, rollout after Network Diffusion
(α = 0.9), and the model's gradient method (GAE for the ViT, Mamba-Attr for Vim). Each map is
min-max scaled and drawn over the image, upsampled bilinearly.

    python docs/figures/vision_digits.py --out docs/figures/vision_digits.png [--models DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from attnlens.datasets.placed_digits import placed_digits
from attnlens.experiments.image_maps import check_image_methods, default_image_methods, image_maps
from attnlens.methods.patch_map import upsample_patch_map
from attnlens.models import load_adapter
from attnlens.viz.image_rows import overlay_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures/vision_digits.png")
    parser.add_argument("--models", default=None, help="folder with vit/ and vim/ (default: train them now)")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from attnlens.training.vision import PlacedDigitsRecipe, train_placed_digits_models

    recipe = PlacedDigitsRecipe()
    folder = Path(args.models) if args.models else Path(tempfile.mkdtemp(prefix="placed-digits-"))
    if not args.models:
        train_placed_digits_models(folder, recipe=recipe, progress=False)
    data = placed_digits(args.images, recipe.size, args.seed, split="test")
    rows = []
    for name, spec in (("ViT", str(folder / "vit")), ("Vim", f"vim={folder / 'vim'}")):
        adapter = load_adapter(spec)
        methods = check_image_methods(adapter, default_image_methods(adapter), alpha=0.9)
        result = image_maps(adapter, data.images, methods)
        for b in range(args.images):
            rows.append((name, b, result.methods, result.maps[b], int(result.logits[b].argmax())))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows.sort(key=lambda row: (row[1], row[0] != "ViT"))
    columns = 1 + len(rows[0][2])
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.45 * columns, 1.5 * len(rows)), squeeze=False)
    size = data.images.shape[-1]
    titles = ["image"] + [m.replace("diffused_rollout", "diffused rollout") for m in rows[0][2][:-1]] + [
        "gae / mamba_attr"]
    for axis, title in zip(axes[0], titles):
        axis.set_title(title, fontsize=7)
    for axis_row, (name, b, methods, maps, predicted) in zip(axes, rows):
        image = data.images[b].permute(1, 2, 0).numpy()
        heat = upsample_patch_map(overlay_scale(maps.double()), (size, size)).clamp(0, 1).numpy()
        axis_row[0].imshow(image, interpolation="nearest")
        axis_row[0].set_ylabel(f"{name}\n'{int(data.labels[b])}' → '{predicted}'", fontsize=7)
        for axis, values in zip(axis_row[1:], heat):
            axis.imshow(image, interpolation="nearest")
            axis.imshow(values, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
        for axis in axis_row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout(pad=0.3)
    figure.savefig(args.out, dpi=90)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
