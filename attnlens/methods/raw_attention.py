"""Raw attention: each layer's head-fused attention on its own, no propagation."""

from __future__ import annotations

from torch import Tensor

from attnlens._checks import _check_mask
from attnlens.methods._common import _apply_mask, _fuse_if_per_head


def raw_attention(attn: Tensor, *, mask: Tensor | None = None, head_fusion: str = "mean") -> Tensor:
    """Per-layer head-fused attention with padded rows and columns zeroed.

    Raw attention weights as explanation (Abnar & Zuidema 2020, "Quantifying Attention Flow
    in Transformers", Sec. 2).

    Args:
        attn: `(B, L, H, n, n)` or already head-fused `(B, L, n, n)` attention.
        mask: `(B, n)` valid-token mask; None means every token is valid.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.

    Returns:
        `(B, L, n, n)` attention, same dtype and device as `attn`.

    Raises:
        ValueError: on a wrong shape or an unknown `head_fusion`.

    Example:
        >>> import torch
        >>> attn = torch.full((1, 1, 2, 3, 3), 1 / 3)
        >>> raw_attention(attn, mask=torch.tensor([[True, True, False]]))[0, 0]
        tensor([[0.3333, 0.3333, 0.0000],
                [0.3333, 0.3333, 0.0000],
                [0.0000, 0.0000, 0.0000]])
    """
    fused = _fuse_if_per_head(attn, how=head_fusion)
    mask = _check_mask(mask, "mask", fused.shape[0], fused.shape[-1], fused.device)
    return _apply_mask(fused, mask)
