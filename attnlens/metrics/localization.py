"""Localisation of an image relevance map against the object's pixel mask: pointing game and segmentation.

Both take maps already at pixel resolution; a patch map is upsampled first with
`attnlens.methods.patch_map.upsample_patch_map` (bilinear, as Chefer et al. do).
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, ArgumentTypeError, _check_finite, _check_floating, _check_number


def _localization_check(maps: Tensor, masks: Tensor) -> Tensor:
    """Check `(B, H, W)` finite floating maps and same-shaped masks; return the masks as bool on the maps' device."""
    _check_floating(maps, "maps")
    if maps.ndim != 3:
        raise ArgumentError(f"Expected `maps` to have shape (B, H, W), but got {tuple(maps.shape)}.", "maps")
    if maps.numel() == 0:
        raise ArgumentError(f"Expected `maps` to hold at least one pixel per example, but got shape "
                            f"{tuple(maps.shape)}.", "maps")
    _check_finite(maps, "maps")
    if not isinstance(masks, Tensor):
        raise ArgumentTypeError(f"Expected `masks` to be a torch.Tensor, but got {type(masks).__name__}.", "masks")
    if tuple(masks.shape) != tuple(maps.shape):
        raise ArgumentError(f"Expected `masks` to have the shape of `maps` (B, H, W) = {tuple(maps.shape)}, but got "
                            f"{tuple(masks.shape)}.", "masks")
    if masks.dtype != torch.bool:
        if masks.is_floating_point() or masks.is_complex():
            raise ArgumentTypeError(f"Expected `masks` to be a bool or integer tensor, but got {masks.dtype}.", "masks")
        masks = masks != 0
    masks = masks.to(maps.device)
    empty = ~masks.flatten(1).any(dim=1)
    if bool(empty.any()):
        first = int(empty.nonzero()[0, 0])
        raise ArgumentError(f"Expected `masks` to mark at least one pixel of every example, but example {first} is "
                            f"empty.", "masks")
    return masks


def pointing_game(maps: Tensor, masks: Tensor, *, tolerance: float = 15) -> Tensor:
    """Pointing game: does each map's maximum fall on the object, up to `tolerance` pixels?

    Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop" (ECCV), Sec. 5.1: a hit
    when the maximum point lies within `tolerance` pixels (Euclidean distance between pixel
    centres) of some pixel of the object mask, 15 px in the paper.

    Ties: the first maximum in row-major order counts (``argmax`` of the flattened map), so a
    constant map points at its top-left pixel.

    Args:
        maps: `(B, H, W)` relevance maps at the masks' resolution (any real values; only the position
            of the maximum matters).
        masks: `(B, H, W)` bool (or integer, non-zero = object) masks, at least one pixel each.
        tolerance: pixels of slack, >= 0; 0 asks for the maximum inside the mask.

    Returns:
        `(B,)` hits as 1.0 / 0.0 in the dtype and on the device of `maps` (their mean is the
        pointing accuracy).

    Raises:
        ValueError: on a wrong or mismatched shape, NaN/infinite maps, an empty mask or a negative `tolerance`.
        TypeError: on non-floating `maps`, floating `masks` or a non-numeric `tolerance`.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]]).expand(2, 1, 4)
        >>> masks = torch.tensor([[[True, False, False, False]]]).expand(2, 1, 4)
        >>> pointing_game(maps, masks, tolerance=3), pointing_game(maps, masks, tolerance=2.9)
        (tensor([1., 1.]), tensor([0., 0.]))
    """
    masks = _localization_check(maps, masks)
    tolerance = _check_number(tolerance, "tolerance", low=0)
    return _pointing_game_compute(maps, masks, tolerance)


def _pointing_game_compute(maps: Tensor, masks: Tensor, tolerance: float) -> Tensor:
    """`pointing_game` on checked `(B, H, W)` maps and bool masks."""
    batch, height, width = maps.shape
    flat = maps.reshape(batch, -1).argmax(dim=1)  # the first maximum
    peak_row = torch.div(flat, width, rounding_mode="floor")
    peak_column = flat % width
    rows = torch.arange(height, device=maps.device)
    columns = torch.arange(width, device=maps.device)
    # Squared distance of every pixel to the peak, in integers (exact); the nearest object pixel decides.
    squared = (rows[None, :, None] - peak_row[:, None, None]) ** 2 + (columns[None, None, :] - peak_column[:, None,
                                                                                                           None]) ** 2
    big = height * height + width * width + 1
    nearest = torch.where(masks, squared, torch.full_like(squared, big)).flatten(1).amin(dim=1)
    return (nearest.to(torch.float64) <= tolerance * tolerance).to(maps.dtype)


def segmentation_scores(maps: Tensor, masks: Tensor) -> dict[str, Tensor]:
    """Segmentation of the object by the map thresholded at its mean, and the average precision of the map.

    Chefer, Gur & Wolf 2021, "Transformer Interpretability Beyond Attention Visualization" (CVPR),
    ImageNet-Segmentation protocol of their ``imagenet_seg_eval.py``: each map is min-max scaled to
    [0, 1] (a constant map becomes 0); pixels above its mean are predicted object, the rest
    background; pixel accuracy and per-class IoU compare that prediction with the mask, and the
    average precision ranks the object score (the scaled map) and the background score (one minus
    it) of every pixel together against the one-hot truth, as their ``get_ap_scores`` does.

    Scores are per image; Chefer et al. pool pixel counts over the dataset for pixel accuracy and
    mIoU (equal to the mean of ``pixel_accuracy`` for same-sized images; for mIoU sum
    ``intersection`` and ``union`` over images, then divide) and average the per-image AP.

    Args:
        maps: `(B, H, W)` relevance maps at the masks' resolution.
        masks: `(B, H, W)` bool (or integer, non-zero = object) masks, at least one pixel each.

    Returns:
        A dict of tensors in the dtype and on the device of `maps`:
        ``pixel_accuracy`` `(B,)`, ``iou_background`` `(B,)`, ``iou_object`` `(B,)`, ``miou`` `(B,)`
        (their mean), ``average_precision`` `(B,)`, and the pixel counts ``intersection`` and
        ``union`` `(B, 2)` (background, object) for pooling.

    Raises:
        ValueError: on a wrong or mismatched shape, NaN/infinite maps or an empty mask.
        TypeError: on non-floating `maps` or floating `masks`.

    Example:
        >>> import torch
        >>> masks = torch.tensor([[[True, True, False, False]]])
        >>> scores = segmentation_scores(masks.double(), masks)
        >>> float(scores["miou"][0]), float(scores["pixel_accuracy"][0]), float(scores["average_precision"][0])
        (1.0, 1.0, 1.0)
    """
    masks = _localization_check(maps, masks)
    return _segmentation_scores_compute(maps, masks)


def _segmentation_scores_compute(maps: Tensor, masks: Tensor) -> dict[str, Tensor]:
    """`segmentation_scores` on checked `(B, H, W)` maps and bool masks."""
    batch = maps.shape[0]
    flat = maps.reshape(batch, -1)
    truth = masks.reshape(batch, -1)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, torch.ones_like(span)),
                         torch.zeros_like(flat))
    predicted = scaled > scaled.mean(dim=1, keepdim=True)
    pixel_accuracy = (predicted == truth).to(maps.dtype).mean(dim=1)
    intersection = torch.stack([(~predicted & ~truth).sum(dim=1), (predicted & truth).sum(dim=1)], dim=1)
    union = torch.stack([(~predicted | ~truth).sum(dim=1), (predicted | truth).sum(dim=1)], dim=1)
    intersection, union = intersection.to(maps.dtype), union.to(maps.dtype)
    iou = intersection / union.clamp(min=1)  # a class absent from both prediction and truth has union 0, IoU 0
    scores = torch.cat([1 - scaled, scaled], dim=1)
    labels = torch.cat([~truth, truth], dim=1)
    return {
        "pixel_accuracy": pixel_accuracy,
        "iou_background": iou[:, 0],
        "iou_object": iou[:, 1],
        "miou": iou.mean(dim=1),
        "average_precision": _average_precision(scores, labels),
        "intersection": intersection,
        "union": union,
    }


def _average_precision(scores: Tensor, labels: Tensor) -> Tensor:
    """Average precision per row of `(B, N)` scores against bool labels, ties grouped as scikit-learn's
    ``average_precision_score`` does: ``AP = Σ_k (R_k − R_{k−1}) P_k`` over the distinct thresholds.
    A row without positives gets 0."""
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranked = scores.gather(1, order)
    hits = labels.gather(1, order).to(scores.dtype)
    true_positives = hits.cumsum(dim=1)
    count = scores.shape[1]
    position = torch.arange(count, device=scores.device)
    # The last position of each run of equal scores closes a threshold; every pixel takes its run's precision.
    closes = torch.ones_like(hits, dtype=torch.bool)
    closes[:, :-1] = ranked[:, :-1] != ranked[:, 1:]
    end = torch.where(closes, position.expand_as(closes), torch.full_like(order, count))
    end = end.flip(1).cummin(dim=1).values.flip(1)
    precision_at_end = true_positives.gather(1, end) / (end + 1).to(scores.dtype)
    positives = hits.sum(dim=1)
    return (hits * precision_at_end).sum(dim=1) / positives.clamp(min=1)
