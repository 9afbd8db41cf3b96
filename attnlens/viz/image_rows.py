"""The thesis's figure row: an image, then one relevance overlay per method."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnlens.methods.patch_map import upsample_patch_map


def overlay_scale(maps: Tensor, *, shared: bool = False) -> Tensor:
    """Min-max scale patch maps to [0, 1] for drawing: each map alone, or all with one scale.

    Args:
        maps: `(M, rows, columns)` patch maps.
        shared: one minimum and maximum over all M maps (compare magnitudes across methods).

    Returns:
        `(M, rows, columns)` in [0, 1]; a constant map becomes 0.

    Example:
        >>> overlay_scale(torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]]]))
        tensor([[[0., 1.]],
        <BLANKLINE>
                [[0., 0.]]])
    """
    dims = (0, 1, 2) if shared else (1, 2)
    low = maps.amin(dim=dims, keepdim=True)
    span = maps.amax(dim=dims, keepdim=True) - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(maps))


def plot_image_row(image: np.ndarray, maps: Tensor, methods: Sequence[str], out: str | os.PathLike, *,
                   caption: str = "", shared_scale: bool = False, dpi: int = 110) -> Path:
    """Write one PNG row: the image, then each method's map upsampled bilinearly and drawn over it.

    The overlay is the map in the ``jet`` colour map at half opacity over the image, as Chefer
    et al. (CVPR 2021) and Ali et al. (2025) show theirs.

    Args:
        image: `(H, W, 3)` uint8 RGB, the model's input as it saw it.
        maps: `(M, rows, columns)` patch maps, one per method.
        methods: the M panel titles.
        out: the PNG path.
        caption: the figure's title (image name, top predictions).
        shared_scale: one colour scale over all panels (else each map min-max scaled).
        dpi: resolution.

    Returns:
        `out` as a Path.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    height, width = image.shape[:2]
    scaled = overlay_scale(maps.double(), shared=shared_scale)
    upsampled = upsample_patch_map(scaled, (height, width)).clamp(0, 1).numpy()
    panels = len(methods) + 1
    figure, axes = plt.subplots(1, panels, figsize=(2.4 * panels, 2.7), squeeze=False)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image", fontsize=9)
    for axis, name, heat in zip(axes[0, 1:], methods, upsampled):
        axis.imshow(image)
        axis.imshow(heat, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0, interpolation="bilinear")
        axis.set_title(name, fontsize=9)
    for axis in axes[0]:
        axis.set_xticks([])
        axis.set_yticks([])
    if caption:
        figure.suptitle(caption, fontsize=9)
    figure.tight_layout()
    path = Path(out)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def image_rows_html(entries: Sequence[tuple[str, str, Sequence[tuple[str, float]]]], out: str | os.PathLike, *,
                    staging: str | os.PathLike, title: str = "attnlens") -> Path:
    """A self-contained page (PNGs embedded, no network) with one figure row and its top classes per image.

    Args:
        entries: per image (figure file name inside `staging`, image name, [(class, probability)]).
        out: the HTML path.
        staging: the folder holding the figures.
        title: the page title.
    """
    folder = Path(staging)
    blocks = []
    for figure, name, top in entries:
        data = base64.b64encode((folder / figure).read_bytes()).decode("ascii")
        classes = "".join(f"<li>{html.escape(c)} <b>{p:.3f}</b></li>" for c, p in top)
        blocks.append(f"<section><h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
                      f"src='data:image/png;base64,{data}'><ol>{classes}</ol></section>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:1em}img{max-width:100%}section{margin-bottom:2em}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{''.join(blocks)}</body></html>\n")
    path = Path(out)
    path.write_text(page, encoding="utf-8")
    return path
