"""The Vim authors' released conventions, against references written from their formulas: class
rows with the class entry 0, min-max over a layer's whole (channels, tokens) tensor, and the
"rollout" of I + 1·vᵀ matrices from start_layer on."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods import released_mamba_attr, released_raw_attention, released_rollout
from attnlens.methods.released_vim import released_start_layer


def _minmax(x):
    return (x - x.min()) / (x.max() - x.min())


def _class_row(rows, cls):
    rows = rows.clone()
    rows[:, cls] = 0
    return rows


def _rollout_vectors(vectors, start):
    n = vectors[0].shape[0]
    joint = torch.eye(n, dtype=vectors[0].dtype)
    for v in vectors[start:]:
        matrix = torch.eye(n, dtype=v.dtype) + v[None, :].expand(n, n)
        joint = (matrix / matrix.sum(-1, keepdim=True)) @ joint
    return joint


def _finish(p, cls):
    p = p.clone()
    p[cls] = 0
    return p.clamp(min=0)


def _inputs(seed, batch=2, layers=5, channels=3, n=7):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(batch, layers, channels, n, generator=g, dtype=torch.float64) * 0.2
    grads = torch.rand(batch, layers, n, generator=g, dtype=torch.float64)
    readout = torch.randint(0, n, (batch,), generator=g)
    return rows, grads, readout


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), start=st.integers(0, 4))
def test_released_maps_match_the_formulas(seed, start):
    rows, grads, readout = _inputs(seed)
    raw = released_raw_attention(rows, readout, start_layer=start)[:, -1]
    roll = released_rollout(rows, readout, start_layer=start)[:, -1]
    attr = released_mamba_attr(rows, grads, readout, start_layer=start)[:, -1]
    for b in range(rows.shape[0]):
        cls = int(readout[b])
        layers = [_class_row(rows[b, layer], cls) for layer in range(rows.shape[1])]
        expected_raw = torch.stack([_minmax(r).mean(0) for r in layers[start:]]).mean(0)
        torch.testing.assert_close(raw[b], _finish(expected_raw, cls), atol=1e-12, rtol=0)
        expected_roll = _rollout_vectors([r.mean(0) for r in layers], start)[cls]
        torch.testing.assert_close(roll[b], _finish(expected_roll, cls), atol=1e-12, rtol=0)
        fused = [_minmax(r.clamp(min=0)).mean(0) * _minmax(grads[b, layer]) for layer, r in enumerate(layers)]
        expected_attr = _rollout_vectors(fused, start)[cls]
        torch.testing.assert_close(attr[b], _finish(expected_attr, cls), atol=1e-12, rtol=0)


def test_per_layer_output_and_default_start():
    rows, grads, readout = _inputs(1, layers=24)
    out = released_rollout(rows, readout)
    assert out.shape == (2, 24, 7)
    assert released_start_layer(-9, 24) == 15 and released_start_layer(-9, 4) == 0
    torch.testing.assert_close(out[:, -1], released_rollout(rows, readout, start_layer=15)[:, -1])
    with pytest.raises(ValueError, match="Expected `start_layer` to be an integer in"):
        released_rollout(rows, readout, start_layer=24)


def test_rejects_bad_shapes():
    rows, grads, readout = _inputs(2)
    with pytest.raises(ValueError, match=r"Expected `readout_rows` to have shape \(B, L, E, n\)"):
        released_rollout(rows[0], readout)
    with pytest.raises(ValueError, match=r"Expected `readout` to lie in \[0, 6\]"):
        released_rollout(rows, torch.tensor([0, 7]))
    with pytest.raises(ValueError, match=r"Expected `residual_grad` to have shape \(B, L, n\)"):
        released_mamba_attr(rows, grads[:, :2], readout)
