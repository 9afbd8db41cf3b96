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


def test_causal_and_later_tokens_never_change_earlier_rows():
    delta, A, B, C, mixer = _inputs(1, 3, 4, 21, seed=3)
    got = hidden_attention(delta, A, B, C, form="unified", channels="none", block_size=8, **mixer)
    assert (got.triu(1) == 0).all()
    t = 13
    changed = [x.clone() for x in (delta, B, C)]
    changed_mixer = {k: v.clone() for k, v in mixer.items()}
    for x in changed:
        x[..., t:] = x[..., t:] * 1.7 + 0.3
    changed[0] = changed[0].abs()
    for name in ("gate", "conv_preactivation"):
        changed_mixer[name][..., t:] += 1.0
    other = hidden_attention(changed[0], A, changed[1], changed[2], form="unified", channels="none", block_size=8,
                             **changed_mixer)
    torch.testing.assert_close(other[..., :t, :], got[..., :t, :], atol=0, rtol=0)
    assert not torch.allclose(other[..., t:, :], got[..., t:, :])


def _masked_batch(delta, A, B, C, mixer, mask):
    """Each example's valid tokens placed at the True positions of `mask`, garbage (NaN) elsewhere."""
    batch, length = mask.shape
    placed = []
    for x in (delta, B, C, mixer["gate"], mixer["conv_preactivation"]):
        out = torch.full((batch, x.shape[1], length), float("nan"), dtype=x.dtype)
        for b in range(batch):
            idx = mask[b].nonzero().flatten()
            out[b][:, idx] = x[b][:, : len(idx)]
        placed.append(out)
    return placed


@pytest.mark.parametrize("channels", ["mean", "none", "abs_mean"])
def test_padding_is_removed_left_right_and_in_the_middle(channels):
    delta, A, B, C, mixer = _inputs(3, 3, 4, 9, seed=4)
    mask = torch.zeros(3, 13, dtype=torch.bool)
    mask[0, 4:] = True  # left padded
    mask[1, :9] = True  # right padded
    mask[2, [0, 1, 3, 4, 5, 8, 10, 11, 12]] = True  # holes: the conv skips them as if they were never there
    delta_p, B_p, C_p, gate_p, pre_p = _masked_batch(delta, A, B, C, mixer, mask)
    padded_mixer = {**mixer, "gate": gate_p, "conv_preactivation": pre_p}
    got = hidden_attention(delta_p, A, B_p, C_p, form="unified", channels=channels, mask=mask, block_size=4,
                           **padded_mixer)
    assert torch.isfinite(got).all()
    for b in range(3):
        alone_mixer = {**mixer, "gate": mixer["gate"][b : b + 1], "conv_preactivation":
                       mixer["conv_preactivation"][b : b + 1]}
        alone = hidden_attention(delta[b : b + 1], A, B[b : b + 1], C[b : b + 1], form="unified", channels=channels,
                                 **alone_mixer)[0]
        idx = mask[b].nonzero().flatten()
        torch.testing.assert_close(got[b][..., idx[:, None], idx[None, :]], alone, atol=ATOL, rtol=0)
        pair = mask[b][:, None] & mask[b][None, :]
        assert (got[b][..., ~pair] == 0).all()


def test_bias_with_padding_equals_each_example_alone():
    delta, A, B, C, mixer = _inputs(2, 2, 3, 7, seed=5)
    bias = torch.randn(2, dtype=torch.float64)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 3:] = True
    mask[1, [0, 2, 3, 5, 6, 7, 9]] = True
    delta_p, B_p, C_p, gate_p, pre_p = _masked_batch(delta, A, B, C, mixer, mask)
    got = unified_attention_bias(delta_p, A, B_p, C_p, gate=gate_p, skip=mixer["skip"], conv_preactivation=pre_p,
                                 conv_bias=bias, mask=mask)
    expected = _bias_reference(delta, A, B, C, mixer["gate"], mixer["skip"], mixer["conv_preactivation"], bias)
    for b in range(2):
        idx = mask[b].nonzero().flatten()
        torch.testing.assert_close(got[b][:, idx], expected[b], atol=ATOL, rtol=0)
        assert (got[b][:, ~mask[b]] == 0).all()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 14), states=st.integers(1, 3), taps=st.integers(1, 5), block_size=st.integers(1, 15),
       seed=st.integers(0, 99))
def test_property_identity_conv_open_activation_and_no_skip_is_the_gated_scan_form(n, states, taps, block_size,
                                                                                    seed):
    """conv = the identity tap (w[K-1] = 1), σ(v) = 1, D = 0: Ω = diag(SiLU(z)) · α, α the scan form."""
    delta, A, B, C, mixer = _inputs(1, 2, states, n, taps=taps, seed=seed)
    weight = torch.zeros(2, taps, dtype=torch.float64)
    weight[:, -1] = 1.0
    plain = {"gate": mixer["gate"], "skip": torch.zeros(2, dtype=torch.float64), "conv_weight": weight,
             "conv_preactivation": torch.full_like(mixer["gate"], 50.0)}  # σ(50) = 1 in float64
    alpha = hidden_attention(delta, A, B, C, channels="none", block_size=block_size)
    gated = F.silu(mixer["gate"])[..., None] * alpha
    got = hidden_attention(delta, A, B, C, form="unified", channels="none", block_size=block_size, **plain)
    torch.testing.assert_close(got, gated, atol=ATOL, rtol=0)
    torch.testing.assert_close(hidden_attention(delta, A, B, C, form="unified", block_size=block_size, **plain),
                               gated.mean(1), atol=ATOL, rtol=0)
    gate_one = {**plain, "gate": torch.full_like(mixer["gate"], 1.2784645427610738)}  # SiLU(z) = 1
    torch.testing.assert_close(hidden_attention(delta, A, B, C, form="unified", block_size=block_size, **gate_one),
                               hidden_attention(delta, A, B, C, block_size=block_size), atol=1e-9, rtol=0)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 12), taps=st.integers(1, 5), block_size=st.integers(1, 13), seed=st.integers(0, 99))
def test_property_matches_reference(n, taps, block_size, seed):
    delta, A, B, C, mixer = _inputs(1, 2, 2, n, taps=taps, seed=seed)
    got = hidden_attention(delta, A, B, C, form="unified", channels="none", block_size=block_size, **mixer)
    torch.testing.assert_close(got, _reference(delta, A, B, C, mixer), atol=ATOL, rtol=0)


def test_gradcheck_every_input_with_mask():
    delta, A, B, C, mixer = _inputs(2, 2, 2, 9, taps=3, seed=6)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, :2] = False

    def omega(d, a, b, c, z, s, w, v):
        return hidden_attention(d, a, b, c, form="unified", mask=mask, block_size=4, gate=z, skip=s, conv_weight=w,
                                conv_preactivation=v)

    inputs = [x.requires_grad_(True) for x in (delta, A, B, C, *mixer.values())]
    assert torch.autograd.gradcheck(omega, inputs, fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda d, b, z, v: hidden_attention(d, A, b, C, form="unified", channels="none", block_size=4, gate=z,
                                            skip=mixer["skip"], conv_weight=mixer["conv_weight"],
                                            conv_preactivation=v),
        (delta, B, mixer["gate"], mixer["conv_preactivation"]), fast_mode=True)


def test_gradients_finite_and_zero_at_padding_with_zero_steps():
    delta, A, B, C, mixer = _inputs(2, 2, 3, 10, seed=7)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, :3] = False
    delta[1, 0, 4:6] = 0.0  # Δ = 0 on valid tokens
    delta[0, :, :3] = float("nan")
    inputs = [x.clone().requires_grad_(True) for x in (delta, B, C, mixer["gate"], mixer["conv_preactivation"])]
    got = hidden_attention(inputs[0], A, inputs[1], inputs[2], form="unified", mask=mask, gate=inputs[3],
                           skip=mixer["skip"], conv_weight=mixer["conv_weight"], conv_preactivation=inputs[4])
    got.square().sum().backward()
    for x in inputs:
        assert torch.isfinite(x.grad).all()
        assert (x.grad[0, :, :3] == 0).all()
    assert (inputs[0].grad[1] != 0).any()


def test_float32_agrees_with_float64_and_keeps_dtype():
    delta, A, B, C, mixer = _inputs(1, 16, 8, 50, seed=8)
    low = hidden_attention(delta.float(), A.float(), B.float(), C.float(), form="unified",
                           **{k: v.float() for k, v in mixer.items()})
    assert low.dtype == torch.float32
    high = hidden_attention(delta, A, B, C, form="unified", **mixer)
    torch.testing.assert_close(low.double(), high, atol=1e-5, rtol=1e-4)


def test_scan_form_is_the_default_and_unchanged():
    delta, A, B, C, _ = _inputs(2, 3, 4, 12, seed=9)
    torch.testing.assert_close(hidden_attention(delta, A, B, C), hidden_attention(delta, A, B, C, form="scan"),
                               atol=0, rtol=0)
    torch.testing.assert_close(hidden_attention(delta, A, B, C, channels="none"),
                               _alpha_reference(delta, A, B, C), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda m: {**m, "gate": None}, ValueError,
         r"Expected `gate` to be a \(B, D, n\) tensor with `form` 'unified'"),
        (lambda m: {**m, "skip": None}, ValueError, r"Expected `skip` to be a \(D,\) tensor with `form` 'unified'"),
        (lambda m: {**m, "gate": m["gate"][:, :2]}, ValueError,
         r"Expected `gate` to have shape \(B, D, n\) = \(2, 3, 6\), but got \(2, 2, 6\)"),
        (lambda m: {**m, "conv_preactivation": m["conv_preactivation"][..., :5]}, ValueError,
         r"Expected `conv_preactivation` to have shape \(B, D, n\) = \(2, 3, 6\)"),
        (lambda m: {**m, "skip": m["skip"][:2]}, ValueError, r"Expected `skip` to have shape \(D,\) = \(3,\)"),
        (lambda m: {**m, "conv_weight": m["conv_weight"][:, None]}, ValueError,
         r"Expected `conv_weight` to have shape \(D, K\) \(conv1d.weight\[:, 0, :\]\)"),
        (lambda m: {**m, "conv_weight": m["conv_weight"][:2]}, ValueError,
         r"Expected `conv_weight` to have shape \(D, K\) with D = 3 and K ≥ 1, but got \(2, 4\)"),
        (lambda m: {**m, "gate": m["gate"].long()}, TypeError, "Expected `gate` to have a floating dtype"),
        (lambda m: {**m, "gate": m["gate"].index_fill(2, torch.tensor([1]), float("nan"))}, ValueError,
         "Expected `gate` to hold only finite values on valid tokens"),
        (lambda m: {**m, "conv_weight": m["conv_weight"] * float("inf")}, ValueError,
         "Expected `conv_weight` to hold only finite values, but"),
    ],
)
def test_rejects_bad_unified_inputs(change, error, message):
    delta, A, B, C, mixer = _inputs(2, 3, 4, 6)
    with pytest.raises(error, match=message):
        hidden_attention(delta, A, B, C, form="unified", **change(mixer))


def test_rejects_bad_form_and_unified_inputs_with_the_scan_form():
    delta, A, B, C, mixer = _inputs(2, 3, 4, 6)
    with pytest.raises(ValueError, match="Expected `form` to be one of 'scan', 'unified', but got 'mixer'"):
        hidden_attention(delta, A, B, C, form="mixer")
    with pytest.raises(ValueError, match="Expected `gate` to be None with `form` 'scan'"):
        hidden_attention(delta, A, B, C, gate=mixer["gate"])
    with pytest.raises(ValueError, match=r"Expected `conv_bias` to have shape \(D,\) = \(3,\)"):
        unified_attention_bias(delta, A, B, C, gate=mixer["gate"], skip=mixer["skip"],
                               conv_preactivation=mixer["conv_preactivation"], conv_bias=torch.zeros(2))
