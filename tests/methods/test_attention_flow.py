"""Attention Flow against a networkx max-flow reference, hand-worked networks and properties."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods._maxflow import _layered_max_flows
from attnlens.methods.attention_flow import attention_flow

ATOL = 1e-12


def _reference_networkx_flow(attn: torch.Tensor, mask: torch.Tensor | None, layer: int, residual: bool = True):
    """Abnar & Zuidema's recipe, one example: mean heads, + I, normalise, networkx max flow per pair."""
    a = attn.double()
    if a.ndim == 4:
        a = a.mean(dim=1)
    n = a.shape[-1]
    valid = [k for k in range(n) if mask is None or bool(mask[k])]
    layers = layer + 1
    out = np.zeros((n, n))
    graph = nx.DiGraph()
    for l in range(layers):
        block = a[l][valid][:, valid]
        if residual:
            block = block + torch.eye(len(valid), dtype=torch.float64)
        sums = block.sum(dim=-1, keepdim=True)
        block = torch.where(sums > 0, block / sums.clamp_min(1e-300), torch.zeros_like(block))
        for x, i in enumerate(valid):
            for y, j in enumerate(valid):
                graph.add_edge((l + 1, i), (l, j), capacity=float(block[x, y]))
    for i in valid:
        for j in valid:
            out[i, j] = nx.maximum_flow_value(graph, (layers, i), (0, j), flow_func=nx.algorithms.flow.edmonds_karp)
        if out[i].sum() > 0:
            out[i] /= out[i].sum()
    return torch.from_numpy(out)


def _random_attention(generator, batch, layers, heads, n, zero_fraction=0.3):
    logits = torch.randn(batch, layers, heads, n, n, generator=generator, dtype=torch.float64)
    attn = torch.softmax(2 * logits, dim=-1)
    attn = attn * (torch.rand(attn.shape, generator=generator, dtype=torch.float64) > zero_fraction)
    return attn


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("residual", [True, False])
def test_matches_networkx_on_random_padded_batches(seed, residual):
    generator = torch.Generator().manual_seed(seed)
    layers, n = 1 + seed % 4, 3 + seed
    attn = _random_attention(generator, 2, layers, 2, n)
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, n - 1 - seed % 3:] = False
    every = attention_flow(attn, mask=mask, layer=None, residual=residual)
    for b in range(2):
        for layer in range(layers):
            expected = _reference_networkx_flow(attn[b, : layer + 1], mask[b], layer, residual)
            torch.testing.assert_close(every[b, layer], expected, atol=ATOL, rtol=1e-9)
    torch.testing.assert_close(attention_flow(attn, mask=mask, residual=residual), every[:, -1], atol=0, rtol=0)


def test_matches_networkx_on_raw_capacities_with_zero_arcs():
    rng = np.random.default_rng(0)
    for _ in range(40):
        layers, n = int(rng.integers(1, 5)), int(rng.integers(1, 9))
        cap = rng.random((layers, n, n)) ** 3 * (rng.random((layers, n, n)) > 0.4)
        graph = nx.DiGraph()
        for l in range(layers):
            for a in range(n):
                for b in range(n):
                    graph.add_edge((l + 1, a), (l, b), capacity=cap[l, a, b])
        expected = np.array([[nx.maximum_flow_value(graph, (layers, i), (0, j)) for j in range(n)] for i in range(n)])
        np.testing.assert_allclose(_layered_max_flows(cap), expected, rtol=1e-9, atol=ATOL)


def test_single_layer_flow_is_the_capacity():
    attn = torch.tensor([[[[0.2, 0.8, 0.0], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]]], dtype=torch.float64)
    torch.testing.assert_close(attention_flow(attn, residual=False), attn[:, 0], atol=ATOL, rtol=0)
    cap = np.array([[[0.0, 0.3], [0.7, 0.1]]])
    np.testing.assert_array_equal(_layered_max_flows(cap), cap[0])


def test_chain_flow_is_the_smallest_capacity_on_it():
    # two disjoint chains 0 -> 0 -> 0 -> 0 -> 0 and 1 -> 1 -> 1 -> 1 -> 0, and nothing else
    cap = np.zeros((4, 2, 2))
    cap[:, 0, 0] = [0.9, 0.4, 0.7, 0.8]
    cap[1:, 1, 1] = [0.6, 0.5, 0.3]
    cap[0, 1, 0] = 0.2
    flows = _layered_max_flows(cap)
    np.testing.assert_allclose(flows, [[0.4, 0.0], [0.2, 0.0]], atol=ATOL)
    cap[3, 0, 1] = 1.0  # the top node 0 now also feeds the second chain
    np.testing.assert_allclose(_layered_max_flows(cap)[0], [0.4 + 0.2, 0.0], atol=ATOL)


def test_bottleneck_limits_every_path():
    # every path from the top goes through token 2 of layer 1, which passes (0.2, 0.3, 0.5) on
    attn = torch.zeros(1, 3, 3, 3, dtype=torch.float64)
    attn[0, 0] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    attn[0, 1, :, 2] = 1.0
    attn[0, 2] = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cap = attn[0].numpy()
    np.testing.assert_allclose(_layered_max_flows(cap), np.tile([0.2, 0.3, 0.5], (3, 1)), atol=ATOL)
    torch.testing.assert_close(attention_flow(attn, residual=False)[0], torch.tensor([[0.2, 0.3, 0.5]] * 3,
                               dtype=torch.float64), atol=ATOL, rtol=0)
    # a cut in the middle: the two top arcs 0.5 + 0.5 are wider than the single node below them
    cap = np.zeros((3, 2, 2))
    cap[2, 0] = [0.5, 0.5]
    cap[1, :, 0] = [0.25, 0.5]
    cap[0, 0] = [0.6, 0.1]
    np.testing.assert_allclose(_layered_max_flows(cap)[0], [0.6, 0.1], atol=ATOL)
    cap[0, 0] = [0.9, 0.05]
    np.testing.assert_allclose(_layered_max_flows(cap)[0], [0.75, 0.05], atol=ATOL)


def test_identity_attention_sends_everything_home():
    attn = torch.eye(4).expand(2, 5, 4, 4)
    torch.testing.assert_close(attention_flow(attn), torch.eye(4).expand(2, 4, 4))


def test_padding_invariance_is_exact():
    generator = torch.Generator().manual_seed(3)
    alone = _random_attention(generator, 1, 4, 3, 5, zero_fraction=0.0)
    padded = torch.rand(1, 4, 3, 8, 8, generator=generator, dtype=torch.float64)
    padded[..., :5, :5] = alone
    mask = torch.zeros(1, 8, dtype=torch.long)
    mask[0, :5] = 1
    expected = attention_flow(alone, layer=None)
    got = attention_flow(padded, mask=mask, layer=None)
    torch.testing.assert_close(got[..., :5, :5], expected, atol=ATOL, rtol=0)
    assert not got[..., 5:, :].any() and not got[..., :, 5:].any()


def test_keeps_dtype_and_reports_progress():
    attn = torch.softmax(torch.randn(3, 4, 2, 5, 5), dim=-1)
    calls = []
    out = attention_flow(attn, layer=None, progress=lambda done, total: calls.append((done, total)))
    assert out.dtype == torch.float32 and out.shape == (3, 4, 5, 5)
    assert calls == [(k, 12) for k in range(1, 13)]
    attention_flow(attn.double(), layer=1, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3, 3)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    layers=st.integers(1, 4),
    heads=st.one_of(st.none(), st.integers(1, 3)),
    n=st.integers(1, 6),
    layer=st.one_of(st.none(), st.integers(-1, 0)),
    seed=st.integers(0, 2**16),
)
def test_shapes_rows_and_padding(batch, layers, heads, n, layer, seed):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, layers, n, n) if heads is None else (batch, layers, heads, n, n)
    attn = torch.softmax(torch.randn(shape, generator=generator, dtype=torch.float64), dim=-1)
    mask = torch.rand(batch, n, generator=generator) > 0.3
    mask[:, 0] = True
    out = attention_flow(attn, mask=mask, layer=layer)
    assert out.shape == ((batch, layers, n, n) if layer is None else (batch, n, n))
    rows = out.sum(dim=-1)
    valid = mask[:, None].expand_as(rows) if layer is None else mask
    torch.testing.assert_close(rows[valid], torch.ones_like(rows[valid]))
    assert not rows[~valid].any()
    column_mask = mask[:, None, None, :] if layer is None else mask[:, None, :]
    assert not (out * ~column_mask).any()
    assert (out >= 0).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer": 2}, ValueError, r"Expected `layer` to be None or an integer in \[-2, 1\], but got 2\."),
        ({"layer": True}, ValueError, r"Expected `layer` to be None or an integer in \[-2, 1\], but got True\."),
        ({"layer": 1.0}, ValueError, r"Expected `layer` to be None or an integer"),
        ({"progress": 3}, TypeError, r"Expected `progress` to be None or a callable, but got int\."),
        ({"mask": torch.ones(2, 4, dtype=torch.bool)}, ValueError, r"Expected `mask` to have shape \(B, n\) = \(2, 3\)"),
        ({"head_fusion": "median"}, ValueError, r"Expected `how` to be one of"),
    ],
)
def test_option_errors(kwargs, error, match):
    attn = torch.softmax(torch.randn(2, 2, 2, 3, 3), dim=-1)
    with pytest.raises(error, match=match):
        attention_flow(attn, **kwargs)


def test_input_errors():
    with pytest.raises(ValueError, match=r"Expected `attn` to be non-negative, but got a minimum of -1"):
        attention_flow(-torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"Expected `attn` to hold only finite values"):
        attention_flow(torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match=r"Expected `attn` to have shape \(B, L, n, n\) or \(B, L, H, n, n\)"):
        attention_flow(torch.ones(2, 2, 2))
    with pytest.raises(TypeError, match=r"Expected `attn` to have a floating dtype, but got torch.int64\."):
        attention_flow(torch.ones(1, 1, 2, 2, dtype=torch.long))


def test_threads_give_the_same_flows():
    attn = torch.softmax(torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3,
                         dim=-1)
    torch.testing.assert_close(attention_flow(attn, layer=None, workers=3), attention_flow(attn, layer=None, workers=1),
                               atol=0, rtol=0)


def test_bad_workers():
    with pytest.raises(ValueError, match="Expected `workers` to be None or a positive integer, but got 0"):
        attention_flow(torch.full((1, 1, 2, 2), 0.5), workers=0)
