"""Mamba-Attr: hidden attention weighted by gradients, then rolled out.

Two weightings: :func:`mamba_attr` follows the authors' released code (each token's column of
the hidden attention scaled by the positive gradient of the explained logit at that token's
residual stream), :func:`mamba_attr_alpha_grad` weights every entry by the positive gradient with
respect to the hidden attention itself (attnlens's first reading of the paper's wording).
"""

from __future__ import annotations

from torch import Tensor

import torch

from attnlens._checks import _check_attention, _check_floating, _check_integer, _check_mask, _check_same_shape
from attnlens.methods._common import _apply_mask
from attnlens.methods._common import _residual_attention
from attnlens.methods.rollout import _rollout_compute, rollout


def mamba_attr_alpha_grad(
    attn: Tensor,
    gradients: Tensor,
    *,
    mask: Tensor | None = None,
    start_layer: int = 0,
) -> Tensor:
    """Hidden-attention rollout weighted by the gradient with respect to the hidden attention.

    A reading of Mamba-Attr (Ali, Zimerman & Wolf 2025, "The Hidden Attention of Mamba Models",
    Sec. 4.2) with the gradient taken at α itself: per layer ``W = α⁺ ⊙ (∂y/∂α)⁺`` scaled to a maximum of 1 (the authors min-max normalise each
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
        >>> mamba_attr_alpha_grad(attn, grad)
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


def mamba_attr(
    attn: Tensor,
    residual_grad: Tensor,
    *,
    mask: Tensor | None = None,
    start_layer: int = 0,
) -> Tensor:
    """Mamba-Attr: hidden attention weighted per token by its residual-stream gradient, rolled out.

    Ali, Zimerman & Wolf 2025, "The Hidden Attention of Mamba Models" (ACL), Sec. 4.2, as their
    released code computes it: per layer ``W[r, c] = mm(α⁺)[r, c] · mm(s)[c]`` where α⁺ is the
    positive part of the (signed, channel-mean) hidden attention, ``s[c] = max_d (∂y/∂h_c)⁺[d]``
    the largest positive gradient of the explained logit at token c's residual stream entering
    the layer, and ``mm`` min-max scaling over the example's valid entries; then Attention
    Rollout ``J = norm_rows(W_L + I) ··· norm_rows(W_s + I)``.

    Args:
        attn: `(B, L, n, n)` or `(B, L, 1, n, n)` hidden attention per layer (signed or not;
            negative entries are dropped).
        residual_grad: `(B, L, n)` ``s`` per layer and token (adapters store it as
            ``trace.extras["residual_grad"]``).
        mask: `(B, n)` valid-token mask; None means every token is valid.
        start_layer: first layer composed (0-based; negative counts from the end).

    Returns:
        `(B, L, n, n)` joint attention after every layer; rows of valid tokens sum to 1, padding
        is zero. Read the explained position's row of the last layer.

    Raises:
        ValueError: on a wrong or mismatched shape, a bad mask or `start_layer`.
        TypeError: on non-floating inputs.

    Example:
        >>> import torch
        >>> attn = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
        >>> s = torch.tensor([[[2.0, 0.0]]])
        >>> mamba_attr(attn, s)[0, -1]
        tensor([[1.0000, 0.0000],
                [0.3333, 0.6667]])
    """
    _check_attention(attn, "attn", ndims=(4, 5))
    if attn.ndim == 5:
        if attn.shape[2] != 1:
            raise ValueError(f"Expected `attn` to have one head (B, L, 1, n, n), but got {tuple(attn.shape)}.")
        attn = attn[:, :, 0]
    _check_floating(residual_grad, "residual_grad")
    if tuple(residual_grad.shape) != tuple(attn.shape[:3]):
        raise ValueError(f"Expected `residual_grad` to have shape (B, L, n) = {tuple(attn.shape[:3])}, but got "
                         f"{tuple(residual_grad.shape)}.")
    layers = attn.shape[1]
    start_layer = _check_integer(start_layer, "start_layer", low=-layers, high=layers - 1) % layers
    mask = _check_mask(mask, "mask", attn.shape[0], attn.shape[-1], attn.device)
    return _mamba_attr_residual_compute(attn, residual_grad, mask, start_layer)


def _min_max(x: Tensor, valid: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Min-max scaling of `x` over `dims`, only valid entries counted; constant inputs give 0."""
    big = torch.finfo(x.dtype).max
    low = torch.where(valid, x, big).amin(dim=dims, keepdim=True)
    high = torch.where(valid, x, -big).amax(dim=dims, keepdim=True)
    span = high - low
    scaled = (x - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(valid & (span > 0), scaled, torch.zeros_like(x))


def _mamba_attr_residual_weights(attn: Tensor, residual_grad: Tensor, mask: Tensor) -> Tensor:
    """``W = mm(α⁺) ⊙ mm(s)[None, :]`` `(B, L, n, n)` on checked inputs."""
    pairs = (mask[:, :, None] & mask[:, None, :])[:, None]
    attn_scaled = _min_max(attn.clamp(min=0), pairs, (-1, -2))
    grad_scaled = _min_max(residual_grad, mask[:, None, :], (-1,))
    return _apply_mask(attn_scaled * grad_scaled[:, :, None, :], mask)


def _mamba_attr_residual_compute(attn: Tensor, residual_grad: Tensor, mask: Tensor, start_layer: int = 0) -> Tensor:
    """:func:`mamba_attr` on checked `(B, L, n, n)` and `(B, L, n)` inputs."""
    augmented = _residual_attention(_mamba_attr_residual_weights(attn, residual_grad, mask), mask)
    return _rollout_compute(augmented, mask, start_layer)
