"""Per-example Spearman rank correlation over valid tokens."""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import _check_choice, _check_floating, _check_mask, _check_ndim, _check_same_shape

_TIES = ("average", "dense")


def _rank_data(values: Tensor, mask: Tensor, ties: str) -> Tensor:
    """Ranks (1-based) of the valid entries of each row; padding gets rank 0.

    Args:
        values: `(B, n)` floating values.
        mask: `(B, n)` bool valid mask.
        ties: ``"average"`` (mean of the tied positions) or ``"dense"`` (1, 2, 3 without gaps).
    """
    dtype = values.dtype
    filled = values.masked_fill(~mask, float("inf"))  # a Python scalar: no host-to-device copy
    sorted_values, order = torch.sort(filled, dim=-1, stable=True)
    valid_sorted = torch.gather(mask, -1, order)
    new_group = torch.ones_like(valid_sorted)
    new_group[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    group = torch.cumsum(new_group.to(torch.long), dim=-1) - 1
    if ties == "dense":
        sorted_ranks = (group + 1).to(dtype)
    else:
        positions = torch.arange(1, values.shape[-1] + 1, dtype=dtype, device=values.device).expand_as(values)
        group_sum = torch.zeros_like(values).scatter_add_(-1, group, positions)
        group_count = torch.zeros_like(values).scatter_add_(-1, group, torch.ones_like(values))
        sorted_ranks = torch.gather(group_sum / group_count.clamp_min(1), -1, group)
    sorted_ranks = sorted_ranks * valid_sorted.to(dtype)
    return torch.zeros_like(values).scatter_(-1, order, sorted_ranks)


def _spearman_check(a: Tensor, b: Tensor, mask: Tensor | None, ties: str) -> Tensor:
    _check_floating(a, "a")
    _check_floating(b, "b")
    _check_ndim(a, "a", (2,), "(B, n)")
    _check_same_shape(a, b, ("a", "b"))
    _check_choice(ties, "ties", _TIES)
    if a.shape[1] == 0:
        raise ValueError(f"Expected `a` to have at least one token, but got shape {tuple(a.shape)}.")
    mask = _check_mask(mask, "mask", a.shape[0], a.shape[1], a.device)
    for values, name in ((a, "a"), (b, "b")):
        if not bool(torch.isfinite(values[mask]).all()):
            raise ValueError(f"Expected `{name}` to hold only finite values on valid tokens, but it has NaN or inf.")
    return mask


def _pearson_masked(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    weight = mask.to(x.dtype)
    count = weight.sum(dim=-1, keepdim=True)
    x = (x - (x * weight).sum(dim=-1, keepdim=True) / count) * weight
    y = (y - (y * weight).sum(dim=-1, keepdim=True) / count) * weight
    return (x * y).sum(dim=-1) / torch.sqrt((x * x).sum(dim=-1) * (y * y).sum(dim=-1))


def _spearman_compute(a: Tensor, b: Tensor, mask: Tensor, ties: str) -> Tensor:
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    rank_a, rank_b = _rank_data(a, mask, ties), _rank_data(b, mask, ties)
    if ties == "average":
        return _pearson_masked(rank_a, rank_b, mask)
    n = mask.sum(dim=-1).to(dtype)
    squared = ((rank_a - rank_b) ** 2).sum(dim=-1)
    return 1 - 6 * squared / (n * (n * n - 1))


def spearman(a: Tensor, b: Tensor, *, mask: Tensor | None = None, ties: str = "average") -> Tensor:
    """Spearman rank correlation of `a` and `b` per example, over valid tokens only.

    ``average`` ranks ties by their mean position and takes the Pearson correlation of the
    ranks (Spearman 1904; equals ``scipy.stats.spearmanr``); ``dense`` is the thesis's formula
    ``1 − 6 Σ d² / (n (n² − 1))`` on dense ranks. An example whose values are all equal gets NaN
    (``average``), as in scipy.

    Args:
        a: `(B, n)` scores, e.g. attention relevance.
        b: `(B, n)` scores, e.g. input-gradient saliency.
        mask: `(B, n)` valid-token mask; None means every token is valid.
        ties: ``"average"`` or ``"dense"``.

    Returns:
        `(B,)` correlations in [-1, 1], dtype promoted from `a` and `b`.

    Raises:
        ValueError: on mismatched shapes, a wrong mask or an unknown `ties`.
        TypeError: on non-floating inputs.

    Example:
        >>> import torch
        >>> spearman(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 30.0, 20.0]]))
        tensor([0.5000])
    """
    mask = _spearman_check(a, b, mask, ties)
    return _spearman_compute(a, b, mask, ties)
