"""Areas under perturbation curves: Chefer et al.'s positive/negative perturbation, RISE deletion and insertion.

Pure functions of the curves (what the model did at each step) and of the relevance maps (which
patches go at each step); the experiment that runs the model on the perturbed images is
:mod:`attnlens.experiments.image_study`. Curves are `(B, S)`: one row per image, one column per
step, the first column the unperturbed (deletion, perturbation) or fully-perturbed (insertion) image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice, _check_finite, _check_floating, _check_integer

PERTURBATION_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The steps of Chefer et al.'s perturbation test: 0 % to 90 % of the patches removed, in 10 % steps."""
ORDERS = ("positive", "negative")


def _curves_check(curves: Tensor, fractions: Tensor | None, *, default: Tensor | None) -> tuple[Tensor, Tensor]:
    """Check `(B, S)` (or `(S,)`) finite floating curves and `(S,)` increasing fractions; return `(B, S)` and `(S,)`."""
    _check_floating(curves, "curves")
    if curves.ndim not in (1, 2) or curves.shape[-1] < 2:
        raise ArgumentError(f"Expected `curves` to have shape (B, S) or (S,) with S >= 2 steps, but got "
                            f"{tuple(curves.shape)}.", "curves")
    _check_finite(curves, "curves")
    curves = curves.reshape(-1, curves.shape[-1])
    steps = curves.shape[-1]
    if fractions is None:
        fractions = default if default is not None else torch.linspace(0, 1, steps, dtype=torch.float64)
    if not isinstance(fractions, Tensor):
        fractions = torch.as_tensor(fractions, dtype=torch.float64)
    if fractions.ndim != 1 or fractions.shape[0] != steps:
        raise ArgumentError(f"Expected `fractions` to have shape (S,) = ({steps},), but got "
                            f"{tuple(fractions.shape)}.", "fractions")
    fractions = fractions.to(device=curves.device, dtype=curves.dtype)
    if not bool(torch.isfinite(fractions).all()) or not bool((fractions[1:] > fractions[:-1]).all()):
        raise ArgumentError(f"Expected `fractions` to be finite and strictly increasing, but got "
                            f"{fractions.tolist()}.", "fractions")
    return curves, fractions


def _trapezoid(curves: Tensor, fractions: Tensor) -> Tensor:
    """`(B,)` trapezoidal areas of `(B, S)` curves over the `(S,)` abscissae."""
    widths = fractions[1:] - fractions[:-1]
    return ((curves[:, 1:] + curves[:, :-1]) * 0.5 * widths).sum(dim=-1)


def perturbation_auc(curves: Tensor, *, fractions: Tensor | None = None) -> Tensor:
    """Area under a perturbation curve (accuracy or target probability against the fraction of patches removed).

    Chefer, Gur & Wolf 2021, "Transformer Interpretability Beyond Attention Visualization" (CVPR),
    Sec. 4 (their ``pertubation_eval_from_hdf5.py``): patches are removed most relevant first
    ("positive", lower is better) or least relevant first ("negative", higher is better) at 0 %,
    10 %, ..., 90 %; the area is the trapezoidal rule over those fractions, so a curve stuck at
    1 has area 0.9. Average the per-image areas (of a 0/1 accuracy curve, the area of the mean
    accuracy curve) for the dataset's AUC.

    Args:
        curves: `(B, S)` or `(S,)` finite values per image and step (1.0 / 0.0 top-1 hits, or probabilities).
        fractions: `(S,)` strictly increasing fractions of patches removed at each step; default
            :data:`PERTURBATION_FRACTIONS` (S = 10).

    Returns:
        `(B,)` areas in the dtype and on the device of `curves`.

    Raises:
        ValueError: on a wrong shape, NaN/infinite values, or fractions of another length or not increasing.
        TypeError: on non-floating `curves`.

    Example:
        >>> perturbation_auc(torch.ones(2, 10))
        tensor([0.9000, 0.9000])
        >>> perturbation_auc(torch.tensor([1.0, 0.0]), fractions=torch.tensor([0.0, 0.5]))
        tensor([0.2500])
    """
    default = torch.tensor(PERTURBATION_FRACTIONS, dtype=torch.float64)
    if fractions is None and isinstance(curves, Tensor) and curves.shape[-1:] != (len(PERTURBATION_FRACTIONS),):
        raise ArgumentError(f"Expected `curves` to have S = {len(PERTURBATION_FRACTIONS)} steps (0 % to 90 %) "
                            f"without `fractions`, but got shape {tuple(curves.shape)}.", "curves")
    curves, fractions = _curves_check(curves, fractions, default=default)
    return _trapezoid(curves, fractions)


def deletion_auc(curves: Tensor, *, fractions: Tensor | None = None) -> Tensor:
    """Area under the deletion curve: the target probability as patches are replaced by a baseline, most relevant first.

    Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models" (BMVC), Sec. 4.1: a good map makes the probability fall fast, so lower is better. The
    curve starts at the intact image (fraction 0) and ends with every patch replaced (fraction 1);
    the area is RISE's ``auc``: the trapezoidal rule over evenly spaced steps on [0, 1].

    Args:
        curves: `(B, S)` or `(S,)` probabilities per image and step, S >= 2.
        fractions: `(S,)` strictly increasing fractions of the image replaced at each step;
            default S evenly spaced on [0, 1].

    Returns:
        `(B,)` areas in the dtype and on the device of `curves`.

    Raises:
        ValueError: on a wrong shape, NaN/infinite values, or fractions of another length or not increasing.
        TypeError: on non-floating `curves`.

    Example:
        >>> deletion_auc(torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]]))
        tensor([0.5000, 1.0000])
    """
    curves, fractions = _curves_check(curves, fractions, default=None)
    return _trapezoid(curves, fractions)


def insertion_auc(curves: Tensor, *, fractions: Tensor | None = None) -> Tensor:
    """Area under the insertion curve: the target probability as patches of the image are put back on a baseline,
    most relevant first.

    Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models" (BMVC), Sec. 4.1: a good map makes the probability rise fast, so higher is better.
    The curve starts at the baseline image (fraction 0) and ends at the intact image (fraction 1);
    the area is RISE's ``auc``, as in :func:`deletion_auc`.

    Args:
        curves: `(B, S)` or `(S,)` probabilities per image and step, S >= 2.
        fractions: `(S,)` strictly increasing fractions of the image inserted at each step;
            default S evenly spaced on [0, 1].

    Returns:
        `(B,)` areas in the dtype and on the device of `curves`.

    Raises:
        ValueError: on a wrong shape, NaN/infinite values, or fractions of another length or not increasing.
        TypeError: on non-floating `curves`.

    Example:
        >>> insertion_auc(torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))
        tensor([0.6250])
    """
    curves, fractions = _curves_check(curves, fractions, default=None)
    return _trapezoid(curves, fractions)


def perturbation_order(maps: Tensor, *, order: str = "positive") -> Tensor:
    """The patches of each map, in the order a perturbation test removes them.

    Chefer, Gur & Wolf 2021 (CVPR), Sec. 4: most relevant first (``"positive"``; also the order of
    RISE deletion and insertion, Petsiuk et al., BMVC 2018) or least relevant first
    (``"negative"``). Ties keep the patches' row-major order in both, so a constant map removes
    its patches top-left first either way.

    Args:
        maps: `(B, P)` finite relevance per patch (a `(B, rows, columns)` map flattened row-major).
        order: ``"positive"`` or ``"negative"``.

    Returns:
        `(B, P)` long patch indices, first removed first.

    Raises:
        ValueError: on a wrong shape, NaN/infinite values or an unknown `order`.
        TypeError: on non-floating `maps`.

    Example:
        >>> maps = torch.tensor([[0.1, 0.7, 0.2, 0.7]])
        >>> perturbation_order(maps), perturbation_order(maps, order="negative")
        (tensor([[1, 3, 2, 0]]), tensor([[0, 2, 1, 3]]))
    """
    _perturbation_order_check(maps, order)
    return _perturbation_order_compute(maps, order)


def _perturbation_order_check(maps: Tensor, order: str) -> None:
    _check_floating(maps, "maps")
    if maps.ndim != 2 or maps.shape[1] == 0:
        raise ArgumentError(f"Expected `maps` to have shape (B, P) with P >= 1 patches, but got "
                            f"{tuple(maps.shape)}.", "maps")
    _check_finite(maps, "maps")
    _check_choice(order, "order", ORDERS)


def _perturbation_order_compute(maps: Tensor, order: str) -> Tensor:
    return torch.argsort(maps if order == "negative" else -maps, dim=1, stable=True)


def removed_counts(fractions: Tensor | list[float] | tuple[float, ...], patches: int) -> list[int]:
    """How many of `patches` patches each step removes: ``floor(fraction · patches)``, as Chefer et al.'s
    ``int(base_size * step)`` (Chefer, Gur & Wolf, CVPR 2021).

    Args:
        fractions: `(S,)` fractions in [0, 1].
        patches: P >= 1.

    Returns:
        S counts in [0, P].

    Raises:
        ValueError: on a fraction outside [0, 1] or `patches` < 1.

    Example:
        >>> removed_counts([0.0, 0.1, 0.3, 1.0], 16)
        [0, 1, 4, 16]
    """
    patches = _check_integer(patches, "patches", low=1)
    values = [float(f) for f in (fractions.tolist() if isinstance(fractions, Tensor) else fractions)]
    if any(not (0.0 <= f <= 1.0) for f in values):
        raise ArgumentError(f"Expected `fractions` to lie in [0, 1], but got {values}.", "fractions")
    return [min(patches, int(math.floor(f * patches + 1e-9))) for f in values]


__all__ = [
    "ORDERS",
    "PERTURBATION_FRACTIONS",
    "deletion_auc",
    "insertion_auc",
    "perturbation_auc",
    "perturbation_order",
    "removed_counts",
]
