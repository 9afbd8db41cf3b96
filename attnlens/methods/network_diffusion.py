"""Network Diffusion: singular-value smoothing of attention matrices.

For one attention matrix A (rows = queries, row-stochastic over the valid keys), following
Network Enhancement (Wang, Pourshafeie, Zitnik et al. 2018, Nature Communications 9:3108),
whose diffusion ``W ← α T W T + (1−α) T`` acts on eigenvalues as ``f(λ) = (1−α)λ / (1−αλ²)``:

1. optionally keep the `top_k` largest entries of each row (ties are all kept);
2. ``Ā = A / σ₁`` with σ₁ the largest singular value, so every normalized singular value
   s lies in [0, 1] (row-stochastic matrices have σ₁ ≥ 1);
3. ``X = U diag(f(s)) Vᵀ`` with ``Ā = U diag(s) Vᵀ`` and ``f(s) = (1−α)s / (1−αs²)``; X is
   the unique fixed point of ``X ← α Ā Xᵀ Ā + (1−α) Ā``;
4. clamp negative entries to 0 and renormalize rows over the valid keys.

Step 3 never needs the singular vectors: ``X = (1−α) (I − α ĀĀᵀ)⁻¹ Ā``, and
``(I − α ĀĀᵀ)⁻¹ = Σ_k (α ĀĀᵀ)^k`` is a sum of non-negative matrices, so X ≥ 0 in exact
arithmetic (step 4's clamp only removes round-off) and every valid row of X is non-zero.
Three exact ways of computing X live here (``_ALGORITHMS``); the public function picks the one
measured fastest for the input's device (benchmarks/results/network_diffusion.md):

- ``"svd"``: batched ``torch.linalg.svd`` and the spectral map, the definition verbatim;
- ``"cholesky"``: σ₁² = largest eigenvalue of the Gram matrix ``AAᵀ`` (LAPACK/cuSOLVER
  ``eigvalsh``), then a Cholesky solve with ``I − α ĀĀᵀ`` (symmetric positive definite,
  eigenvalues in [1−α, 1]); fastest on CPU;
- ``"matmul"``: only batched matrix products, for accelerators where small batched
  factorizations are slow: σ₁² by repeated squaring of the Gram matrix (a certified upper
  bound, relative error ≤ ln(n)/2^steps, steps chosen to reach the dtype's epsilon) and the
  Neumann series of the inverse by doubling, ``Π_j (I + B^(2^j))``, truncated where its tail
  ``α^(2^k)/(1−α)`` falls below the dtype's epsilon. Every product is of non-negative matrices,
  so nothing cancels.

Padding: padded rows and columns are zeroed first. A zero row and column only add zero
singular values (``f(0) = 0``) and an identity block to ``I − α ĀĀᵀ``, so each example gets
what its valid block gets alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from attnlens._checks import _check_attention, _check_mask, _check_number, _check_row_stochastic
from attnlens.methods._common import _apply_mask, _normalize_rows

_ALGORITHMS = ("svd", "cholesky", "matmul")
# 1 − α must exceed this many epsilons of the arithmetic's dtype: I − α ĀĀᵀ has smallest eigenvalue 1 − α,
# and σ₁ is known only to a few epsilons.
_ALPHA_MARGIN = 64


def _default_algorithm(device: torch.device) -> str:
    """The fastest exact algorithm measured on this kind of device."""
    return "cholesky" if device.type == "cpu" else "matmul"


def _keep_top_k(attn: Tensor, top_k: int | None) -> Tensor:
    """Zero every entry below the `top_k`-th largest of its row (Network Enhancement's neighbour sparsification).

    Entries tied with the `top_k`-th largest are all kept, so the result does not depend on how
    ``torch.topk`` breaks ties (nor on padding).
    """
    n = attn.shape[-1]
    if top_k is None or top_k >= n:
        return attn
    kth = attn.topk(top_k, dim=-1).values[..., -1:]
    return torch.where(attn >= kth, attn, torch.zeros_like(attn))


def _gram_top_eigenvalue_squaring(gram: Tensor) -> Tensor:
    """Upper bound on the largest eigenvalue of a batch of PSD matrices, tight to the dtype's epsilon.

    With ``N_0 = G / tr G`` and ``N_j = N_{j-1}² / t_j``, ``t_j = tr N_{j-1}²``:
    ``tr(G^p)^(1/p) = exp(log tr G + Σ_j log(t_j) / 2^j)`` with ``p = 2^steps``, and
    ``λ₁ ≤ tr(G^p)^(1/p) ≤ n^(1/p) λ₁``; steps is the smallest with ``ln(n) / 2^steps ≤ eps``.
    Each term's round-off enters divided by 2^j, so the total stays about 2 eps.
    """
    n = gram.shape[-1]
    eps = torch.finfo(gram.dtype).eps
    steps = math.ceil(math.log2(math.log(n) / eps)) if n > 1 else 0
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    trace = torch.where(trace > 0, trace, torch.ones_like(trace))
    log_bound = trace.log()
    power = gram / trace[..., None, None]
    for step in range(1, steps + 1):
        power = torch.matmul(power, power)
        trace = power.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
        trace = torch.where(trace > 0, trace, torch.ones_like(trace))
        log_bound = log_bound + trace.log() / 2.0**step
        power = power / trace[..., None, None]
    return log_bound.exp()


def _diffuse_svd(attn: Tensor, alpha: float) -> Tensor:
    """Step 3 by the definition: ``U diag(f(s)) Vᵀ`` of ``Ā = A / σ₁``."""
    left, singular, right_h = torch.linalg.svd(attn)
    top = singular[..., :1]
    scaled = singular / torch.where(top > 0, top, torch.ones_like(top))
    spectrum = (1 - alpha) * scaled / (1 - alpha * scaled * scaled)
    return torch.matmul(left * spectrum[..., None, :], right_h)


def _diffuse_cholesky(attn: Tensor, alpha: float) -> Tensor:
    """Step 3 as ``(1−α) (I − α ĀĀᵀ)⁻¹ Ā``, σ₁² from ``eigvalsh(AAᵀ)``, by a Cholesky solve."""
    gram = torch.matmul(attn, attn.mT)
    top = torch.linalg.eigvalsh(gram)[..., -1]
    top = torch.where(top > 0, top, torch.ones_like(top))
    eye = torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)
    system = eye - (alpha / top)[..., None, None] * gram
    factor = torch.linalg.cholesky(system)
    return ((1 - alpha) / top.sqrt())[..., None, None] * torch.cholesky_solve(attn, factor)


def _diffuse_matmul(attn: Tensor, alpha: float) -> Tensor:
    """Step 3 as ``(1−α) Π_j (I + B^(2^j)) Ā`` with ``B = α ĀĀᵀ``, σ₁² by repeated squaring."""
    gram = torch.matmul(attn, attn.mT)
    top = _gram_top_eigenvalue_squaring(gram)
    result = attn / top.sqrt()[..., None, None]
    if alpha == 0:
        return result
    step_matrix = (alpha / top)[..., None, None] * gram
    eps = torch.finfo(attn.dtype).eps
    steps = max(1, math.ceil(math.log2(math.log(eps * (1 - alpha)) / math.log(alpha))))
    for step in range(steps):
        result = result + torch.matmul(step_matrix, result)
        if step + 1 < steps:
            step_matrix = torch.matmul(step_matrix, step_matrix)
    return (1 - alpha) * result


_DIFFUSERS = {"svd": _diffuse_svd, "cholesky": _diffuse_cholesky, "matmul": _diffuse_matmul}


def _network_diffusion_compute(
    attn: Tensor, mask: Tensor, alpha: float, top_k: int | None, algorithm: str | None = None
) -> Tensor:
    """Steps 1-4 on checked inputs; `mask` is a boolean `(B, n)` tensor."""
    attn = _keep_top_k(_apply_mask(attn, mask), top_k)
    if alpha == 0:
        return _normalize_rows(attn)
    compute_dtype = attn.dtype if attn.dtype in (torch.float32, torch.float64) else torch.float32
    closest = 1 - _ALPHA_MARGIN * torch.finfo(compute_dtype).eps
    if alpha > closest:
        raise ValueError(
            f"Expected `alpha` to be at most {closest:.7f} for {compute_dtype} arithmetic (closer to 1 needs "
            f"float64 attention), but got {alpha:g}."
        )
    algorithm = algorithm or _default_algorithm(attn.device)
    diffused = _DIFFUSERS[algorithm](attn.to(compute_dtype), alpha)
    diffused = _apply_mask(diffused.clamp_min(0), mask)
    return _normalize_rows(diffused).to(attn.dtype)


def _network_diffusion_check(attn: Tensor, mask: Tensor | None, alpha: object, top_k: object) -> tuple[Tensor, float]:
    _check_attention(attn, "attn", ndims=(4, 5))
    mask = _check_mask(mask, "mask", attn.shape[0], attn.shape[-1], attn.device)
    alpha = _check_number(alpha, "alpha", low=0.0, high=1.0, high_inclusive=False)
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise TypeError(f"Expected `top_k` to be a positive integer or None, but got {type(top_k).__name__}.")
        if top_k < 1:
            raise ValueError(f"Expected `top_k` to be a positive integer or None, but got {top_k}.")
    # Half precision rounds each entry by up to eps/2, so a row's sum may be off by about eps.
    _check_row_stochastic(attn, mask, "attn", atol=max(1e-3, 2 * torch.finfo(attn.dtype).eps))
    return mask, alpha


def network_diffusion(
    attn: Tensor,
    *,
    alpha: float = 0.9,
    mask: Tensor | None = None,
    top_k: int | None = None,
) -> Tensor:
    """Smooth every attention matrix by diffusion on its singular values.

    Network Diffusion (thesis "Improving Explainability of Transformer Models"), after Network
    Enhancement (Wang et al. 2018, Nat. Commun. 9:3108): ``Ā = A/σ₁``, ``X = U f(S) Vᵀ`` with
    ``f(s) = (1−α)s / (1−αs²)``, the fixed point of ``X ← α Ā Xᵀ Ā + (1−α) Ā``; then negative
    entries are clamped to 0 and rows renormalized over valid keys. ``α = 0`` returns A (after
    the optional `top_k` sparsification, rows renormalized); as α → 1 only the dominant
    singular direction survives. The default α = 0.9 is Network Enhancement's default.
    Each matrix (each layer, and each head of a per-head input) is diffused on its own; the
    output composes with :func:`~attnlens.methods.rollout` and the other propagation methods.

    Args:
        attn: `(B, L, n, n)` head-fused or `(B, L, H, n, n)` per-head attention, non-negative,
            rows summing to 1 over the valid keys (tolerance 1e-3, or twice the dtype's
            epsilon in half precision).
        alpha: diffusion strength in [0, 1). ``f`` has slope ~2/(1−α) near s = 1, so results
            are accurate to about 2·eps/(1−α) (float32: ~2e-6 at α = 0.9, ~2e-4 at 0.999); in
            float32 (and half precision, computed in float32) α is at most 1 − 64·eps ≈ 0.9999924,
            closer to 1 needs float64 attention.
        mask: `(B, n)` valid-token mask; None means every token is valid.
        top_k: keep only the `top_k` largest entries of each row first (ties all kept);
            None keeps every entry.

    Returns:
        Tensor of `attn`'s shape, dtype and device: rows of valid tokens are non-negative and
        sum to 1; padded rows and columns are zero.

    Raises:
        TypeError: if `attn` is not a floating tensor, or `alpha`/`top_k` has a wrong type.
        ValueError: on a wrong shape or mask, NaN/infinite or negative entries, rows that do
            not sum to 1 over valid keys, `alpha` outside [0, 1) (or too close to 1 for the
            dtype), or `top_k` < 1.

    Example:
        >>> import torch
        >>> attn = torch.tensor([[[[0.8, 0.2], [0.6, 0.4]]]])
        >>> network_diffusion(attn, alpha=0.9)
        tensor([[[[0.7161, 0.2839],
                  [0.6953, 0.3047]]]])
        >>> torch.equal(network_diffusion(attn, alpha=0.0), attn)
        True
    """
    mask, alpha = _network_diffusion_check(attn, mask, alpha, top_k)
    return _network_diffusion_compute(attn, mask, alpha, top_k)
