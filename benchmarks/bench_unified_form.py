"""CPU benchmark: the unified form of hidden attention against the scan-only form, side by side.

One Mamba-1 layer of mamba-130m shape (d_inner 1536 channels, 16 states, conv kernel 4), random
inputs (Δ = softplus(N(0,1) − 2), A = −exp(log(1..16) + 0.5·N(0,1)) as mamba's S4D init spread,
B, C, gate z and conv pre-activation v standard normal, conv taps N(0, 0.5²), skip N(0,1)), batch 1,
``channels="mean"``:

- scan: ``hidden_attention(delta, A, B, C)`` (α, Ali et al.).
- unified: ``hidden_attention(..., form="unified", gate=z, skip=D, conv_weight=w, conv_preactivation=v)``
  (Ω = diag(SiLU z)(α + diag D)diag(σ(v))M_conv, Zimerman et al.).

Single-threaded (``torch.set_num_threads(1)``). The two are interleaved, ``--repeats`` times each
after a warm-up, and the best of each is reported, as process CPU time (what one core spends; the
machine may be shared) and wall time. Prints a markdown table; ``--out`` also writes it as JSON.

    python benchmarks/bench_unified_form.py [--sizes 256 1024] [--repeats 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from attnlens.methods.hidden_attention import hidden_attention


def make_inputs(n: int, channels: int = 1536, states: int = 16, taps: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    log_a = torch.log(torch.arange(1, states + 1, dtype=torch.float32))
    return {
        "delta": torch.nn.functional.softplus(torch.randn(1, channels, n, generator=g) - 2.0),
        "A": -torch.exp(log_a + 0.5 * torch.randn(channels, states, generator=g)),
        "B": torch.randn(1, states, n, generator=g),
        "C": torch.randn(1, states, n, generator=g),
        "gate": torch.randn(1, channels, n, generator=g),
        "skip": torch.randn(channels, generator=g),
        "conv_weight": 0.5 * torch.randn(channels, taps, generator=g),
        "conv_preactivation": torch.randn(1, channels, n, generator=g),
    }


def _scan(x: dict) -> torch.Tensor:
    return hidden_attention(x["delta"], x["A"], x["B"], x["C"])


def _unified(x: dict) -> torch.Tensor:
    return hidden_attention(x["delta"], x["A"], x["B"], x["C"], form="unified", gate=x["gate"], skip=x["skip"],
                            conv_weight=x["conv_weight"], conv_preactivation=x["conv_preactivation"])


def _timed(run, x: dict) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run(x)
    return time.process_time() - cpu, time.perf_counter() - wall


def measure(n: int, repeats: int) -> dict:
    x = make_inputs(n)
    _scan(x), _unified(x)  # warm-up
    times = {"scan": [], "unified": []}
    for _ in range(repeats):
        for name, run in (("scan", _scan), ("unified", _unified)):
            times[name].append(_timed(run, x))
    best = {name: (min(t[0] for t in values), min(t[1] for t in values)) for name, values in times.items()}
    return {"n": n, "scan_cpu_s": best["scan"][0], "unified_cpu_s": best["unified"][0],
            "scan_wall_s": best["scan"][1], "unified_wall_s": best["unified"][1],
            "ratio_cpu": best["unified"][0] / best["scan"][0], "ratio_wall": best["unified"][1] / best["scan"][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="sequence lengths n")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each form per size (best is kept)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(n, args.repeats) for n in args.sizes]
    print(f"unified vs scan hidden attention, one mamba-130m-shaped layer (D 1536, N 16, K 4), channels='mean', "
          f"1 thread, best of {args.repeats}; torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print("\n| n | scan CPU s | unified CPU s | ratio (CPU) | scan wall s | unified wall s | ratio (wall) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['n']} | {row['scan_cpu_s']:.3f} | {row['unified_cpu_s']:.3f} | {row['ratio_cpu']:.2f}x | "
              f"{row['scan_wall_s']:.3f} | {row['unified_wall_s']:.3f} | {row['ratio_wall']:.2f}x |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"repeats": args.repeats, "torch": torch.__version__, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
