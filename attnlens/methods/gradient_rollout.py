"""Gradient-weighted attention rollout (GAE) of softmax-attention models."""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import _check_attention, _check_floating, _check_integer, _check_mask, _check_same_shape
from attnlens.methods._common import _apply_mask, _masked_identity


def gradient_rollout(
    attn: Tensor,
    gradients: Tensor,
    *,
    mask: Tensor | None = None,
    start_layer: int = 0,
) -> Tensor:
    """Relevance after every layer, ``R_l = R_{l-1} + Ā_l · R_{l-1}`` with ``Ā = E_h[(∇A ⊙ A)⁺]``.

    Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers" (ICCV 2021), Eqs. 5-6 (the self-attention rule; their CVPR 2021
    paper weights LRP relevance the same way): heads are weighted by the positive part of the
    gradient of the explained logit, averaged, and accumulated from ``R_0 = I``. Unlike
    rollout, rows are not renormalised: relevance grows with the layers.

    Args:
        attn: `(B, L, H, n, n)` attention probabilities per layer and head (rows = queries).
        gradients: the same shape, ∂ logit / ∂ attn (``trace.extras["attention_grad"]``).
        mask: `(B, n)` valid-token mask; None means every token is valid.
        start_layer: first layer accumulated (0-based; negative counts from the end); earlier
            layers keep ``R = I``.

    Returns:
        `(B, L, n, n)` relevance after each layer; read the class token's row. Padding is zero.

    Raises:
        ValueError: on a wrong or mismatched shape, a bad mask or `start_layer`.
        TypeError: on non-floating inputs.

    Example:
        >>> import torch
        >>> attn = torch.tensor([[[[[0.5, 0.5], [0.0, 1.0]]]]])
        >>> grad = torch.tensor([[[[[2.0, -1.0], [1.0, 1.0]]]]])
        >>> gradient_rollout(attn, grad)[0, -1]
        tensor([[2., 0.],
                [0., 2.]])
    """
    _check_attention(attn, "attn", ndims=(5,))
    _check_floating(gradients, "gradients")
    _check_same_shape(attn, gradients, ("attn", "gradients"))
    layers = attn.shape[1]
    start_layer = _check_integer(start_layer, "start_layer", low=-layers, high=layers - 1) % layers
    mask = _check_mask(mask, "mask", attn.shape[0], attn.shape[-1], attn.device)
    return _gradient_rollout_compute(attn, gradients, mask, start_layer)


def _gradient_weighted(attn: Tensor, gradients: Tensor, mask: Tensor) -> Tensor:
    """``Ā = E_h[(∇A ⊙ A)⁺]`` `(B, L, n, n)` on checked `(B, L, H, n, n)` inputs."""
    return _apply_mask((gradients * attn).clamp(min=0).mean(dim=2), mask)


def _gradient_rollout_compute(attn: Tensor, gradients: Tensor, mask: Tensor, start_layer: int = 0) -> Tensor:
    """:func:`gradient_rollout` on checked inputs."""
    weighted = _gradient_weighted(attn, gradients, mask)
    relevance = _masked_identity(mask, 3, weighted.dtype)
    steps = []
    for layer in range(weighted.shape[1]):
        if layer >= start_layer:
            relevance = relevance + torch.matmul(weighted[:, layer], relevance)
        steps.append(relevance)
    return torch.stack(steps, dim=1)
