"""Per-token relevance from a joint-attention matrix."""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, ArgumentTypeError, _check_attention, _check_choice, _check_mask

_REDUCTIONS = ("max", "cls", "mean", "last", "readout")


def relevance(
    joint: Tensor,
    *,
    mask: Tensor | None = None,
    reduce: str = "max",
    cls_index: int = 0,
    readout: Tensor | None = None,
) -> Tensor:
    """Reduce joint attention over its query rows to one relevance score per input token.

    ``max`` takes, per input token, its largest weight over valid query rows (the thesis's
    choice); ``cls`` reads row `cls_index` (Abnar & Zuidema 2020 read the [CLS] row); ``mean``
    averages the valid rows; ``last`` reads each example's last valid row (causal language models;
    padding may sit on either side); ``readout`` reads row ``readout[b]`` of example b (the
    adapter's ``Trace.readout``: [CLS], the last valid token, or Vision Mamba's class token).

    Args:
        joint: `(B, n, n)` or per-layer `(B, L, n, n)` joint attention (rows = queries).
        mask: `(B, n)` valid-token mask; None means every token is valid.
        reduce: ``"max"``, ``"cls"``, ``"mean"`` or ``"last"``.
        cls_index: row read by ``reduce="cls"``.
        readout: `(B,)` integer row per example, read by ``reduce="readout"`` (required there).

    Returns:
        `(B, n)` or `(B, L, n)` relevance, zero on padding.

    Raises:
        ValueError: on a wrong shape or mask, an unknown `reduce`, `cls_index` out of range, or a
            missing or out-of-range `readout`.

    Example:
        >>> import torch
        >>> joint = torch.tensor([[[0.6, 0.4], [0.1, 0.9]]])
        >>> relevance(joint, reduce="max")
        tensor([[0.6000, 0.9000]])
        >>> relevance(joint, reduce="cls")
        tensor([[0.6000, 0.4000]])
        >>> relevance(joint, reduce="readout", readout=torch.tensor([1]))
        tensor([[0.1000, 0.9000]])
    """
    _check_attention(joint, "joint", ndims=(3, 4))
    _check_choice(reduce, "reduce", _REDUCTIONS)
    batch, n = joint.shape[0], joint.shape[-1]
    mask = _check_mask(mask, "mask", batch, n, joint.device)
    if isinstance(cls_index, bool) or not isinstance(cls_index, int) or not 0 <= cls_index < n:
        raise ArgumentError(f"Expected `cls_index` to be an integer in [0, {n - 1}], but got {cls_index}.", "cls_index")
    if reduce == "readout":
        _check_readout(readout, batch, n)
    return _relevance_compute(joint, mask, reduce, cls_index, readout)


def _check_readout(readout: object, batch: int, n: int) -> None:
    if not isinstance(readout, torch.Tensor) or readout.is_floating_point() or readout.dtype == torch.bool:
        raise ArgumentTypeError(f"Expected `readout` to be a (B,) integer tensor when `reduce` is 'readout', but got "
                                f"{type(readout).__name__ if not isinstance(readout, torch.Tensor) else readout.dtype}.",
                                "readout")
    if tuple(readout.shape) != (batch,) or bool(((readout < 0) | (readout >= n)).any()):
        raise ArgumentError(f"Expected `readout` to hold {batch} rows in [0, {n - 1}], but got {readout.tolist()}.",
                            "readout")


def _relevance_compute(joint: Tensor, mask: Tensor, reduce: str, cls_index: int = 0,
                       readout: Tensor | None = None) -> Tensor:
    """:func:`relevance` on checked inputs (`mask` a bool `(B, n)` tensor); no host sync."""
    batch, n = joint.shape[0], joint.shape[-1]
    extra = joint.ndim - 3
    key_mask = mask.view(batch, *([1] * extra), n).to(joint.dtype)
    rows = mask.view(batch, *([1] * extra), n, 1)
    if reduce == "max":
        lowest = torch.finfo(joint.dtype).min
        scores = joint.masked_fill(~rows, lowest).amax(dim=-2)
    elif reduce == "cls":
        scores = joint[..., cls_index, :]
    elif reduce == "readout":
        rows_at = readout.to(joint.device).view(batch, *([1] * extra), 1, 1).expand(*joint.shape[:-2], 1, n)
        scores = torch.gather(joint, -2, rows_at).squeeze(-2)
    elif reduce == "mean":
        counts = mask.sum(dim=-1).view(batch, *([1] * extra), 1).to(joint.dtype)
        scores = (joint * rows.to(joint.dtype)).sum(dim=-2) / counts
    else:
        positions = torch.arange(n, device=joint.device).expand(batch, n)
        last_valid = torch.where(mask, positions, -1).amax(dim=-1)  # right or left padding alike
        last = last_valid.view(batch, *([1] * extra), 1, 1).expand(*joint.shape[:-2], 1, n)
        scores = torch.gather(joint, -2, last).squeeze(-2)
    return scores * key_mask
