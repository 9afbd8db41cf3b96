"""Gradient-weighted rollout (GAE) against a per-example loop written from Chefer et al.'s rule."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods import gradient_rollout
from tests.conftest import padded_attention, random_attention


def _reference(attn, grads, mask, start_layer=0):
    """R = I; for each layer from `start_layer`: Ā = mean_h max(0, ∇A·A) on valid tokens, R = R + Ā R."""
    batch, layers, heads, n, _ = attn.shape
    out = torch.zeros(batch, layers, n, n, dtype=attn.dtype)
    for b in range(batch):
        idx = mask[b].nonzero().flatten()
        relevance = torch.eye(len(idx), dtype=attn.dtype)
        for layer in range(layers):
            if layer >= start_layer:
                weighted = torch.zeros(len(idx), len(idx), dtype=attn.dtype)
                for h in range(heads):
                    for i, r in enumerate(idx):
                        for j, c in enumerate(idx):
                            weighted[i, j] += max(0.0, float(grads[b, layer, h, r, c] * attn[b, layer, h, r, c]))
                relevance = relevance + (weighted / heads) @ relevance
            out[b, layer][idx[:, None], idx[None, :]] = relevance
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), start=st.integers(0, 2))
def test_matches_loop_reference_with_padding(seed, start):
    generator = torch.Generator().manual_seed(seed)
    attn, mask = padded_attention(random_attention(generator, 3, 3, 2, 5, 5), [5, 3, 1], generator)
    grads = torch.randn(attn.shape, generator=generator, dtype=torch.float64)
    got = gradient_rollout(attn, grads, mask=mask, start_layer=start)
    torch.testing.assert_close(got, _reference(attn, grads, mask, start), atol=1e-12, rtol=0)


def test_negative_gradients_give_the_identity_and_scale_is_linear_per_step():
    generator = torch.Generator().manual_seed(0)
    attn = random_attention(generator, 2, 3, 2, 4, 4)
    grads = torch.randn(attn.shape, generator=generator, dtype=torch.float64)
    eye = torch.eye(4, dtype=torch.float64).expand(2, 3, 4, 4)
    torch.testing.assert_close(gradient_rollout(attn, -grads.abs()), eye)
    one_layer = gradient_rollout(attn[:, :1], grads[:, :1])[:, 0]
    doubled = gradient_rollout(attn[:, :1], 2 * grads[:, :1])[:, 0]
    torch.testing.assert_close(doubled - torch.eye(4, dtype=torch.float64), 2 * (one_layer - torch.eye(4,
                                                                                  dtype=torch.float64)))


def test_rejects_bad_inputs():
    attn = torch.softmax(torch.randn(1, 2, 2, 3, 3), dim=-1)
    with pytest.raises(ValueError, match="Expected `attn` and `gradients` to have the same shape"):
        gradient_rollout(attn, attn[:, :1])
    with pytest.raises(ValueError, match=r"Expected `attn` to have shape \(B, L, H, n, n\)"):
        gradient_rollout(attn[:, :, 0], attn[:, :, 0])
    with pytest.raises(ValueError, match="Expected `start_layer` to be an integer"):
        gradient_rollout(attn, attn, start_layer=2)
    with pytest.raises(TypeError, match="Expected `gradients` to have a floating dtype"):
        gradient_rollout(attn, attn.long())
