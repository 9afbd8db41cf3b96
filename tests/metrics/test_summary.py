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


@pytest.mark.parametrize("n", [1, 2, 7, 8, 60])
def test_bootstrap_interval_equals_numpy_resampling(n):
    import torch

    from attnlens.metrics.summary import bootstrap_median_interval

    scores = torch.randn(4, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    scores[1, : n // 2] = 0.5  # ties
    resamples = 300
    picks = torch.randint(0, n, (resamples, n), generator=torch.Generator().manual_seed(7)).numpy()
    medians = np.median(scores.numpy()[:, picks], axis=-1)  # (4, R): a plain resample-and-median loop
    expected = np.percentile(medians, [2.5, 97.5], axis=1).T
    got = bootstrap_median_interval(scores, resamples=resamples, seed=7).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_table_rows_with_nan_equal_their_finite_part():
    from attnlens.metrics.summary import summarize_score_table

    rng = np.random.default_rng(2)
    table = rng.normal(size=(3, 50))
    table[2, ::7] = np.nan
    rows = summarize_score_table(table, resamples=400)
    alone = summarize_scores(table[2][np.isfinite(table[2])], resamples=400)
    assert rows[2] == alone and rows[0] == summarize_scores(table[0], resamples=400)


def test_bootstrap_and_wilcoxon_errors():
    import torch

    from attnlens.metrics.summary import bootstrap_median_interval

    with pytest.raises(ValueError, match=r"Expected `scores` to have shape \(M, N\)"):
        bootstrap_median_interval(torch.rand(5))
    with pytest.raises(ValueError, match="at least one example per row"):
        bootstrap_median_interval(torch.rand(2, 0))
    with pytest.raises(TypeError, match="Expected `scores` to have a floating dtype"):
        bootstrap_median_interval(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Expected `level` to lie in \(0, 1\)"):
        bootstrap_median_interval(torch.rand(2, 3), level=1.5)
    with pytest.raises(ValueError, match=r"Expected `resamples` to be an integer in \[1, inf\]"):
        bootstrap_median_interval(torch.rand(2, 3), resamples=0)
    with pytest.raises(ValueError, match="Expected `scores` and `baseline` to have the same length"):
        paired_wilcoxon(np.ones(3), np.ones(4))
