"""Per-token input-gradient saliency, shared by every adapter."""

from __future__ import annotations

from torch import Tensor

from attnlens._checks import _check_choice

SALIENCY_REDUCTIONS = ("sum_abs", "l2", "grad_x_input")
SALIENCY_POSITIONS = ("layer_input", "word_embeddings")


def reduce_saliency(grad: Tensor, embeddings: Tensor, mask: Tensor, *, how: str) -> Tensor:
    """Per-token saliency from the gradient of the target logit w.r.t. the input embeddings.

    ``sum_abs`` = |Σ_d g| (Abnar & Zuidema 2020, as in the thesis), ``l2`` = ‖g‖₂ (Simonyan et
    al. 2014), ``grad_x_input`` = |Σ_d g·e| (Shrikumar et al. 2016).

    Args:
        grad: `(B, n, d)` gradient.
        embeddings: `(B, n, d)` input embeddings.
        mask: `(B, n)` valid-token mask.
        how: ``"sum_abs"``, ``"l2"`` or ``"grad_x_input"``.

    Returns:
        `(B, n)` non-negative saliency, zero on padding.

    Example:
        >>> import torch
        >>> g = torch.tensor([[[1.0, -3.0]]]); e = torch.tensor([[[2.0, 1.0]]])
        >>> reduce_saliency(g, e, torch.tensor([[True]]), how="sum_abs")
        tensor([[2.]])
    """
    _check_choice(how, "saliency", SALIENCY_REDUCTIONS)
    if how == "sum_abs":
        values = grad.sum(dim=-1).abs()
    elif how == "l2":
        values = grad.norm(dim=-1)
    else:
        values = (grad * embeddings).sum(dim=-1).abs()
    return values * mask.to(values.dtype)
