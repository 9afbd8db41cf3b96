"""Hidden attention of a selective state-space (Mamba) layer, exact and vectorized.

A selective SSM channel d computes ``y_r = Σ_{c ≤ r} α[r, c] · u_c + D · u_r`` with

    α[r, c] = Σ_s C[s, r] · exp(A[d, s] · Σ_{k=c+1..r} Δ_k[d]) · Δ_c[d] · B[s, c]

(Ali, Zimerman & Wolf, "The Hidden Attention of Mamba Models", ACL 2025, Eq. 11).

How it is computed. Tokens are cut into chunks of `block_size` tokens. With ``t`` the cumulative
sum of Δ restarted at every chunk (segment-relative, so it stays small) and ``T_i`` the total of
chunk i, the entry for a query r in chunk i and a key c in an earlier chunk j < i factorises as

    α[r, c] = Σ_s G[s, r] · P[s, i, j] · R[s, c]
    G = C_r · exp(A · t_r)                 (≤ |C|: decay from the start of chunk i to r)
    R = exp(A · (T_j − t_c)) · Δ_c · B_c   (≤ |Δ B|: decay from c to the end of chunk j)
    P = exp(A · Σ_{j<m<i} T_m)             (≤ 1: decay across the chunks strictly between)

so every off-diagonal block row is one matrix product over the states (and, for the channel
mean, over channels and states at once: one GEMM with inner size D·N). Every exponent is a sum
of Δ·A ≤ 0 and every factor lies in [0, 1] times |C| or |Δ B|, so nothing overflows whatever Δ
is, and no differences of long cumulative sums lose precision. Factors below eps² (relative to
|C| or |Δ B|) are set to exactly 0: they change nothing at the dtype's precision, and subnormal
numbers would slow CPU arithmetic about tenfold. The diagonal blocks are the same
problem on each chunk alone: they are solved recursively with chunks a quarter as long, and
entry by entry (``exp(A · (t_r − t_c))``, exponent ≤ 0) once chunks have at most 4 tokens.
Channels are processed in blocks so the largest intermediate holds about ``2**24`` elements
(Vim-small's 768 × 16 × 197 × 197 terms are never materialised at once). Half-precision inputs
are computed in float32 and returned in their own dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlens._checks import _check_choice, _check_floating, _check_mask, _check_ndim
from attnlens.methods._common import _apply_mask

_CHANNEL_MODES = ("mean", "none", "abs_mean")
_BLOCK_ELEMENTS = 2**24
_LEAF = 4


def _hidden_attention_check(delta: Tensor, A: Tensor, B: Tensor, C: Tensor, channels: str, block_size: int) -> None:
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
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"Expected `block_size` to be a positive integer, but got {block_size!r}.")
    if bool((A > 0).any()):
        raise ValueError(
            f"Expected `A` to be non-positive (A = -exp(A_log)), but got a maximum of {A.max().item():.3g}."
        )
    if bool((delta < 0).any()):
        raise ValueError(
            f"Expected `delta` to be non-negative (after softplus), but got a minimum of {delta.min().item():.3g}."
        )


def _decay(exponent: Tensor) -> Tensor:
    """exp(x) for x ≤ 0, with factors below eps² set to exactly 0.

    Such factors change no result at the dtype's precision, and keeping them would fill the
    arithmetic with subnormal numbers, which are an order of magnitude slower on CPUs.
    """
    floor = 2 * math.log(torch.finfo(exponent.dtype).eps)
    return torch.where(exponent >= floor, torch.exp(exponent.clamp(min=floor)), 0.0)


def _between_matrix(chunks: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """`(K, K, K)` weights W with Σ_m T_m W[i, j, m] = Σ_{j<m<i} T_m (a sum, so no cancellation)."""
    idx = torch.arange(chunks, device=device)
    i, j, m = idx[:, None, None], idx[None, :, None], idx[None, None, :]
    return ((j < m) & (m < i)).to(dtype)


def _diagonal_exact(dt: Tensor, A: Tensor, B: Tensor, C: Tensor, per_channel: bool) -> Tensor:
    """Entry by entry; tokens-first `dt (m, Q, D)`, `B, C (m, Q, N)` → `(m, [D,] Q, Q)`."""
    local = torch.cumsum(dt, dim=1)
    gap = local[:, :, None] - local[:, None, :]  # (m, Q_r, Q_c, D), ≥ 0 on and below the diagonal
    q = dt.shape[1]
    upper = torch.ones(q, q, dtype=torch.bool, device=dt.device).triu(1)[None, :, :, None, None]
    decay = _decay((gap[..., None] * A).masked_fill(upper, -math.inf))  # (m, Q, Q, D, N)
    inputs = dt[..., None] * B[:, :, None, :]  # (m, Q_c, D, N)
    term = decay * C[:, :, None, None, :] * inputs[:, None]
    if per_channel:
        return term.sum(dim=-1).permute(0, 3, 1, 2)
    return term.sum(dim=(-1, -2))


def _sub_chunk(q: int) -> int | None:
    """Chunk size for the diagonal blocks of a level with chunks of `q` tokens; None: compute them exactly."""
    if q <= _LEAF:
        return None
    for size in range(max(_LEAF, q // 4), 1, -1):
        if q % size == 0 and size < q:
            return size
    return None


def _hidden_attention_block(dt: Tensor, A: Tensor, B: Tensor, C: Tensor, q: int | None, per_channel: bool) -> Tensor:
    """Tokens-first `dt (b, K·Q, D)`, `A (D, N)`, `B, C (b, K·Q, N)` → lower-triangular `(b, [D,] K·Q, K·Q)`."""
    batch, length, channels = dt.shape
    if q is None or q >= length:
        return _diagonal_exact(dt, A, B, C, per_channel)
    states = A.shape[1]
    chunks = length // q
    dt = dt.view(batch, chunks, q, channels)
    b_chunks = B.view(batch, chunks, q, 1, states)
    c_chunks = C.view(batch, chunks, q, 1, states)
    local = torch.cumsum(dt, dim=2)  # (b, K, Q, D) segment-relative times
    totals = local[:, :, -1]  # (b, K, D)

    # G and R, (b, K, Q, D, N): bounded by |C| and |Δ B|; channels and states last (contiguous).
    left = c_chunks * _decay(local[..., None] * A)
    right = _decay((totals[:, :, None] - local)[..., None] * A) * (dt[..., None] * b_chunks)

    # P (b, K_i, K_j, D, N) = exp(A · Σ_{j<m<i} T_m) ≤ 1 for j < i (exponents are sums, never differences).
    between = torch.einsum("bmd,ijm->bijd", totals, _between_matrix(chunks, dt.dtype, dt.device))
    if per_channel:
        out = dt.new_zeros(batch, channels, chunks, q, chunks * q)
    else:
        out = dt.new_zeros(batch, chunks, q, chunks * q)
    for i in range(1, chunks):  # key chunks j < i only, so no work is wasted above the diagonal
        scaled = _decay(between[:, i, :i, None, :, None] * A) * right[:, :i]  # (b, i, Q, D, N)
        if per_channel:  # contract the states per channel
            lhs = left[:, i].transpose(1, 2)  # (b, D, Q, N)
            rhs = scaled.permute(0, 3, 4, 1, 2).reshape(batch, channels, states, i * q)
            out[:, :, i, :, : i * q] = torch.matmul(lhs, rhs)
        else:  # contract channels and states in one GEMM with inner size D·N
            lhs = left[:, i].reshape(batch, q, channels * states)
            rhs = scaled.view(batch, i * q, channels * states).transpose(1, 2)
            out[:, i, :, : i * q] = torch.matmul(lhs, rhs)
    out = out.view(*out.shape[:-1], chunks, q)

    # Diagonal blocks: the same problem on each chunk alone, with smaller chunks (exact at the leaves).
    inner = _hidden_attention_block(
        dt.reshape(batch * chunks, q, channels),
        A,
        b_chunks.reshape(batch * chunks, q, states),
        c_chunks.reshape(batch * chunks, q, states),
        _sub_chunk(q),
        per_channel,
    )
    inner = inner.view(batch, chunks, *inner.shape[1:])  # (b, K, [D,] Q, Q)
    torch.diagonal(out, dim1=-4, dim2=-2).copy_(inner.movedim(1, -1))
    return out.reshape(*out.shape[:-4], length, length)


def hidden_attention(
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    channels: str = "mean",
    mask: Tensor | None = None,
    block_size: int = 32,
    channel_block: int | None = None,
) -> Tensor:
    """Hidden attention matrices of one selective state-space layer.

    Ali, Zimerman & Wolf 2025, "The Hidden Attention of Mamba Models" (ACL), Eq. 11:
    ``α[r, c] = Σ_s C[s, r] · exp(A[d, s] Σ_{k=c+1..r} Δ_k[d]) · Δ_c[d] · B[s, c]`` for c ≤ r.

    Exact (no truncation) and vectorized: blocks of tokens are combined by batched matrix
    products over states, see the module docstring. The D skip and the z gate are not part of α:
    the layer's output before its gate is ``α · u + D · u``.

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
        block_size: tokens per chunk (a speed knob; the result does not depend on it).
        channel_block: channels per step (a memory knob); None picks it so that the largest
            intermediate holds about 2**24 elements.

    Returns:
        `(B, n, n)` (``"mean"``, ``"abs_mean"``) or `(B, D, n, n)` (``"none"``) hidden attention,
        lower-triangular (α[r, c] = 0 for c > r), rows = queries, same dtype and device as `delta`.

    Raises:
        ValueError: on inconsistent shapes, positive `A`, negative `delta`, a bad mask, or an
            unknown `channels`.
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
    _hidden_attention_check(delta, A, B, C, channels, block_size)
    batch, channels_count, n = delta.shape
    states = A.shape[1]
    mask = _check_mask(mask, "mask", batch, n, delta.device)
    out_dtype = delta.dtype
    work = torch.promote_types(torch.promote_types(delta.dtype, A.dtype), torch.float32)
    if work == torch.bfloat16:
        work = torch.float32
    valid = mask.to(work)
    delta = delta.to(work) * valid[:, None, :]
    B = B.to(work) * valid[:, None, :]
    C = C.to(work) * valid[:, None, :]
    A = A.to(work)

    q = min(block_size, n)
    length = math.ceil(n / q) * q
    if length != n:  # zero Δ, B, C on the padding chunk tail: it adds nothing
        pad = (0, length - n)
        delta, B, C = (torch.nn.functional.pad(x, pad) for x in (delta, B, C))
    per_channel = channels != "mean"
    dt, B_t, C_t = delta.transpose(1, 2).contiguous(), B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()
    chunks = length // q
    if channel_block is None:
        # largest per-channel intermediates: the scaled key blocks / exact leaves, plus the kept output
        per_channel_elements = batch * states * length * max(chunks, _LEAF) * 2
        per_channel_elements += batch * length * length if per_channel else 0
        channel_block = max(1, _BLOCK_ELEMENTS // max(per_channel_elements, 1))
    elif isinstance(channel_block, bool) or not isinstance(channel_block, int) or channel_block < 1:
        raise ValueError(f"Expected `channel_block` to be a positive integer or None, but got {channel_block!r}.")

    total = None
    parts = []
    for start in range(0, channels_count, channel_block):
        stop = min(start + channel_block, channels_count)
        block = _hidden_attention_block(dt[:, :, start:stop].contiguous(), A[start:stop], B_t, C_t, q, per_channel)
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
