import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods.hidden_attention import hidden_attention
from attnlens.methods.unified_attention import unified_attention_bias

torch.set_num_threads(1)
ATOL = 1e-10


def _alpha_reference(delta, A, B, C):
    """Ali et al. Eq. 11, one entry at a time (float64): `(B, D, n, n)`."""
    batch, channels, n = delta.shape
    out = torch.zeros(batch, channels, n, n, dtype=torch.float64)
    for b in range(batch):
        for d in range(channels):
            for r in range(n):
                for c in range(r + 1):
                    decay = torch.exp(A[d] * delta[b, d, c + 1 : r + 1].sum())
                    out[b, d, r, c] = (C[b, :, r] * decay * delta[b, d, c] * B[b, :, c]).sum()
    return out


def _conv_matrix(weight, n):
    """The causal depthwise convolution of one channel as an (n, n) matrix, entry by entry:
    v[t] = Σ_k w[k] x[t - (K-1) + k] (PyTorch's cross-correlation with K-1 zeros in front)."""
    taps = weight.shape[0]
    matrix = torch.zeros(n, n, dtype=torch.float64)
    for t in range(n):
        for k in range(taps):
            source = t - (taps - 1) + k
            if source >= 0:
                matrix[t, source] = weight[k]
    return matrix


def _omega_reference(delta, A, B, C, gate, skip, weight, preactivation):
    """Ω_d = diag(SiLU(z_d)) (α_d + diag(D_d)) diag(σ(v_d)) M_conv,d per channel, as explicit matrices."""
    batch, channels, n = delta.shape
    alpha = _alpha_reference(delta, A, B, C)
    out = torch.zeros_like(alpha)
    eye = torch.eye(n, dtype=torch.float64)
    for b in range(batch):
        for d in range(channels):
            gated = torch.diag(F.silu(gate[b, d]))
            activation = torch.diag(torch.sigmoid(preactivation[b, d]))
            out[b, d] = gated @ (alpha[b, d] + skip[d] * eye) @ activation @ _conv_matrix(weight[d], n)
    return out


def _bias_reference(delta, A, B, C, gate, skip, preactivation, bias):
    """β_d = diag(SiLU(z_d)) (α_d + diag(D_d)) σ(v_d) b_d."""
    alpha = _alpha_reference(delta, A, B, C)
    n = delta.shape[-1]
    operator = alpha + skip[None, :, None, None] * torch.eye(n, dtype=torch.float64)
    return F.silu(gate) * torch.einsum("bdrc,bdc->bdr", operator, torch.sigmoid(preactivation) * bias[None, :, None])


def _inputs(batch, channels, states, n, taps=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    delta = F.softplus(torch.randn(batch, channels, n, generator=g, dtype=torch.float64))
    A = -torch.exp(torch.randn(channels, states, generator=g, dtype=torch.float64))
    B = torch.randn(batch, states, n, generator=g, dtype=torch.float64)
    C = torch.randn(batch, states, n, generator=g, dtype=torch.float64)
    mixer = {
        "gate": torch.randn(batch, channels, n, generator=g, dtype=torch.float64),
        "skip": torch.randn(channels, generator=g, dtype=torch.float64),
        "conv_weight": torch.randn(channels, taps, generator=g, dtype=torch.float64),
        "conv_preactivation": torch.randn(batch, channels, n, generator=g, dtype=torch.float64),
    }
    return delta, A, B, C, mixer


def _reference(delta, A, B, C, mixer):
    return _omega_reference(delta, A, B, C, mixer["gate"], mixer["skip"], mixer["conv_weight"],
                            mixer["conv_preactivation"])


@pytest.mark.parametrize(
    ("channels", "states", "n", "taps", "block_size"),
    [(3, 4, 9, 4, None), (2, 3, 20, 4, 4), (3, 2, 33, 3, 8), (2, 2, 5, 1, None), (2, 3, 2, 4, None),
     (3, 2, 40, 4, None), (2, 2, 7, 2, 3), (2, 1, 1, 4, None), (2, 3, 12, 6, 5)],
)
def test_matches_loop_reference_in_every_channel_mode(channels, states, n, taps, block_size):
    delta, A, B, C, mixer = _inputs(2, channels, states, n, taps)
    expected = _reference(delta, A, B, C, mixer)
    options = {"form": "unified", "block_size": block_size, **mixer}
    got = hidden_attention(delta, A, B, C, channels="none", **options)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden_attention(delta, A, B, C, **options), expected.mean(1), atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden_attention(delta, A, B, C, channels="abs_mean", channel_block=2, **options),
                               expected.abs().mean(1), atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden_attention(delta, A, B, C, channel_block=1, **options), expected.mean(1),
                               atol=ATOL, rtol=0)


def test_default_schedule_matches_reference_on_a_longer_input():
    delta, A, B, C, mixer = _inputs(1, 2, 3, 70, seed=1)
    expected = _reference(delta, A, B, C, mixer)
    torch.testing.assert_close(hidden_attention(delta, A, B, C, form="unified", channels="none", **mixer), expected,
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden_attention(delta, A, B, C, form="unified", **mixer), expected.mean(1),
                               atol=ATOL, rtol=0)


def test_bias_matches_loop_reference():
    delta, A, B, C, mixer = _inputs(2, 3, 4, 11, seed=2)
    bias = torch.randn(3, dtype=torch.float64)
    expected = _bias_reference(delta, A, B, C, mixer["gate"], mixer["skip"], mixer["conv_preactivation"], bias)
    got = unified_attention_bias(delta, A, B, C, gate=mixer["gate"], skip=mixer["skip"],
                                 conv_preactivation=mixer["conv_preactivation"], conv_bias=bias)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    none = unified_attention_bias(delta, A, B, C, gate=mixer["gate"], skip=mixer["skip"],
                                  conv_preactivation=mixer["conv_preactivation"], conv_bias=None)
    assert (none == 0).all() and none.shape == delta.shape
