"""Faithfulness of token relevance: which tokens to perturb, AOPC, leave-one-out and Kendall τ.

Pure tensor functions; what runs the model (the perturbed predictions, the randomised models)
lives in :mod:`attnlens.experiments.faithfulness` and calls the adapter's ``perturb``.
ERASER's comprehensiveness and sufficiency (DeYoung et al., ACL 2020) averaged over k bins
(AOPC), leave-one-out relevance (Abnar & Zuidema's "blank-out", ACL 2020), Kendall τ-b
(Kendall 1945; ferret's ``taucorr_loo``), and the rank correlation of a randomised model's
maps with the trained model's (Adebayo et al., NeurIPS 2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_floating, _check_mask, _check_ndim, _check_same_shape
from attnlens.metrics.spearman import _spearman_compute

DEFAULT_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)  # ERASER's bins


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    values = tuple(fractions)
    if not values or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1 for f in values):
        raise ArgumentError(f"Expected `fractions` to be a non-empty list of numbers in (0, 1], but got "
                            f"{list(values)}.", "fractions")
    return tuple(float(f) for f in values)


def top_k_counts(candidates: Tensor, *, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> Tensor:
    """How many tokens each bin perturbs: ``ceil(fraction · m)`` of the m candidate tokens, at least 1.

    ERASER's bins (DeYoung et al., ACL 2020) as fractions of the candidates (valid, non-special
    tokens), rounded up so that the 1 % bin of a short sentence still removes one token.

    Args:
        candidates: `(B, n)` bool, the tokens that may be perturbed.
        fractions: the K fractions in (0, 1].

    Returns:
        `(B, K)` long counts in [1, m] (0 for an example without candidates).

    Raises:
        ValueError: on fractions outside (0, 1] or a `candidates` of the wrong shape.

    Example:
        >>> top_k_counts(torch.ones(1, 10, dtype=torch.bool), fractions=(0.01, 0.2, 0.5))
        tensor([[1, 2, 5]])
    """
    fractions = _check_fractions(fractions)
    _check_ndim(candidates, "candidates", (2,), "(B, n)")
    m = candidates.sum(dim=-1, keepdim=True)
    frac = torch.tensor(fractions, dtype=torch.float64, device=candidates.device)
    counts = torch.ceil(frac[None, :] * m.to(torch.float64) - 1e-9).to(torch.long)
    return torch.minimum(counts.clamp_min(1), m)


def top_k_mask(scores: Tensor, candidates: Tensor, counts: Tensor) -> Tensor:
    """The k highest-scoring candidate tokens of every example, for each of K counts.

    The order is the explanation's ranking among `candidates` (ties: the earlier token first, a
    stable sort); ERASER's rationale of length k (DeYoung et al., ACL 2020).

    Args:
        scores: `(B, n)` floating relevance.
        candidates: `(B, n)` bool, the tokens that may be chosen (valid and not special).
        counts: `(B, K)` long, how many to choose per bin.

    Returns:
        `(B, K, n)` bool, True on the chosen tokens.

    Raises:
        ValueError: on mismatched shapes.
        TypeError: on non-floating scores.

    Example:
        >>> top_k_mask(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[False, True, True]]), torch.tensor([[1, 2]]))
        tensor([[[False,  True, False],
                 [False,  True,  True]]])
    """
    _check_floating(scores, "scores")
    _check_ndim(scores, "scores", (2,), "(B, n)")
    _check_same_shape(scores, candidates, ("scores", "candidates"))
    _check_ndim(counts, "counts", (2,), "(B, K)")
    if counts.shape[0] != scores.shape[0]:
        raise ArgumentError(f"Expected `counts` to have shape (B, K) with B = {scores.shape[0]}, but got "
                            f"{tuple(counts.shape)}.", "counts")
    return _top_k_mask_compute(scores, candidates.bool(), counts)


def _top_k_mask_compute(scores: Tensor, candidates: Tensor, counts: Tensor) -> Tensor:
    filled = scores.masked_fill(~candidates, float("-inf"))
    order = torch.sort(filled, dim=-1, descending=True, stable=True).indices  # (B, n)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device)
                                            .expand_as(order).contiguous())
    return (rank[:, None, :] < counts[:, :, None].to(rank.device)) & candidates[:, None, :]


def _check_probabilities(probability: Tensor, perturbed: Tensor, name: str) -> None:
    _check_floating(probability, "probability")
    _check_floating(perturbed, name)
    _check_ndim(probability, "probability", (1,), "(B,)")
    _check_ndim(perturbed, name, (2,), "(B, K)")
    if perturbed.shape[0] != probability.shape[0] or perturbed.shape[1] == 0:
        raise ArgumentError(f"Expected `{name}` to have shape (B, K) with B = {probability.shape[0]} and K >= 1, but "
                            f"got {tuple(perturbed.shape)}.", name)


def aopc_comprehensiveness(probability: Tensor, removed: Tensor) -> Tensor:
    """AOPC comprehensiveness: the mean drop of the target probability when the top-k tokens are removed.

    DeYoung et al., ERASER, ACL 2020: ``1/K Σ_k (p(x) − p(x \\ r_k))``; higher is more faithful.

    Args:
        probability: `(B,)` target probability on the whole input.
        removed: `(B, K)` target probability with the top-k tokens of each bin removed.

    Returns:
        `(B,)` comprehensiveness, in [-1, 1].

    Raises:
        ValueError: on mismatched shapes.
        TypeError: on non-floating inputs.

    Example:
        >>> aopc_comprehensiveness(torch.tensor([0.9]), torch.tensor([[0.5, 0.1]]))
        tensor([0.6000])
    """
    _check_probabilities(probability, removed, "removed")
    return (probability[:, None] - removed).mean(dim=-1)


def aopc_sufficiency(probability: Tensor, kept: Tensor) -> Tensor:
    """AOPC sufficiency: the mean drop of the target probability when only the top-k tokens are kept.

    DeYoung et al., ERASER, ACL 2020: ``1/K Σ_k (p(x) − p(r_k))``; lower is more faithful.

    Args:
        probability: `(B,)` target probability on the whole input.
        kept: `(B, K)` target probability keeping only the top-k tokens (and special tokens).

    Returns:
        `(B,)` sufficiency, in [-1, 1].

    Raises:
        ValueError: on mismatched shapes.
        TypeError: on non-floating inputs.

    Example:
        >>> aopc_sufficiency(torch.tensor([0.9]), torch.tensor([[0.7, 0.9]]))
        tensor([0.1000])
    """
    _check_probabilities(probability, kept, "kept")
    return (probability[:, None] - kept).mean(dim=-1)


def leave_one_out(probability: Tensor, without: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Leave-one-out relevance: how much the target probability drops when each token alone is removed.

    Abnar & Zuidema, ACL 2020 ("blank-out" reference): ``p(x) − p(x \\ {i})``.

    Args:
        probability: `(B,)` target probability on the whole input.
        without: `(B, n)` target probability with token i removed.
        mask: `(B, n)` tokens that were removed (others get 0); None means all.

    Returns:
        `(B, n)` relevance, 0 off `mask`.

    Raises:
        ValueError: on mismatched shapes.
        TypeError: on non-floating inputs.

    Example:
        >>> leave_one_out(torch.tensor([0.9]), torch.tensor([[0.2, 0.8, 0.0]]), mask=torch.tensor([[True, True, False]]))
        tensor([[0.7000, 0.1000, 0.0000]])
    """
    _check_floating(probability, "probability")
    _check_floating(without, "without")
    _check_ndim(probability, "probability", (1,), "(B,)")
    _check_ndim(without, "without", (2,), "(B, n)")
    if without.shape[0] != probability.shape[0]:
        raise ArgumentError(f"Expected `without` to have shape (B, n) with B = {probability.shape[0]}, but got "
                            f"{tuple(without.shape)}.", "without")
    mask = _check_mask(mask, "mask", without.shape[0], without.shape[1], without.device)
    return (probability[:, None] - without) * mask.to(without.dtype)


def kendall_tau(a: Tensor, b: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """Kendall τ-b of `a` and `b` per example, over valid tokens (all pairs, O(n²) per example).

    Kendall 1945, τ-b with ties as ``scipy.stats.kendalltau`` (ferret's ``taucorr_loo`` applies it
    to an explanation and leave-one-out); NaN when either is constant on the valid tokens.

    Args:
        a: `(B, n)` scores, e.g. a method's relevance.
        b: `(B, n)` scores, e.g. leave-one-out relevance.
        mask: `(B, n)` valid tokens; None means all.

    Returns:
        `(B,)` τ in [-1, 1], dtype promoted from `a` and `b`.

    Raises:
        ValueError: on mismatched shapes or a wrong mask.
        TypeError: on non-floating inputs.

    Example:
        >>> kendall_tau(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 30.0, 20.0]]))
        tensor([0.3333])
    """
    _check_floating(a, "a")
    _check_floating(b, "b")
    _check_ndim(a, "a", (2,), "(B, n)")
    _check_same_shape(a, b, ("a", "b"))
    mask = _check_mask(mask, "mask", a.shape[0], a.shape[1], a.device)
    return _kendall_tau_compute(a, b, mask)


def _kendall_tau_compute(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    sign_a = torch.sign(a[:, :, None] - a[:, None, :])
    sign_b = torch.sign(b[:, :, None] - b[:, None, :])
    pair = (mask[:, :, None] & mask[:, None, :]).to(dtype)
    concordance = (sign_a * sign_b * pair).sum(dim=(-1, -2))
    untied_a = (sign_a.abs() * pair).sum(dim=(-1, -2))
    untied_b = (sign_b.abs() * pair).sum(dim=(-1, -2))
    return concordance / torch.sqrt(untied_a * untied_b)


def randomization_similarity(trained: Tensor, randomized: Tensor, *, mask: Tensor | None = None,
                             absolute: bool = True) -> Tensor:
    """Rank correlation of a randomised model's relevance with the trained model's, per example.

    Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018: Spearman ρ between the maps
    (of their absolute values by default); a method whose maps stay close to 1 after the
    weights are randomised does not depend on what the model learned and fails the check.

    Args:
        trained: `(B, n)` relevance of the trained model.
        randomized: `(B, n)` relevance of the randomised model, same inputs.
        mask: `(B, n)` valid tokens; None means all.
        absolute: compare absolute values (Adebayo et al.'s main variant).

    Returns:
        `(B,)` ρ in [-1, 1]; NaN where a map is constant.

    Raises:
        ValueError: on mismatched shapes or a wrong mask.
        TypeError: on non-floating inputs.

    Example:
        >>> randomization_similarity(torch.tensor([[0.1, 0.5, 0.9]]), torch.tensor([[0.9, 0.5, 0.1]]))
        tensor([-1.])
    """
    _check_floating(trained, "trained")
    _check_floating(randomized, "randomized")
    _check_ndim(trained, "trained", (2,), "(B, n)")
    _check_same_shape(trained, randomized, ("trained", "randomized"))
    mask = _check_mask(mask, "mask", trained.shape[0], trained.shape[1], trained.device)
    if absolute:
        trained, randomized = trained.abs(), randomized.abs()
    return _spearman_compute(trained, randomized, mask, "average")


def position_map(mask: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """The data-independent position-only explanation: earlier valid tokens rank higher.

    The baseline of Adebayo et al., NeurIPS 2018 (an explanation that ignores model and input);
    ``1 − i / m`` for the i-th of m valid tokens.

    Args:
        mask: `(B, n)` bool valid tokens.
        dtype: the floating dtype of the map.

    Returns:
        `(B, n)` scores in (0, 1], 0 on padding.

    Example:
        >>> position_map(torch.tensor([[True, True, False]]))
        tensor([[1.0000, 0.5000, 0.0000]])
    """
    _check_ndim(mask, "mask", (2,), "(B, n)")
    mask = mask.bool()
    index = torch.cumsum(mask.to(torch.long), dim=-1) - 1
    count = mask.sum(dim=-1, keepdim=True).clamp_min(1)
    return ((1 - index.to(dtype) / count.to(dtype)) * mask.to(dtype))


def sanity_passes(similarity: float, *, threshold: float = 0.5) -> bool:
    """Whether a method passes the randomisation check: median ρ with the trained maps below `threshold`.

    Adebayo et al., NeurIPS 2018 read the check visually; attnlens flags a method whose maps keep a
    median rank correlation of at least `threshold` after every layer is randomised.

    Example:
        >>> sanity_passes(0.9), sanity_passes(0.1), sanity_passes(float("nan"))
        (False, True, False)
    """
    return bool(math.isfinite(similarity) and similarity < threshold)


__all__ = [
    "DEFAULT_FRACTIONS",
    "aopc_comprehensiveness",
    "aopc_sufficiency",
    "kendall_tau",
    "leave_one_out",
    "position_map",
    "randomization_similarity",
    "sanity_passes",
    "top_k_counts",
    "top_k_mask",
]
