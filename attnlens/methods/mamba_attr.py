"""Mamba-Attr: hidden attention weighted by the positive part of its gradient, then rolled out."""

from __future__ import annotations

from torch import Tensor

from attnlens._checks import _check_attention, _check_floating, _check_mask, _check_same_shape
from attnlens.methods._common import _apply_mask
from attnlens.methods._common import _residual_attention
from attnlens.methods.rollout import _rollout_compute, rollout


def mamba_attr(
    attn: Tensor,
    gradients: Tensor,
    *,
    mask: Tensor | None = None,
    start_layer: int = 0,
) -> Tensor:
    """Gradient-weighted hidden-attention rollout of a Mamba model.

    Mamba-Attr (Ali, Zimerman & Wolf 2025, "The Hidden Attention of Mamba Models", Sec. 4.2):
    per layer ``W = α⁺ ⊙ (∂y/∂α)⁺`` scaled to a maximum of 1 (the authors min-max normalise each
    layer), then Attention Rollout ``J = norm_rows(W_L + I) ··· norm_rows(W_s + I)``.

    Args:
        attn: `(B, L, n, n)` or `(B, L, 1, n, n)` hidden attention per layer (raw or normalised;
            negative entries are dropped).
        gradients: a floating tensor of the same shape (the head axis may be left out on one
            side), the gradient of the explained output with respect to `attn` (adapters store
            it as ``trace.extras["hidden_attention_grad"]`` `(B, L, n, n)`).
        mask: `(B, n)` valid-token mask; None means every token is valid.
        start_layer: first layer composed (0-based; negative counts from the end).

    Returns:
        `(B, n, n)` joint attention after the last layer; rows of valid tokens sum to 1, padding
        is zero. Read the row of the explained position (the last one for a causal LM).

    Raises:
        ValueError: on a wrong or mismatched shape, a bad mask or `start_layer`.
        TypeError: on an `attn` or `gradients` that is not a floating tensor.

    Example:
        >>> import torch
        >>> attn = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
        >>> grad = torch.tensor([[[[1.0, 0.0], [1.0, -1.0]]]])
        >>> mamba_attr(attn, grad)
        tensor([[[1.0000, 0.0000],
                 [0.3333, 0.6667]]])
    """
    _check_attention(attn, "attn", ndims=(4, 5))
    _check_floating(gradients, "gradients")
    if attn.ndim == 5 and gradients.ndim == 4:  # the head axis of `attn` alone: (B, L, 1, n, n) with (B, L, n, n)
        gradients = gradients[:, :, None]
    elif attn.ndim == 4 and gradients.ndim == 5 and gradients.shape[2] == 1:
        gradients = gradients[:, :, 0]
    _check_same_shape(attn, gradients, ("attn", "gradients"))
    if attn.ndim == 5:
        if attn.shape[2] != 1:
            raise ValueError(f"Expected `attn` to have one head (B, L, 1, n, n), but got {tuple(attn.shape)}.")
        attn, gradients = attn[:, :, 0], gradients[:, :, 0]
    mask = _check_mask(mask, "mask", attn.shape[0], attn.shape[-1], attn.device)
    return rollout(_mamba_attr_weights(attn, gradients, mask), mask=mask, start_layer=start_layer)[:, -1]


def _mamba_attr_weights(attn: Tensor, gradients: Tensor, mask: Tensor) -> Tensor:
    """``W = α⁺ ⊙ (∂y/∂α)⁺`` per layer, scaled to a maximum of 1, on checked `(B, L, n, n)` inputs."""
    weighted = _apply_mask(attn.clamp(min=0) * gradients.clamp(min=0), mask)
    peak = weighted.amax(dim=(-1, -2), keepdim=True)
    return weighted / peak.where(peak > 0, peak.new_ones(()))


def _mamba_attr_compute(attn: Tensor, gradients: Tensor, mask: Tensor, start_layer: int = 0) -> Tensor:
    """Mamba-Attr's joint attention after every layer `(B, L, n, n)`, on checked `(B, L, n, n)` inputs."""
    augmented = _residual_attention(_mamba_attr_weights(attn, gradients, mask), mask)
    return _rollout_compute(augmented, mask, start_layer)
