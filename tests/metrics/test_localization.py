"""Pointing game and segmentation scores: hand-computed cases, per-image loop references, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from attnlens.metrics import pointing_game, segmentation_scores

ATOL = 1e-12


def _reference_pointing(map_: np.ndarray, mask: np.ndarray, tolerance: float) -> float:
    """Per image: first maximum in row-major order, hit if some mask pixel is within `tolerance` (Euclidean)."""
    height, width = map_.shape
    best, peak = -math.inf, (0, 0)
    for row in range(height):
        for column in range(width):
            if map_[row, column] > best:
                best, peak = map_[row, column], (row, column)
    for row in range(height):
        for column in range(width):
            if mask[row, column] and math.hypot(row - peak[0], column - peak[1]) <= tolerance + 1e-9:
                return 1.0
    return 0.0


def _reference_segmentation(map_: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Per image, after Chefer et al.'s imagenet_seg_eval.py: min-max scale, threshold at the mean, IoU per
    class by counting, AP of the two-channel (background 1 - map, object map) scores with scikit-learn."""
    low, high = map_.min(), map_.max()
    scaled = (map_ - low) / (high - low) if high > low else np.zeros_like(map_)
    predicted = scaled > scaled.mean()
    truth = mask.astype(bool)
    result = {"pixel_accuracy": float((predicted == truth).mean())}
    ious = []
    for name, p, t in (("iou_background", ~predicted, ~truth), ("iou_object", predicted, truth)):
        union = int((p | t).sum())
        ious.append(int((p & t).sum()) / union if union else 0.0)
        result[name] = ious[-1]
    result["miou"] = sum(ious) / 2
    scores = np.concatenate([(1 - scaled).ravel(), scaled.ravel()])
    labels = np.concatenate([(~truth).ravel(), truth.ravel()]).astype(int)
    result["average_precision"] = float(average_precision_score(labels, scores))
    return result


def _random_case(generator: torch.Generator, batch: int = 6, height: int = 9, width: int = 11, levels: int | None = None):
    if levels is None:
        maps = torch.rand(batch, height, width, generator=generator, dtype=torch.float64)
    else:  # many ties
        maps = torch.randint(0, levels, (batch, height, width), generator=generator).double()
    masks = torch.rand(batch, height, width, generator=generator) < 0.3
    masks[:, 0, 0] |= ~masks.flatten(1).any(dim=1)
    return maps, masks


# ---------------------------------------------------------------------------------------------- hand-computed


def test_map_equal_to_mask_is_perfect():
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4:, :] = True
    scores = segmentation_scores(masks.double(), masks)
    for key in ("pixel_accuracy", "iou_background", "iou_object", "miou", "average_precision"):
        torch.testing.assert_close(scores[key], torch.ones(2, dtype=torch.float64), atol=ATOL, rtol=0)
    torch.testing.assert_close(pointing_game(masks.double(), masks, tolerance=0), torch.ones(2, dtype=torch.float64))


def test_inverted_map_segments_nothing():
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    scores = segmentation_scores((~masks).double(), masks)
    assert float(scores["pixel_accuracy"][0]) == 0.0 and float(scores["miou"][0]) == 0.0
    # Two tied groups: the 16 negatives at score 1 (precision 0), then all 32 pixels (16 positives, precision 1/2).
    assert float(scores["average_precision"][0]) == pytest.approx(0.5, abs=ATOL)


def test_hand_computed_segmentation_counts():
    # 1 x 4 image: map [4, 3, 1, 0] -> scaled [1, .75, .25, 0], mean .5 -> predicted [1, 1, 0, 0]; truth [1, 0, 0, 0].
    maps = torch.tensor([[[4.0, 3.0, 1.0, 0.0]]], dtype=torch.float64)
    masks = torch.tensor([[[True, False, False, False]]])
    scores = segmentation_scores(maps, masks)
    assert float(scores["pixel_accuracy"][0]) == 0.75
    assert float(scores["iou_object"][0]) == 0.5 and float(scores["iou_background"][0]) == pytest.approx(2 / 3)
    assert scores["intersection"].tolist() == [[2.0, 1.0]] and scores["union"].tolist() == [[3.0, 2.0]]


def test_constant_map_predicts_background():
    masks = torch.zeros(1, 3, 3, dtype=torch.bool)
    masks[0, 1, 1] = True
    scores = segmentation_scores(torch.full((1, 3, 3), 7.0), masks)
    assert float(scores["pixel_accuracy"][0]) == pytest.approx(8 / 9)
    assert float(scores["iou_object"][0]) == 0.0 and float(scores["iou_background"][0]) == pytest.approx(8 / 9)


def test_peak_outside_the_mask_beyond_tolerance_misses():
    maps = torch.zeros(1, 40, 40)
    maps[0, 39, 39] = 1.0
    masks = torch.zeros(1, 40, 40, dtype=torch.bool)
    masks[0, :5, :5] = True  # nearest object pixel (4, 4): distance 35 * sqrt(2) ≈ 49.5
    assert float(pointing_game(maps, masks)[0]) == 0.0
    assert float(pointing_game(maps, masks, tolerance=49.4)[0]) == 0.0
    assert float(pointing_game(maps, masks, tolerance=49.6)[0]) == 1.0


@pytest.mark.parametrize(("tolerance", "hit"), [(0, 0.0), (2.9, 0.0), (3, 1.0), (4.9, 1.0), (5, 1.0)])
def test_tolerance_distances(tolerance, hit):
    maps = torch.zeros(1, 10, 10)
    maps[0, 5, 7] = 2.0
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, 5, 4] = True  # 3 pixels left of the peak
    masks[0, 1, 4] = True  # 5 pixels away diagonally (3-4-5)
    assert float(pointing_game(maps, masks, tolerance=tolerance)[0]) == hit


def test_ties_take_the_first_maximum():
    maps = torch.zeros(1, 3, 3)
    maps[0, 0, 2] = maps[0, 2, 0] = 1.0  # row-major: (0, 2) comes first
    first, second = torch.zeros(1, 3, 3, dtype=torch.bool), torch.zeros(1, 3, 3, dtype=torch.bool)
    first[0, 0, 2] = True
    second[0, 2, 0] = True
    assert float(pointing_game(maps, first, tolerance=0)[0]) == 1.0
    assert float(pointing_game(maps, second, tolerance=0)[0]) == 0.0


# ---------------------------------------------------------------------------------------------- loop references


@pytest.mark.parametrize("levels", [None, 3])
@pytest.mark.parametrize("tolerance", [0, 1, 2.5, 15])
def test_pointing_matches_loop(generator, levels, tolerance):
    maps, masks = _random_case(generator, levels=levels)
    got = pointing_game(maps, masks, tolerance=tolerance)
    expected = [_reference_pointing(m.numpy(), k.numpy(), tolerance) for m, k in zip(maps, masks)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), atol=0, rtol=0)


@pytest.mark.parametrize("levels", [None, 2, 4])
def test_segmentation_matches_loop(generator, levels):
    maps, masks = _random_case(generator, levels=levels)
    got = segmentation_scores(maps, masks)
    for index in range(maps.shape[0]):
        expected = _reference_segmentation(maps[index].numpy(), masks[index].numpy())
        for key, value in expected.items():
            assert float(got[key][index]) == pytest.approx(value, abs=ATOL), key


def test_keeps_dtype_and_batches_equal_loop(generator):
    maps, masks = _random_case(generator)
    single = torch.cat([pointing_game(maps[i:i + 1].float(), masks[i:i + 1]) for i in range(maps.shape[0])])
    batched = pointing_game(maps.float(), masks)
    assert batched.dtype == torch.float32 and torch.equal(single, batched)
    scores = segmentation_scores(maps.float(), masks.to(torch.uint8))
    assert all(value.dtype == torch.float32 for value in scores.values())
    looped = [segmentation_scores(maps[i:i + 1], masks[i:i + 1])["miou"] for i in range(maps.shape[0])]
    torch.testing.assert_close(segmentation_scores(maps, masks)["miou"], torch.cat(looped), atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------- properties


_maps_and_masks = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))


def _case_from(params):
    batch, height, width, seed = params
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randint(-3, 4, (batch, height, width), generator=generator).double() * 0.5
    masks = torch.rand(batch, height, width, generator=generator) < 0.5
    masks[:, 0, 0] |= ~masks.flatten(1).any(dim=1)
    return maps, masks


@settings(max_examples=60, deadline=None)
@given(_maps_and_masks, st.integers(-6, 6), st.floats(0, 6))
def test_invariant_to_positive_scaling(params, exponent, tolerance):
    maps, masks = _case_from(params)
    scale = 2.0 ** exponent  # exact in floating point
    assert torch.equal(pointing_game(maps, masks, tolerance=tolerance),
                       pointing_game(maps * scale, masks, tolerance=tolerance))
    before, after = segmentation_scores(maps, masks), segmentation_scores(maps * scale, masks)
    for key in before:
        torch.testing.assert_close(before[key], after[key], atol=ATOL, rtol=0)


@settings(max_examples=60, deadline=None)
@given(_maps_and_masks, st.floats(-4, 4).map(lambda v: round(v * 4) / 4))
def test_segmentation_invariant_to_shifts(params, shift):
    maps, masks = _case_from(params)  # multiples of 0.5, shifts of 0.25: exact
    before, after = segmentation_scores(maps, masks), segmentation_scores(maps + shift, masks)
    for key in before:
        torch.testing.assert_close(before[key], after[key], atol=ATOL, rtol=0)


@settings(max_examples=60, deadline=None)
@given(_maps_and_masks, st.floats(0, 5), st.floats(0, 5))
def test_pointing_monotone_in_tolerance_and_mask(params, first, second):
    maps, masks = _case_from(params)
    low, high = min(first, second), max(first, second)
    assert bool((pointing_game(maps, masks, tolerance=low) <= pointing_game(maps, masks, tolerance=high)).all())
    bigger = masks.clone()
    bigger[:, -1, -1] = True
    assert bool((pointing_game(maps, masks, tolerance=low) <= pointing_game(maps, bigger, tolerance=low)).all())


@settings(max_examples=40, deadline=None)
@given(_maps_and_masks)
def test_scores_lie_in_unit_interval(params):
    maps, masks = _case_from(params)
    for key, value in segmentation_scores(maps, masks).items():
        if key not in ("intersection", "union"):
            assert bool(((value >= 0) & (value <= 1 + ATOL)).all()), key
    scores = segmentation_scores(maps, masks)
    torch.testing.assert_close(scores["miou"], (scores["iou_object"] + scores["iou_background"]) / 2)


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("function", [pointing_game, segmentation_scores])
def test_bad_input(function):
    maps, masks = torch.rand(2, 4, 4), torch.ones(2, 4, 4, dtype=torch.bool)
    with pytest.raises(TypeError, match="Expected `maps` to have a floating dtype, but got torch.int64."):
        function(maps.long(), masks)
    with pytest.raises(ValueError, match=r"Expected `maps` to have shape \(B, H, W\), but got \(4, 4\)."):
        function(maps[0], masks[0])
    with pytest.raises(ValueError, match=r"Expected `masks` to have the shape of `maps` \(B, H, W\) = \(2, 4, 4\), "
                                         r"but got \(2, 4, 3\)."):
        function(maps, masks[..., :3])
    with pytest.raises(TypeError, match="Expected `masks` to be a bool or integer tensor, but got torch.float32."):
        function(maps, masks.float())
    with pytest.raises(TypeError, match="Expected `masks` to be a torch.Tensor, but got ndarray."):
        function(maps, masks.numpy())
    empty = masks.clone()
    empty[1] = False
    with pytest.raises(ValueError, match="Expected `masks` to mark at least one pixel of every example, but example 1 "
                                         "is empty."):
        function(maps, empty)
    with pytest.raises(ValueError, match="Expected `maps` to hold only finite values"):
        function(maps.masked_fill(masks, math.nan), masks)


def test_bad_tolerance():
    maps, masks = torch.rand(1, 3, 3), torch.ones(1, 3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"Expected `tolerance` to lie in \[0, inf\], but got -1."):
        pointing_game(maps, masks, tolerance=-1)
    with pytest.raises(TypeError, match="Expected `tolerance` to be a number, but got str."):
        pointing_game(maps, masks, tolerance="15")
