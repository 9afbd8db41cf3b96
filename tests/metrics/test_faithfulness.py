"""Pure faithfulness metrics: hand-computed cases, per-example loop references, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from attnlens.metrics import (
    aopc_comprehensiveness,
    aopc_sufficiency,
    kendall_tau,
    leave_one_out,
    position_map,
    randomization_similarity,
    sanity_passes,
    top_k_counts,
    top_k_mask,
)

ATOL = 1e-12


def _reference_top_k(scores: list[float], candidates: list[bool], k: int) -> list[bool]:
    """Plain loop: the k best candidates, the earlier first on ties."""
    order = sorted((i for i, c in enumerate(candidates) if c), key=lambda i: (-scores[i], i))
    chosen = set(order[:k])
    return [i in chosen for i in range(len(scores))]


def _reference_aopc(probability: float, perturbed: list[float]) -> float:
    total = 0.0
    for value in perturbed:
        total += probability - value
    return total / len(perturbed)


def test_hand_computed_aopc():
    p = torch.tensor([0.9, 0.6], dtype=torch.float64)
    removed = torch.tensor([[0.5, 0.1, 0.3], [0.6, 0.6, 0.0]], dtype=torch.float64)
    # (0.4 + 0.8 + 0.6) / 3 = 0.6; (0 + 0 + 0.6) / 3 = 0.2
    torch.testing.assert_close(aopc_comprehensiveness(p, removed), torch.tensor([0.6, 0.2], dtype=torch.float64))
    torch.testing.assert_close(aopc_sufficiency(p, removed), torch.tensor([0.6, 0.2], dtype=torch.float64))


def test_hand_computed_counts_and_mask():
    candidates = torch.tensor([[False, True, True, True, True, False]])
    counts = top_k_counts(candidates, fractions=(0.01, 0.5, 1.0))
    assert counts.tolist() == [[1, 2, 4]]
    scores = torch.tensor([[9.0, 0.1, 0.7, 0.7, 0.2, 5.0]])
    chosen = top_k_mask(scores, candidates, counts)
    assert chosen[0, 0].tolist() == [False, False, True, False, False, False]  # tie 0.7: the earlier token
    assert chosen[0, 1].tolist() == [False, False, True, True, False, False]
    assert chosen[0, 2].tolist() == [False, True, True, True, True, False]  # specials (0, 5) never chosen


def test_hand_computed_kendall_and_loo():
    # pairs of (1, 2, 3) vs (10, 30, 20): concordant (0,1), (0,2); discordant (1,2) → (2 − 1) / 3
    tau = kendall_tau(torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64),
                      torch.tensor([[10.0, 30.0, 20.0]], dtype=torch.float64))
    assert tau.item() == pytest.approx(1 / 3, abs=ATOL)
    loo = leave_one_out(torch.tensor([0.8]), torch.tensor([[0.3, 0.9]]))
    torch.testing.assert_close(loo, torch.tensor([[0.5, -0.1]]))


def test_position_map_and_sanity_flag():
    assert position_map(torch.tensor([[True, True, True, True]])).tolist() == [[1.0, 0.75, 0.5, 0.25]]
    constant = torch.ones(3, 5, dtype=torch.float64)
    assert torch.isnan(randomization_similarity(constant, constant)).all()
    assert not sanity_passes(float("nan")) and not sanity_passes(0.95) and sanity_passes(0.2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(2, 9), st.integers(0, 10_000))
def test_kendall_equals_scipy_per_example(batch, n, seed):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 4, (batch, n), generator=generator).double()  # ties on purpose
    b = torch.randn(batch, n, generator=generator, dtype=torch.float64)
    lengths = torch.randint(2, n + 1, (batch,), generator=generator)
    mask = torch.arange(n)[None] < lengths[:, None]
    ours = kendall_tau(a, b, mask=mask)
    for row in range(batch):
        valid = mask[row]
        expected = stats.kendalltau(a[row, valid].numpy(), b[row, valid].numpy()).statistic
        if np.isnan(expected):
            assert torch.isnan(ours[row])
        else:
            assert ours[row].item() == pytest.approx(expected, abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(0, 10_000))
def test_top_k_mask_equals_loop_and_aopc_equals_loop(batch, n, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 5, (batch, n), generator=generator).double()
    candidates = torch.rand(batch, n, generator=generator) < 0.7
    candidates[:, 0] = True
    counts = top_k_counts(candidates)
    chosen = top_k_mask(scores, candidates, counts)
    for row in range(batch):
        for k_index in range(counts.shape[1]):
            k = int(counts[row, k_index])
            assert chosen[row, k_index].tolist() == _reference_top_k(scores[row].tolist(), candidates[row].tolist(), k)
            m = int(candidates[row].sum())
            assert 1 <= k <= m and k == min(m, max(1, math.ceil(round((0.01, 0.05, 0.1, 0.2, 0.5)[k_index] * m, 9))))
    p = torch.rand(batch, generator=generator, dtype=torch.float64)
    perturbed = torch.rand(batch, 5, generator=generator, dtype=torch.float64)
    comp = aopc_comprehensiveness(p, perturbed)
    for row in range(batch):
        assert comp[row].item() == pytest.approx(_reference_aopc(p[row].item(), perturbed[row].tolist()), abs=ATOL)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(3, 10), st.integers(0, 10_000))
def test_randomization_similarity_properties(batch, n, seed):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.rand(batch, n, generator=generator, dtype=torch.float64) + 0.01
    torch.testing.assert_close(randomization_similarity(maps, maps), torch.ones(batch, dtype=torch.float64))
    torch.testing.assert_close(randomization_similarity(maps, 3 * maps + 1), torch.ones(batch, dtype=torch.float64))
    loop = [stats.spearmanr(maps[r].numpy(), maps.flip(-1)[r].numpy()).statistic for r in range(batch)]
    np.testing.assert_allclose(randomization_similarity(maps, maps.flip(-1)).numpy(), loop, atol=1e-10)


def test_errors():
    with pytest.raises(ValueError, match=r"Expected `fractions` to be a non-empty list of numbers in \(0, 1\]"):
        top_k_counts(torch.ones(1, 3, dtype=torch.bool), fractions=(0.0,))
    with pytest.raises(ValueError, match=r"Expected `removed` to have shape \(B, K\) with B = 2"):
        aopc_comprehensiveness(torch.ones(2), torch.ones(3, 1))
    with pytest.raises(TypeError, match="Expected `kept` to have a floating dtype"):
        aopc_sufficiency(torch.ones(2), torch.ones(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="Expected `a` and `b` to have the same shape"):
        kendall_tau(torch.ones(1, 3), torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"Expected `counts` to have shape \(B, K\) with B = 1"):
        top_k_mask(torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool), torch.ones(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Expected `without` to have shape \(B, n\) with B = 1"):
        leave_one_out(torch.ones(1), torch.ones(2, 3))
