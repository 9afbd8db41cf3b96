"""Selective Attention Rollout: compose a layer only when its attention has changed enough."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from attnlens._checks import _check_choice, _check_number
from attnlens.methods.rollout import _rollout_prepare

DISTANCES = ("frobenius", "frobenius_per_token")


class SelectiveRollout(NamedTuple):
    """Result of :func:`selective_rollout`.

    Attributes:
        joint: `(B, L, n, n)` joint attention after each layer.
        used: `(B, L)` bool, True where a layer was composed.
    """

    joint: Tensor
    used: Tensor


def _selective_rollout_compute(augmented: Tensor, mask: Tensor, threshold: float | Tensor,
                               distance: str) -> SelectiveRollout:
    """Selective rollout of residual-augmented `(B, L, n, n)` attention (no checks); `threshold` is a
    number or a `(B,)` tensor of per-example thresholds (several thresholds in one pass)."""
    batch, layers, n, _ = augmented.shape
    scale = torch.ones(batch, dtype=augmented.dtype, device=augmented.device)
    if distance == "frobenius_per_token":
        scale = mask.sum(dim=-1).to(augmented.dtype).sqrt()
    reference = augmented[:, 0]
    joint = augmented[:, 0] * mask[:, :, None].to(augmented.dtype)
    joints = [joint]
    used = [torch.ones(batch, dtype=torch.bool, device=augmented.device)]
    for layer in range(1, layers):
        current = augmented[:, layer]
        diff = torch.linalg.matrix_norm(current - reference, ord="fro") / scale
        take = diff > threshold
        take_b = take[:, None, None]
        joint = torch.where(take_b, torch.matmul(current, joint), joint)
        reference = torch.where(take_b, current, reference)
        joints.append(joint)
        used.append(take)
    return SelectiveRollout(joint=torch.stack(joints, dim=1), used=torch.stack(used, dim=1))


def selective_rollout(
    attn: Tensor,
    *,
    threshold: float = 1.0,
    mask: Tensor | None = None,
    residual: bool = True,
    distance: str = "frobenius",
    head_fusion: str = "mean",
) -> SelectiveRollout:
    """Rollout that composes a layer only when its attention differs from the last composed one.

    Selective Attention Rollout (thesis "Improving Explainability of Transformer Models"): layer 0
    is always composed; layer i is composed when ``‖Â_i − Â_ref‖_F > threshold`` with Â_ref the
    last composed layer; a skipped layer's joint attention equals the previous one.

    Args:
        attn: `(B, L, H, n, n)` or head-fused `(B, L, n, n)` row-stochastic attention.
        threshold: distance a layer must exceed to be composed (``inf`` keeps layer 0 only).
        mask: `(B, n)` valid-token mask; None means every token is valid.
        residual: add the identity for the residual connection before normalising rows.
        distance: ``"frobenius"`` or ``"frobenius_per_token"`` (the norm divided by √n, n the
            number of valid tokens, so one threshold serves sentences of every length).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.

    Returns:
        ``SelectiveRollout(joint (B, L, n, n), used (B, L) bool)``.

    Raises:
        ValueError: on a wrong shape, mask, negative or NaN threshold, or unknown distance.

    Example:
        >>> import torch
        >>> attn = torch.eye(2).repeat(1, 3, 1, 1)
        >>> selective_rollout(attn, threshold=0.5).used
        tensor([[ True, False, False]])
    """
    threshold = _check_number(threshold, "threshold", low=0.0, allow_inf=True)
    _check_choice(distance, "distance", DISTANCES)
    augmented, mask = _rollout_prepare(attn, mask, residual, head_fusion)
    return _selective_rollout_compute(augmented, mask, threshold if math.isfinite(threshold) else math.inf, distance)
