"""Summaries of per-example scores: median, mean, spread, bootstrap interval, paired test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from attnlens._checks import _check_floating, _check_integer, _check_ndim, _check_number

_MAX_CHUNK_ELEMENTS = 1 << 23  # (R, rows, N) int32 elements per chunk: 32 MiB


@dataclass(frozen=True)
class ScoreSummary:
    """Summary of one method at one layer over the examples with a finite score."""

    median: float
    mean: float
    std: float
    ci95: tuple[float, float]
    count: int


def bootstrap_median_interval(scores: Tensor, *, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> Tensor:
    """Percentile-bootstrap interval of the median of each row, all rows at once.

    Bootstrap percentile interval (Efron & Tibshirani 1993, ch. 13). Every row uses the same
    resamples (drawn as multiplicities of the N examples), so rows stay paired. The median of a
    resample is read from the row's sorted values at the cumulative multiplicity that crosses
    the middle: O(R·N) per row instead of a sort per resample. The median of an even-sized
    resample is the mean of its two middle values, as in ``numpy.median``.

    Args:
        scores: `(M, N)` finite scores (rows are methods/layers, columns examples).
        resamples: R bootstrap resamples.
        seed: seed of the resampling generator (on the scores' device).
        level: coverage of the interval.

    Returns:
        `(M, 2)` lower and upper bounds, same dtype and device.

    Raises:
        ValueError: on a shape other than `(M, N ≥ 1)`, `resamples` < 1 or `level` outside (0, 1).
        TypeError: on non-floating scores.

    Example:
        >>> bounds = bootstrap_median_interval(torch.arange(101.0)[None])
        >>> bool(bounds[0, 0] < 50 < bounds[0, 1])
        True
    """
    _check_floating(scores, "scores")
    _check_ndim(scores, "scores", (2,), "(M, N)")
    rows, n = scores.shape
    if n == 0:
        raise ValueError(f"Expected `scores` to hold at least one example per row, but got shape {tuple(scores.shape)}.")
    resamples = _check_integer(resamples, "resamples", low=1)
    level = _check_number(level, "level", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    generator = torch.Generator(device=scores.device).manual_seed(seed)
    picks = torch.randint(0, n, (resamples, n), generator=generator, device=scores.device)
    counts = torch.zeros(resamples, n, dtype=torch.int32, device=scores.device)  # multiplicities (exact in int32)
    counts.scatter_add_(1, picks, torch.ones_like(picks, dtype=torch.int32))
    sorted_scores, order = scores.sort(dim=-1)
    middle = torch.tensor([(n + 1) // 2, n // 2 + 1], dtype=torch.int32, device=scores.device)  # 1-based middle ranks
    tail = (1 - level) / 2
    quantiles = torch.tensor([tail, 1 - tail], dtype=scores.dtype, device=scores.device)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (resamples * n))
    bounds = []
    for start in range(0, rows, chunk):
        part = order[start:start + chunk]  # (m, N)
        cumulative = counts[:, part].cumsum_(dim=-1)  # (R, m, N) multiplicities in sorted order, in place (int32)
        targets = middle.view(1, 1, 2).expand(resamples, part.shape[0], 2).contiguous()
        positions = torch.searchsorted(cumulative, targets)  # first index reaching each middle rank
        values = torch.gather(sorted_scores[start:start + chunk].expand(resamples, -1, -1), -1, positions)
        medians = values.mean(dim=-1)  # (R, m)
        bounds.append(torch.quantile(medians, quantiles, dim=0).T)
    return torch.cat(bounds, dim=0)


def summarize_score_table(scores: np.ndarray | Tensor, *, resamples: int = 2000, seed: int = 0,
                          device: str | torch.device = "cpu") -> list[ScoreSummary]:
    """:func:`summarize_scores` for every row of `(M, N)` scores, bootstrapping rows together.

    Percentile bootstrap (Efron & Tibshirani 1993, ch. 13). NaN scores (constant inputs) are left
    out of their row; such rows are bootstrapped alone. The bootstrap runs on `device` (a GPU
    makes it nearly free).

    Args:
        scores: `(M, N)` scores, rows are methods/layers, columns examples.
        resamples: bootstrap resamples.
        seed: seed of the resampling generator.
        device: where the bootstrap runs.

    Returns:
        M :class:`ScoreSummary` objects, one per row.

    Example:
        >>> [s.count for s in summarize_score_table(np.array([[0.1, 0.2, 0.3], [0.5, np.nan, 0.7]]))]
        [3, 2]
    """
    table = torch.as_tensor(np.asarray(scores, dtype=np.float64), device=device)
    finite = torch.isfinite(table)
    complete = finite.all(dim=-1)
    intervals = torch.full((table.shape[0], 2), float("nan"), dtype=table.dtype, device=device)
    if bool(complete.any()):
        intervals[complete] = bootstrap_median_interval(table[complete], resamples=resamples, seed=seed)
    # a row's resamples depend only on (seed, its finite count): rows with equal counts share one draw
    counts = finite.sum(dim=-1)
    incomplete = torch.nonzero(~complete & (counts > 0)).flatten()
    for count in torch.unique(counts[incomplete]).tolist():
        rows = incomplete[counts[incomplete] == count]
        values = torch.stack([table[row][finite[row]] for row in rows.tolist()])
        intervals[rows] = bootstrap_median_interval(values, resamples=resamples, seed=seed)
    host = table.cpu().numpy()
    intervals = intervals.cpu().numpy()
    summaries = []
    for row, bounds in zip(host, intervals):
        values = row[np.isfinite(row)]
        if values.size == 0:
            nan = float("nan")
            summaries.append(ScoreSummary(nan, nan, nan, (nan, nan), 0))
            continue
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        summaries.append(ScoreSummary(float(np.median(values)), float(values.mean()), std,
                                      (float(bounds[0]), float(bounds[1])), int(values.size)))
    return summaries


def summarize_scores(scores: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> ScoreSummary:
    """Median, mean, standard deviation and a percentile-bootstrap 95 % interval of the median.

    Bootstrap percentile interval (Efron & Tibshirani 1993, ch. 13). NaN scores (constant
    inputs) are left out; `count` says how many remained.

    Args:
        scores: `(N,)` per-example scores.
        resamples: bootstrap resamples.
        seed: seed of the resampling generator.

    Returns:
        A :class:`ScoreSummary`; every field is NaN when no finite score remains.

    Example:
        >>> summarize_scores(np.array([0.1, 0.2, 0.3, np.nan])).median
        0.2
    """
    return summarize_score_table(np.asarray(scores, dtype=np.float64).reshape(1, -1), resamples=resamples,
                                 seed=seed)[0]


def paired_wilcoxon(scores: np.ndarray, baseline: np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of `scores` against `baseline`.

    Wilcoxon 1945, on the pairs where both are finite; NaN when fewer than two pairs differ.

    Args:
        scores: `(N,)` per-example scores of a method.
        baseline: `(N,)` scores of the baseline on the same examples.

    Returns:
        The p-value, NaN when fewer than two finite pairs differ.

    Raises:
        ValueError: when `scores` and `baseline` differ in length.

    Example:
        >>> round(paired_wilcoxon(np.arange(10.0) + 1, np.zeros(10)), 4)
        0.002
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    baseline = np.asarray(baseline, dtype=np.float64).ravel()
    if scores.shape != baseline.shape:
        raise ValueError(f"Expected `scores` and `baseline` to have the same length, but got {scores.size} and "
                         f"{baseline.size}.")
    keep = np.isfinite(scores) & np.isfinite(baseline)
    diff = scores[keep] - baseline[keep]
    if np.count_nonzero(diff) < 2:
        return float("nan")
    return float(stats.wilcoxon(scores[keep], baseline[keep]).pvalue)
