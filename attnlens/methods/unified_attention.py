"""The unified implicit attention of a Mamba-1 mixer: conv, SiLU, scan, skip and gate as one operator.

Zimerman, Ali & Wolf, "Explaining Modern Gated-Linear RNNs via a Unified Implicit Attention
Formulation" (ICLR 2025). Per channel d, a Mamba mixer maps its conv input x (the `in_proj` x half)
to the gated output ``o = SiLU(z) · ((α + diag(D)) · SiLU(M_conv x + b))``. SiLU(v) = v·σ(v)
exactly, so with the pre-activation v = M_conv x + b the whole mixer is

    o_d = Ω_d x_d + β_d,    Ω_d = diag(SiLU(z_d)) · (α_d + diag(D_d)) · diag(σ(v_d)) · M_conv,d

with α the scan's hidden attention (:func:`attnlens.methods.hidden_attention`), M_conv the causal
depthwise convolution as a banded lower-triangular matrix (``M[t, c] = w[K-1-(t-c)]`` for
0 ≤ t-c < K, K taps) and ``β_d[r] = SiLU(z_d[r]) · Σ_c (α_d + diag(D_d))[r, c] · σ(v_d[c]) · b_d``
the conv bias's share (:func:`unified_attention_bias`): Ω is the linear, token-mixing part. The
data dependence sits in α, σ(v) and the gate; for a fixed input the mixer is exactly linear in x.

How it is computed (never with an (n, n) matrix per channel for the channel mean). For r ≥ c+K-1
every tap of column c lies at or before r, and the K keys c..c+K-1 fold into one key anchored at
a = c+K-1 whose decays to a are all ≤ 1:

    Ω_d[r, c] = Σ_s SiLU(z_d[r]) C[s, r] · exp(A[d, s] Σ_{k=a+1..r} Δ_k[d]) · K̂[d, s, a]
    K̂[d, s, a] = Σ_{o<K} w_d[o] σ(v_d[a-o]) Δ_{a-o}[d] B[s, a-o] · exp(A[d, s] Σ_{k=a-o+1..a} Δ_k[d])

which is the scan kernel's problem with per-channel queries SiLU(z)·C and keys K̂ (the same
batched products over channels × states), its columns shifted by K-1. The K-1 diagonals closest to
the main one (some taps after r) and the skip D (banded) are computed directly in O(D·N·n·K).
Padding (a mask) is removed from the sequence first: each example gets what it gets alone, also
through the convolution.

Falcon-Mamba is Mamba-1 with (weightless) RMS norms on B, C and Δ's low-rank input inside the
mixer: with the normalised B, C and the Δ they give (what :class:`attnlens.models.MambaAdapter`
captures), Ω is exact for it too. The scan-only form is ``hidden_attention(..., form="scan")``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlens._checks import _check_floating, _check_mask, _check_ndim
from attnlens.methods._common import _apply_mask
from attnlens.methods.hidden_attention import (
    _decay_,
    _default_channel_block,
    _hidden_attention_block,
    _hidden_attention_check,
    _hidden_attention_values,
    _mul_,
    _schedule,
    _work_dtype,
    _Workspace,
)

_LAYOUTS = {"gate": "(B, D, n)", "skip": "(D,)", "conv_weight": "(D, K)", "conv_preactivation": "(B, D, n)",
            "conv_bias": "(D,)"}
_PER_TOKEN = ("gate", "conv_preactivation")


def _unified_attention_check(delta: Tensor, mask: Tensor, **inputs: Tensor | None) -> None:
    """Shapes, dtypes and finite values (per-token inputs: on valid tokens) of the named mixer inputs."""
    batch, channels, n = delta.shape
    shapes = {"(B, D, n)": (batch, channels, n), "(D,)": (channels,)}
    for name, value in inputs.items():
        layout = _LAYOUTS[name]
        if value is None:
            raise ValueError(f"Expected `{name}` to be a {layout} tensor with `form` 'unified', but got None.")
        _check_floating(value, name)
        if layout == "(D, K)":
            _check_ndim(value, name, (2,), "(D, K) (conv1d.weight[:, 0, :])")
            if value.shape[0] != channels or value.shape[1] < 1:
                raise ValueError(f"Expected `{name}` to have shape (D, K) with D = {channels} and K ≥ 1, but got "
                                 f"{tuple(value.shape)}.")
        elif tuple(value.shape) != shapes[layout]:
            sizes = ", ".join(str(size) for size in shapes[layout]) + ("," if layout == "(D,)" else "")
            raise ValueError(f"Expected `{name}` to have shape {layout} = ({sizes}), but got {tuple(value.shape)}.")
    valid = mask[:, None, :]
    flags = torch.stack([(~torch.isfinite(value) & valid).any() if name in _PER_TOKEN
                         else ~torch.isfinite(value).all().to(mask.device) for name, value in inputs.items()]).tolist()
    for flag, name in zip(flags, inputs):
        if flag:
            place = " on valid tokens" if name in _PER_TOKEN else ""
            raise ValueError(f"Expected `{name}` to hold only finite values{place}, but it has NaN or infinite "
                             f"entries.")


def _shift(x: Tensor, offset: int) -> Tensor:
    """x[..., t - offset] at t (zero for t < offset) along the last axis."""
    if offset == 0:
        return x
    if offset >= x.shape[-1]:
        return torch.zeros_like(x)
    return F.pad(x[..., : x.shape[-1] - offset], (offset, 0))


def _convolved_keys(dt: Tensor, A: Tensor, B: Tensor, C: Tensor, drive: Tensor, weight: Tensor
                    ) -> tuple[Tensor, list[Tensor]]:
    """The anchored keys K̂ `(D, N, b, L)` and, per tap offset o < K-1, ``Σ_s C[s, a] E_o[d, s, a]`` `(D, b, L)`.

    `dt, drive (D, b, L)` (drive = σ(v)·Δ), `A (D, N)`, `B, C (N, b, L)`, `weight (D, K)`. E_o is the
    key o tokens before the anchor a decayed to it: ``σ(v)ΔB`` at a-o times exp(A Σ_{a-o<k≤a} Δ_k),
    and K̂ = Σ_o w[o] E_o.
    """
    taps = weight.shape[1]
    keys = B[None] * (drive * weight[:, 0, None, None])[:, None]  # o = 0: no decay
    near = [drive * (C * B).sum(dim=0)] if taps > 1 else []
    window = torch.zeros_like(dt)  # Σ of Δ over (a-o, a], a sum of at most K-1 steps (no cancellation)
    for offset in range(1, taps):
        window = window + _shift(dt, offset - 1)
        shifted = _shift(drive, offset)
        term = _mul_(_decay_(A[:, :, None, None] * window[:, None]), _shift(B, offset)[None])  # E_o / σ(v)Δ
        scale = (shifted * weight[:, offset, None, None])[:, None]
        keys = keys + term * scale if term.requires_grad or keys.requires_grad else keys.addcmul_(term, scale)
        if offset < taps - 1:
            near.append(shifted * (_mul_(term, C[None])).sum(dim=1))
    return keys, near


def _bands(near: list[Tensor], gate: Tensor, drive_skip: Tensor, weight: Tensor) -> list[Tensor]:
    """Per offset e < K, the entries Ω[r, r-e] not in the shifted kernel output: `(D, b, L)` each.

    ``SiLU(z[r]) · (Σ_{o≤e} w[K-1-e+o] near_o[r]  (e < K-1)  +  D σ(v[r]) w[K-1-e])``.
    """
    taps = weight.shape[1]
    out = []
    for e in range(taps):
        value = drive_skip * weight[:, taps - 1 - e, None, None]
        for offset in range(e + 1) if e < taps - 1 else ():  # some taps after r: not in the anchored keys
            value = value + weight[:, taps - 1 - e + offset, None, None] * near[offset]
        out.append(gate * value)
    return out


def _place(kernel: Tensor, bands: list[Tensor], taps: int) -> Tensor:
    """The kernel output `(b, [D,] L, L)` with columns shifted left by K-1, plus the bands on the first K diagonals.

    `bands`: per offset e, `(b, [D,] L)` values at rows r ≥ e (entry (r, r-e)).
    """
    length = kernel.shape[-1]
    shift = taps - 1
    if shift:
        out = kernel.new_zeros(kernel.shape)
        if shift < length:
            out[..., : length - shift] = kernel[..., shift:]
    else:
        out = kernel
    rows = torch.cat([torch.arange(e, length, device=kernel.device) for e in range(min(taps, length))])
    cols = torch.cat([torch.arange(0, length - e, device=kernel.device) for e in range(min(taps, length))])
    values = torch.cat([band[..., e:] for e, band in enumerate(bands[:length])], dim=-1)
    if out.requires_grad or values.requires_grad:
        out = out.clone()
    out[..., rows, cols] = out[..., rows, cols] + values
    return out


def _compaction(mask: Tensor) -> Tensor | None:
    """Token order moving every example's valid tokens to the front (None when they already are)."""
    n = mask.shape[1]
    prefix = torch.arange(n, device=mask.device)[None, :] < mask.sum(dim=1, keepdim=True)
    if bool((mask == prefix).all()):
        return None
    return torch.argsort((~mask).to(torch.int8), dim=1, stable=True)


def _gather_tokens(x: Tensor, order: Tensor) -> Tensor:
    return x.gather(-1, order[:, None, :].expand_as(x))


def _scatter_back(result: Tensor, order: Tensor) -> Tensor:
    """`result (B, [D,] n, n)` in compacted order back to the original token positions."""
    inverse = torch.argsort(order, dim=1)
    shape = result.shape
    index = inverse.view(shape[0], *([1] * (result.ndim - 3)), shape[-1], 1).expand(*shape[:-1], 1)
    rows = result.gather(-2, index.expand(shape))
    return rows.gather(-1, inverse.view(shape[0], *([1] * (result.ndim - 2)), shape[-1]).expand(shape))


def _unified_attention_compute(
    delta: Tensor, A: Tensor, B: Tensor, C: Tensor, *, gate: Tensor, skip: Tensor, conv_weight: Tensor,
    conv_preactivation: Tensor, channels: str, mask: Tensor, block_size: int | None, channel_block: int | None,
) -> Tensor:
    """Ω reduced over channels as `channels` says; inputs already checked (see the module docstring)."""
    order = _compaction(mask)
    if order is not None:
        delta, B, C, gate, conv_preactivation = (_gather_tokens(x, order)
                                                 for x in (delta, B, C, gate, conv_preactivation))
        mask = mask.gather(1, order)
    batch, channels_count, n = delta.shape
    states, taps = A.shape[1], conv_weight.shape[1]
    out_dtype = delta.dtype
    work_dtype = _work_dtype(delta, A)
    valid = mask[:, None, :]
    zero = torch.zeros((), dtype=work_dtype, device=delta.device)
    delta, B, C = (torch.where(valid, x.to(work_dtype), zero) for x in (delta, B, C))
    gate = torch.where(valid, F.silu(gate.to(work_dtype)), zero)
    sigma = torch.where(valid, torch.sigmoid(conv_preactivation.to(work_dtype)), zero)
    A, weight, skip = A.to(work_dtype), conv_weight.to(work_dtype), skip.to(work_dtype)

    sizes = _schedule(n, block_size)
    length = -(-n // sizes[0]) * sizes[0] if sizes else n
    if length != n:
        delta, B, C, gate, sigma = (F.pad(x, (0, length - n)) for x in (delta, B, C, gate, sigma))
    dt, gate_t, sigma_t = (x.transpose(0, 1).contiguous() for x in (delta, gate, sigma))  # (D, b, L)
    B_t, C_t = B.transpose(0, 1).contiguous(), C.transpose(0, 1).contiguous()  # (N, b, L)
    needs_grad = torch.is_grad_enabled() and any(
        x.requires_grad for x in (dt, A, B_t, C_t, gate_t, sigma_t, weight, skip))
    per_channel = channels != "mean"
    if channel_block is None:
        channel_block = _default_channel_block(batch, states, length, sizes, dt.device, per_channel)

    work = _Workspace(enabled=not needs_grad)
    total, band_total, parts = None, None, []
    for start in range(0, channels_count, channel_block):
        stop = min(start + channel_block, channels_count)
        block_dt, block_A, block_gate = dt[start:stop], A[start:stop], gate_t[start:stop]
        block_weight, drive = weight[start:stop], sigma_t[start:stop] * block_dt
        keys, near = _convolved_keys(block_dt, block_A, B_t, C_t, drive, block_weight)
        queries = block_gate[:, None] * C_t[None]  # (D, N, b, L)
        kernel = _hidden_attention_block(block_dt, None, block_A, keys.contiguous(), queries.contiguous(), sizes,
                                         per_channel, work, delta_in_keys=True)
        bands = _bands(near, block_gate, skip[start:stop, None, None] * sigma_t[start:stop], block_weight)
        if channels == "mean":
            total = kernel if total is None else (total + kernel if needs_grad else total.add_(kernel))
            summed = [band.sum(dim=0) for band in bands]  # (b, L)
            band_total = summed if band_total is None else [x + y for x, y in zip(band_total, summed)]
            continue
        omega = _place(kernel, [band.transpose(0, 1) for band in bands], taps)  # (b, D, L, L)
        if channels == "none":
            parts.append(omega)
            continue
        reduced = omega.abs().sum(dim=1)
        total = reduced if total is None else total + reduced
    if channels == "mean":
        result = _place(total, band_total, taps) / channels_count
    elif channels == "none":
        result = torch.cat(parts, dim=1)
    else:
        result = total / channels_count
    result = _apply_mask(result[..., :n, :n], mask)
    if order is not None:
        result = _scatter_back(result, order)
    return result.to(out_dtype)


def unified_attention_bias(
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    gate: Tensor,
    skip: Tensor,
    conv_preactivation: Tensor,
    conv_bias: Tensor | None,
    mask: Tensor | None = None,
) -> Tensor:
    """The conv bias's share β of a Mamba-1 mixer's gated output, next to the unified attention Ω.

    Zimerman, Ali & Wolf 2025 (ICLR), the unified form with a conv bias b:
    ``o_d = Ω_d x_d + β_d``, ``β_d[r] = SiLU(z_d[r]) · Σ_c (α_d + diag(D_d))[r, c] · σ(v_d[c]) · b_d``.

    Computed by the selective scan itself on the input σ(v)·b (n sequential steps on `(B, D, N)`
    states, no (n, n) matrix).

    Args:
        delta: `(B, D, n)` Δ after the softplus.
        A: `(D, N)` state matrix ``-exp(A_log)``.
        B: `(B, N, n)` input matrix.
        C: `(B, N, n)` output matrix.
        gate: `(B, D, n)` gate input z (before its SiLU).
        skip: `(D,)` skip weights D.
        conv_preactivation: `(B, D, n)` the conv output v before its SiLU (bias included).
        conv_bias: `(D,)` conv bias b, or None (then β = 0).
        mask: `(B, n)` valid-token mask (padding is removed from the sequence; its rows are 0).

    Returns:
        `(B, D, n)` β, same dtype as `delta`.

    Raises:
        ValueError: on inconsistent shapes or non-finite values.
        TypeError: on non-floating inputs.

    Example:
        >>> import torch
        >>> one = torch.ones(1, 1, 2)
        >>> beta = unified_attention_bias(one, -torch.ones(1, 1), one, one, gate=one * 50, skip=torch.zeros(1),
        ...                               conv_preactivation=one * 50, conv_bias=torch.ones(1))
        >>> beta.shape
        torch.Size([1, 1, 2])
    """
    _hidden_attention_check(delta, A, B, C, "mean", None)
    batch, channels_count, n = delta.shape
    mask = _check_mask(mask, "mask", batch, n, delta.device)
    _hidden_attention_values(delta, A, mask)
    bias = {} if conv_bias is None else {"conv_bias": conv_bias}
    _unified_attention_check(delta, mask, gate=gate, skip=skip, conv_preactivation=conv_preactivation, **bias)
    if conv_bias is None:
        return torch.zeros_like(delta)
    work_dtype = _work_dtype(delta, A)
    valid = mask[:, None, :]
    zero = torch.zeros((), dtype=work_dtype, device=delta.device)
    dt = torch.where(valid, delta.to(work_dtype), zero)  # Δ = 0 on padding: the state passes it unchanged
    B, C = (torch.where(valid, x.to(work_dtype), zero) for x in (B, C))
    sigma = torch.where(valid, torch.sigmoid(conv_preactivation.to(work_dtype)), zero)
    drive = sigma * conv_bias.to(work_dtype)[:, None]
    A = A.to(work_dtype)
    state = dt.new_zeros(batch, channels_count, A.shape[1])
    outputs = []
    for t in range(n):
        step = dt[:, :, t, None]
        state = torch.exp(A * step) * state + (step * drive[:, :, t, None]) * B[:, None, :, t]
        outputs.append((state * C[:, None, :, t]).sum(dim=-1))
    scanned = torch.stack(outputs, dim=-1) + skip.to(work_dtype)[:, None] * drive
    gated = torch.where(valid, F.silu(gate.to(work_dtype)), zero) * scanned
    return gated.to(delta.dtype)
