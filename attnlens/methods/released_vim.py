"""Vision Mamba relevance maps as the authors' released code computes them.

Ali, Zimerman & Wolf, "The Hidden Attention of Mamba Models" (ACL 2025), ship three helpers
(``generate_raw_attn``, ``generate_rollout``, ``generate_mamba_attr`` in their ``vim/xai_utils.py``)
whose conventions differ from attnlens's exact methods. These functions reproduce them from the
per-channel class-token rows of the hidden attention (``trace.extras["readout_rows"]``):

- they work on one vector per layer, the class token's row ``v`` (channel-averaged), never on the
  full matrix: "rollout" composes ``norm_rows(I + 1·vᵀ)`` (every row of the layer's matrix is the
  identity's row plus ``v``), so what it rolls out is the class row alone;
- rollout uses the *signed* channel mean; raw attention and Mamba-Attr min-max scale each layer's
  whole `(channels, n)` row tensor first (the released code scales over all channels and tokens
  at once, not per channel);
- Mamba-Attr multiplies the scaled class row by ``s`` = min-max over tokens of
  ``max_d (∂y/∂h)⁺`` at the layer's residual stream;
- the class token's own entry of ``v`` is 0 (their row is spliced from the forward branch left
  of the class token and the backward branch right of it) and the maps are clamped at 0.

One difference is deliberate: their row helper leaves out the factor ``exp(Δ_cls · A)`` of the
class position, so it is not a row of α; attnlens's adapters give the exact row (see the Vim
adapter), so these maps equal the released ones up to that factor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_floating, _check_integer

RELEASED_START = -9  # the released code starts at layer 15 of 24: the last nine layers


def _check_rows(readout_rows: Tensor, readout: Tensor) -> None:
    _check_floating(readout_rows, "readout_rows")
    if readout_rows.ndim != 4:
        raise ArgumentError(f"Expected `readout_rows` to have shape (B, L, E, n), but got "
                            f"{tuple(readout_rows.shape)}.", "readout_rows")
    batch, n = readout_rows.shape[0], readout_rows.shape[-1]
    if not isinstance(readout, Tensor) or tuple(readout.shape) != (batch,) or readout.is_floating_point():
        raise ArgumentError(f"Expected `readout` to be a ({batch},) integer tensor, but got "
                            f"{getattr(readout, 'shape', readout)!r}.", "readout")
    if bool(((readout < 0) | (readout >= n)).any()):
        raise ArgumentError(f"Expected `readout` to lie in [0, {n - 1}], but got {readout.tolist()}.", "readout")


def released_start_layer(start_layer: int, layers: int) -> int:
    """The first layer used: non-negative values as given (must be < `layers`), negative ones counted
    from the end and clipped at 0 (the default -9 is the released code's 15 of 24)."""
    if isinstance(start_layer, int) and not isinstance(start_layer, bool) and start_layer < 0:
        return max(layers + start_layer, 0)
    return _check_integer(start_layer, "start_layer", low=0, high=layers - 1)


def _class_vectors(readout_rows: Tensor, readout: Tensor, *, clamp: bool, scale: bool) -> Tensor:
    """`(B, L, n)` per layer the channel mean of the class rows, their class entry set to 0 before
    clamping and scaling, as in the released row helper."""
    own = torch.nn.functional.one_hot(readout.to(readout_rows.device), readout_rows.shape[-1]).bool()
    rows = readout_rows.masked_fill(own[:, None, None], 0.0)
    rows = rows.clamp(min=0) if clamp else rows
    if scale:
        low = rows.amin(dim=(-1, -2), keepdim=True)
        span = rows.amax(dim=(-1, -2), keepdim=True) - low
        rows = (rows - low) / torch.where(span > 0, span, torch.ones_like(span))
    return rows.mean(dim=2)


def _broadcast_rollout(vectors: Tensor, start: int) -> Tensor:
    """`(B, L, n, n)` joint after each layer of ``norm_rows(I + 1·v_lᵀ)``, composed from `start`."""
    batch, layers, n = vectors.shape
    eye = torch.eye(n, dtype=vectors.dtype, device=vectors.device)
    joint = eye.expand(batch, n, n)
    steps = []
    for layer in range(layers):
        if layer >= start:
            step = eye + vectors[:, layer, None, :]
            joint = torch.matmul(step / step.sum(dim=-1, keepdim=True), joint)
        steps.append(joint)
    return torch.stack(steps, dim=1)


def _read(joint: Tensor, readout: Tensor) -> Tensor:
    """`(B, L, n)` rows `readout` of per-layer joint matrices, the class entry 0, clamped at 0."""
    batch, layers, n, _ = joint.shape
    rows = joint.gather(2, readout.view(batch, 1, 1, 1).expand(batch, layers, 1, n)).squeeze(2)
    own = torch.nn.functional.one_hot(readout, n).bool()[:, None]
    return rows.masked_fill(own, 0.0).clamp(min=0)


def released_raw_attention(readout_rows: Tensor, readout: Tensor, *, start_layer: int = RELEASED_START) -> Tensor:
    """The released ``generate_raw_attn``: per layer min-max scale the class rows over channels and
    tokens, average the channels, then average layers `start_layer`… (Ali et al. 2025).

    Args:
        readout_rows: `(B, L, E, n)` signed class-token rows of the hidden attention per channel.
        readout: `(B,)` class-token positions.
        start_layer: first layer averaged (negative: from the end, clipped at 0).

    Returns:
        `(B, L, n)`: after layer l the mean over layers start…l (layers before `start_layer` give
        their own row), the class entry 0, clamped at 0.

    Example:
        >>> import torch
        >>> rows = torch.tensor([[[[0.0, 1.0, 3.0]], [[2.0, 0.0, 1.0]]]])
        >>> released_raw_attention(rows, torch.tensor([0]), start_layer=0)[0, -1]
        tensor([0.0000, 0.1667, 1.0000])
    """
    _check_rows(readout_rows, readout)
    start = released_start_layer(start_layer, readout_rows.shape[1])
    vectors = _class_vectors(readout_rows, readout, clamp=False, scale=True)
    counts = torch.arange(readout_rows.shape[1], device=vectors.device) - start + 1
    running = vectors[:, start:].cumsum(dim=1) / counts[start:].to(vectors.dtype)[None, :, None]
    own = torch.nn.functional.one_hot(readout.to(vectors.device), vectors.shape[-1]).bool()[:, None]
    return torch.cat([vectors[:, :start], running], dim=1).masked_fill(own, 0.0).clamp(min=0)


def released_rollout(readout_rows: Tensor, readout: Tensor, *, start_layer: int = RELEASED_START) -> Tensor:
    """The released ``generate_rollout``: the signed channel mean of the class rows rolled out as
    ``norm_rows(I + 1·vᵀ)`` from `start_layer` (Ali et al. 2025).

    Args:
        readout_rows: `(B, L, E, n)` signed class-token rows per channel.
        readout: `(B,)` class-token positions.
        start_layer: first layer composed (negative: from the end, clipped at 0).

    Returns:
        `(B, L, n)` the class row of the joint after each layer, class entry 0, clamped at 0.

    Example:
        >>> import torch
        >>> rows = torch.tensor([[[[0.0, 1.0, 3.0]]]])
        >>> released_rollout(rows, torch.tensor([0]), start_layer=0)[0, -1]
        tensor([0.0000, 0.2000, 0.6000])
    """
    _check_rows(readout_rows, readout)
    start = released_start_layer(start_layer, readout_rows.shape[1])
    vectors = _class_vectors(readout_rows, readout, clamp=False, scale=False)
    return _read(_broadcast_rollout(vectors, start), readout.to(vectors.device))


def released_mamba_attr(readout_rows: Tensor, residual_grad: Tensor, readout: Tensor, *,
                        start_layer: int = RELEASED_START) -> Tensor:
    """The released ``generate_mamba_attr``: per layer ``mm(clamp(rows, 0))`` averaged over channels,
    times ``s = mm(residual_grad)``, rolled out as ``norm_rows(I + 1·vᵀ)`` (Ali et al. 2025).

    Args:
        readout_rows: `(B, L, E, n)` signed class-token rows per channel.
        residual_grad: `(B, L, n)` ``max_d (∂y/∂h)⁺`` at each layer's residual stream.
        readout: `(B,)` class-token positions.
        start_layer: first layer composed (negative: from the end, clipped at 0).

    Returns:
        `(B, L, n)` the class row of the joint after each layer, class entry 0, clamped at 0.
    """
    _check_rows(readout_rows, readout)
    _check_floating(residual_grad, "residual_grad")
    if tuple(residual_grad.shape) != (readout_rows.shape[0], readout_rows.shape[1], readout_rows.shape[-1]):
        raise ArgumentError(f"Expected `residual_grad` to have shape (B, L, n), but got "
                            f"{tuple(residual_grad.shape)}.", "residual_grad")
    start = released_start_layer(start_layer, readout_rows.shape[1])
    low = residual_grad.amin(dim=-1, keepdim=True)
    span = residual_grad.amax(dim=-1, keepdim=True) - low
    s = (residual_grad - low) / torch.where(span > 0, span, torch.ones_like(span))
    vectors = _class_vectors(readout_rows, readout, clamp=True, scale=True) * s
    return _read(_broadcast_rollout(vectors, start), readout.to(vectors.device))
