import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods.hidden_attention import hidden_attention

torch.set_num_threads(1)
ATOL = 1e-10
FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "data" / "vim"


def _reference(delta, A, B, C):
    """Ali et al. Eq. 11, one entry at a time (float64)."""
    batch, channels, n = delta.shape
    out = torch.zeros(batch, channels, n, n, dtype=torch.float64)
    for b in range(batch):
        for d in range(channels):
            for r in range(n):
                for c in range(r + 1):
                    decay = torch.exp(A[d] * delta[b, d, c + 1 : r + 1].sum())
                    out[b, d, r, c] = (C[b, :, r] * decay * delta[b, d, c] * B[b, :, c]).sum()
    return out


def _inputs(batch, channels, states, n, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    delta = torch.nn.functional.softplus(torch.randn(batch, channels, n, generator=g, dtype=torch.float64)) * scale
    A = -torch.exp(torch.randn(channels, states, generator=g, dtype=torch.float64))
    B = torch.randn(batch, states, n, generator=g, dtype=torch.float64)
    C = torch.randn(batch, states, n, generator=g, dtype=torch.float64)
    return delta, A, B, C


@pytest.mark.parametrize(
    ("channels", "states", "n", "block_size"),
    [(3, 4, 7, 3), (2, 1, 20, 4), (4, 16, 33, 16), (2, 3, 1, 16), (3, 5, 40, 32), (2, 2, 50, 8)],
)
def test_matches_triple_loop_reference(channels, states, n, block_size):
    delta, A, B, C = _inputs(2, channels, states, n)
    expected = _reference(delta, A, B, C)
    got = hidden_attention(delta, A, B, C, channels="none", block_size=block_size)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    mean = hidden_attention(delta, A, B, C, block_size=block_size)
    torch.testing.assert_close(mean, expected.mean(1), atol=ATOL, rtol=0)
    torch.testing.assert_close(
        hidden_attention(delta, A, B, C, channels="abs_mean", block_size=block_size, channel_block=2),
        expected.abs().mean(1),
        atol=ATOL,
        rtol=0,
    )


def test_large_steps_stay_finite_and_exact():
    delta, A, B, C = _inputs(1, 3, 4, 30, seed=1)
    delta = delta * 0 + 30.0  # |A|·ΣΔ over a chunk far beyond exp's range
    delta[..., ::3] = 0.01
    expected = _reference(delta, A * 3, B, C)
    got = hidden_attention(delta, A * 3, B, C, channels="none", block_size=8)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-12)


def test_causal_lower_triangular():
    delta, A, B, C = _inputs(2, 3, 4, 25)
    got = hidden_attention(delta, A, B, C, channels="none", block_size=4)
    assert (got.triu(1) == 0).all()
    assert (got.diagonal(dim1=-2, dim2=-1) != 0).all()


@pytest.mark.parametrize("channel_block", [1, 2, None])
def test_blocks_do_not_change_the_result(channel_block):
    delta, A, B, C = _inputs(2, 5, 3, 37)
    base = hidden_attention(delta, A, B, C, channels="none", block_size=37)
    for block_size in (1, 2, 5, 16, 64):
        got = hidden_attention(delta, A, B, C, channels="none", block_size=block_size, channel_block=channel_block)
        torch.testing.assert_close(got, base, atol=ATOL, rtol=0)


def test_padding_invariance_left_and_right():
    delta, A, B, C = _inputs(2, 3, 4, 12)
    alone = [hidden_attention(delta[i : i + 1, :, :9], A, B[i : i + 1, :, :9], C[i : i + 1, :, :9])[0] for i in (0, 1)]
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, 3:] = True  # left padded
    mask[1, :9] = True  # right padded
    delta_p, B_p, C_p = delta.clone(), B.clone(), C.clone()
    for src, dst in ((delta, delta_p), (B, B_p), (C, C_p)):
        dst[0, :, 3:] = src[0, :, :9]
    got = hidden_attention(delta_p, A, B_p, C_p, mask=mask)
    torch.testing.assert_close(got[0, 3:, 3:], alone[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(got[1, :9, :9], alone[1], atol=ATOL, rtol=0)
    assert (got[0, :3] == 0).all() and (got[0, :, :3] == 0).all()
    assert (got[1, 9:] == 0).all() and (got[1, :, 9:] == 0).all()


def test_batched_equals_looped_and_keeps_dtype():
    delta, A, B, C = _inputs(3, 2, 4, 10)
    batched = hidden_attention(delta.float(), A.float(), B.float(), C.float())
    assert batched.dtype == torch.float32
    for i in range(3):
        alone = hidden_attention(delta[i : i + 1].float(), A.float(), B[i : i + 1].float(), C[i : i + 1].float())
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-6, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 12), states=st.integers(1, 4), block_size=st.integers(1, 13), seed=st.integers(0, 99))
def test_property_matches_reference(n, states, block_size, seed):
    delta, A, B, C = _inputs(1, 2, states, n, seed=seed)
    got = hidden_attention(delta, A, B, C, channels="none", block_size=block_size)
    torch.testing.assert_close(got, _reference(delta, A, B, C), atol=ATOL, rtol=0)


def test_single_token_without_decay():
    delta = torch.tensor([[[0.5]]], dtype=torch.float64)
    got = hidden_attention(delta, -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, 1, dtype=torch.float64),
                           torch.full((1, 2, 1), 2.0, dtype=torch.float64))
    assert math.isclose(got.item(), 2.0)


@pytest.mark.skipif(not (FIXTURE / "vim_reduced_case.safetensors").exists(), reason="Vim fixture not present")
def test_matches_official_vim_hidden_attention():
    from safetensors.torch import load_file

    case = load_file(str(FIXTURE / "vim_reduced_case.safetensors"))
    weights = load_file(str(FIXTURE / "vim_reduced.safetensors"))
    A = -torch.exp(weights["layers.0.mixer.A_log"].double())
    delta = torch.nn.functional.softplus(
        case["scan.0.fwd.delta_raw"].double() + case["scan.0.fwd.delta_bias"].double()[:, None]
    )
    got = hidden_attention(delta, A, case["scan.0.fwd.B"].double(), case["scan.0.fwd.C"].double(), channels="none")
    torch.testing.assert_close(got, case["attn.0.fwd"].double(), atol=1e-6, rtol=0)
    mean = hidden_attention(delta, A, case["scan.0.fwd.B"].double(), case["scan.0.fwd.C"].double())
    torch.testing.assert_close(mean, case["attn.0.fwd_mean"].double(), atol=1e-7, rtol=0)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda d, A, B, C: (d.long(), A, B, C), TypeError, "Expected `delta` to have a floating dtype"),
        (lambda d, A, B, C: (d[0], A, B, C), ValueError, r"Expected `delta` to have shape \(B, D, n\)"),
        (lambda d, A, B, C: (d, A[:, :, None], B, C), ValueError, r"Expected `A` to have shape \(D, N\)"),
        (lambda d, A, B, C: (d, A[:2], B, C), ValueError, r"Expected `A` to have shape \(D, N\) with D = 3"),
        (lambda d, A, B, C: (d, A, B[:, :, :4], C), ValueError, r"Expected `B` to have shape \(B, N, n\) = \(2, 4, 6"),
        (lambda d, A, B, C: (d, A, B, C[:1]), ValueError, r"Expected `C` to have shape \(B, N, n\)"),
        (lambda d, A, B, C: (d, -A, B, C), ValueError, "Expected `A` to be non-positive"),
        (lambda d, A, B, C: (-d, A, B, C), ValueError, "Expected `delta` to be non-negative"),
        (lambda d, A, B, C: (d[..., :0], A, B[..., :0], C[..., :0]), ValueError, "at least one token"),
    ],
)
def test_rejects_bad_inputs(change, error, message):
    args = change(*_inputs(2, 3, 4, 6))
    with pytest.raises(error, match=message):
        hidden_attention(*args)


def test_rejects_bad_options():
    delta, A, B, C = _inputs(2, 3, 4, 6)
    with pytest.raises(ValueError, match="Expected `channels` to be one of"):
        hidden_attention(delta, A, B, C, channels="max")
    with pytest.raises(ValueError, match="Expected `block_size` to be a positive integer"):
        hidden_attention(delta, A, B, C, block_size=0)
    with pytest.raises(ValueError, match="Expected `channel_block` to be a positive integer or None"):
        hidden_attention(delta, A, B, C, channel_block=0)
    with pytest.raises(ValueError, match=r"Expected `mask` to have shape \(B, n\) = \(2, 6\)"):
        hidden_attention(delta, A, B, C, mask=torch.ones(2, 5, dtype=torch.bool))


@pytest.mark.parametrize("n", [17, 70])
def test_default_two_level_schedule_matches_reference(n):
    from attnlens.methods.hidden_attention import _schedule

    assert _schedule(70, None) == [24, 8] and _schedule(197, None) == [40, 8] and _schedule(16, None) == []
    delta, A, B, C = _inputs(1, 2, 3, n, seed=3)
    expected = _reference(delta, A, B, C)
    torch.testing.assert_close(hidden_attention(delta, A, B, C, channels="none"), expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden_attention(delta, A, B, C), expected.mean(1), atol=ATOL, rtol=0)


def test_zero_decay_and_zero_steps_are_exact():
    delta, A, B, C = _inputs(1, 3, 4, 21, seed=4)
    A[0] = 0.0  # no decay at all (A = -exp(A_log) is never 0 in practice, but it is allowed)
    delta[0, 1, 5:9] = 0.0  # Δ = 0: log Δ = -inf must give exactly 0
    got = hidden_attention(delta, A, B, C, channels="none", block_size=8)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _reference(delta, A, B, C), atol=ATOL, rtol=0)


def test_float32_agrees_with_float64():
    delta, A, B, C = _inputs(1, 16, 16, 60, seed=5)
    low = hidden_attention(delta.float(), A.float(), B.float(), C.float())
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), hidden_attention(delta, A, B, C), atol=1e-5, rtol=1e-4)


def test_differentiable():
    delta, A, B, C = _inputs(1, 2, 2, 11, seed=6)
    delta.requires_grad_(True)
    B.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda d, b: hidden_attention(d, A, b, C, channels="abs_mean", block_size=4), (delta, B), fast_mode=True
    )


def _masked_reference(delta, A, B, C, mask):
    """The loop reference on each example's valid tokens alone, scattered into a zero `(B, D, n, n)`."""
    batch, channels, n = delta.shape
    out = torch.zeros(batch, channels, n, n, dtype=torch.float64)
    for b in range(batch):
        idx = mask[b].nonzero().flatten()
        alone = _reference(delta[b : b + 1][..., idx], A, B[b : b + 1][..., idx], C[b : b + 1][..., idx])[0]
        out[b, :, idx[:, None], idx[None, :]] = alone
    return out


def test_gradients_finite_and_zero_at_masked_tokens():
    """Review repro: log Δ = -inf at masked tokens gave NaN gradients (0 · ∞ in the backward of log)."""
    g = torch.Generator().manual_seed(7)
    delta = torch.rand(2, 3, 5, generator=g).requires_grad_(True)
    B = torch.randn(2, 2, 5, generator=g).requires_grad_(True)
    C = torch.randn(2, 2, 5, generator=g).requires_grad_(True)
    mask = torch.tensor([[1] * 5, [0, 0, 1, 1, 1]]).bool()
    hidden_attention(delta, -torch.rand(3, 2, generator=g), B, C, mask=mask).sum().backward()
    for grad in (delta.grad, B.grad, C.grad):
        assert torch.isfinite(grad).all()
        assert (grad[1, :, :2] == 0).all()
    assert (delta.grad[1, :, 2:] != 0).any()


@pytest.mark.parametrize(("channels", "block_size"), [("none", 12), ("mean", 4), ("mean", None)])
def test_gradients_match_reference_autograd_with_padding_and_zero_steps(channels, block_size):
    """Gradients w.r.t. Δ, A, B, C equal float64 autograd through the loop reference, Δ = 0 on valid tokens too."""
    delta, A, B, C = _inputs(2, 2, 3, 20, seed=8)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, :4] = False  # left padded
    mask[1, 15:] = False  # right padded
    delta[0, 0, 6:9] = 0.0  # Δ = 0 on valid tokens: ∂α/∂Δ_c = C·exp(…)·B there, not 0
    delta[1, 1, 0] = 0.0
    delta[0, :, :4] = float("nan")  # padding garbage must not reach values or gradients
    B[1, :, 15:] = float("inf")
    weights = torch.randn(2, 2, 20, 20, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    inputs = [x.clone().requires_grad_(True) for x in (delta, A, B, C)]
    got = hidden_attention(*inputs, channels=channels, mask=mask, block_size=block_size)
    weight = weights if channels == "none" else weights[:, 0]
    grads = torch.autograd.grad((got * weight).sum(), inputs)
    clean = [x.clone() for x in (delta, A, B, C)]
    clean[0][~mask[:, None, :].expand_as(delta)] = 0.5
    clean[2][~mask[:, None, :].expand_as(B)] = 0.5
    ref_inputs = [x.requires_grad_(True) for x in clean]
    expected = _masked_reference(*ref_inputs, mask)
    expected = expected if channels == "none" else expected.mean(1)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    expected_grads = torch.autograd.grad((expected * weight).sum(), ref_inputs)
    for name, grad, want in zip(["delta", "A", "B", "C"], grads, expected_grads):
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, want, atol=1e-9, rtol=1e-9, msg=name)
    padded = ~mask[:, None, :]
    for grad in (grads[0], grads[2], grads[3]):
        assert (grad.masked_select(padded.expand_as(grad)) == 0).all()


def test_gradcheck_with_mask():
    """Finite differences agree with autograd through the masked, two-level path."""
    delta, A, B, C = _inputs(2, 2, 2, 14, seed=10)
    mask = torch.ones(2, 14, dtype=torch.bool)
    mask[1, :3] = False
    assert torch.autograd.gradcheck(
        lambda d, a, b: hidden_attention(d, a, b, C, mask=mask, block_size=12),
        (delta.requires_grad_(True), A.requires_grad_(True), B.requires_grad_(True)),
        fast_mode=True,
    )


def test_nan_padding_is_ignored():
    delta, A, B, C = _inputs(2, 3, 4, 10, seed=11)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, :3] = False
    clean = hidden_attention(delta, A, B, C, mask=mask, channels="none")
    for x in (delta, B, C):
        x[1, :, :3] = float("nan")
    got = hidden_attention(delta, A, B, C, mask=mask, channels="none")
    torch.testing.assert_close(got, clean, atol=0, rtol=0)
    alone = hidden_attention(delta[1:, :, 3:], A, B[1:, :, 3:], C[1:, :, 3:], channels="none")
    torch.testing.assert_close(got[1, :, 3:, 3:], alone[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("A", -math.inf, "Expected `A` to hold only finite values, but it has NaN or infinite entries"),
        ("A", math.nan, "Expected `A` to hold only finite values, but it has NaN or infinite entries"),
        ("delta", math.inf, "Expected `delta` to hold only finite values on valid tokens, but it has NaN"),
        ("delta", math.nan, "Expected `delta` to hold only finite values on valid tokens, but it has NaN"),
    ],
)
def test_rejects_non_finite_A_and_delta(name, value, message):
    delta, A, B, C = _inputs(2, 3, 4, 6)
    (A if name == "A" else delta)[1, 2] = value
    with pytest.raises(ValueError, match=message):
        hidden_attention(delta, A, B, C)
