"""Network Diffusion on a GPU: every exact algorithm side by side, CUDA-synchronized, with warm-up.

    python benchmarks/gpu_network_diffusion.py                 # cuda when available
    python benchmarks/gpu_network_diffusion.py --device cpu --tiny   # smoke test with tiny shapes

Shapes (float32 attention, softmax of 3·N(0, 1) logits, α = 0.9): 24 × 197² (Vision Mamba small, one
image) and 64 × 12 × 66² (a BERT-base batch of 64 sentences, head-fused, 12 layers). Issue target: the
BERT-base batch under 20 ms. Step 3 of the definition (``X = U f(S) Vᵀ`` of ``Ā = A/σ₁``) computed by:

- ``svd``: ``torch.linalg.svd`` and the spectral map (the definition verbatim);
- ``cholesky``: σ₁² = ``eigvalsh(AAᵀ)[-1]``, Cholesky solve of ``(I − α ĀĀᵀ) Y = Ā`` (CPU default);
- ``matmul``: σ₁² by repeated squaring of ``AAᵀ`` (certified upper bound, tight to float32 epsilon),
  inverse by the doubled Neumann series ``Π_j (I + B^(2^j))`` (only batched GEMMs; non-CPU default);
- ``norm2+cholesky``: σ₁ = ``torch.linalg.matrix_norm(A, ord=2)``, then the Cholesky solve;
- ``squaring+cholesky``: σ₁ by repeated squaring, then the Cholesky solve;
- ``squaring+lu``: σ₁ by repeated squaring, then ``torch.linalg.solve`` (LU);

each followed by steps 4 (clamp, renormalize rows) as in the library; plus the public
``network_diffusion`` (input checks + the device's default algorithm). Each is warmed up, then timed
as the median of ``--repeats`` synchronized runs; the error column is the largest deviation from the
float64 ``svd`` result on the same device. TF32 matmul is left at PyTorch's default (off).
Runs in well under 60 s on an H100.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from attnlens.methods._common import _normalize_rows
from attnlens.methods.network_diffusion import (
    _default_algorithm,
    _diffuse_cholesky,
    _diffuse_matmul,
    _diffuse_svd,
    _gram_top_eigenvalue_squaring,
    network_diffusion,
)

ALPHA = 0.9


def _solve_with(attn: torch.Tensor, top: torch.Tensor, alpha: float, how: str) -> torch.Tensor:
    """``(1−α)(I − α ĀĀᵀ)⁻¹ Ā`` given σ₁² = `top`, by Cholesky or LU."""
    gram = torch.matmul(attn, attn.mT)
    eye = torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)
    system = eye - (alpha / top)[..., None, None] * gram
    if how == "cholesky":
        solved = torch.cholesky_solve(attn, torch.linalg.cholesky(system))
    else:
        solved = torch.linalg.solve(system, attn)
    return ((1 - alpha) / top.sqrt())[..., None, None] * solved


def _norm2_cholesky(attn: torch.Tensor, alpha: float) -> torch.Tensor:
    return _solve_with(attn, torch.linalg.matrix_norm(attn, ord=2) ** 2, alpha, "cholesky")


def _squaring_cholesky(attn: torch.Tensor, alpha: float) -> torch.Tensor:
    return _solve_with(attn, _gram_top_eigenvalue_squaring(torch.matmul(attn, attn.mT)), alpha, "cholesky")


def _squaring_lu(attn: torch.Tensor, alpha: float) -> torch.Tensor:
    return _solve_with(attn, _gram_top_eigenvalue_squaring(torch.matmul(attn, attn.mT)), alpha, "lu")


VARIANTS = {
    "svd": _diffuse_svd,
    "cholesky": _diffuse_cholesky,
    "matmul": _diffuse_matmul,
    "norm2+cholesky": _norm2_cholesky,
    "squaring+cholesky": _squaring_cholesky,
    "squaring+lu": _squaring_lu,
}


def _full(step3, attn: torch.Tensor) -> torch.Tensor:
    """Steps 3-4 on unpadded attention (no mask to apply)."""
    return _normalize_rows(step3(attn, ALPHA).clamp_min(0))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of `repeats` synchronized calls after `warmup` calls (fewer when one call is slow)."""
    start = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - start
    if first > 1.0:  # a slow variant: one more warm run, two timed runs
        warmup, repeats = 1, 2
    for _ in range(max(0, warmup - 1)):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, for a CPU smoke test")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    shapes = [("24 × 197² (Vim-S)", (1, 24, 197, 197)), ("64 × 12 × 66² (BERT-base batch)", (64, 12, 66, 66))]
    if args.tiny:
        shapes = [("2 × 20² (tiny)", (1, 2, 20, 20)), ("4 × 3 × 9² (tiny)", (4, 3, 9, 9))]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (1 thread)"
    generator = torch.Generator().manual_seed(0)
    rows = []
    for label, shape in shapes:
        attn = torch.softmax(torch.randn(shape, generator=generator) * 3, dim=-1).to(device)
        reference = _full(_diffuse_svd, attn.double())
        cells = []
        for variant, step3 in VARIANTS.items():
            try:
                seconds = _time(lambda s=step3: _full(s, attn), device, args.warmup, args.repeats)
                error = float((_full(step3, attn).double() - reference).abs().max())
                cells.append(f"{1000 * seconds:.2f} ms ({error:.0e})")
            except (RuntimeError, torch.linalg.LinAlgError) as err:  # an op missing on this device
                cells.append(f"failed: {str(err).splitlines()[0][:60]}")
        mask = torch.ones(shape[0], shape[-1], dtype=torch.bool, device=device)
        public = _time(lambda: network_diffusion(attn, alpha=ALPHA, mask=mask), device, args.warmup, args.repeats)
        cells.append(f"{1000 * public:.2f} ms (`{_default_algorithm(device)}`)")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    lines = [
        f"## Network Diffusion on {name}",
        "",
        f"Command: `python benchmarks/gpu_network_diffusion.py --device {args.device}{' --tiny' if args.tiny else ''}`;"
        f" torch {torch.__version__}, Python {sys.version.split()[0]}, float32, α = {ALPHA}, median of "
        f"{args.repeats} synchronized runs after {args.warmup} warm-up runs; in brackets the largest deviation "
        f"from the float64 SVD result. TF32 matmul: {torch.backends.cuda.matmul.allow_tf32}.",
        "",
        "| shape | " + " | ".join(f"`{v}`" for v in VARIANTS) + " | public `network_diffusion` |",
        "|---|" + "---:|" * (len(VARIANTS) + 1),
        *rows,
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
