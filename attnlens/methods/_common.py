"""Masking, row normalisation, residual augmentation and head fusion, shared by every method.

A padded token's row and column are zero in every result, so padding never changes what a
valid token gets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import _check_attention, _check_choice

_HEAD_FUSIONS = ("mean", "max", "min")


def _pair_mask(mask: Tensor, ndim: int) -> Tensor:
    """Broadcastable `(B, 1.., n, n)` mask of valid (query, key) pairs for a tensor of `ndim` dims."""
    pair = mask[:, :, None] & mask[:, None, :]
    return pair.view(mask.shape[0], *([1] * (ndim - 3)), mask.shape[1], mask.shape[1])


def _apply_mask(x: Tensor, mask: Tensor) -> Tensor:
    """Zero every row and column of a padded token; `x` is `(B, ..., n, n)`, `mask` `(B, n)`.

    Selects rather than multiplies, so NaN or inf left in padding cannot leak into results.
    """
    return torch.where(_pair_mask(mask, x.ndim), x, torch.zeros((), dtype=x.dtype, device=x.device))


def _normalize_rows(x: Tensor, eps: float = 0.0) -> Tensor:
    """Divide each row by its sum; all-zero rows (padding) stay zero."""
    sums = x.sum(dim=-1, keepdim=True)
    safe = torch.where(sums > eps, sums, torch.ones_like(sums))
    return torch.where(sums > eps, x / safe, torch.zeros_like(x))


def _masked_identity(mask: Tensor, ndim: int, dtype: torch.dtype) -> Tensor:
    """Identity on valid tokens, zero on padding; `(B, 1.., n, n)`."""
    n = mask.shape[1]
    eye = torch.eye(n, dtype=dtype, device=mask.device)
    ident = eye * mask[:, :, None].to(dtype)
    return ident.view(mask.shape[0], *([1] * (ndim - 3)), n, n)


def _residual_attention(attn: Tensor, mask: Tensor, residual: bool = True) -> Tensor:
    """Â = norm_rows(A + I) over valid tokens (Abnar & Zuidema 2020, Eq. 1), else masked norm_rows(A)."""
    attn = _apply_mask(attn, mask)
    if residual:
        attn = attn + _masked_identity(mask, attn.ndim, attn.dtype)
    return _normalize_rows(attn)


def fuse_heads(attn: Tensor, *, how: str = "mean") -> Tensor:
    """Fuse the heads of per-layer attention into one matrix per layer.

    Abnar & Zuidema 2020 average heads; ``max``/``min`` are the element-wise alternatives of
    Chefer et al. 2021 ("Transformer Interpretability Beyond Attention Visualization").

    Args:
        attn: `(B, L, H, n, n)` attention.
        how: ``"mean"``, ``"max"`` or ``"min"`` over the head dimension.

    Returns:
        `(B, L, n, n)` head-fused attention, same dtype and device.

    Raises:
        ValueError: if `attn` is not 5-D with square matrices or `how` is unknown.

    Example:
        >>> import torch
        >>> attn = torch.tensor([[[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]]])
        >>> fuse_heads(attn, how="mean")
        tensor([[[[0.5000, 0.5000],
                  [0.5000, 0.5000]]]])
    """
    _check_attention(attn, "attn", ndims=(5,))
    _check_choice(how, "how", _HEAD_FUSIONS)
    if how == "mean":
        return attn.mean(dim=2)
    if how == "max":
        return attn.amax(dim=2)
    return attn.amin(dim=2)


def _fuse_if_per_head(attn: Tensor, how: str = "mean") -> Tensor:
    """Accept `(B, L, n, n)` or `(B, L, H, n, n)` and return `(B, L, n, n)`."""
    _check_attention(attn, "attn", ndims=(4, 5))
    return fuse_heads(attn, how=how) if attn.ndim == 5 else attn
