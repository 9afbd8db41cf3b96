"""Score summaries: median/mean/std equal numpy, the interval covers the median, Wilcoxon equals scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from attnlens.metrics import paired_wilcoxon, summarize_scores


def test_summary_matches_numpy_and_ignores_nan():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    with_nan = np.concatenate([scores, [np.nan, np.nan]])
    summary = summarize_scores(with_nan, resamples=500)
    assert summary.count == 200
    assert summary.median == pytest.approx(np.median(scores))
    assert summary.mean == pytest.approx(scores.mean())
    assert summary.std == pytest.approx(scores.std(ddof=1))
    assert summary.ci95[0] <= summary.median <= summary.ci95[1]
    assert summarize_scores(with_nan, resamples=500, seed=3) == summarize_scores(with_nan, resamples=500, seed=3)


def test_summary_of_nothing_is_nan():
    summary = summarize_scores(np.array([np.nan]))
    assert summary.count == 0 and np.isnan(summary.median)


def test_wilcoxon_equals_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=50) + 0.3
    assert paired_wilcoxon(a, b) == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert np.isnan(paired_wilcoxon(a, a))
