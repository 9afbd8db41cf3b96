"""Summaries of per-example scores: median, mean, spread, bootstrap interval, paired test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class ScoreSummary:
    """Summary of one method at one layer over the examples with a finite score."""

    median: float
    mean: float
    std: float
    ci95: tuple[float, float]
    count: int


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
    values = np.asarray(scores, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        nan = float("nan")
        return ScoreSummary(nan, nan, nan, (nan, nan), 0)
    rng = np.random.default_rng(seed)
    medians = np.empty(resamples)
    chunk = max(1, 2_000_000 // values.size)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        picks = rng.integers(0, values.size, size=(stop - start, values.size))
        medians[start:stop] = np.median(values[picks], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return ScoreSummary(float(np.median(values)), float(values.mean()), std, (float(low), float(high)), int(values.size))


def paired_wilcoxon(scores: np.ndarray, baseline: np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of `scores` against `baseline`.

    Wilcoxon 1945, on the pairs where both are finite; NaN when fewer than two pairs differ.

    Args:
        scores: `(N,)` per-example scores of a method.
        baseline: `(N,)` scores of the baseline on the same examples.

    Example:
        >>> round(paired_wilcoxon(np.arange(10.0) + 1, np.zeros(10)), 4)
        0.002
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    baseline = np.asarray(baseline, dtype=np.float64).ravel()
    keep = np.isfinite(scores) & np.isfinite(baseline)
    diff = scores[keep] - baseline[keep]
    if np.count_nonzero(diff) < 2:
        return float("nan")
    return float(stats.wilcoxon(scores[keep], baseline[keep]).pvalue)
