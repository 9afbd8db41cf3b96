"""Hidden attention of a Mamba-2 (SSD) layer, per head, and the unified form of its whole mixer.

Mamba-2's scan has a scalar ``A_h`` per head and input matrices B, C shared by the heads of each
of ``G`` groups, so head h (in group g) computes ``y_hp[r] = Σ_{c ≤ r} α_h[r, c] x_hp[c] + D_h x_hp[r]``
for each of its P channels, with

    α_h[r, c] = (C_g[:, r] · B_g[:, c]) · exp(A_h Σ_{k=c+1..r} Δ_{k,h}) · Δ_{c,h}

(Ali, Zimerman & Wolf, "The Hidden Attention of Mamba Models", ACL 2025, for A = A_h·I). The
decay ``L_h[r, c] = exp(A_h Σ_{k=c+1..r} Δ_{k,h}) Δ_{c,h}`` is Mamba-1's hidden attention of one
state with B = C = 1, so it comes from the exact, chunked kernel
:func:`~attnlens.methods.hidden_attention.hidden_attention` (every exponent ≤ 0, nothing overflows);
the states enter once, as the Gram matrix ``C_gᵀ B_g`` of each group. L_h ≥ 0, so
``|α_h| = |C_gᵀ B_g| ⊙ L_h`` and both head means are per-group means of L: nothing of size
`(H, n, n)` is materialised unless ``heads="none"``.

Unified form (Zimerman, Ali & Wolf, "Explaining Modern Gated-Linear RNNs via a Unified Implicit
Attention Formulation", ICLR 2025): per channel d = (h, p) the mixer from the convolution's input x
to the input of `out_proj` is one data-controlled causal operator,

    Ω_d = diag(g_d) · (α_h + D_h·I) · diag(σ(v_d)) · M_d,

with M_d the causal depthwise convolution as a banded matrix (``M_d[r, r-k] = w_d[K-1-k]``), v_d its
pre-activation output (SiLU(v) = v·σ(v), so the SiLU is the diagonal σ(v_d) of the actual v), and
g_d the data-dependent output diagonal (Mamba-2: the gated RMSNorm ``w_d·SiLU(z_d)/rms_group(d)``,
see :func:`ssd_unified_attention`). A convolution bias b_d adds ``β_d = diag(g_d)(α_h + D_h I)σ(v_d)·b_d``,
which does not depend on x: the mixer's output is ``out_proj(Ω x + β)``. The channel mean uses that
the P channels of a head share α_h: per tap k, ``Σ_p g_hp[r] w_hp[K-1-k] σ_hp[c']`` is a rank-P
matrix (one matmul), so the mean needs `(B, h, n, n)` for a block of h heads, never `(H·P, n, n)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice, _check_floating, _check_mask, _check_ndim
from attnlens.methods._common import _apply_mask
from attnlens.methods.hidden_attention import hidden_attention

_HEAD_MODES = ("mean", "abs_mean", "none")
_BLOCK_ELEMENTS = 2**22  # elements of the largest per-block intermediate of the unified form
_CHANNEL_ELEMENTS = 2**20  # Ω of this many elements at a time for ``"abs_mean"`` (about the CPU cache)


def _ssd_check(delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[int, int, int, int, int]:
    for value, name in ((delta, "delta"), (A, "A"), (B, "B"), (C, "C")):
        _check_floating(value, name)
    _check_ndim(delta, "delta", (3,), "(B, H, n)")
    _check_ndim(A, "A", (1,), "(H,)")
    _check_ndim(B, "B", (4,), "(B, G, N, n)")
    _check_ndim(C, "C", (4,), "(B, G, N, n)")
    batch, heads, n = delta.shape
    groups, states = B.shape[1], B.shape[2]
    if A.shape[0] != heads:
        raise ArgumentError(f"Expected `A` to have shape (H,) = ({heads},), but got {tuple(A.shape)}.", "A")
    if B.shape[0] != batch or B.shape[3] != n or groups == 0 or states == 0:
        raise ArgumentError(f"Expected `B` to have shape (B, G, N, n) with B = {batch}, n = {n} and G, N ≥ 1, but "
                            f"got {tuple(B.shape)}.", "B")
    if tuple(C.shape) != tuple(B.shape):
        raise ArgumentError(f"Expected `C` to have the shape of `B`, {tuple(B.shape)}, but got {tuple(C.shape)}.", "C")
    if heads % groups:
        raise ArgumentError(f"Expected the number of heads H = {heads} to be a multiple of the number of groups "
                            f"G = {groups} (`B`'s dimension 1), but it is not.", "B")
    return batch, heads, n, groups, states


def _gram(B: Tensor, C: Tensor, mask: Tensor, dtype: torch.dtype) -> Tensor:
    """`(B, G, n, n)` ``C_gᵀ B_g`` on valid tokens (padding selected away, so NaN there stays out)."""
    valid = mask[:, None, None, :]
    zero = torch.zeros((), dtype=dtype, device=B.device)
    B, C = (torch.where(valid, x.to(dtype), zero) for x in (B, C))
    return torch.einsum("bgsr,bgsc->bgrc", C, B)


def _decay(delta: Tensor, A: Tensor, mask: Tensor, reduce: str) -> Tensor:
    """`L_h` of :mod:`this module <attnlens.methods.ssd_attention>`: `(B, n, n)` (``"mean"``) or `(B, H', n, n)`."""
    ones = torch.ones(delta.shape[0], 1, delta.shape[2], dtype=delta.dtype, device=delta.device)
    return hidden_attention(delta, A[:, None], ones, ones, channels=reduce, mask=mask)


def ssd_hidden_attention(
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    heads: str = "mean",
    mask: Tensor | None = None,
) -> Tensor:
    """Hidden attention of one Mamba-2 (SSD) layer, per head.

    Ali, Zimerman & Wolf 2025 (ACL) for Mamba-2's scalar A per head:
    ``α_h[r, c] = (C_r · B_c) · exp(A_h Σ_{k=c+1..r} Δ_{k,h}) · Δ_{c,h}`` for c ≤ r.

    The D skip is not part of α: head h's scan output is ``α_h · x_hp + D_h · x_hp``.

    Args:
        delta: `(B, H, n)` step sizes Δ per head after the softplus and clamp (non-negative).
        A: `(H,)` ``-exp(A_log)`` per head (non-positive).
        B: `(B, G, N, n)` input matrices, one per group of H / G consecutive heads.
        C: `(B, G, N, n)` output matrices.
        heads: ``"mean"`` averages α over the heads, ``"abs_mean"`` averages |α_h|, ``"none"``
            keeps every head.
        mask: `(B, n)` valid-token mask; padded tokens are removed from the sequence (each example
            gets what it gets alone) and their rows and columns are zero. None: every token is valid.

    Returns:
        `(B, n, n)` (means) or `(B, H, n, n)` (``"none"``), lower-triangular, rows = queries, in
        `delta`'s dtype and on its device.

    Raises:
        ValueError: on inconsistent shapes, H not a multiple of G, non-finite or positive `A`,
            negative or non-finite `delta` on valid tokens, a bad mask or an unknown `heads`.
        TypeError: on non-floating inputs.

    Example:
        >>> delta = torch.tensor([[[1.0, 1.0]]])
        >>> A = torch.tensor([-1.0])
        >>> B = torch.tensor([[[[1.0, 2.0]]]])
        >>> ssd_hidden_attention(delta, A, B, B)
        tensor([[[1.0000, 0.0000],
                 [0.7358, 4.0000]]])
    """
    batch, heads_count, n, groups, _ = _ssd_check(delta, A, B, C)
    _check_choice(heads, "heads", _HEAD_MODES)
    mask = _check_mask(mask, "mask", batch, n, delta.device)
    work = torch.promote_types(torch.promote_types(delta.dtype, A.dtype), torch.float32)
    gram = _gram(B, C, mask, work)
    per_group = heads_count // groups
    parts = []
    for g in range(groups):
        members = slice(g * per_group, (g + 1) * per_group)
        reduce = "none" if heads == "none" else "mean"
        decay = _decay(delta[:, members].to(work), A[members].to(work), mask, reduce)
        weight = gram[:, g].abs() if heads == "abs_mean" else gram[:, g]
        parts.append(decay * (weight[:, None] if heads == "none" else weight))
    result = torch.cat(parts, dim=1) if heads == "none" else torch.stack(parts).mean(dim=0)
    return _apply_mask(result, mask).to(delta.dtype)


class _Unified(NamedTuple):
    """The unified form's inputs with padding removed (valid tokens first), in the working dtype."""

    delta: Tensor  # (b, H, n)
    A: Tensor  # (H,)
    B: Tensor  # (b, G, N, n)
    C: Tensor
    skip: Tensor  # (H,)
    sigma: Tensor  # (b, H, P, n) σ(v), 0 on padding
    gate_scale: Tensor  # (b, H, P, n), 0 on padding
    order: Tensor  # (b, n) positions gathered
    prefix: Tensor  # (b, n) the compacted mask


def _unified_check(delta: Tensor, A: Tensor, B: Tensor, C: Tensor, tensors: dict[str, Tensor | None],
                   mask: Tensor | None) -> tuple[_Unified, Tensor]:
    """Check the unified form's inputs and remove padding (the convolution's shifts then never cross it)."""
    batch, heads_count, n, _, _ = _ssd_check(delta, A, B, C)
    for name, value in tensors.items():
        if value is not None:
            _check_floating(value, name)
    skip, preactivation, gate_scale = tensors["skip"], tensors["conv_preactivation"], tensors["gate_scale"]
    _check_ndim(skip, "skip", (1,), "(H,)")
    _check_ndim(preactivation, "conv_preactivation", (3,), "(B, H·P, n)")
    width = preactivation.shape[1]
    if skip.shape[0] != heads_count:
        raise ArgumentError(f"Expected `skip` to have shape (H,) = ({heads_count},), but got {tuple(skip.shape)}.",
                            "skip")
    if preactivation.shape[0] != batch or preactivation.shape[2] != n or width == 0 or width % heads_count:
        raise ArgumentError(f"Expected `conv_preactivation` to have shape (B, H·P, n) with B = {batch}, n = {n} and "
                            f"H·P a positive multiple of H = {heads_count}, but got {tuple(preactivation.shape)}.",
                            "conv_preactivation")
    if tuple(gate_scale.shape) != tuple(preactivation.shape):
        raise ArgumentError(f"Expected `gate_scale` to have the shape of `conv_preactivation`, "
                            f"{tuple(preactivation.shape)}, but got {tuple(gate_scale.shape)}.", "gate_scale")
    for name in ("conv_weight", "conv_bias"):
        value = tensors.get(name)
        if value is None:
            continue
        _check_ndim(value, name, (2,) if name == "conv_weight" else (1,), "(H·P, K)" if name == "conv_weight"
                    else "(H·P,)")
        if value.shape[0] != width or value.numel() == 0:
            layout = "(H·P, K) with H·P = {} and K ≥ 1" if name == "conv_weight" else "(H·P,) with H·P = {}"
            raise ArgumentError(f"Expected `{name}` to have shape {layout.format(width)}, but got "
                                f"{tuple(value.shape)}.", name)
    mask = _check_mask(mask, "mask", batch, n, delta.device)
    work = torch.promote_types(torch.promote_types(delta.dtype, A.dtype), torch.float32)
    order = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)
    prefix = torch.arange(n, device=mask.device)[None, :] < mask.sum(dim=-1, keepdim=True)
    zero = torch.zeros((), dtype=work, device=delta.device)
    delta, preactivation, gate_scale = (x.gather(-1, order[:, None].expand_as(x)).to(work)
                                        for x in (delta, preactivation, gate_scale))
    B, C = (x.gather(-1, order[:, None, None].expand_as(x)) for x in (B, C))
    # select before the sigmoid: NaN in padding must not reach the gradients (0 · σ'(NaN) = NaN)
    sigma = torch.where(prefix[:, None], torch.sigmoid(torch.where(prefix[:, None], preactivation, zero)), zero)
    gate_scale = torch.where(prefix[:, None], gate_scale, zero)
    per_head = (batch, heads_count, width // heads_count, n)
    return _Unified(delta, A.to(work), B, C, skip.to(work), sigma.view(per_head), gate_scale.view(per_head), order,
                    prefix), mask


def _head_blocks(heads: int, groups: int, block: int) -> Iterator[tuple[int, slice]]:
    """(group, heads) blocks of at most `block` consecutive heads, never across groups."""
    per_group = heads // groups
    for g in range(groups):
        for start in range(g * per_group, (g + 1) * per_group, block):
            yield g, slice(start, min(start + block, (g + 1) * per_group))


def _mixed(inputs: _Unified, g: int, members: slice) -> Tensor:
    """`(b, h, n, n)` α_h + D_h I for a block of heads of group g."""
    alpha = ssd_hidden_attention(inputs.delta[:, members], inputs.A[members], inputs.B[:, g : g + 1],
                                 inputs.C[:, g : g + 1], heads="none", mask=inputs.prefix)
    n = alpha.shape[-1]
    return alpha + inputs.skip[members, None, None] * torch.eye(n, dtype=alpha.dtype, device=alpha.device)


def _uncompact(x: Tensor, order: Tensor, *, pairs: bool = True) -> Tensor:
    """Undo gathering the token dimensions by `order (B, n)`: the last two of `(B, ..., n, n)` (`pairs`) or the last."""
    shape = (x.shape[0], *([1] * (x.ndim - 2)), x.shape[-1])
    out = torch.zeros_like(x).scatter_(-1, order.view(shape).expand_as(x), x)
    if not pairs:
        return out
    rows = order.view(x.shape[0], *([1] * (x.ndim - 3)), x.shape[-1], 1).expand_as(x)
    return torch.zeros_like(x).scatter_(-2, rows, out)


def ssd_unified_attention(
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    skip: Tensor,
    conv_weight: Tensor,
    conv_preactivation: Tensor,
    gate_scale: Tensor,
    channels: str = "mean",
    mask: Tensor | None = None,
) -> Tensor:
    """The whole Mamba-2 mixer as one causal operator per channel, from the convolution's input x to `out_proj`.

    Zimerman, Ali & Wolf 2025 (ICLR), unified implicit attention:
    ``Ω_d = diag(g_d) · (α_h + D_h I) · diag(σ(v_d)) · M_conv,d`` for channel d = (h, p).

    For Mamba-2, ``g_d[r] = w_d · SiLU(z_d[r]) / rms_{group(d)}[r]`` with w the gated RMSNorm's
    weight and ``rms_j[r] = sqrt(mean_{d' ∈ group j}(y_d'[r] SiLU(z_d'[r]))² + eps)`` computed from the
    layer's actual scan output y: the norm is exactly this diagonal for the given input (it is
    not linear in x; Ω is the operator the input's own norm applies). B and C also pass the
    convolution and SiLU: they are part of the data-controlled α, not of the map on x. A
    convolution bias adds the x-independent β of :func:`ssd_unified_attention_bias`: the
    `out_proj` input is ``Ω x + β``.

    Args:
        delta: `(B, H, n)` step sizes, as in :func:`ssd_hidden_attention`.
        A: `(H,)` the scalar state matrix per head.
        B: `(B, G, N, n)` input matrices per group.
        C: `(B, G, N, n)` output matrices per group.
        skip: `(H,)` the skip weight D per head.
        conv_weight: `(H·P, K)` depthwise causal-convolution taps of the x channels
            (``v_d[r] = Σ_j w_d[j] x_d[r-K+1+j] + b_d``).
        conv_preactivation: `(B, H·P, n)` v, the convolution's output before the SiLU (bias included).
        gate_scale: `(B, H·P, n)` g, the data-dependent output diagonal (see above; ``SiLU(z)``
            for a plain gate).
        channels: ``"mean"`` averages Ω over the H·P channels, ``"abs_mean"`` averages |Ω_d|,
            ``"none"`` keeps every channel.
        mask: `(B, n)` valid-token mask; padded tokens are removed from the sequence (the
            convolution skips them too) and their rows and columns are zero.

    Returns:
        `(B, n, n)` (means) or `(B, H·P, n, n)` (``"none"``), lower-triangular, in `delta`'s dtype.

    Raises:
        ValueError: on inconsistent shapes, a bad mask, an unknown `channels`, or the values
            :func:`ssd_hidden_attention` rejects.
        TypeError: on non-floating inputs.

    Example:
        >>> one = torch.ones(1, 1, 2)
        >>> ssd_unified_attention(one, torch.tensor([0.0]), one[None], one[None], skip=torch.tensor([0.0]),
        ...                       conv_weight=torch.tensor([[0.0, 1.0]]), conv_preactivation=one * 50,
        ...                       gate_scale=one)
        tensor([[[1., 0.],
                 [1., 1.]]])
    """
    tensors = {"skip": skip, "conv_weight": conv_weight, "conv_preactivation": conv_preactivation,
               "gate_scale": gate_scale}
    inputs, _ = _unified_check(delta, A, B, C, tensors, mask)
    _check_choice(channels, "channels", _HEAD_MODES)
    batch, heads_count, head_dim, n = inputs.sigma.shape
    taps = conv_weight.to(inputs.delta.dtype).flip(-1).view(heads_count, head_dim, -1)  # taps[..., k] weighs x[r-k]
    per_head = batch * n * n * (2 * head_dim if channels == "none" else 2)
    block = max(1, _BLOCK_ELEMENTS // per_head)
    total, parts = None, []
    for g, members in _head_blocks(heads_count, B.shape[1], block):
        mixed = _mixed(inputs, g, members)
        gate, sigma = inputs.gate_scale[:, members], inputs.sigma[:, members]
        if channels == "mean":
            reduced = _channel_sum(mixed, gate, taps[members], sigma)
        else:
            if channels == "none":
                parts.append(_per_channel(mixed, gate, taps[members], sigma).flatten(1, 2))
                continue
            reduced = _abs_channel_sum(mixed, gate, taps[members], sigma)
        total = reduced if total is None else total + reduced
    result = torch.cat(parts, dim=1) if channels == "none" else total / (heads_count * head_dim)
    return _uncompact(_apply_mask(result, inputs.prefix), inputs.order).to(delta.dtype)


def ssd_unified_attention_bias(
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    skip: Tensor,
    conv_preactivation: Tensor,
    conv_bias: Tensor | None,
    gate_scale: Tensor,
    mask: Tensor | None = None,
) -> Tensor:
    """The convolution bias's share β of a Mamba-2 mixer's `out_proj` input, next to Ω.

    Zimerman, Ali & Wolf 2025 (ICLR), the unified form with a bias b:
    ``o_d = Ω_d x_d + β_d``, ``β_d[r] = g_d[r] · Σ_c (α_h + D_h I)[r, c] · σ(v_d[c]) · b_d``.

    Args:
        delta: `(B, H, n)`, as in :func:`ssd_unified_attention`.
        A: `(H,)`, as there.
        B: `(B, G, N, n)`, as there.
        C: `(B, G, N, n)`, as there.
        skip: `(H,)`, as there.
        conv_preactivation: `(B, H·P, n)`, as there.
        gate_scale: `(B, H·P, n)`, as there.
        mask: `(B, n)` or None, as there.
        conv_bias: `(H·P,)` the x channels' convolution bias, or None (then β = 0).

    Returns:
        `(B, H·P, n)` β, 0 on padding, in `delta`'s dtype.

    Raises:
        ValueError: on inconsistent shapes or the values :func:`ssd_hidden_attention` rejects.
        TypeError: on non-floating inputs.

    Example:
        >>> one = torch.ones(1, 1, 2)
        >>> ssd_unified_attention_bias(one, torch.tensor([0.0]), one[None], one[None], skip=torch.tensor([0.0]),
        ...                            conv_preactivation=one * 50, conv_bias=torch.tensor([2.0]), gate_scale=one)
        tensor([[[2., 4.]]])
    """
    tensors = {"skip": skip, "conv_preactivation": conv_preactivation, "gate_scale": gate_scale,
               "conv_bias": conv_bias}
    inputs, _ = _unified_check(delta, A, B, C, tensors, mask)
    batch, heads_count, head_dim, n = inputs.sigma.shape
    if conv_bias is None:
        return torch.zeros(batch, heads_count * head_dim, n, dtype=delta.dtype, device=delta.device)
    drive = inputs.sigma * conv_bias.to(inputs.sigma.dtype).view(1, heads_count, head_dim, 1)  # σ(v)·b
    block = max(1, _BLOCK_ELEMENTS // (batch * n * n))
    parts = []
    for g, members in _head_blocks(heads_count, B.shape[1], block):
        mixed = _mixed(inputs, g, members)
        parts.append(torch.einsum("bhrc,bhpc->bhpr", mixed, drive[:, members]) * inputs.gate_scale[:, members])
    beta = torch.cat(parts, dim=1).flatten(1, 2)  # (b, H·P, n) in compacted positions
    return _uncompact(beta, inputs.order, pairs=False).to(delta.dtype)


def _channel_sum(mixed: Tensor, gate: Tensor, taps: Tensor, sigma: Tensor) -> Tensor:
    """``Σ_{h,p} Ω_hp`` `(b, n, n)` from `mixed (b, h, n, n)` = α_h + D_h I, `gate, sigma (b, h, P, n)`,
    `taps (h, P, K)`: per tap k, ``Σ_p g_hp[r] t_hp[k] σ_hp[c']`` is a rank-P matrix (one matmul)."""
    n = mixed.shape[-1]
    out = mixed.new_zeros(mixed.shape[0], n, n)
    for k in range(min(taps.shape[-1], n)):
        weights = torch.matmul((gate * taps[None, :, :, k, None]).transpose(-1, -2), sigma)  # (b, h, n, n)
        out[..., : n - k] += (mixed * weights).sum(dim=1)[..., k:]  # Ω[r, c] takes column c + k
    return out


def _per_channel(mixed: Tensor, gate: Tensor, taps: Tensor, sigma: Tensor) -> Tensor:
    """Every channel's Ω `(b, h, P, n, n)` (same arguments as :func:`_channel_sum`)."""
    n = mixed.shape[-1]
    scaled = mixed[:, :, None] * sigma[..., None, :]  # (α_h + D_h I) diag(σ_hp)
    out = scaled * taps[None, :, :, 0, None, None]
    for k in range(1, min(taps.shape[-1], n)):  # in place: no temporary of this size per tap
        out[..., : n - k].addcmul_(scaled[..., k:], taps[None, :, :, k, None, None])
    return out * gate[..., None] if out.requires_grad else out.mul_(gate[..., None])


def _abs_channel_sum(mixed: Tensor, gate: Tensor, taps: Tensor, sigma: Tensor) -> Tensor:
    """``Σ_{h,p} |Ω_hp|`` `(b, n, n)`, a few channels at a time (cache-sized blocks of :func:`_per_channel`)."""
    batch, heads, head_dim, n = sigma.shape
    step = max(1, _CHANNEL_ELEMENTS // (batch * heads * n * n))
    total = mixed.new_zeros(batch, n, n)
    for start in range(0, head_dim, step):
        part = slice(start, min(start + step, head_dim))
        total = total + _per_channel(mixed, gate[:, :, part], taps[:, part], sigma[:, :, part]).abs().sum(dim=(1, 2))
    return total
