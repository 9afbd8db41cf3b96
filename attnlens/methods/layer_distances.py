"""Distances between consecutive layers' attention: what Selective Attention Rollout thresholds."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from attnlens._checks import _check_choice
from attnlens.methods.rollout import _rollout_prepare


class LayerDistances(NamedTuple):
    """Result of :func:`layer_distances`.

    Attributes:
        frobenius: `(B, L - 1)` ``‖Â_l − Â_{l-1}‖_F`` for l = 1 … L − 1.
        per_token: `(B, L - 1)` the same divided by √n, n the example's valid tokens (the
            ``frobenius_per_token`` distance of :func:`~attnlens.methods.selective_rollout`).
    """

    frobenius: Tensor
    per_token: Tensor


def _layer_distances_compute(augmented: Tensor, mask: Tensor) -> LayerDistances:
    """Distances of residual-augmented, head-fused `(B, L, n, n)` attention (no checks)."""
    frobenius = (augmented[:, 1:] - augmented[:, :-1]).square().sum(dim=(-2, -1)).sqrt()
    tokens = mask.sum(dim=-1).to(augmented.dtype).sqrt()
    return LayerDistances(frobenius=frobenius, per_token=frobenius / tokens[:, None])


def layer_distances(attn: Tensor, *, mask: Tensor | None = None, residual: bool = True,
                    head_fusion: str = "mean") -> LayerDistances:
    """Frobenius distance between each layer's attention and the previous layer's, per example.

    Selective Attention Rollout (thesis "Improving Explainability of Transformer Models"): the
    distance ``‖Â_l − Â_{l-1}‖_F`` between consecutive layers, ``Â = norm_rows(A + I)`` of the
    head-fused attention, that its threshold is compared with (there against the last composed
    layer; here between neighbours, the distribution a threshold is chosen from).

    Args:
        attn: `(B, L, H, n, n)` or head-fused `(B, L, n, n)` row-stochastic attention.
        mask: `(B, n)` valid-token mask; None means every token is valid.
        residual: add the identity for the residual connection before normalising rows.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.

    Returns:
        ``LayerDistances(frobenius (B, L - 1), per_token (B, L - 1))``, in the dtype and on the
        device of `attn`.

    Raises:
        ValueError: on a wrong shape or mask, or an unknown `head_fusion`.

    Example:
        >>> import torch
        >>> attn = torch.stack([torch.eye(2), torch.full((2, 2), 0.5)])[None]
        >>> layer_distances(attn).frobenius
        tensor([[0.5000]])
    """
    _check_choice(head_fusion, "head_fusion", ("mean", "max", "min"))
    augmented, mask = _rollout_prepare(attn, mask, residual, head_fusion)
    return _layer_distances_compute(augmented, mask)
