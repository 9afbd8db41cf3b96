"""Clarity of a relevance map: how concentrated it is on few tokens.

Two scale-free measures over the valid tokens of each example: the normalized Shannon entropy
(1 = uniform, 0 = all relevance on one token) and the Gini coefficient (0 = uniform,
1 − 1/n = all on one token). Neither needs a reference; they measure sharpness, not
faithfulness, so read them next to a faithfulness metric.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import _check_finite, _check_floating, _check_mask, _check_ndim


def _clarity_check(relevance: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Check `(B, n)` non-negative relevance with positive mass on valid tokens; return it masked and the mask."""
    _check_floating(relevance, "relevance")
    _check_ndim(relevance, "relevance", (2,), "(B, n)")
    if relevance.shape[-1] == 0:
        raise ValueError(f"Expected `relevance` to have at least one token, but got shape {tuple(relevance.shape)}.")
    mask = _check_mask(mask, "mask", relevance.shape[0], relevance.shape[1], relevance.device)
    relevance = relevance * mask.to(relevance.dtype)
    _check_finite(relevance, "relevance")
    if bool((relevance < 0).any()):
        lowest = relevance.min().item()
        raise ValueError(f"Expected `relevance` to be non-negative on valid tokens, but got a minimum of {lowest:.3g}.")
    if not bool((relevance.sum(dim=-1) > 0).all()):
        raise ValueError("Expected `relevance` to have a positive sum over the valid tokens of every example, but "
                         "some example is all zero.")
    return relevance, mask


def normalized_entropy(relevance: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Shannon entropy of the relevance distribution over valid tokens, divided by its maximum log n.

    Shannon 1948, "A Mathematical Theory of Communication": ``H(p) / log n`` with
    ``p = r / Σ r`` over the n valid tokens (``0 log 0 = 0``); an example with one valid token
    gets 0.

    Args:
        relevance: `(B, n)` non-negative relevance (for signed saliency pass its absolute value).
        mask: `(B, n)` valid-token mask; None means every token is valid.

    Returns:
        `(B,)` values in [0, 1]: 1 for uniform relevance, 0 when one token holds all of it.

    Raises:
        TypeError: if `relevance` is not a floating tensor.
        ValueError: on a wrong shape or mask, NaN/infinite or negative values on valid tokens,
            or an example whose valid relevance sums to 0.

    Example:
        >>> import torch
        >>> normalized_entropy(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
        tensor([1., 0.])
    """
    relevance, mask = _clarity_check(relevance, mask)
    return _normalized_entropy_compute(relevance, mask)


def _normalized_entropy_compute(relevance: Tensor, mask: Tensor) -> Tensor:
    """Normalized entropy of checked, masked `(B, n)` relevance with positive mass (no checks, no host sync)."""
    probability = relevance / relevance.sum(dim=-1, keepdim=True)
    safe = torch.where(probability > 0, probability, torch.ones_like(probability))
    entropy = 0.0 - (probability * safe.log()).sum(dim=-1)  # 0.0 - 0.0 is +0, not -0
    count = mask.sum(dim=-1).to(relevance.dtype)
    log_count = count.log()
    return torch.where(count > 1, entropy / torch.where(count > 1, log_count, torch.ones_like(log_count)),
                       torch.zeros_like(entropy))


def gini(relevance: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Gini coefficient of the relevance over valid tokens.

    Hurley & Rickard 2009, "Comparing Measures of Sparsity" (IEEE Trans. Inf. Theory 55(10)):
    with the n valid values sorted ascending, ``G = 1 − 2 Σ_k (c_(k) / ‖c‖₁) (n − k + 1/2) / n``,
    which equals the mean absolute difference ``Σ_ij |c_i − c_j| / (2 n ‖c‖₁)``.

    Args:
        relevance: `(B, n)` non-negative relevance (for signed saliency pass its absolute value).
        mask: `(B, n)` valid-token mask; None means every token is valid.

    Returns:
        `(B,)` values in [0, 1 − 1/n]: 0 for uniform relevance, 1 − 1/n when one token holds
        all of it (n the example's number of valid tokens).

    Raises:
        TypeError: if `relevance` is not a floating tensor.
        ValueError: on a wrong shape or mask, NaN/infinite or negative values on valid tokens,
            or an example whose valid relevance sums to 0.

    Example:
        >>> import torch
        >>> gini(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
        tensor([0.0000, 0.7500])
    """
    relevance, mask = _clarity_check(relevance, mask)
    return _gini_compute(relevance, mask)


def _gini_compute(relevance: Tensor, mask: Tensor) -> Tensor:
    """Gini coefficient of checked, masked `(B, n)` relevance with positive mass (no checks, no host sync)."""
    n = relevance.shape[-1]
    # Padding sorts first (-1 < every valid value); valid token k (1-based, ascending) sits at
    # position k + n - count.
    ordered = relevance.masked_fill(~mask, -1.0).sort(dim=-1).values.clamp_min(0)
    count = mask.sum(dim=-1, keepdim=True).to(relevance.dtype)
    position = torch.arange(1, n + 1, dtype=relevance.dtype, device=relevance.device)
    rank = position - (n - count)
    weights = ((count - rank + 0.5) / count).clamp_min(0) * (rank >= 1).to(relevance.dtype)
    share = ordered / relevance.sum(dim=-1, keepdim=True)
    return 1 - 2 * (share * weights).sum(dim=-1)
