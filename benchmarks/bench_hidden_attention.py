"""CPU benchmark: hidden attention, four implementations side by side in one run.

(a) authors' loop: a loop over (query r, key c) that builds the decay of every pair as a running
    product of ``exp(Δ·A)`` factors, one Python-level multiply per token in between (the structure
    of ``compute_attn_matrix_fn`` in the authors' HiddenMambaAttn code, vectorised over channels
    and states only); O(n³) tensor operations. Stopped after ``--cap`` seconds; its full time is
    extrapolated from the fraction of tensor operations done (labelled "extrapolated").
(b) loop reference: a loop over (r, c) with the decay from a sum of Δ (one ``exp`` per pair),
    vectorised over channels and states; O(n²) tensor operations, also capped.
(c) `_previous_hidden_attention`: the previous attnlens implementation, copied below verbatim.
(d) `attnlens.methods.hidden_attention`: the current one.

Single-threaded: ``torch.set_num_threads(1)`` (the CPU is shared). (c) and (d) are timed as the
best of ``--repeats`` runs after a warm-up, each in a fresh subprocess so that peak memory, the
increase of the process's peak resident set size over its resident size just before the first
full-size call (Linux: VmHWM after a reset through /proc/self/clear_refs), is per implementation.

    python benchmarks/bench_hidden_attention.py [--cap 10] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import resource
import time

import torch
from torch import Tensor

from attnlens._checks import _check_choice, _check_floating, _check_mask, _check_ndim
from attnlens.methods._common import _apply_mask


def make_inputs(channels: int, n: int, states: int = 16, seed: int = 0, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    delta = torch.nn.functional.softplus(torch.randn(batch, channels, n, generator=g) - 2.0)
    log_a = torch.log(torch.arange(1, states + 1, dtype=torch.float32))
    A = -torch.exp(log_a + 0.5 * torch.randn(channels, states, generator=g))
    B = torch.randn(batch, states, n, generator=g)
    C = torch.randn(batch, states, n, generator=g)
    return delta, A, B, C


def authors_loop(delta, A, B, C, cap: float):
    """(a) α by the authors' triple loop; returns (seconds, fraction of the tensor operations done)."""
    _, channels, n = delta.shape
    step = torch.exp(torch.einsum("dl,dn->ldn", delta[0], A))  # exp(Δ_k A), (n, D, N)
    inputs = torch.einsum("dl,nl->ldn", delta[0], B[0])  # Δ_c B_c, (n, D, N)
    out = torch.zeros(channels, n, n)
    done, total = 0, sum((r + 1) * (r + 2) // 2 for r in range(n))  # products + 1 per pair
    start = time.perf_counter()
    for r in range(n):
        for c in range(r + 1):
            decay = torch.ones(channels, A.shape[1])
            for i in range(r - c):
                decay = decay * step[r - i]
            out[:, r, c] = (C[0, :, r] * decay * inputs[c]).sum(-1)
            done += r - c + 1
        if time.perf_counter() - start > cap:
            break
    return time.perf_counter() - start, done / total


def reference_loop(delta, A, B, C, cap: float):
    """(b) α by a loop over (r, c), decay from a sum of Δ; returns (seconds, fraction of pairs done)."""
    _, channels, n = delta.shape
    out = torch.zeros(channels, n, n)
    pairs, total = 0, n * (n + 1) // 2
    start = time.perf_counter()
    for r in range(n):
        for c in range(r + 1):
            decay = torch.exp(A * delta[0, :, c + 1 : r + 1].sum(-1)[:, None])  # (D, N)
            out[:, r, c] = (C[0, :, r] * decay * delta[0, :, c, None] * B[0, :, c]).sum(-1)
            pairs += 1
        if time.perf_counter() - start > cap:
            break
    return time.perf_counter() - start, pairs / total


# ---- (c) the previous implementation of attnlens.methods.hidden_attention, verbatim but renamed ----
_prev_CHANNEL_MODES = ("mean", "none", "abs_mean")
_prev_BLOCK_ELEMENTS = 2**24
_prev_LEAF = 4


def _prev_hidden_attention_check(
    delta: Tensor, A: Tensor, B: Tensor, C: Tensor, channels: str, block_size: int
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
    _check_choice(channels, "channels", _prev_CHANNEL_MODES)
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


def _prev_decay(exponent: Tensor) -> Tensor:
    """exp(x) for x ≤ 0, with factors below eps² set to exactly 0.

    Such factors change no result at the dtype's precision, and keeping them would fill the
    arithmetic with subnormal numbers, which are an order of magnitude slower on CPUs.
    """
    floor = 2 * math.log(torch.finfo(exponent.dtype).eps)
    return torch.where(exponent >= floor, torch.exp(exponent.clamp(min=floor)), 0.0)


def _prev_between_matrix(chunks: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """`(K, K, K)` weights W with Σ_m T_m W[i, j, m] = Σ_{j<m<i} T_m (a sum, so no cancellation)."""
    idx = torch.arange(chunks, device=device)
    i, j, m = idx[:, None, None], idx[None, :, None], idx[None, None, :]
    return ((j < m) & (m < i)).to(dtype)


def _prev_diagonal_exact(dt: Tensor, A: Tensor, B: Tensor, C: Tensor, per_channel: bool) -> Tensor:
    """Entry by entry; tokens-first `dt (m, Q, D)`, `B, C (m, Q, N)` → `(m, [D,] Q, Q)`."""
    local = torch.cumsum(dt, dim=1)
    gap = local[:, :, None] - local[:, None, :]  # (m, Q_r, Q_c, D), ≥ 0 on and below the diagonal
    q = dt.shape[1]
    upper = torch.ones(q, q, dtype=torch.bool, device=dt.device).triu(1)[None, :, :, None, None]
    decay = _prev_decay((gap[..., None] * A).masked_fill(upper, -math.inf))  # (m, Q, Q, D, N)
    inputs = dt[..., None] * B[:, :, None, :]  # (m, Q_c, D, N)
    term = decay * C[:, :, None, None, :] * inputs[:, None]
    if per_channel:
        return term.sum(dim=-1).permute(0, 3, 1, 2)
    return term.sum(dim=(-1, -2))


def _prev_sub_chunk(q: int) -> int | None:
    """Chunk size for the diagonal blocks of a level with chunks of `q` tokens; None: compute them exactly."""
    if q <= _prev_LEAF:
        return None
    for size in range(max(_prev_LEAF, q // 4), 1, -1):
        if q % size == 0 and size < q:
            return size
    return None


def _prev_hidden_attention_block(
    dt: Tensor, A: Tensor, B: Tensor, C: Tensor, q: int | None, per_channel: bool
) -> Tensor:
    """Tokens-first `dt (b, K·Q, D)`, `A (D, N)`, `B, C (b, K·Q, N)` → lower-triangular `(b, [D,] K·Q, K·Q)`."""
    batch, length, channels = dt.shape
    if q is None or q >= length:
        return _prev_diagonal_exact(dt, A, B, C, per_channel)
    states = A.shape[1]
    chunks = length // q
    dt = dt.view(batch, chunks, q, channels)
    b_chunks = B.view(batch, chunks, q, 1, states)
    c_chunks = C.view(batch, chunks, q, 1, states)
    local = torch.cumsum(dt, dim=2)  # (b, K, Q, D) segment-relative times
    totals = local[:, :, -1]  # (b, K, D)

    # G and R, (b, K, Q, D, N): bounded by |C| and |Δ B|; channels and states last (contiguous).
    left = c_chunks * _prev_decay(local[..., None] * A)
    right = _prev_decay((totals[:, :, None] - local)[..., None] * A) * (dt[..., None] * b_chunks)

    # P (b, K_i, K_j, D, N) = exp(A · Σ_{j<m<i} T_m) ≤ 1 for j < i (exponents are sums, never differences).
    between = torch.einsum("bmd,ijm->bijd", totals, _prev_between_matrix(chunks, dt.dtype, dt.device))
    if per_channel:
        out = dt.new_zeros(batch, channels, chunks, q, chunks * q)
    else:
        out = dt.new_zeros(batch, chunks, q, chunks * q)
    for i in range(1, chunks):  # key chunks j < i only, so no work is wasted above the diagonal
        scaled = _prev_decay(between[:, i, :i, None, :, None] * A) * right[:, :i]  # (b, i, Q, D, N)
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
    inner = _prev_hidden_attention_block(
        dt.reshape(batch * chunks, q, channels),
        A,
        b_chunks.reshape(batch * chunks, q, states),
        c_chunks.reshape(batch * chunks, q, states),
        _prev_sub_chunk(q),
        per_channel,
    )
    inner = inner.view(batch, chunks, *inner.shape[1:])  # (b, K, [D,] Q, Q)
    torch.diagonal(out, dim1=-4, dim2=-2).copy_(inner.movedim(1, -1))
    return out.reshape(*out.shape[:-4], length, length)


def _previous_hidden_attention(
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
    """The previous `hidden_attention` (recursive chunks, a Python loop over key chunks), kept for comparison."""
    _prev_hidden_attention_check(delta, A, B, C, channels, block_size)
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
        per_channel_elements = batch * states * length * max(chunks, _prev_LEAF) * 2
        per_channel_elements += batch * length * length if per_channel else 0
        channel_block = max(1, _prev_BLOCK_ELEMENTS // max(per_channel_elements, 1))
    elif isinstance(channel_block, bool) or not isinstance(channel_block, int) or channel_block < 1:
        raise ValueError(f"Expected `channel_block` to be a positive integer or None, but got {channel_block!r}.")

    total = None
    parts = []
    for start in range(0, channels_count, channel_block):
        stop = min(start + channel_block, channels_count)
        block = _prev_hidden_attention_block(dt[:, :, start:stop].contiguous(), A[start:stop], B_t, C_t, q, per_channel)
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


# ---- timing ----
def _implementation(name: str):
    if name == "previous":
        return _previous_hidden_attention
    from attnlens.methods.hidden_attention import hidden_attention

    return hidden_attention


def _proc_status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise OSError(f"{key} not in /proc/self/status")


def _measure(name: str, channels: int, n: int, repeats: int, queue) -> None:
    torch.set_num_threads(1)
    fn = _implementation(name)
    inputs = make_inputs(channels, n)
    fn(*make_inputs(channels, 8))  # import-time and first-call allocations out of the way
    try:  # Linux: reset the peak resident set size (VmHWM), then read it after the first call
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _proc_status_mib("VmRSS")
        fn(*inputs)  # warm-up (also sets the peak)
        peak = _proc_status_mib("VmHWM") - base
    except OSError:  # elsewhere: increase of the lifetime peak (can read 0 when imports peaked higher)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn(*inputs)
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - start)
    queue.put((min(times), peak))


def measure(name: str, channels: int, n: int, repeats: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(name, channels, n, repeats, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=10.0, help="seconds per loop run before extrapolating")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    configs = [(32, 16), (8, 24)] if args.quick else [(c, n) for c in (32, 768) for n in (64, 98, 197)]
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"torch.set_num_threads(1)\n")
    print("| channels | n | (a) authors' loop (s) | (b) loop reference (s) | (c) previous (s) | (d) new (s) "
          "| (a)/(d) | (b)/(d) | (c)/(d) | peak MiB (c) | peak MiB (d) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for channels, n in configs:
        inputs = make_inputs(channels, n)
        with torch.no_grad():
            new = _implementation("new")(*inputs)
            old = _previous_hidden_attention(*inputs)
        agree = (new - old).abs().max().item()
        seconds, done = authors_loop(*inputs, cap=args.cap)
        authors = seconds / done
        authors_how = "" if done >= 1.0 else f" (extrapolated from {done:.0%})"
        seconds, done = reference_loop(*inputs, cap=args.cap)
        reference = seconds / done
        reference_how = "" if done >= 1.0 else f" (extrapolated from {done:.0%})"
        previous, previous_peak = measure("previous", channels, n, args.repeats)
        fast, peak = measure("new", channels, n, args.repeats)
        rows.append({"channels": channels, "n": n, "authors_s": authors, "authors_how": authors_how,
                     "reference_s": reference, "reference_how": reference_how, "previous_s": previous,
                     "new_s": fast, "previous_peak_mib": previous_peak, "new_peak_mib": peak,
                     "max_abs_diff_new_vs_previous": agree})
        print(f"| {channels} | {n} | {authors:.2f}{authors_how} | {reference:.3f}{reference_how} | {previous:.4f} "
              f"| {fast:.4f} | {authors / fast:.0f}x | {reference / fast:.0f}x | {previous / fast:.1f}x "
              f"| {previous_peak:.1f} | {peak:.1f} |", flush=True)
    worst = max(r["max_abs_diff_new_vs_previous"] for r in rows)
    print(f"\nmax |new − previous| over all rows (float32): {worst:.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
