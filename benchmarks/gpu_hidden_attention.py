"""GPU benchmark: hidden attention of 24 layers of Vim-small shape (768 channels, 16 states, 197 tokens).

Target: under 0.05 s for all 24 layers on an H100 (channel mean, float32). Times the current
``attnlens.methods.hidden_attention`` and the previous implementation (``_previous_hidden_attention``
in ``bench_hidden_attention.py``) on the same machine, with warm-up and CUDA synchronisation around
each timed pass of 24 layers; reports the best of ``--repeats``, peak GPU memory, and the
float32-vs-float64 agreement of both on the device. TF32 is off (full float32 GEMMs); ``--tf32``
turns it on for comparison. ``--device cpu --tiny`` runs a small smoke test anywhere (1 thread).
Runs in well under 60 s on an H100.

    python benchmarks/gpu_hidden_attention.py [--device cuda] [--repeats 5] [--tiny]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hidden_attention import _previous_hidden_attention  # noqa: E402

from attnlens.methods.hidden_attention import hidden_attention  # noqa: E402


def make_layers(layers: int, channels: int, states: int, n: int, device: str, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        delta = torch.nn.functional.softplus(torch.randn(1, channels, n, generator=g) - 2.0)
        log_a = torch.log(torch.arange(1, states + 1, dtype=torch.float32))
        A = -torch.exp(log_a + 0.5 * torch.randn(channels, states, generator=g))
        B = torch.randn(1, states, n, generator=g)
        C = torch.randn(1, states, n, generator=g)
        out.append(tuple(x.to(device=device, dtype=dtype) for x in (delta, A, B, C)))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(fn, layers, mode: str, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    for delta, A, B, C in layers:
        fn(delta, A, B, C, channels=mode)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="2 layers, 32 channels, 33 tokens (smoke test)")
    parser.add_argument("--tf32", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    on_gpu = args.device.startswith("cuda")
    layers_count, channels, states, n = (2, 32, 16, 33) if args.tiny else (24, 768, 16, 197)
    wall = time.perf_counter()
    layers = make_layers(layers_count, channels, states, n, args.device)
    name = torch.cuda.get_device_name(args.device) if on_gpu else "cpu (1 thread)"
    print(f"device: {name}; {layers_count} layers x ({channels} channels, {states} states, {n} tokens); "
          f"float32, TF32 {'on' if args.tf32 else 'off'}\n")

    # correctness on this device: float32 vs float64 (layer 0), and new vs previous
    first64 = tuple(x.double() for x in layers[0])
    with torch.no_grad():
        exact = hidden_attention(*first64)
        new32 = hidden_attention(*layers[0]).double()
        old32 = _previous_hidden_attention(*layers[0]).double()
        new_vs_old64 = (exact - _previous_hidden_attention(*first64)).abs().max().item()
    scale = exact.abs().max().item()
    print(f"max |α| (layer 0, float64): {scale:.3g}; max abs diff float32 vs float64: "
          f"new {(new32 - exact).abs().max().item():.2e}, previous {(old32 - exact).abs().max().item():.2e}; "
          f"new vs previous in float64: {new_vs_old64:.2e}\n")

    print("| implementation | channels mode | all layers (s), best of repeats | per layer (ms) | peak memory (MiB) |")
    print("|---|---|---:|---:|---:|")
    results = {}
    with torch.no_grad():
        for label, fn in (("new", hidden_attention), ("previous", _previous_hidden_attention)):
            for mode in ("mean", "abs_mean"):
                run(fn, layers[:2], mode, args.device)  # warm-up
                if on_gpu:
                    torch.cuda.reset_peak_memory_stats(args.device)
                repeats = args.repeats if label == "new" else max(1, min(args.repeats, 2))
                best = min(run(fn, layers, mode, args.device) for _ in range(repeats))
                peak = torch.cuda.max_memory_allocated(args.device) / 2**20 if on_gpu else float("nan")
                results[label, mode] = best
                print(f"| {label} | {mode} | {best:.4f} | {1000 * best / layers_count:.2f} | {peak:.0f} |", flush=True)
    for mode in ("mean", "abs_mean"):
        print(f"\nspeed-up new vs previous ({mode}): {results['previous', mode] / results['new', mode]:.1f}x", end="")
    target = results["new", "mean"] < 0.05
    note = " (tiny sizes: not meaningful)" if args.tiny else ""
    print(f"\ntarget (< 0.05 s for 24 layers, mean): {'met' if target else 'NOT met'}{note}; "
          f"script wall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
