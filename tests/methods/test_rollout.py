"""Rollout and selective rollout: properties, a numpy reference, padding invariance, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods import fuse_heads, raw_attention, relevance, rollout, selective_rollout
from tests.conftest import padded_attention, random_attention

ATOL = 1e-10
shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 3), st.integers(1, 7), st.integers(0, 10_000))


def _reference_rollout(attn: np.ndarray, residual: bool = True) -> np.ndarray:
    """Naive per-example loop: head mean, A + I, row-normalise, multiply layer by layer."""
    batch, layers, _, n, _ = attn.shape
    out = np.zeros((batch, layers, n, n))
    for b in range(batch):
        joint = np.eye(n)
        for layer in range(layers):
            a = attn[b, layer].mean(axis=0)
            if residual:
                a = a + np.eye(n)
            a = a / a.sum(axis=1, keepdims=True)
            joint = a @ joint
            out[b, layer] = joint
    return out


def _reference_selective(attn: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    batch, layers, _, n, _ = attn.shape
    joints, used = np.zeros((batch, layers, n, n)), np.zeros((batch, layers), dtype=bool)
    for b in range(batch):
        augmented = [(attn[b, i].mean(0) + np.eye(n)) / (attn[b, i].mean(0) + np.eye(n)).sum(1, keepdims=True)
                     for i in range(layers)]
        joint, reference = augmented[0], augmented[0]
        joints[b, 0], used[b, 0] = joint, True
        for i in range(1, layers):
            if np.linalg.norm(augmented[i] - reference) > threshold:
                joint, reference, used[b, i] = augmented[i] @ joint, augmented[i], True
            joints[b, i] = joint
    return joints, used


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_rollout_matches_numpy_loop(shape):
    batch, layers, heads, n, seed = shape
    attn = random_attention(torch.Generator().manual_seed(seed), batch, layers, heads, n, n)
    expected = _reference_rollout(attn.numpy())
    np.testing.assert_allclose(rollout(attn).numpy(), expected, atol=ATOL)


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_rollout_rows_stay_stochastic(shape):
    batch, layers, heads, n, seed = shape
    attn = random_attention(torch.Generator().manual_seed(seed), batch, layers, heads, n, n)
    joint = rollout(attn)
    torch.testing.assert_close(joint.sum(-1), torch.ones(batch, layers, n, dtype=attn.dtype), atol=ATOL, rtol=0)
    assert bool((joint >= 0).all())


@pytest.mark.parametrize("residual", [True, False])
def test_identity_attention_gives_identity(residual):
    attn = torch.eye(5, dtype=torch.float64).expand(2, 4, 3, 5, 5)
    expected = torch.eye(5, dtype=torch.float64).expand(2, 4, 5, 5)
    torch.testing.assert_close(rollout(attn, residual=residual), expected)


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_selective_threshold_zero_equals_rollout(shape):
    batch, layers, heads, n, seed = shape
    attn = random_attention(torch.Generator().manual_seed(seed), batch, layers, heads, n, n)
    if n == 1:  # a 1x1 attention is always [1]: every layer equals the last, nothing to compose
        return
    result = selective_rollout(attn, threshold=0.0)
    assert bool(result.used.all())
    torch.testing.assert_close(result.joint, rollout(attn), atol=ATOL, rtol=0)


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_selective_infinite_threshold_keeps_layer_zero(shape):
    batch, layers, heads, n, seed = shape
    attn = random_attention(torch.Generator().manual_seed(seed), batch, layers, heads, n, n)
    result = selective_rollout(attn, threshold=math.inf)
    first = rollout(attn[:, :1])[:, 0]
    torch.testing.assert_close(result.joint, first[:, None].expand(-1, layers, -1, -1), atol=ATOL, rtol=0)
    assert result.used[:, 0].all() and not result.used[:, 1:].any()


@settings(max_examples=30, deadline=None)
@given(shapes, st.floats(0.0, 1.5))
def test_selective_matches_reference_loop(shape, threshold):
    batch, layers, heads, n, seed = shape
    attn = random_attention(torch.Generator().manual_seed(seed), batch, layers, heads, n, n)
    joints, used = _reference_selective(attn.numpy(), threshold)
    result = selective_rollout(attn, threshold=threshold)
    np.testing.assert_array_equal(result.used.numpy(), used)
    np.testing.assert_allclose(result.joint.numpy(), joints, atol=ATOL)


def test_frobenius_per_token_divides_by_sqrt_length(generator):
    attn = random_attention(generator, 1, 3, 2, 6, 6)
    fused = torch.stack([(fuse_heads(attn)[0, i] + torch.eye(6, dtype=attn.dtype)) for i in range(3)])
    fused = fused / fused.sum(-1, keepdim=True)
    gap = torch.linalg.matrix_norm(fused[1] - fused[0]).item()
    below = selective_rollout(attn, threshold=gap / math.sqrt(6) * 1.01, distance="frobenius_per_token")
    above = selective_rollout(attn, threshold=gap / math.sqrt(6) * 0.99, distance="frobenius_per_token")
    assert not below.used[0, 1] and above.used[0, 1]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.integers(1, 4), st.integers(0, 10_000),
       st.sampled_from(["rollout", "selective", "raw", "selective_per_token"]))
def test_padding_invariance(lengths, layers, seed, method):
    generator = torch.Generator().manual_seed(seed)
    n = max(lengths) + 1
    attn = random_attention(generator, len(lengths), layers, 2, n, n)
    padded, mask = padded_attention(attn, lengths, generator)
    functions = {
        "rollout": lambda a, m: rollout(a, mask=m),
        "selective": lambda a, m: selective_rollout(a, threshold=0.3, mask=m).joint,
        "selective_per_token": lambda a, m: selective_rollout(a, threshold=0.1, mask=m,
                                                              distance="frobenius_per_token").joint,
        "raw": lambda a, m: raw_attention(a, mask=m),
    }
    batched = functions[method](padded, mask)
    for b, length in enumerate(lengths):
        alone = padded[b:b + 1, ..., :length, :length]
        single = functions[method](alone, None)
        torch.testing.assert_close(batched[b:b + 1, ..., :length, :length], single, atol=ATOL, rtol=0)
        assert batched[b, ..., length:, :].abs().sum() == 0 and batched[b, ..., :, length:].abs().sum() == 0
        for reduce in ("max", "cls", "mean", "last"):
            torch.testing.assert_close(relevance(batched[b:b + 1], mask=mask[b:b + 1], reduce=reduce)[..., :length],
                                       relevance(single, reduce=reduce), atol=ATOL, rtol=0)


def test_start_layer_leaves_early_layers_as_identity(generator):
    attn = random_attention(generator, 1, 4, 2, 5, 5)
    joint = rollout(attn, start_layer=2)
    torch.testing.assert_close(joint[:, :2], torch.eye(5, dtype=attn.dtype).expand(1, 2, 5, 5))
    torch.testing.assert_close(joint[:, 3], rollout(attn[:, 2:])[:, 1])


def test_keeps_dtype_and_device(generator):
    attn = random_attention(generator, 2, 3, 2, 4, 4, dtype=torch.float32)
    assert rollout(attn).dtype == torch.float32
    assert selective_rollout(attn).joint.dtype == torch.float32


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda a: rollout(a[0, 0, 0]), ValueError, r"Expected `attn` to have shape \(B, L, n, n\) or"),
        (lambda a: rollout(a[..., :3]), ValueError, "Expected `attn` to hold square matrices"),
        (lambda a: rollout(a.long()), TypeError, "Expected `attn` to have a floating dtype"),
        (lambda a: rollout(a, mask=torch.ones(2, 5, dtype=torch.bool)), ValueError,
         r"Expected `mask` to have shape \(B, n\) = \(2, 4\), but got \(2, 5\)"),
        (lambda a: rollout(a, mask=torch.zeros(2, 4, dtype=torch.bool)), ValueError, "at least one valid token"),
        (lambda a: rollout(a, mask=torch.ones(2, 4)), TypeError, "Expected `mask` to be a bool or integer tensor"),
        (lambda a: rollout(a, start_layer=3), ValueError, r"Expected `start_layer` to be an integer in \[-3, 2\]"),
        (lambda a: rollout(a, head_fusion="median"), ValueError, "Expected `how` to be one of"),
        (lambda a: selective_rollout(a, threshold=-1.0), ValueError, r"Expected `threshold` to lie in \[0, inf\]"),
        (lambda a: selective_rollout(a, threshold=float("nan")), ValueError, "Expected `threshold` to be a finite"),
        (lambda a: selective_rollout(a, threshold="1"), TypeError, "Expected `threshold` to be a number"),
        (lambda a: selective_rollout(a, distance="l1"), ValueError, "Expected `distance` to be one of"),
        (lambda a: relevance(rollout(a), reduce="sum"), ValueError, "Expected `reduce` to be one of"),
        (lambda a: relevance(rollout(a), reduce="cls", cls_index=9), ValueError, r"Expected `cls_index`"),
        (lambda a: fuse_heads(a[:, 0]), ValueError, r"Expected `attn` to have shape \(B, L, H, n, n\)"),
    ],
)
def test_errors(call, error, match, generator):
    attn = random_attention(generator, 2, 3, 2, 4, 4)
    with pytest.raises(error, match=match):
        call(attn)


def test_relevance_reductions_by_hand():
    joint = torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]])
    torch.testing.assert_close(relevance(joint, reduce="max"), torch.tensor([[0.5, 0.8, 0.4]]))
    torch.testing.assert_close(relevance(joint, reduce="cls"), torch.tensor([[0.5, 0.3, 0.2]]))
    torch.testing.assert_close(relevance(joint, reduce="mean"), torch.tensor([[0.3, 1.4 / 3, 0.7 / 3]]))
    torch.testing.assert_close(relevance(joint, reduce="last"), torch.tensor([[0.3, 0.3, 0.4]]))
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(relevance(joint, mask=mask, reduce="last"), torch.tensor([[0.1, 0.8, 0.0]]))


@pytest.mark.parametrize("how", ["mean", "max", "min"])
def test_fuse_heads_matches_numpy(how, generator):
    attn = random_attention(generator, 2, 3, 4, 5, 5)
    expected = getattr(np, {"mean": "mean", "max": "max", "min": "min"}[how])(attn.numpy(), axis=2)
    np.testing.assert_allclose(fuse_heads(attn, how=how).numpy(), expected)


def test_nan_in_padding_never_reaches_results():
    attn = torch.full((1, 1, 1, 3, 3), 0.5, dtype=torch.float64)
    attn[..., 2, :] = float("nan")
    attn[..., :, 2] = float("nan")
    mask = torch.tensor([[True, True, False]])
    expected = torch.tensor([[0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(rollout(attn, mask=mask)[0, 0], expected)
    torch.testing.assert_close(selective_rollout(attn, mask=mask).joint[0, 0], expected)
    assert torch.isfinite(raw_attention(attn, mask=mask)).all()


@pytest.mark.parametrize(
    ("shape", "match"),
    [((1, 0, 2, 3, 3), "at least one layer"), ((0, 2, 2, 3, 3), "at least one example")],
)
def test_empty_layers_or_batch(shape, match):
    for fn in (rollout, lambda a: selective_rollout(a), raw_attention):
        with pytest.raises(ValueError, match=match):
            fn(torch.zeros(shape))


def test_start_layer_accepts_numpy_integers(generator):
    attn = random_attention(generator, 1, 3, 2, 4, 4)
    torch.testing.assert_close(rollout(attn, start_layer=np.int64(1)), rollout(attn, start_layer=1))
    with pytest.raises(TypeError, match="Expected `start_layer` to be an integer, but got float"):
        rollout(attn, start_layer=1.0)
