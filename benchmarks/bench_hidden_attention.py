"""CPU benchmark: loop reference vs `attnlens.methods.hidden_attention`, side by side in one run.

Runs single-threaded (``torch.set_num_threads(1)``). The reference loops over every (query, key)
pair in Python and vectorises over channels and states, as the authors' ``compute_attn_matrix_fn``
does; it is stopped after ``--cap`` seconds per configuration and its full time extrapolated from
the pairs done (labelled "extrapolated"). Peak memory is the increase of the process's peak
resident set size (``resource.getrusage``) over its baseline, each measurement in a fresh
subprocess.

    python benchmarks/bench_hidden_attention.py [--cap 10] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time

import torch


def make_inputs(channels: int, n: int, states: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    delta = torch.nn.functional.softplus(torch.randn(1, channels, n, generator=g) - 2.0)
    log_a = torch.log(torch.arange(1, states + 1, dtype=torch.float32))
    A = -torch.exp(log_a + 0.5 * torch.randn(channels, states, generator=g))
    B = torch.randn(1, states, n, generator=g)
    C = torch.randn(1, states, n, generator=g)
    return delta, A, B, C


def reference_loop(delta, A, B, C, cap: float):
    """α by a Python loop over (r, c); returns (seconds, fraction of pairs done)."""
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


def _measure(channels: int, n: int, repeats: int, queue) -> None:
    torch.set_num_threads(1)
    from attnlens.methods.hidden_attention import hidden_attention

    inputs = make_inputs(channels, n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hidden_attention(*inputs)  # warm-up (also sets the peak)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        hidden_attention(*inputs)
        times.append(time.perf_counter() - start)
    queue.put((min(times), peak / 1024))


def measure_fast(channels: int, n: int, repeats: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(channels, n, repeats, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=10.0, help="seconds per reference run before extrapolating")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    configs = [(32, 16), (8, 24)] if args.quick else [(c, n) for c in (32, 768) for n in (64, 98, 197)]
    rows = []
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread\n")
    print("| channels | n | reference (s) | how | hidden_attention (s) | speed-up | peak memory (MiB) |")
    print("|---:|---:|---:|---|---:|---:|---:|")
    for channels, n in configs:
        inputs = make_inputs(channels, n)
        seconds, done = reference_loop(*inputs, cap=args.cap)
        reference = seconds / done
        how = "measured" if done >= 1.0 else f"extrapolated from {done:.0%} of pairs"
        fast, peak = measure_fast(channels, n, args.repeats)
        rows.append({"channels": channels, "n": n, "reference_s": reference, "reference": how,
                     "hidden_attention_s": fast, "speedup": reference / fast, "peak_mib": peak})
        print(f"| {channels} | {n} | {reference:.3f} | {how} | {fast:.4f} | {reference / fast:.0f}x | {peak:.1f} |",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
