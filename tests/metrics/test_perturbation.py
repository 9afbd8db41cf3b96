"""Perturbation, deletion and insertion AUC: hand-computed cases, per-image loop references, properties, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.metrics import deletion_auc, insertion_auc, perturbation_auc, perturbation_order
from attnlens.metrics.perturbation import PERTURBATION_FRACTIONS, removed_counts

ATOL = 1e-12


def _reference_trapezoid(curve: list[float], fractions: list[float]) -> float:
    """Per image: the trapezoidal rule written out, as numpy's ``trapz`` in Chefer et al.'s evaluation."""
    area = 0.0
    for i in range(len(curve) - 1):
        area += (curve[i] + curve[i + 1]) / 2 * (fractions[i + 1] - fractions[i])
    return area


def _reference_rise_auc(curve: list[float]) -> float:
    """RISE's ``auc(arr) = (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (arr.shape[0] - 1)`` (Petsiuk et al. 2018)."""
    values = np.asarray(curve, dtype=np.float64)
    return float((values.sum() - values[0] / 2 - values[-1] / 2) / (values.shape[0] - 1))


def _reference_order(values: list[float], order: str) -> list[int]:
    """Per image: patches by relevance, ties by position (a plain sort of (key, index) pairs)."""
    keyed = [((-v if order == "positive" else v), i) for i, v in enumerate(values)]
    return [i for _, i in sorted(keyed)]


def test_hand_computed_areas():
    ones = torch.ones(3, 10, dtype=torch.float64)
    torch.testing.assert_close(perturbation_auc(ones), torch.full((3,), 0.9, dtype=torch.float64), atol=ATOL, rtol=0)
    # accuracy 1 until 30 % removed, then 0: area = 0.3 + the half step 0.05
    step = torch.tensor([[1.0, 1, 1, 1, 0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    assert float(perturbation_auc(step)) == pytest.approx(0.35, abs=ATOL)
    assert float(deletion_auc(torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))) == pytest.approx(0.5, abs=ATOL)
    assert float(insertion_auc(torch.tensor([0.0, 1.0], dtype=torch.float64))) == pytest.approx(0.5, abs=ATOL)
    uneven = torch.tensor([0.0, 0.2, 1.0], dtype=torch.float64)
    assert float(deletion_auc(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), fractions=uneven)) == \
        pytest.approx(0.2 + 0.4, abs=ATOL)


def test_a_reversed_map_has_the_larger_positive_perturbation_auc():
    """A toy model that is right while more than half of the object's patches remain: removing the object first
    (the true map) kills it early, the reversed map late."""
    patches = 16
    mask = torch.zeros(patches, dtype=torch.bool)
    mask[[5, 6, 9, 10]] = True
    true_map = mask.double() + 0.01 * torch.arange(patches, dtype=torch.float64)
    counts = removed_counts(PERTURBATION_FRACTIONS, patches)

    def curve(map_: torch.Tensor) -> torch.Tensor:
        ranked = perturbation_order(map_[None])[0]
        hits = [float(mask[ranked[count:]].sum() > 2) for count in counts]
        return torch.tensor(hits, dtype=torch.float64)

    true_auc = float(perturbation_auc(curve(true_map)))
    reversed_auc = float(perturbation_auc(curve(-true_map)))
    assert true_auc == pytest.approx(0.15, abs=ATOL)  # right at 0 % and 10 % (1 patch), wrong from 20 % (3 patches)
    assert reversed_auc > true_auc + 0.5


def test_batched_equals_a_per_image_loop():
    generator = torch.Generator().manual_seed(0)
    curves = torch.rand(7, 10, generator=generator, dtype=torch.float64)
    expected = torch.tensor([_reference_trapezoid(row.tolist(), list(PERTURBATION_FRACTIONS)) for row in curves],
                            dtype=torch.float64)
    torch.testing.assert_close(perturbation_auc(curves), expected, atol=ATOL, rtol=0)
    pixel_curves = torch.rand(5, 17, generator=generator, dtype=torch.float64)
    rise = torch.tensor([_reference_rise_auc(row.tolist()) for row in pixel_curves], dtype=torch.float64)
    torch.testing.assert_close(deletion_auc(pixel_curves), rise, atol=ATOL, rtol=0)
    torch.testing.assert_close(insertion_auc(pixel_curves), rise, atol=ATOL, rtol=0)
    maps = torch.randint(0, 4, (6, 9), generator=generator).double()  # many ties
    for order in ("positive", "negative"):
        expected_order = torch.tensor([_reference_order(row.tolist(), order) for row in maps])
        assert torch.equal(perturbation_order(maps, order=order), expected_order)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(2, 20), st.integers(0, 10_000))
def test_properties_of_the_areas(batch, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    curves = torch.rand(batch, steps, generator=generator, dtype=torch.float64)
    area = deletion_auc(curves)
    assert bool(((area >= 0) & (area <= 1 + ATOL)).all())  # probabilities on [0, 1]
    # monotone in the curve, and each row alone equals the batch's row
    assert bool((deletion_auc(curves + 0.5) >= area).all())
    for row in range(batch):
        torch.testing.assert_close(insertion_auc(curves[row]), area[row:row + 1], atol=ATOL, rtol=0)
    # keeps dtype and device
    assert insertion_auc(curves.float()).dtype == torch.float32


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 30), st.integers(0, 10_000))
def test_orders_are_permutations_and_reverse_each_other_without_ties(batch, patches, seed):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randperm(batch * patches, generator=generator).reshape(batch, patches).double()
    positive = perturbation_order(maps)
    negative = perturbation_order(maps, order="negative")
    assert torch.equal(positive.sort(dim=1).values, torch.arange(patches).expand(batch, -1))
    assert torch.equal(positive, negative.flip(1))
    counts = removed_counts(PERTURBATION_FRACTIONS, patches)
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] <= patches


@pytest.mark.parametrize(("call", "match"), [
    (lambda: perturbation_auc([1.0, 0.0]), "Expected `curves` to be a torch.Tensor, but got list"),
    (lambda: perturbation_auc(torch.ones(2, 9)), r"Expected `curves` to have S = 10 steps"),
    (lambda: deletion_auc(torch.ones(2, 1)), r"Expected `curves` to have shape \(B, S\) or \(S,\) with S >= 2"),
    (lambda: deletion_auc(torch.ones(2, 3, 4)), r"Expected `curves` to have shape \(B, S\)"),
    (lambda: deletion_auc(torch.ones(2, 3, dtype=torch.long)),
     "Expected `curves` to have a floating dtype, but got torch.int64"),
    (lambda: deletion_auc(torch.tensor([1.0, float("nan")])), "Expected `curves` to hold only finite values"),
    (lambda: insertion_auc(torch.ones(3), fractions=torch.tensor([0.0, 1.0])),
     r"Expected `fractions` to have shape \(S,\) = \(3,\), but got \(2,\)"),
    (lambda: insertion_auc(torch.ones(3), fractions=torch.tensor([0.0, 0.5, 0.5])),
     "Expected `fractions` to be finite and strictly increasing"),
    (lambda: perturbation_order(torch.ones(3)), r"Expected `maps` to have shape \(B, P\)"),
    (lambda: perturbation_order(torch.tensor([[0.0, float("inf")]])), "Expected `maps` to hold only finite values"),
    (lambda: perturbation_order(torch.ones(1, 3), order="up"), "Expected `order` to be one of 'positive', 'negative'"),
    (lambda: removed_counts([0.5, 1.5], 4), r"Expected `fractions` to lie in \[0, 1\]"),
    (lambda: removed_counts([0.5], 0), "Expected `patches` to be"),
])
def test_errors_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
