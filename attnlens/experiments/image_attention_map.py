"""The attention-map figure of one image: chosen layers' attention before and after Network Diffusion.

For a ViT or DeiT, each chosen layer's head-fused attention; for Vision Mamba, the hidden
attention of each scan direction (forward, lower-triangular; backward flipped back to token
order, upper-triangular), shown as the authors plot it (absolute value, min-max scaled) or signed
with a diverging colour map. Beside each matrix, the same matrix after Network Diffusion, and the
class token's row of both drawn as patch maps over the image. The thesis shows this for Vision
Mamba's hidden attention. :func:`image_attention_map_data` computes; the view in
:mod:`attnlens.viz.image_attention_map` draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice
from attnlens.methods._common import _normalize_rows
from attnlens.methods.network_diffusion import network_diffusion
from attnlens.methods.patch_map import patch_map

SCALES = ("abs", "signed")


class ImagePanel(NamedTuple):
    """One matrix of the figure, before and after diffusion.

    Attributes:
        title: ``"layer 3"`` or ``"layer 3, forward"``.
        before: `(n, n)` the matrix as drawn (signed or absolute, see `scale`).
        after: `(n, n)` Network Diffusion of ``norm_rows(|before|)``.
        map_before: `(rows, columns)` the class token's row of ``norm_rows(|before|)`` on the patch grid.
        map_after: `(rows, columns)` the class token's row of `after` on the patch grid.
    """

    title: str
    before: Tensor
    after: Tensor
    map_before: Tensor
    map_after: Tensor


class ImageAttentionMap(NamedTuple):
    """What the image attention-map figure draws."""

    image: np.ndarray
    panels: list[ImagePanel]
    alpha: float
    scale: str
    caption: str


def parse_layers(layers: Sequence[str] | None, count: int) -> list[int]:
    """Layer indices from ``("0", "5", "-1")`` (negative counts from the end); None: the first,
    middle and last layer.

    Raises:
        ArgumentError: naming `layers` on a non-integer or out-of-range entry, or a repeat.

    Example:
        >>> parse_layers(None, 24), parse_layers(["0", "-1"], 24)
        ([0, 12, 23], [0, 23])
    """
    if not layers:
        return sorted({0, count // 2, count - 1})
    picked = []
    for text in layers:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise ArgumentError(f"Expected every entry of `layers` to be an integer, but got {text!r}.",
                                "layers") from None
        if not -count <= value < count:
            raise ArgumentError(f"Expected every entry of `layers` to lie in [{-count}, {count - 1}], but got "
                                f"{value}.", "layers")
        picked.append(value % count)
    if len(set(picked)) != len(picked):
        raise ArgumentError(f"Expected the entries of `layers` to be distinct layers, but got {','.join(layers)}.",
                            "layers")
    return picked


def _directions(adapter: Any, trace: Any) -> list[tuple[str, Tensor]]:
    """`(L, n, n)` matrices per direction of one example: Vim's two scans, or fused heads."""
    extras = trace.extras
    if "hidden_attention_fwd" in extras and "hidden_attention_bwd" in extras:
        return [("forward", extras["hidden_attention_fwd"][0]), ("backward", extras["hidden_attention_bwd"][0])]
    return [("", trace.attentions[0].mean(dim=1))]


def image_attention_map_data(adapter: Any, image: Any, *, alpha: float = 0.9, layers: Sequence[str] | None = None,
                             scale: str = "abs") -> ImageAttentionMap:
    """Chosen layers' attention of one image before and after diffusion, with class-row patch maps.

    Network Diffusion (the thesis; :func:`~attnlens.methods.network_diffusion`) of
    ``norm_rows(|A|)`` per matrix; for Vision Mamba the hidden attention of each direction
    (Ali, Zimerman & Wolf 2025).

    Args:
        adapter: an image adapter.
        image: an image path or PIL image.
        alpha: diffusion strength in [0, 1).
        layers: layer indices as strings (None: first, middle, last).
        scale: ``"abs"`` (absolute value, min-max scaled: the authors' plots) or ``"signed"``.

    Returns:
        An :class:`ImageAttentionMap` of float64 CPU tensors.

    Raises:
        ValueError: on a bad option or image (one line naming it).
    """
    from attnlens.datasets.images import as_pixel_values, to_display  # noqa: PLC0415

    _check_choice(scale, "scale", SCALES)
    pixels = as_pixel_values([image], adapter.preprocessing).to(adapter.device)
    picked = parse_layers(layers, adapter.num_layers)
    trace = adapter.trace(pixels, saliency=None)
    readout = int(trace.readout[0])
    panels: list[tuple[tuple[int, int], ImagePanel]] = []
    for order, (direction, matrices) in enumerate(_directions(adapter, trace)):
        chosen = matrices.detach().to("cpu", torch.float64)[picked]
        positive = _normalize_rows(chosen.abs())
        diffused = network_diffusion(positive[None], alpha=alpha)[0]
        for index, layer in enumerate(picked):
            before = chosen[index]
            if scale == "abs":
                low, high = before.abs().min(), before.abs().max()
                before = (before.abs() - low) / (high - low) if high > low else torch.zeros_like(before)
            rows = torch.stack([positive[index, readout], diffused[index, readout]])
            maps = patch_map(rows, trace.patch_positions.cpu(), trace.grid)
            title = f"layer {layer}" + (f", {direction}" if direction else "")
            panels.append(((index, order), ImagePanel(title, before, diffused[index], maps[0], maps[1])))
    display = to_display(pixels[0].cpu(), adapter.preprocessing)
    probabilities = torch.softmax(trace.logits[0].detach().double(), dim=-1)
    predicted = int(probabilities.argmax())
    name = getattr(image, "name", None) or str(image)
    caption = f"{name} — predicted {adapter.label(predicted)!r} ({float(probabilities[predicted]):.2f})"
    ordered = [panel for _, panel in sorted(panels, key=lambda item: item[0])]  # by layer, then direction
    return ImageAttentionMap(display, ordered, float(alpha), scale, caption)


__all__ = ["SCALES", "ImageAttentionMap", "ImagePanel", "image_attention_map_data", "parse_layers"]
