"""Attention Rollout."""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import _check_integer, _check_mask
from attnlens.methods._common import _fuse_if_per_head, _masked_identity, _residual_attention


def _rollout_prepare(attn: Tensor, mask: Tensor | None, residual: bool, head_fusion: str) -> tuple[Tensor, Tensor]:
    fused = _fuse_if_per_head(attn, how=head_fusion)
    mask = _check_mask(mask, "mask", fused.shape[0], fused.shape[-1], fused.device)
    return _residual_attention(fused, mask, residual=residual), mask


def rollout(
    attn: Tensor,
    *,
    mask: Tensor | None = None,
    residual: bool = True,
    start_layer: int = 0,
    head_fusion: str = "mean",
) -> Tensor:
    """Joint attention after every layer, ``J_l = Â_l · J_{l-1}`` with ``Â = norm_rows(A + I)``.

    Attention Rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", Eq. 1).
    Layers before `start_layer` are not composed: their joint attention is the identity.

    Args:
        attn: `(B, L, H, n, n)` or head-fused `(B, L, n, n)` row-stochastic attention.
        mask: `(B, n)` valid-token mask; None means every token is valid.
        residual: add the identity for the residual connection before normalising rows.
        start_layer: first layer composed (0-based; negative counts from the end).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.

    Returns:
        `(B, L, n, n)` joint attention; row i of layer l says how much output token i of layer
        l draws from each input token. Rows of valid tokens sum to 1; padding is zero.

    Raises:
        ValueError: on a wrong shape, mask or `start_layer`.

    Example:
        >>> import torch
        >>> attn = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
        >>> rollout(attn)[0, 0]
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])
    """
    layers = _fuse_if_per_head(attn, how=head_fusion).shape[1]
    start_layer = _check_integer(start_layer, "start_layer", low=-layers, high=layers - 1) % layers
    augmented, mask = _rollout_prepare(attn, mask, residual, head_fusion)
    return _rollout_compute(augmented, mask, start_layer)


def _rollout_compute(augmented: Tensor, mask: Tensor, start_layer: int = 0) -> Tensor:
    """Rollout of already residual-augmented, row-normalised `(B, L, n, n)` attention (no checks)."""
    joint = _masked_identity(mask, 3, augmented.dtype)
    steps = []
    for layer in range(augmented.shape[1]):
        if layer >= start_layer:
            joint = torch.matmul(augmented[:, layer], joint)
        steps.append(joint)
    return torch.stack(steps, dim=1)
