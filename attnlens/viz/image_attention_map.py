"""Draw an :class:`~attnlens.experiments.image_attention_map.ImageAttentionMap`: one row per matrix."""

from __future__ import annotations

import io
import os
from pathlib import Path

from attnlens._files import _write_atomic
from attnlens.experiments.image_attention_map import ImageAttentionMap
from attnlens.methods.patch_map import upsample_patch_map
from attnlens.viz.image_rows import overlay_scale


def plot_image_attention_map(amap: ImageAttentionMap, out: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Write a PNG: per panel (layer, and direction for Vision Mamba) the matrix before diffusion,
    after it, and the class token's row of both over the image.

    Signed matrices (``scale="signed"``) use a diverging colour map centred at 0; absolute ones
    ``viridis`` from 0 to 1 (the authors' min-max scaling).

    Args:
        amap: an ``ImageAttentionMap``.
        out: the PNG path (written atomically; parent folders are created).
        dpi: resolution.

    Returns:
        `out` as a Path.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    height, width = amap.image.shape[:2]
    rows = len(amap.panels)
    figure, axes = plt.subplots(rows, 4, figsize=(11, 2.7 * rows), squeeze=False)
    for axis_row, panel in zip(axes, amap.panels):
        before = panel.before.numpy()
        if amap.scale == "signed":
            bound = float(abs(before).max()) or 1.0
            shown = axis_row[0].imshow(before, cmap="RdBu_r", vmin=-bound, vmax=bound)
        else:
            shown = axis_row[0].imshow(before, cmap="viridis", vmin=0.0, vmax=1.0)
        figure.colorbar(shown, ax=axis_row[0], fraction=0.046)
        shown = axis_row[1].imshow(panel.after.numpy(), cmap="viridis")
        figure.colorbar(shown, ax=axis_row[1], fraction=0.046)
        axis_row[0].set_title(f"{panel.title}: before", fontsize=9)
        axis_row[1].set_title(f"after diffusion (α={amap.alpha:g})", fontsize=9)
        for axis, patch, label in ((axis_row[2], panel.map_before, "class row, before"),
                                   (axis_row[3], panel.map_after, "class row, after")):
            heat = upsample_patch_map(overlay_scale(patch[None].double()), (height, width))[0].clamp(0, 1)
            axis.imshow(amap.image)
            axis.imshow(heat.numpy(), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
            axis.set_title(label, fontsize=9)
        for axis in axis_row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(amap.caption, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return _write_atomic(out, buffer.getvalue())
