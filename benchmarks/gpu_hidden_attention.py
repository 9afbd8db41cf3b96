"""GPU benchmark: hidden attention of 24 layers of Vim-small shape (768 channels, 16 states, 197 tokens).

Target: under 0.05 s for all 24 layers on an H100 (channel mean, float32). Prints a markdown
table. Uses CUDA when available; ``--device cpu --tiny`` runs a small smoke test anywhere.
Every layer is one call of ``attnlens.methods.hidden_attention`` (no Triton: the method is
batched matrix products over state blocks, see its module docstring). TF32 is off, so the GEMMs
are full float32; ``--tf32`` turns it on for comparison.

    python benchmarks/gpu_hidden_attention.py [--device cuda] [--repeats 5] [--tiny]
"""

from __future__ import annotations

import argparse
import time

import torch

from attnlens.methods.hidden_attention import hidden_attention


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


def run(layers, channels_mode: str, block_size: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    for delta, A, B, C in layers:
        hidden_attention(delta, A, B, C, channels=channels_mode, block_size=block_size)
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
    layers_count, channels, states, n = (2, 32, 16, 33) if args.tiny else (24, 768, 16, 197)
    layers = make_layers(layers_count, channels, states, n, args.device)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu (1 thread)"

    # correctness on this device: float32 vs float64 on the first layer
    first64 = tuple(x.double() for x in layers[0])
    error = (hidden_attention(*layers[0]).double() - hidden_attention(*first64)).abs().max().item()

    print(f"device: {name}; {layers_count} layers x ({channels} channels, {states} states, {n} tokens); "
          f"TF32 {'on' if args.tf32 else 'off'}; float32 vs float64 max abs diff (layer 0): {error:.2e}\n")
    print("| channels mode | block_size | total (s), best of repeats | per layer (ms) | peak memory (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for mode in ("mean", "abs_mean"):
        for block_size in (16, 32, 64):
            run(layers[:2], mode, block_size, args.device)  # warm-up
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats(args.device)
            best = min(run(layers, mode, block_size, args.device) for _ in range(args.repeats))
            on_gpu = args.device.startswith("cuda")
            peak = torch.cuda.max_memory_allocated(args.device) / 2**20 if on_gpu else float("nan")
            print(f"| {mode} | {block_size} | {best:.4f} | {1000 * best / layers_count:.2f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
