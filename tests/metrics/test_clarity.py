"""Tests of attnlens.metrics.clarity against scipy's entropy and the mean-absolute-difference Gini."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from attnlens.metrics.clarity import gini, normalized_entropy

torch.set_num_threads(1)
ATOL = 1e-12


def _reference_entropy(values: np.ndarray) -> float:
    return 0.0 if values.size == 1 else float(stats.entropy(values) / math.log(values.size))


def _reference_gini(values: np.ndarray) -> float:
    """Gini as the mean absolute difference, Σ_ij |x_i − x_j| / (2 n Σ x), by a double loop."""
    total = sum(abs(a - b) for a in values for b in values)
    return float(total / (2 * values.size * values.sum()))


def _random_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    relevance = torch.rand(5, 9, generator=generator, dtype=torch.float64) ** 3
    relevance[1, 3] = 0.0
    lengths = torch.tensor([9, 1, 4, 7, 2])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    mask[3] = torch.tensor([True, False, True, True, False, True, True, True, True])
    return relevance, mask


@pytest.mark.parametrize(("metric", "reference"), [(normalized_entropy, _reference_entropy), (gini, _reference_gini)])
def test_matches_reference(metric, reference) -> None:
    relevance, mask = _random_batch(0)
    garbage = relevance + 5.0 * (~mask)  # values on padding must not matter
    result = metric(garbage, mask=mask)
    expected = [reference(relevance[b][mask[b]].numpy()) for b in range(5)]
    np.testing.assert_allclose(result.numpy(), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("metric", [normalized_entropy, gini])
def test_padding_invariance_and_no_mask(metric) -> None:
    relevance, mask = _random_batch(1)
    batched = metric(relevance, mask=mask)
    for b in range(5):
        alone = metric(relevance[b][mask[b]][None])
        torch.testing.assert_close(batched[b : b + 1], alone, atol=ATOL, rtol=0)


def test_extremes() -> None:
    uniform = torch.full((1, 6), 0.3, dtype=torch.float64)
    one_hot = torch.tensor([[0.0, 0.0, 2.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(normalized_entropy(uniform), torch.ones(1, dtype=torch.float64))
    torch.testing.assert_close(normalized_entropy(one_hot), torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(gini(uniform), torch.zeros(1, dtype=torch.float64), atol=ATOL, rtol=0)
    torch.testing.assert_close(gini(one_hot), torch.full((1,), 5 / 6, dtype=torch.float64))


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 10.0)), min_size=1, max_size=12),
       scale=st.floats(0.01, 100.0))
def test_bounds_and_scale_invariance(values: list[float], scale: float) -> None:
    relevance = torch.tensor([values], dtype=torch.float64)
    if float(relevance.sum()) <= 0:
        return
    n = len(values)
    entropy, coefficient = normalized_entropy(relevance), gini(relevance)
    assert -ATOL <= float(entropy) <= 1 + ATOL
    assert -ATOL <= float(coefficient) <= 1 - 1 / n + ATOL
    torch.testing.assert_close(normalized_entropy(relevance * scale), entropy, atol=1e-10, rtol=0)
    torch.testing.assert_close(gini(relevance * scale), coefficient, atol=1e-10, rtol=0)


@pytest.mark.parametrize("metric", [normalized_entropy, gini])
def test_errors(metric) -> None:
    with pytest.raises(TypeError, match="Expected `relevance` to have a floating dtype, but got torch.int64"):
        metric(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="Expected `relevance` to have shape \\(B, n\\), but got \\(3,\\)"):
        metric(torch.ones(3))
    with pytest.raises(ValueError, match="Expected `relevance` to have at least one token, but got shape \\(2, 0\\)"):
        metric(torch.ones(2, 0))
    with pytest.raises(ValueError, match="Expected `mask` to have shape \\(B, n\\) = \\(2, 3\\), but got \\(2, 4\\)"):
        metric(torch.ones(2, 3), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="Expected `relevance` to hold only finite values"):
        metric(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="Expected `relevance` to be non-negative on valid tokens, but got a minimum"):
        metric(torch.tensor([[1.0, -0.5]]))
    with pytest.raises(ValueError, match="Expected `relevance` to have a positive sum over the valid tokens"):
        metric(torch.tensor([[0.0, 0.0, 3.0]]), mask=torch.tensor([[True, True, False]]))
