"""Tests of `attnlens.methods.layer_distances` against a plain loop in float64."""

from __future__ import annotations

import math

import pytest
import torch

from attnlens.methods.layer_distances import LayerDistances, layer_distances
from attnlens.methods.selective_rollout import selective_rollout
from tests.conftest import padded_attention, random_attention


def _reference(attn: torch.Tensor, length: int) -> tuple[list[float], list[float]]:
    """One example `(L, H, n, n)` alone: head mean, + I, rows normalised, then ‖Â_l − Â_{l−1}‖_F by loops."""
    layers = attn.shape[0]
    augmented = []
    for layer in range(layers):
        fused = attn[layer, :, :length, :length].mean(dim=0) + torch.eye(length, dtype=attn.dtype)
        augmented.append(fused / fused.sum(dim=-1, keepdim=True))
    absolute = []
    for layer in range(1, layers):
        total = 0.0
        for i in range(length):
            for j in range(length):
                total += float(augmented[layer][i, j] - augmented[layer - 1][i, j]) ** 2
        absolute.append(math.sqrt(total))
    return absolute, [a / math.sqrt(length) for a in absolute]


def test_layer_distances_match_the_loop_and_ignore_padding():
    generator = torch.Generator().manual_seed(42)
    lengths = [6, 3, 5]
    attn, mask = padded_attention(random_attention(generator, 3, 4, 2, 6, 6), lengths, generator)
    result = layer_distances(attn, mask=mask)
    assert isinstance(result, LayerDistances)
    assert result.frobenius.shape == result.per_token.shape == (3, 3)
    assert result.frobenius.dtype == torch.float64
    for b, length in enumerate(lengths):
        absolute, per_token = _reference(attn[b], length)
        torch.testing.assert_close(result.frobenius[b], torch.tensor(absolute, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(result.per_token[b], torch.tensor(per_token, dtype=torch.float64), atol=1e-12,
                                   rtol=0)
        alone = layer_distances(attn[b:b + 1, :, :, :length, :length])
        torch.testing.assert_close(alone.frobenius[0], result.frobenius[b], atol=1e-12, rtol=0)


def test_the_first_distance_decides_selective_rollout():
    generator = torch.Generator().manual_seed(1)
    attn = random_attention(generator, 2, 3, 2, 5, 5)
    distances = layer_distances(attn).frobenius
    for b in range(2):
        below = float(distances[b, 0]) * 0.999
        above = float(distances[b, 0]) * 1.001
        assert bool(selective_rollout(attn[b:b + 1], threshold=below).used[0, 1])
        assert not bool(selective_rollout(attn[b:b + 1], threshold=above).used[0, 1])


def test_identity_attention_has_zero_distances_and_keeps_dtype():
    attn = torch.eye(4, dtype=torch.float32).repeat(2, 3, 2, 1, 1)
    result = layer_distances(attn)
    assert result.frobenius.dtype == torch.float32
    assert torch.equal(result.frobenius, torch.zeros(2, 2))


def test_layer_distances_reject_bad_input():
    with pytest.raises(ValueError, match=r"Expected `head_fusion` to be one of"):
        layer_distances(torch.eye(3).repeat(1, 2, 1, 1), head_fusion="median")
    with pytest.raises(ValueError, match=r"Expected `mask`"):
        layer_distances(torch.eye(3).repeat(1, 2, 1, 1), mask=torch.ones(1, 4, dtype=torch.bool))
