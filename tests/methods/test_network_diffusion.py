"""Tests of attnlens.methods.network_diffusion against slow references written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods.network_diffusion import (
    _ALGORITHMS,
    _DIFFUSERS,
    _gram_top_eigenvalue_squaring,
    _network_diffusion_compute,
    network_diffusion,
)

torch.set_num_threads(1)
ATOL = 1e-10


def _random_attention(*shape: int, seed: int = 0, temperature: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=generator, dtype=torch.float64) * temperature
    return torch.softmax(logits, dim=-1)


def _reference_iteration(a: np.ndarray, alpha: float) -> np.ndarray:
    """Step 3 as the limit of ``X ← α Ā Xᵀ Ā + (1−α) Ā``, iterated until it stops changing."""
    a_bar = a / np.linalg.norm(a, ord=2)
    x = a_bar.copy()
    for _ in range(100_000):
        new = alpha * a_bar @ x.T @ a_bar + (1 - alpha) * a_bar
        if np.abs(new - x).max() < 1e-15:
            return new
        x = new
    raise AssertionError("the reference iteration did not converge")


def _reference_diffusion(a: np.ndarray, alpha: float, top_k: int | None = None) -> np.ndarray:
    """All four steps on one valid block, by the definition: SVD and the spectral map."""
    a = a.copy()
    if top_k is not None and top_k < a.shape[0]:
        for row in a:
            kth = np.sort(row)[::-1][top_k - 1]
            row[row < kth] = 0.0
    u, s, vh = np.linalg.svd(a)
    s = s / s[0]
    x = (u * ((1 - alpha) * s / (1 - alpha * s * s))) @ vh
    x = np.clip(x, 0, None)
    return x / x.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("algorithm", _ALGORITHMS)
@pytest.mark.parametrize("alpha", [0.3, 0.9, 0.97])
def test_closed_form_equals_iteration_limit(algorithm: str, alpha: float) -> None:
    attn = _random_attention(3, 7, 7, seed=1)
    diffused = _DIFFUSERS[algorithm](attn, alpha)
    for index in range(attn.shape[0]):
        expected = _reference_iteration(attn[index].numpy(), alpha)
        np.testing.assert_allclose(diffused[index].numpy(), expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("algorithm", _ALGORITHMS)
@pytest.mark.parametrize("top_k", [None, 1, 3])
def test_matches_reference_definition(algorithm: str, top_k: int | None) -> None:
    attn = _random_attention(2, 3, 6, 6, seed=2)
    mask = torch.ones(2, 6, dtype=torch.bool)
    result = _network_diffusion_compute(attn, mask, 0.8, top_k, algorithm)
    for b in range(2):
        for layer in range(3):
            expected = _reference_diffusion(attn[b, layer].numpy(), 0.8, top_k)
            np.testing.assert_allclose(result[b, layer].numpy(), expected, atol=ATOL, rtol=0)


def test_algorithms_agree_in_float32() -> None:
    attn = _random_attention(4, 2, 20, 20, seed=3).float()
    mask = torch.ones(4, 20, dtype=torch.bool)
    results = [_network_diffusion_compute(attn, mask, 0.9, None, name) for name in _ALGORITHMS]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], atol=2e-5, rtol=0)


def test_alpha_zero_gives_attention_back() -> None:
    attn = _random_attention(2, 3, 5, 5, seed=4)
    torch.testing.assert_close(network_diffusion(attn, alpha=0.0), attn, atol=1e-15, rtol=0)
    exact = torch.tensor([[[[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.125, 0.375, 0.5]]]])
    assert torch.equal(network_diffusion(exact, alpha=0.0), exact)


@pytest.mark.parametrize("algorithm", _ALGORITHMS)
def test_alpha_near_one_is_rank_one_before_clamping(algorithm: str) -> None:
    attn = _random_attention(3, 6, 6, seed=5)
    diffused = _DIFFUSERS[algorithm](attn, 1 - 1e-9)
    singular = torch.linalg.svdvals(diffused)
    assert bool((singular[:, 1] / singular[:, 0] < 1e-6).all())
    torch.testing.assert_close(singular[:, 0], torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)


def test_top_k_equal_to_n_is_no_sparsification() -> None:
    attn = _random_attention(2, 2, 3, 6, 6, seed=6)
    assert torch.equal(network_diffusion(attn, top_k=6), network_diffusion(attn))
    assert torch.equal(network_diffusion(attn, top_k=60), network_diffusion(attn))


def test_identity_and_permutation_attention_are_fixed() -> None:
    eye = torch.eye(5, dtype=torch.float64).expand(1, 2, 5, 5)
    torch.testing.assert_close(network_diffusion(eye), eye, atol=ATOL, rtol=0)
    perm = torch.eye(5, dtype=torch.float64)[[2, 0, 4, 1, 3]].expand(1, 1, 5, 5)
    torch.testing.assert_close(network_diffusion(perm, alpha=0.95), perm, atol=ATOL, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 8),
    alpha=st.floats(0.0, 0.99),
    temperature=st.floats(0.1, 8.0),
    seed=st.integers(0, 2**16),
)
def test_rows_stay_stochastic(n: int, alpha: float, temperature: float, seed: int) -> None:
    attn = _random_attention(2, 2, n, n, seed=seed, temperature=temperature)
    result = network_diffusion(attn, alpha=alpha)
    assert bool((result >= 0).all())
    torch.testing.assert_close(result.sum(dim=-1), torch.ones(2, 2, n, dtype=torch.float64), atol=1e-12, rtol=0)


def _pad(attn: torch.Tensor, n: int, positions: list[int], seed: int) -> torch.Tensor:
    """Place `attn` (..., m, m) at `positions` of an (..., n, n) tensor with non-negative garbage elsewhere."""
    generator = torch.Generator().manual_seed(seed)
    padded = torch.rand(*attn.shape[:-2], n, n, generator=generator, dtype=attn.dtype)
    index = torch.tensor(positions)
    padded[..., index[:, None], index[None, :]] = attn
    return padded


@pytest.mark.parametrize("algorithm", _ALGORITHMS)
@pytest.mark.parametrize("per_head", [False, True])
def test_padding_invariance(algorithm: str, per_head: bool) -> None:
    heads = (2,) if per_head else ()
    short = _random_attention(1, 3, *heads, 4, 4, seed=7)
    long = _random_attention(1, 3, *heads, 7, 7, seed=8)
    positions = [0, 1, 2, 3]  # trailing padding
    shuffled = [0, 2, 5, 6]  # padding between valid tokens
    batch = torch.cat([_pad(short, 7, positions, 9), long, _pad(short, 7, shuffled, 10)])
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, positions] = True
    mask[1] = True
    mask[2, shuffled] = True
    result = _network_diffusion_compute(batch, mask, 0.9, 2, algorithm)
    alone = _network_diffusion_compute(short, torch.ones(1, 4, dtype=torch.bool), 0.9, 2, algorithm)
    for row, kept in ((0, positions), (2, shuffled)):
        index = torch.tensor(kept)
        torch.testing.assert_close(result[row : row + 1][..., index[:, None], index[None, :]], alone, atol=ATOL, rtol=0)
        pad = ~mask[row]
        assert bool((result[row][..., pad, :] == 0).all()) and bool((result[row][..., :, pad] == 0).all())
    long_alone = _network_diffusion_compute(long, torch.ones(1, 7, dtype=torch.bool), 0.9, 2, algorithm)
    torch.testing.assert_close(result[1:2], long_alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("per_head", [False, True])
def test_batched_equals_per_matrix_loop(per_head: bool) -> None:
    shape = (3, 2, 2, 5, 5) if per_head else (3, 2, 5, 5)
    attn = _random_attention(*shape, seed=11)
    result = network_diffusion(attn, alpha=0.7, top_k=3)
    for index in np.ndindex(*shape[:-2]):
        alone = network_diffusion(attn[index].reshape(1, 1, 5, 5), alpha=0.7, top_k=3)
        torch.testing.assert_close(result[index], alone[0, 0], atol=ATOL, rtol=0)
        expected = _reference_diffusion(attn[index].numpy(), 0.7, 3)
        np.testing.assert_allclose(result[index].numpy(), expected, atol=ATOL, rtol=0)


def test_keeps_dtype_and_shape() -> None:
    attn = _random_attention(2, 2, 3, 5, 5, seed=12)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        result = network_diffusion(attn.to(dtype))
        assert result.dtype == dtype and result.shape == attn.shape
        torch.testing.assert_close(result.double(), network_diffusion(attn), atol=1e-2, rtol=0)


def test_squaring_bound_is_tight_upper_bound() -> None:
    attn = _random_attention(4, 9, 9, seed=13)
    clustered = torch.eye(9, dtype=torch.float64).expand(1, 9, 9) * 0.999 + 0.001 / 9
    matrices = torch.cat([attn, clustered])
    gram = matrices @ matrices.mT
    exact = torch.linalg.eigvalsh(gram)[..., -1]
    bound = _gram_top_eigenvalue_squaring(gram)
    assert bool((bound >= exact * (1 - 1e-15)).all())
    torch.testing.assert_close(bound, exact, atol=0, rtol=1e-14)
    bound32 = _gram_top_eigenvalue_squaring(gram.float())
    torch.testing.assert_close(bound32.double(), exact, atol=0, rtol=1e-6)


def test_composes_with_rollout() -> None:
    rollout_module = pytest.importorskip("attnlens.methods.rollout", reason="attnlens.methods.rollout not there yet")
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    attn = _random_attention(2, 3, 2, 6, 6, seed=14) * mask[:, None, None, None, :]
    attn = attn / attn.sum(dim=-1, keepdim=True)
    joint = rollout_module.rollout(network_diffusion(attn, mask=mask), mask=mask)
    assert joint.shape == (2, 3, 6, 6)
    torch.testing.assert_close(joint[0].sum(dim=-1), torch.ones(3, 6, dtype=torch.float64), atol=1e-12, rtol=0)
    assert bool((joint[1, :, 4:] == 0).all()) and bool((joint[1, :, :, 4:] == 0).all())
    from attnlens.methods.selective_rollout import selective_rollout

    selective = selective_rollout(network_diffusion(attn, mask=mask), mask=mask, threshold=0.0)
    assert selective.joint.shape == (2, 3, 6, 6)


def test_errors() -> None:
    attn = _random_attention(1, 1, 3, 3, seed=15)
    with pytest.raises(ValueError, match="Expected `alpha` to lie in \\[0, 1\\), but got 1"):
        network_diffusion(attn, alpha=1.0)
    with pytest.raises(ValueError, match="Expected `alpha` to lie in \\[0, 1\\), but got -0.1"):
        network_diffusion(attn, alpha=-0.1)
    with pytest.raises(ValueError, match="Expected `alpha` to be at most 0.9999924 for torch.float32 arithmetic"):
        network_diffusion(attn.float(), alpha=0.999999)
    network_diffusion(attn, alpha=0.999999)  # float64 is fine
    with pytest.raises(TypeError, match="Expected `alpha` to be a number, but got str"):
        network_diffusion(attn, alpha="0.9")
    with pytest.raises(ValueError, match="Expected `top_k` to be a positive integer or None, but got 0"):
        network_diffusion(attn, top_k=0)
    with pytest.raises(TypeError, match="Expected `top_k` to be a positive integer or None, but got float"):
        network_diffusion(attn, top_k=2.0)
    with pytest.raises(ValueError, match="Expected `attn` to have shape \\(B, L, n, n\\) or \\(B, L, H, n, n\\)"):
        network_diffusion(attn[0])
    with pytest.raises(TypeError, match="Expected `attn` to have a floating dtype, but got torch.int64"):
        network_diffusion(torch.ones(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="Expected `mask` to have shape \\(B, n\\) = \\(1, 3\\), but got \\(1, 4\\)"):
        network_diffusion(attn, mask=torch.ones(1, 4, dtype=torch.bool))
    nan = attn.clone()
    nan[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="Expected `attn` to hold only finite values"):
        network_diffusion(nan)
    negative = attn.clone()
    negative[0, 0, 0, 0] = -0.5
    with pytest.raises(ValueError, match="Expected `attn` to be non-negative, but got a minimum of -0.5"):
        network_diffusion(negative)
    with pytest.raises(ValueError, match="Expected the rows of `attn` to sum to 1 over valid keys, but a row is off"):
        network_diffusion(attn * 2)
