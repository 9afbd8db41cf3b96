"""Hidden attention of a selective state-space (Mamba) layer, exact and vectorized.

A selective SSM channel d computes ``y_r = Σ_{c ≤ r} α[r, c] · u_c + D · u_r`` with

    α[r, c] = Σ_s C[s, r] · exp(A[d, s] · Σ_{k=c+1..r} Δ_k[d]) · Δ_c[d] · B[s, c]

(Ali, Zimerman & Wolf, "The Hidden Attention of Mamba Models", ACL 2025, Eq. 11).

How it is computed. Tokens are cut into chunks of q tokens. With ``t`` the cumulative sum of Δ
restarted at every chunk (segment-relative, so it stays small) and ``T_i`` the total of chunk i,
the entry for a query r in chunk I and a key c in an earlier chunk J < I factorises as

    α[r, c] = Σ_{d,s} G[s, r] · P[s, I, J] · R[s, c]
    G = C_r · exp(A · t_r)                       (≤ |C|: decay from the start of chunk I to r)
    R = exp(A · (T_J − t_c) + log Δ_c) · B_c     (≤ |Δ B|: decay from c to the end of chunk J)
    P = exp(A · Σ_{J<M<I} T_M)                   (≤ 1: decay across the chunks strictly between)

so ALL off-diagonal blocks of a level are one batched matrix product: for every query chunk I,
``G_I (q × D·N) @ (P_I ⊙ R)ᵀ (D·N × n)`` (P_IJ = 0 for J ≥ I), whose inner size is D·N for the
channel mean (and N per channel otherwise). There is no Python loop over chunks. Every exponent
is a sum of Δ·A ≤ 0, so every factor lies in [0, 1] times |C| or |Δ B|: nothing overflows
whatever Δ is, and no differences of long cumulative sums lose precision. Factors below eps² are
set to exactly 0 (they change nothing at the dtype's precision; subnormal numbers would slow CPU
arithmetic about tenfold). The diagonal blocks are the same problem on each chunk alone, solved
the same way with smaller chunks (two levels by default, e.g. 40 then 8 tokens for n = 197), and
at the last level entry by entry on the lower triangle only (``exp(A · (t_r − t_c))``, exponent
≤ 0). Channels are processed in blocks sized for the CPU cache (all at once on a GPU), with
scratch buffers reused across blocks. Half-precision inputs are computed in float32 and returned
in their own dtype.

Two forms. ``form="scan"`` (the default) is α alone, the map from the scan input u to the scan
output. ``form="unified"`` (Zimerman, Ali & Wolf, ICLR 2025) is the whole Mamba-1 mixer from its
conv input x to its gated output: ``Ω_d = diag(SiLU(z_d)) · (α_d + diag(D_d)) · diag(σ(v_d)) ·
M_conv,d`` (:mod:`attnlens.methods.unified_attention`, computed by the same kernel with the
convolution folded into per-channel keys, so the channel mean still never holds (D, n, n)).
Falcon-Mamba is Mamba-1 with RMS-normalised B, C and Δ: give the normalised values and both
forms are exact for it too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from attnlens._checks import _check_choice, _check_floating, _check_mask, _check_ndim
from attnlens.methods._common import _apply_mask

_CHANNEL_MODES = ("mean", "none", "abs_mean")
_FORMS = ("scan", "unified")
_LEAF = 8  # chunk size of the last level (its diagonal blocks are computed entry by entry)
_CPU_BLOCK_ELEMENTS = 2**20  # scaled key blocks per channel block: about 4 MiB in float32 (cache)
_GPU_BLOCK_ELEMENTS = 2**26  # on a GPU: every channel at once for Vim-small
_CPU_MEAN_MAX_CHANNELS = 64  # channel mean on a CPU: at most this many channels per block
_CPU_LEAF_ELEMENTS = 2**17  # the unified form's last-level terms per piece: 256 KiB in float32 (L2 cache)


def _hidden_attention_check(
    delta: Tensor, A: Tensor, B: Tensor, C: Tensor, channels: str, block_size: int | None
) -> None:
    for value, name in ((delta, "delta"), (A, "A"), (B, "B"), (C, "C")):
        _check_floating(value, name)
    _check_ndim(delta, "delta", (3,), "(B, D, n)")
    _check_ndim(A, "A", (2,), "(D, N)")
    _check_ndim(B, "B", (3,), "(B, N, n)")
    _check_ndim(C, "C", (3,), "(B, N, n)")
    batch, channels_count, n = delta.shape
    states = A.shape[1]
    if A.shape[0] != channels_count:
        raise ValueError(f"Expected `A` to have shape (D, N) with D = {channels_count}, but got {tuple(A.shape)}.")
    for value, name in ((B, "B"), (C, "C")):
        if tuple(value.shape) != (batch, states, n):
            raise ValueError(
                f"Expected `{name}` to have shape (B, N, n) = ({batch}, {states}, {n}), but got {tuple(value.shape)}."
            )
    if n == 0:
        raise ValueError(f"Expected `delta` to have at least one token, but got shape {tuple(delta.shape)}.")
    _check_choice(channels, "channels", _CHANNEL_MODES)
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"Expected `block_size` to be a positive integer or None, but got {block_size!r}.")


def _hidden_attention_values(delta: Tensor, A: Tensor, mask: Tensor) -> None:
    """Finite, non-positive `A`; finite, non-negative Δ on valid tokens (padding is ignored)."""
    valid = mask[:, None, :]
    # one host synchronisation for every value check (on a GPU each bool() would be one)
    flags = torch.stack([
        ~torch.isfinite(A).all(), (~torch.isfinite(delta) & valid).any().to(A.device),
        (A > 0).any(), ((delta < 0) & valid).any().to(A.device),
    ]).tolist()
    if flags[0]:
        raise ValueError("Expected `A` to hold only finite values, but it has NaN or infinite entries.")
    if flags[1]:
        raise ValueError(
            "Expected `delta` to hold only finite values on valid tokens, but it has NaN or infinite entries."
        )
    if flags[2]:
        raise ValueError(
            f"Expected `A` to be non-positive (A = -exp(A_log)), but got a maximum of {A.max().item():.3g}."
        )
    if flags[3]:
        minimum = torch.where(valid, delta, torch.zeros((), dtype=delta.dtype, device=delta.device)).min()
        raise ValueError(
            f"Expected `delta` to be non-negative (after softplus), but got a minimum of {minimum.item():.3g}."
        )


def _decay_(exponent: Tensor) -> Tensor:
    """exp(x) for x ≤ 0, with x ≤ 2·log(eps) giving exactly 0 (no subnormal numbers); in place unless autograd."""
    floor = 2 * math.log(torch.finfo(exponent.dtype).eps)
    if exponent.requires_grad:
        return torch.exp(F.threshold(exponent, floor, -math.inf))
    return F.threshold_(exponent, floor, -math.inf).exp_()


def _mul_(x: Tensor, y: Tensor) -> Tensor:
    """x ·= y in place, or out of place when autograd records x."""
    return x * y if x.requires_grad else x.mul_(y)


def _copy(x: Tensor, buffer: Tensor | None) -> Tensor:
    """`x` made contiguous, into `buffer` when there is one."""
    return x.contiguous() if buffer is None else buffer.copy_(x)


class _Workspace:
    """Scratch buffers reused across channel blocks (fresh large CPU allocations cost page faults).

    Disabled (every call returns None, so operations allocate) when autograd must record them.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.buffers: dict[object, Tensor] = {}

    def __call__(self, key: object, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
        if not self.enabled:
            return None
        numel = math.prod(shape)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
            self.buffers[key] = buffer
        return buffer[:numel].view(shape)


def _schedule(n: int, block_size: int | None) -> list[int]:
    """Chunk sizes per level, each dividing the previous one; [] means entry by entry."""
    if block_size is not None:
        if block_size >= n:
            return []
        inner = next((size for size in range(min(_LEAF, block_size - 1), 1, -1) if block_size % size == 0), None)
        return [block_size] if inner is None or block_size <= _LEAF else [block_size, inner]
    if n <= 2 * _LEAF:
        return []
    # cost model (elements of the scaled key blocks per channel and state): L·L/q + L·q/leaf
    best, best_cost = [_LEAF], math.ceil(n / _LEAF) * _LEAF * math.ceil(n / _LEAF)
    for q in range(2 * _LEAF, n, _LEAF):
        length = math.ceil(n / q) * q
        cost = length * (length // q + q // _LEAF)
        if cost < best_cost:
            best, best_cost = [q, _LEAF], cost
    return best


def _diagonal(
    dt: Tensor, logdt: Tensor | None, A: Tensor, B: Tensor, C: Tensor, per_channel: bool, work: _Workspace
) -> Tensor:
    """Entry by entry on the lower triangle.

    Channels-first `dt, logdt (D, m, q)`, `B, C (N, m, q)` → `(m, [D,] q, q)`. With `logdt` None
    (autograd), Δ_c multiplies the decay instead of entering its exponent as log Δ_c.
    """
    channels, m, q = dt.shape
    rows, cols = torch.tril_indices(q, q, device=dt.device)
    local = torch.cumsum(dt, dim=-1)
    gap = local[..., rows] - local[..., cols]  # (D, m, p) ≥ 0: cumulative sums of Δ ≥ 0 never decrease
    if logdt is None:
        terms = _decay_(A[:, :, None, None] * gap[:, None]) * dt[:, None, :, cols]
    else:
        buffer = work("diag", (channels, A.shape[1], m, rows.numel()), dt)
        exponent = torch.addcmul(logdt[:, None, :, cols], A[:, :, None, None], gap[:, None], out=buffer)
        terms = _decay_(exponent)  # (D, N, m, p): exp(A (t_r − t_c)) Δ_c
    weights = C[..., rows] * B[..., cols]  # (N, m, p)
    if per_channel:
        values = _mul_(terms, weights).sum(dim=1).transpose(0, 1)  # (m, D, p)
        out = dt.new_zeros(m, channels, q * q)
    else:
        values = (terms.sum(dim=0) * weights).sum(dim=0)  # (m, p)
        out = dt.new_zeros(m, q * q)
    out[..., rows * q + cols] = values
    return out.view(*out.shape[:-1], q, q)


def _diagonal_keys(dt: Tensor, A: Tensor, keys: Tensor, queries: Tensor, per_channel: bool,
                   work: _Workspace) -> Tensor:
    """Entry by entry on the lower triangle, for keys and queries given per channel.

    Channels-first `dt (D, m, q)`, `keys, queries (D, N, m, q)` (keys holding their Δ) →
    `(m, [D,] q, q)`: ``Σ_s queries[r] · exp(A (t_r − t_c)) · keys[c]`` for c ≤ r, 0 above. The
    keys and queries of the p = q(q+1)/2 lower entries are picked, on a CPU, by a product with a
    0/1 matrix (exact, and several times faster there than indexing; elsewhere by indexing, which
    is fast and immune to TF32 matrix products), in pieces of channels and blocks that fit a CPU's
    L2 cache.
    """
    channels, m, q = dt.shape
    states = A.shape[1]
    rows, cols = torch.tril_indices(q, q, device=dt.device)
    local = torch.cumsum(dt, dim=-1)
    if dt.device.type == "cpu":
        pick_rows = F.one_hot(rows, q).T.to(dt.dtype)  # (q, p): x @ pick_rows = x[..., rows]
        pick_cols = F.one_hot(cols, q).T.to(dt.dtype)
        gap = local @ (pick_rows - pick_cols)  # (D, m, p): t_r − t_c ≥ 0, one rounding as a subtraction

        def at_rows(x: Tensor) -> Tensor:
            return x @ pick_rows

        def at_cols(x: Tensor) -> Tensor:
            return x @ pick_cols
    else:
        gap = local[..., rows] - local[..., cols]

        def at_rows(x: Tensor) -> Tensor:
            return x[..., rows]

        def at_cols(x: Tensor) -> Tensor:
            return x[..., cols]
    budget = _CPU_LEAF_ELEMENTS if dt.device.type == "cpu" else _GPU_BLOCK_ELEMENTS
    entries = rows.numel()
    blocks = max(1, min(m, budget // (states * entries)))
    step = max(1, budget // (states * blocks * entries))
    pieces = []
    for start in range(0, channels, step):
        parts = []
        for first in range(0, m, blocks):
            channel, block = slice(start, start + step), slice(first, first + blocks)
            piece_keys, piece_queries = keys[channel, :, block], queries[channel, :, block]
            sizes = (*piece_keys.shape[:3], entries)
            terms = _decay_(torch.mul(A[channel, :, None, None], gap[channel, None, block],
                                      out=work("square", sizes, dt)))  # (D, N, m, p)
            terms = _mul_(_mul_(terms, at_cols(piece_keys)), at_rows(piece_queries))
            parts.append(terms.sum(dim=1).transpose(0, 1) if per_channel else terms.sum(dim=(0, 1)))
        pieces.append(torch.cat(parts, dim=0) if len(parts) > 1 else parts[0])
    if per_channel:
        values = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]  # (m, D, p)
    else:
        values = pieces[0] if len(pieces) == 1 else torch.stack(pieces).sum(dim=0)  # (m, p)
    out = values.new_zeros(*values.shape[:-1], q * q)
    out[..., rows * q + cols] = values
    return out.view(*out.shape[:-1], q, q)


def _between_matrix(chunks: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """`(K, K, K)` weights W with Σ_m T_m W[i, j, m] = Σ_{j<m<i} T_m (a sum, so no cancellation)."""
    idx = torch.arange(chunks, device=device)
    i, j, m = idx[:, None, None], idx[None, :, None], idx[None, None, :]
    return ((j < m) & (m < i)).to(dtype)


def _hidden_attention_block(
    dt: Tensor, logdt: Tensor | None, A: Tensor, B: Tensor, C: Tensor, sizes: list[int], per_channel: bool,
    work: _Workspace, level: int = 0, delta_in_keys: bool = False,
) -> Tensor:
    """Channels-first `dt, logdt (D, b, L)`, `A (D, N)`, `B, C (N, b, L)` → lower-triangular `(b, [D,] L, L)`.

    `logdt` None (autograd): Δ_c multiplies the decay, so ∂/∂Δ_c is right where Δ_c = 0 too.
    `B` and `C` may also be given per channel, `(D, N, b, L)`; with `delta_in_keys` the keys `B`
    already hold their Δ_c (nothing multiplies them by Δ: the unified form's convolved keys).
    """
    channels, batch, length = dt.shape
    if not sizes or sizes[0] >= length:
        if delta_in_keys:
            return _diagonal_keys(dt, A, B, C, per_channel, work)
        return _diagonal(dt, logdt, A, B, C, per_channel, work)
    q, states = sizes[0], A.shape[1]
    chunks = length // q
    shape = (channels, states, batch, chunks, q)
    dt_chunks = dt.view(channels, batch, chunks, q)
    local = torch.cumsum(dt_chunks, dim=-1)  # segment-relative times
    totals = local[..., -1]  # (D, b, K)
    a_col = A[:, :, None, None, None]
    left = _decay_(torch.mul(local[:, None], a_col, out=work(("left", level), shape, dt)))
    left = _mul_(left, C.view(-1, states, batch, chunks, q))  # G
    if delta_in_keys:
        right = _decay_(torch.mul(a_col, (totals[..., None] - local)[:, None], out=work(("right", level), shape, dt)))
    elif logdt is None:
        right = _decay_(a_col * (totals[..., None] - local)[:, None]) * dt_chunks[:, None]
    else:
        right = _decay_(torch.addcmul(logdt.view(channels, 1, batch, chunks, q), a_col,
                                      (totals[..., None] - local)[:, None], out=work(("right", level), shape, dt)))
    right = _mul_(right, B.view(-1, states, batch, chunks, q))  # R
    between = torch.einsum("dbm,ijm->dbij", totals, _between_matrix(chunks, dt.dtype, dt.device))
    scale = _decay_(between[:, None] * A[:, :, None, None, None])  # P (D, N, b, I, J)
    earlier = torch.ones(chunks, chunks, dtype=dt.dtype, device=dt.device).tril(-1)
    scale = _mul_(scale, earlier)  # keys in earlier chunks only

    if per_channel:  # contract the states per channel: (b, I, D) batches of (q × N) @ (N × L)
        p_t = _copy(scale.permute(2, 3, 0, 4, 1), work(("P", level), (batch, chunks, channels, chunks, states), dt))
        r_t = _copy(right.permute(2, 0, 3, 4, 1), work(("R", level), (batch, channels, chunks, q, states), dt))
        g_t = _copy(left.permute(2, 3, 0, 4, 1), work(("G", level), (batch, chunks, channels, q, states), dt))
        buffer = work(("keys", level), (batch, chunks, channels, chunks, q, states), dt)
        keys = torch.mul(p_t[:, :, :, :, None], r_t[:, None], out=buffer)
        out = torch.matmul(g_t, keys.view(batch, chunks, channels, length, states).transpose(-1, -2))
        out = out.transpose(1, 2).reshape(batch, channels, chunks, q, chunks, q)
    else:  # contract channels and states at once: per query chunk I, (q × D·N) @ (D·N × I·q) over keys J < I
        inner = channels * states
        p_t = _copy(scale.permute(2, 3, 4, 0, 1), work(("P", level), (batch, chunks, chunks, channels, states), dt))
        r_t = _copy(right.permute(2, 3, 4, 0, 1), work(("R", level), (batch, chunks, q, channels, states), dt))
        g_t = _copy(left.permute(2, 3, 4, 0, 1), work(("G", level), (batch, chunks, q, channels, states), dt))
        rows = []
        for index in range(chunks):  # only the J < I blocks: half the products and key blocks of all (I, J)
            if index == 0:
                rows.append(dt.new_zeros(batch, q, length))
                continue
            buffer = work(("keys", level), (batch, index, q, channels, states), dt)
            keys = torch.mul(p_t[:, index, :index, None], r_t[:, :index], out=buffer)
            block = torch.bmm(g_t[:, index].reshape(batch, q, inner),
                              keys.view(batch, index * q, inner).transpose(1, 2))
            rows.append(F.pad(block, (0, length - index * q)))
        out = torch.stack(rows, dim=1).view(batch, chunks, q, chunks, q)

    # Diagonal blocks: the same problem on each chunk alone, with the next chunk size.
    diagonal = _hidden_attention_block(
        dt_chunks.reshape(channels, batch * chunks, q),
        None if logdt is None else logdt.reshape(channels, batch * chunks, q), A,
        B.reshape(*B.shape[:-2], batch * chunks, q), C.reshape(*C.shape[:-2], batch * chunks, q), sizes[1:],
        per_channel, work, level + 1, delta_in_keys,
    )
    diagonal = diagonal.view(batch, chunks, *diagonal.shape[1:])  # (b, K, [D,] q, q)
    torch.diagonal(out, dim1=-4, dim2=-2).copy_(diagonal.movedim(1, -1))
    return out.reshape(*out.shape[:-4], length, length)


def _work_dtype(delta: Tensor, A: Tensor) -> torch.dtype:
    """float32 for half precision, else the promoted floating dtype of the inputs."""
    work_dtype = torch.promote_types(torch.promote_types(delta.dtype, A.dtype), torch.float32)
    return torch.float32 if work_dtype == torch.bfloat16 else work_dtype


def _default_channel_block(batch: int, states: int, length: int, sizes: list[int], device: torch.device,
                           per_channel: bool = True) -> int:
    """Channels per step so that the largest intermediate holds about the cache (CPU) or GPU budget.

    Per channel (``abs_mean``, ``none``) the keys of every query chunk exist at once, `(b, K, D, L, N)`;
    for the channel mean only one query chunk's keys do, `(b, ≤ L, D, N)`, next to the decays
    between chunks, `(b, K, K, D, N)`. Sizing the mean's blocks like the per-channel ones left one
    channel per block at n = 4,096, each paying the (n, n) passes alone (15x slower).
    """
    budget = _CPU_BLOCK_ELEMENTS if device.type == "cpu" else _GPU_BLOCK_ELEMENTS
    chunks = length // sizes[0] if sizes else 1
    if per_channel:
        per_channel_elements = batch * states * length * max(chunks, length if not sizes else 1)
    else:
        per_channel_elements = batch * states * max(length, chunks * chunks)
        if device.type == "cpu":  # more channels per block than this only add cache misses (2x slower at n = 256)
            return max(1, min(_CPU_MEAN_MAX_CHANNELS, budget // per_channel_elements))
    return max(1, budget // per_channel_elements)


def hidden_attention(
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    channels: str = "mean",
    mask: Tensor | None = None,
    block_size: int | None = None,
    channel_block: int | None = None,
    form: str = "scan",
    gate: Tensor | None = None,
    skip: Tensor | None = None,
    conv_weight: Tensor | None = None,
    conv_preactivation: Tensor | None = None,
) -> Tensor:
    """Hidden attention matrices of one selective state-space layer.

    Ali, Zimerman & Wolf 2025, "The Hidden Attention of Mamba Models" (ACL), Eq. 11:
    ``α[r, c] = Σ_s C[s, r] · exp(A[d, s] Σ_{k=c+1..r} Δ_k[d]) · Δ_c[d] · B[s, c]`` for c ≤ r.

    Exact (no truncation) and vectorized: blocks of tokens are combined by batched matrix
    products over channels and states, see the module docstring. The D skip and the z gate are
    not part of α: the layer's output before its gate is ``α · u + D · u``.

    Args:
        delta: `(B, D, n)` step sizes Δ after the softplus (non-negative), per channel and token.
        A: `(D, N)` state matrix, ``-exp(A_log)`` (non-positive).
        B: `(B, N, n)` input-dependent input matrix.
        C: `(B, N, n)` input-dependent output matrix.
        channels: ``"mean"`` averages α over the D channels, ``"abs_mean"`` averages |α|,
            ``"none"`` keeps every channel.
        mask: `(B, n)` valid-token mask; padded tokens are removed from the sequence (their Δ, B
            and C are treated as zero), so each example gets what it gets alone, and their rows
            and columns are zero. None means every token is valid.
        block_size: tokens per top-level chunk (a speed knob; the result does not depend on it);
            None picks a two-level schedule from n (e.g. chunks of 40, then 8, for n = 197).
        channel_block: channels per step (a memory knob); None picks it so that the largest
            intermediate holds about 2**20 elements on a CPU (cache-sized) and 2**26 on a GPU.
        form: ``"scan"`` (α, the selective scan alone) or ``"unified"`` (Zimerman, Ali & Wolf,
            ICLR 2025: the whole mixer from its conv input x to its gated output,
            ``Ω_d = diag(SiLU(z_d)) · (α_d + diag(D_d)) · diag(σ(v_d)) · M_conv,d``; see
            :mod:`attnlens.methods.unified_attention`). The channel reductions apply to Ω.
        gate: ``form="unified"`` only: `(B, D, n)` gate input z (the `in_proj` z half, before its SiLU).
        skip: ``form="unified"`` only: `(D,)` skip weights D.
        conv_weight: ``form="unified"`` only: `(D, K)` causal depthwise conv taps (``conv1d.weight[:, 0]``).
        conv_preactivation: ``form="unified"`` only: `(B, D, n)` conv output v before its SiLU
            (bias included); σ(v) is the SiLU's diagonal. The conv bias's share of the output
            is not in Ω: see :func:`attnlens.methods.unified_attention.unified_attention_bias`.

    Returns:
        `(B, n, n)` (``"mean"``, ``"abs_mean"``) or `(B, D, n, n)` (``"none"``) hidden attention
        (α, or Ω for ``form="unified"``), lower-triangular (zero for c > r), rows = queries, same
        dtype and device as `delta`.

    Raises:
        ValueError: on inconsistent shapes, non-finite or positive `A`, non-finite or negative
            `delta` on valid tokens, a bad mask, an unknown `channels` or `form`, a missing or
            badly shaped input of the unified form, or one given with ``form="scan"``.
        TypeError: on non-floating inputs.

    Example:
        >>> import torch
        >>> delta = torch.tensor([[[1.0, 1.0]]])
        >>> A = torch.tensor([[-1.0]])
        >>> B = torch.tensor([[[1.0, 1.0]]])
        >>> C = torch.tensor([[[1.0, 1.0]]])
        >>> hidden_attention(delta, A, B, C)
        tensor([[[1.0000, 0.0000],
                 [0.3679, 1.0000]]])
    """
    _check_choice(form, "form", _FORMS)
    _hidden_attention_check(delta, A, B, C, channels, block_size)
    batch, channels_count, n = delta.shape
    states = A.shape[1]
    mask = _check_mask(mask, "mask", batch, n, delta.device)
    _hidden_attention_values(delta, A, mask)
    if channel_block is not None and (
        isinstance(channel_block, bool) or not isinstance(channel_block, int) or channel_block < 1
    ):
        raise ValueError(f"Expected `channel_block` to be a positive integer or None, but got {channel_block!r}.")
    mixer = {"gate": gate, "skip": skip, "conv_weight": conv_weight, "conv_preactivation": conv_preactivation}
    if form == "unified":
        from attnlens.methods.unified_attention import _unified_attention_check, _unified_attention_compute

        _unified_attention_check(delta, mask, **mixer)
        return _unified_attention_compute(delta, A, B, C, **mixer, channels=channels, mask=mask,
                                          block_size=block_size, channel_block=channel_block)
    for name, value in mixer.items():
        if value is not None:
            raise ValueError(f"Expected `{name}` to be None with `form` 'scan' (it is an input of `form` 'unified'), "
                             f"but got a {type(value).__name__}.")
    out_dtype = delta.dtype
    work_dtype = _work_dtype(delta, A)
    # select, not multiply: padding's values (even NaN) and its gradients stay out of the result
    valid = mask[:, None, :]
    zero = torch.zeros((), dtype=work_dtype, device=delta.device)
    delta, B, C = (torch.where(valid, x.to(work_dtype), zero) for x in (delta, B, C))
    A = A.to(work_dtype)

    sizes = _schedule(n, block_size)
    length = math.ceil(n / sizes[0]) * sizes[0] if sizes else n
    if length != n:  # zero Δ, B, C on the padding chunk tail: it adds nothing
        pad = (0, length - n)
        delta, B, C = (F.pad(x, pad) for x in (delta, B, C))
    dt = delta.transpose(0, 1).contiguous()  # channels first: (D, b, L)
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (delta, A, B, C))
    # Without autograd, Δ_c enters the decay's exponent as log Δ_c (−inf where Δ = 0: exp gives exactly 0),
    # which saves one multiplication of the largest intermediates. With autograd it multiplies instead:
    # the backward of log at Δ = 0 would be 0 · ∞ = NaN, and ∂α/∂Δ_c = C·exp(…)·B there is not 0.
    logdt = None if needs_grad else torch.log(dt)
    B_t, C_t = B.transpose(0, 1).contiguous(), C.transpose(0, 1).contiguous()
    per_channel = channels != "mean"
    if channel_block is None:
        channel_block = _default_channel_block(batch, states, length, sizes, dt.device, per_channel)

    work = _Workspace(enabled=not needs_grad)
    total = None
    parts = []
    for start in range(0, channels_count, channel_block):
        stop = min(start + channel_block, channels_count)
        block_logdt = None if logdt is None else logdt[start:stop]
        block = _hidden_attention_block(dt[start:stop], block_logdt, A[start:stop], B_t, C_t, sizes, per_channel, work)
        if channels == "none":
            parts.append(block)
            continue
        reduced = block.abs().sum(dim=1) if channels == "abs_mean" else block
        total = reduced if total is None else total + reduced
    if channels == "none":
        result = torch.cat(parts, dim=1)[..., :n, :n]
    else:
        result = (total / channels_count)[..., :n, :n]
    return _apply_mask(result, mask).to(out_dtype)
