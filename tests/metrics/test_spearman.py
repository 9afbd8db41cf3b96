"""Spearman: equals scipy with ties; dense equals the thesis formula; masking and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from attnlens.metrics import spearman

ATOL = 1e-10


def _reference_scipy_spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.spearmanr(a, b).statistic)


def _reference_dense_thesis(a: np.ndarray, b: np.ndarray) -> float:
    """Thesis formula: dense ranks, rho = 1 - 6 sum d^2 / (n (n^2 - 1))."""
    rank_a = stats.rankdata(a, method="dense")
    rank_b = stats.rankdata(b, method="dense")
    n = len(a)
    return 1 - 6 * float(((rank_a - rank_b) ** 2).sum()) / (n * (n * n - 1))


values = st.lists(st.integers(0, 4), min_size=2, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(0, 10_000))
def test_average_equals_scipy_with_ties(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, size=(3, n)).astype(np.float64)  # many ties
    b = rng.normal(size=(3, n))
    b[:, : n // 2] = np.round(b[:, : n // 2])
    got = spearman(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    for row in range(3):
        expected = _reference_scipy_spearman(a[row], b[row])
        if np.isnan(expected):
            assert np.isnan(got[row])
        else:
            assert got[row] == pytest.approx(expected, abs=ATOL)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(0, 10_000))
def test_dense_equals_thesis_formula(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, size=(2, n)).astype(np.float64)
    b = rng.integers(0, 5, size=(2, n)).astype(np.float64)
    got = spearman(torch.from_numpy(a), torch.from_numpy(b), ties="dense").numpy()
    for row in range(2):
        assert got[row] == pytest.approx(_reference_dense_thesis(a[row], b[row]), abs=ATOL)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(2, 9), min_size=1, max_size=4), st.integers(0, 10_000), st.sampled_from(["average",
                                                                                                      "dense"]))
def test_mask_equals_each_example_alone(lengths, seed, ties):
    rng = np.random.default_rng(seed)
    n = max(lengths) + 2
    a = rng.integers(0, 5, size=(len(lengths), n)).astype(np.float64)
    b = rng.normal(size=(len(lengths), n))
    mask = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
    got = spearman(torch.from_numpy(a), torch.from_numpy(b), mask=mask, ties=ties)
    for row, length in enumerate(lengths):
        alone = spearman(torch.from_numpy(a[row:row + 1, :length]), torch.from_numpy(b[row:row + 1, :length]),
                         ties=ties)
        torch.testing.assert_close(got[row:row + 1], alone, atol=ATOL, rtol=0, equal_nan=True)


def test_perfect_and_reversed():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0]])
    torch.testing.assert_close(spearman(a, b), torch.tensor([1.0, -1.0]))


def test_keeps_dtype():
    a = torch.rand(2, 5, dtype=torch.float32)
    assert spearman(a, a).dtype == torch.float32


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "error", "match"),
    [
        (torch.rand(2, 3), torch.rand(2, 4), {}, ValueError, "Expected `a` and `b` to have the same shape"),
        (torch.rand(3), torch.rand(3), {}, ValueError, r"Expected `a` to have shape \(B, n\)"),
        (torch.ones(2, 3, dtype=torch.long), torch.rand(2, 3), {}, TypeError, "Expected `a` to have a floating"),
        (torch.rand(2, 3), torch.rand(2, 3), {"ties": "min"}, ValueError, "Expected `ties` to be one of"),
        (torch.rand(2, 3), torch.rand(2, 3), {"mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError,
         r"Expected `mask` to have shape \(B, n\) = \(2, 3\)"),
    ],
)
def test_errors(a, b, kwargs, error, match):
    with pytest.raises(error, match=match):
        spearman(a, b, **kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_valid_values_are_refused_but_padding_may_hold_them(bad):
    a = torch.tensor([[1.0, bad, 2.0]])
    b = torch.tensor([[1.0, 3.0, 2.0]])
    with pytest.raises(ValueError, match="Expected `a` to hold only finite values on valid tokens"):
        spearman(a, b)
    mask = torch.tensor([[True, False, True]])
    torch.testing.assert_close(spearman(a, b, mask=mask), torch.tensor([1.0]))
