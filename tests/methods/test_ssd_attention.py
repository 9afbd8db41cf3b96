import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlens.methods.ssd_attention import ssd_hidden_attention, ssd_unified_attention, ssd_unified_attention_bias

torch.set_num_threads(1)
ATOL = 1e-10
HEAD_MODES = ["mean", "abs_mean", "none"]


def _reference_alpha(delta, A, B, C):
    """α_h[r, c] = (C_r · B_c) · exp(A_h Σ_{k=c+1..r} Δ_k) · Δ_c, one entry at a time (float64)."""
    batch, heads, n = delta.shape
    per_group = heads // B.shape[1]
    out = torch.zeros(batch, heads, n, n, dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            g = h // per_group
            for r in range(n):
                for c in range(r + 1):
                    decay = math.exp(float(A[h]) * float(delta[b, h, c + 1 : r + 1].sum()))
                    out[b, h, r, c] = float(C[b, g, :, r] @ B[b, g, :, c]) * decay * float(delta[b, h, c])
    return out


def _conv_matrix(weight, n):
    """The causal depthwise convolution v[r] = Σ_j w[j] x[r - K + 1 + j] as a dense (n, n) matrix."""
    kernel = weight.shape[0]
    M = torch.zeros(n, n, dtype=torch.float64)
    for r in range(n):
        for j in range(kernel):
            c = r - kernel + 1 + j
            if c >= 0:
                M[r, c] = weight[j]
    return M


def _reference_unified(delta, A, B, C, D, weight, v, gate):
    """Ω_d = diag(g_d) (α_h + D_h I) diag(σ(v_d)) M_d with dense matrices, channel by channel."""
    alpha = _reference_alpha(delta, A, B, C)
    batch, heads, n = delta.shape
    head_dim = v.shape[1] // heads
    out = torch.zeros(batch, v.shape[1], n, n, dtype=torch.float64)
    for b in range(batch):
        for d in range(v.shape[1]):
            h = d // head_dim
            mixed = alpha[b, h] + D[h] * torch.eye(n, dtype=torch.float64)
            out[b, d] = torch.diag(gate[b, d]) @ mixed @ torch.diag(torch.sigmoid(v[b, d])) @ _conv_matrix(weight[d], n)
    return out


def _scan(delta, A, B, C, D, x):
    """The SSD recurrence h_t = exp(Δ_t A) h + Δ_t B_t x_t, y_t = C_t·h_t + D x_t, token by token (float64)."""
    batch, heads, n = delta.shape
    per_group, head_dim = heads // B.shape[1], x.shape[1] // heads
    y = torch.zeros_like(x)
    for b in range(batch):
        for d in range(x.shape[1]):
            h = d // head_dim
            g = h // per_group
            state = torch.zeros(B.shape[2], dtype=torch.float64)
            for t in range(n):
                state = math.exp(float(delta[b, h, t] * A[h])) * state + delta[b, h, t] * B[b, g, :, t] * x[b, d, t]
                y[b, d, t] = C[b, g, :, t] @ state + D[h] * x[b, d, t]
    return y


def _inputs(batch=2, heads=4, groups=2, states=3, n=7, seed=0, head_dim=2, kernel=3):
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    delta = torch.nn.functional.softplus(torch.randn(batch, heads, n, generator=g, dtype=f64))
    A = -torch.exp(torch.randn(heads, generator=g, dtype=f64))
    B = torch.randn(batch, groups, states, n, generator=g, dtype=f64)
    C = torch.randn(batch, groups, states, n, generator=g, dtype=f64)
    D = torch.randn(heads, generator=g, dtype=f64)
    weight = torch.randn(heads * head_dim, kernel, generator=g, dtype=f64)
    v = torch.randn(batch, heads * head_dim, n, generator=g, dtype=f64) * 2
    gate = torch.randn(batch, heads * head_dim, n, generator=g, dtype=f64)
    return delta, A, B, C, D, weight, v, gate


def _unified(args, **options):
    """ssd_unified_attention on the tuple of `_inputs` (delta, A, B, C, D, weight, v, gate)."""
    delta, A, B, C, D, weight, v, gate = args
    return ssd_unified_attention(delta, A, B, C, skip=D, conv_weight=weight, conv_preactivation=v, gate_scale=gate,
                                 **options)


def _bias(args, bias, **options):
    delta, A, B, C, D, _, v, gate = args
    return ssd_unified_attention_bias(delta, A, B, C, skip=D, conv_preactivation=v, conv_bias=bias, gate_scale=gate,
                                      **options)


def _reduce(x, mode):
    return {"mean": x.mean(1), "abs_mean": x.abs().mean(1), "none": x}[mode]


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("heads", HEAD_MODES)
@pytest.mark.parametrize("n", [1, 7, 21])
def test_matches_loop_reference(groups, heads, n):
    delta, A, B, C, *_ = _inputs(groups=groups, n=n)
    expected = _reduce(_reference_alpha(delta, A, B, C), heads)
    torch.testing.assert_close(ssd_hidden_attention(delta, A, B, C, heads=heads), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("channels", HEAD_MODES)
@pytest.mark.parametrize(("n", "kernel"), [(1, 3), (6, 3), (9, 4), (3, 5)])
def test_unified_matches_dense_loop_reference(groups, channels, n, kernel):
    args = _inputs(groups=groups, n=n, kernel=kernel)
    expected = _reduce(_reference_unified(*args), channels)
    torch.testing.assert_close(_unified(args, channels=channels), expected, atol=ATOL, rtol=0)


@settings(max_examples=20, deadline=None)
@given(heads=st.sampled_from([(1, 1), (2, 1), (4, 2), (3, 3)]), states=st.integers(1, 4), n=st.integers(1, 10),
       head_dim=st.integers(1, 3), kernel=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_property_both_forms_match_references(heads, states, n, head_dim, kernel, seed):
    args = _inputs(batch=1, heads=heads[0], groups=heads[1], states=states, n=n, seed=seed, head_dim=head_dim,
                   kernel=kernel)
    torch.testing.assert_close(ssd_hidden_attention(*args[:4], heads="none"), _reference_alpha(*args[:4]),
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(_unified(args, channels="none"), _reference_unified(*args),
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("groups", [1, 2])
def test_scan_form_reproduces_the_ssd_recurrence(groups):
    delta, A, B, C, D, _, x, _ = _inputs(groups=groups, n=9)
    alpha = ssd_hidden_attention(delta, A, B, C, heads="none")  # (b, H, n, n)
    head_dim = x.shape[1] // delta.shape[1]
    per_head = x.view(x.shape[0], delta.shape[1], head_dim, -1)
    rebuilt = torch.einsum("bhrc,bhpc->bhpr", alpha, per_head) + D[None, :, None, None] * per_head
    torch.testing.assert_close(rebuilt.flatten(1, 2), _scan(delta, A, B, C, D, x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("groups", [1, 2])
def test_unified_form_reproduces_conv_silu_scan_and_gate(groups):
    """out = g ⊙ scan(SiLU(conv(x) + b)) equals Ω x + β, β = g ⊙ (α + D I)(σ(v) b) the bias term."""
    delta, A, B, C, D, weight, _, gate = _inputs(groups=groups, n=8, kernel=4)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, weight.shape[0], 8, generator=g, dtype=torch.float64)
    bias = torch.randn(weight.shape[0], generator=g, dtype=torch.float64)
    v = torch.nn.functional.conv1d(x, weight[:, None], bias, padding=3, groups=weight.shape[0])[..., :8]
    out = gate * _scan(delta, A, B, C, D, torch.nn.functional.silu(v))
    omega = _unified((delta, A, B, C, D, weight, v, gate), channels="none")
    alpha = ssd_hidden_attention(delta, A, B, C, heads="none").repeat_interleave(x.shape[1] // 4, dim=1)
    mixed = alpha + D.repeat_interleave(x.shape[1] // 4)[None, :, None, None] * torch.eye(8, dtype=torch.float64)
    beta = gate * torch.einsum("bdrc,bdc->bdr", mixed, torch.sigmoid(v) * bias[None, :, None])
    torch.testing.assert_close(torch.einsum("bdrc,bdc->bdr", omega, x) + beta, out, atol=ATOL, rtol=0)
    assert beta.abs().max() > 1e-3  # the bias term is really there
    got = ssd_unified_attention_bias(delta, A, B, C, skip=D, conv_preactivation=v, conv_bias=bias, gate_scale=gate)
    torch.testing.assert_close(got, beta, atol=ATOL, rtol=0)
    none = ssd_unified_attention_bias(delta, A, B, C, skip=D, conv_preactivation=v, conv_bias=None, gate_scale=gate)
    assert (none == 0).all() and none.shape == v.shape


@pytest.mark.parametrize("form", ["scan", "unified"])
def test_causal(form):
    args = list(_inputs(n=8))
    call = (lambda a: ssd_hidden_attention(*a[:4], heads="none")) if form == "scan" else (
        lambda a: _unified(a, channels="none"))
    before = call(args)
    assert (before.triu(1) == 0).all()
    changed = [x.clone() for x in args]
    for index in (0, 2, 3, 6, 7):  # Δ, B, C, v, g at tokens 5.. change
        changed[index][..., 5:] += 1.0
    after = call(changed)
    torch.testing.assert_close(after[..., :5, :], before[..., :5, :], atol=ATOL, rtol=0)


def _pad(args, lengths, n, layout):
    """Embed each example's first lengths[b] tokens at `layout` positions of n, NaN elsewhere."""
    batch = len(lengths)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    for b, length in enumerate(lengths):
        if layout == "left":
            mask[b, n - length:] = True
        elif layout == "right":
            mask[b, :length] = True
        else:  # interior: every other position first
            positions = (list(range(0, n, 2)) + list(range(1, n, 2)))[:length]
            mask[b, sorted(positions)] = True
    padded = []
    for x in args:
        if x.ndim < 3:
            padded.append(x)
            continue
        out = torch.full((*x.shape[:-1], n), float("nan"), dtype=x.dtype)
        for b, length in enumerate(lengths):
            out[b, ..., mask[b]] = x[b, ..., :length]
        padded.append(out)
    return padded, mask


@pytest.mark.parametrize("layout", ["left", "right", "interior"])
@pytest.mark.parametrize("mode", HEAD_MODES)
def test_padding_invariance(layout, mode):
    args = _inputs(n=6, kernel=3)
    lengths, n = [6, 3], 9
    padded, mask = _pad(args, lengths, n, layout)
    scan = ssd_hidden_attention(*padded[:4], heads=mode, mask=mask)
    unified = _unified(padded, channels=mode, mask=mask)
    bias = torch.linspace(-1, 1, args[5].shape[0], dtype=torch.float64)
    beta = _bias(padded, bias, mask=mask)
    for b, length in enumerate(lengths):
        alone = [x[b : b + 1, ..., :length] if x.ndim >= 3 else x for x in args]
        valid = mask[b]
        torch.testing.assert_close(scan[b][..., valid, :][..., valid],
                                   ssd_hidden_attention(*alone[:4], heads=mode)[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(unified[b][..., valid, :][..., valid],
                                   _unified(alone, channels=mode)[0], atol=ATOL, rtol=0)
        for result in (scan[b], unified[b]):
            assert (result[..., ~valid, :] == 0).all() and (result[..., ~valid] == 0).all()
        torch.testing.assert_close(beta[b][:, valid], _bias(alone, bias)[0], atol=ATOL, rtol=0)
        assert (beta[b][:, ~valid] == 0).all()


def test_float32_keeps_dtype_and_agrees_with_float64():
    args = _inputs(n=12)
    single = [x.float() for x in args]
    for mode in HEAD_MODES:
        got = ssd_hidden_attention(*single[:4], heads=mode)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ssd_hidden_attention(*args[:4], heads=mode), atol=1e-5, rtol=1e-5)
        got = _unified(single, channels=mode)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), _unified(args, channels=mode), atol=1e-5, rtol=1e-5)


def test_blocks_of_heads_and_channels_do_not_change_the_unified_result(monkeypatch):
    args = _inputs(heads=4, groups=1, n=7)
    expected = {mode: _unified(args, channels=mode) for mode in HEAD_MODES}
    monkeypatch.setattr("attnlens.methods.ssd_attention._BLOCK_ELEMENTS", 1)  # one head per block
    monkeypatch.setattr("attnlens.methods.ssd_attention._CHANNEL_ELEMENTS", 1)  # one channel at a time
    for mode in HEAD_MODES:
        torch.testing.assert_close(_unified(args, channels=mode), expected[mode], atol=ATOL, rtol=0)


def test_gradcheck_both_forms():
    args = _inputs(batch=1, heads=2, groups=1, states=2, n=4, head_dim=2, kernel=2)
    mask = torch.tensor([[False, True, True, True]])
    leaves = [x.clone().requires_grad_(True) for x in args]
    assert torch.autograd.gradcheck(lambda *a: ssd_hidden_attention(*a, heads="none", mask=mask), leaves[:4])
    assert torch.autograd.gradcheck(lambda *a: _unified(a, channels="mean", mask=mask), leaves)
    out = _unified(leaves, channels="abs_mean").sum() + ssd_hidden_attention(*leaves[:4]).sum()
    grads = torch.autograd.grad(out, leaves)
    assert all(torch.isfinite(grad).all() for grad in grads)


def test_nan_in_padding_gives_finite_gradients():
    args = _inputs(n=5)
    padded, mask = _pad(args, [5, 2], 6, "left")
    leaves = [x.clone().requires_grad_(True) for x in padded]
    out = _unified(leaves, mask=mask).sum() + ssd_hidden_attention(*leaves[:4], mask=mask).sum()
    for grad in torch.autograd.grad(out, leaves):
        assert torch.isfinite(grad).all()


BAD = [
    (lambda a: a.__setitem__(0, a[0][0]), ValueError, r"Expected `delta` to have shape \(B, H, n\), but got \(4, 7\)"),
    (lambda a: a.__setitem__(1, a[1][:3]), ValueError, r"Expected `A` to have shape \(H,\) = \(4,\), but got \(3,\)"),
    (lambda a: a.__setitem__(2, a[2][..., :5]), ValueError,
     r"Expected `B` to have shape \(B, G, N, n\) with B = 2, n = 7 and G, N ≥ 1, but got \(2, 2, 3, 5\)"),
    (lambda a: a.__setitem__(3, a[3][:, :, :2]), ValueError, r"Expected `C` to have the shape of `B`"),
    (lambda a: [a.__setitem__(i, a[i][:, :1].expand(-1, 3, -1, -1)) for i in (2, 3)],
     ValueError, r"Expected the number of heads H = 4 to be a multiple of the number of groups G = 3"),
    (lambda a: a.__setitem__(1, -a[1]), ValueError, r"Expected `A` to be non-positive"),
    (lambda a: a.__setitem__(0, -a[0]), ValueError, r"Expected `delta` to be non-negative"),
    (lambda a: a.__setitem__(2, a[2].long()), TypeError, r"Expected `B` to have a floating dtype, but got torch.int64"),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD)
def test_rejects_bad_inputs(change, error, message):
    args = list(_inputs())
    change(args)
    with pytest.raises(error, match=message):
        ssd_hidden_attention(*args[:4])
    with pytest.raises(error, match=message):
        _unified(args)


def test_rejects_bad_options_and_unified_shapes():
    args = list(_inputs())
    with pytest.raises(ValueError, match=r"Expected `heads` to be one of 'mean', 'abs_mean', 'none', but got 'sum'"):
        ssd_hidden_attention(*args[:4], heads="sum")
    with pytest.raises(ValueError, match=r"Expected `channels` to be one of 'mean', 'abs_mean', 'none'"):
        _unified(args, channels="max")
    with pytest.raises(ValueError, match=r"Expected `mask` to have shape \(B, n\) = \(2, 7\), but got \(2, 6\)"):
        ssd_hidden_attention(*args[:4], mask=torch.ones(2, 6, dtype=torch.bool))
    cases = [
        (4, args[4][:2], r"Expected `skip` to have shape \(H,\) = \(4,\), but got \(2,\)"),
        (5, args[5][:3], r"Expected `conv_weight` to have shape \(H·P, K\) with H·P = 8 and K ≥ 1, but got "
                         r"\(3, 3\)"),
        (6, args[6][:, :7], r"Expected `conv_preactivation` to have shape \(B, H·P, n\) with B = 2, n = 7 and H·P a "
                            r"positive multiple of H = 4, but got \(2, 7, 7\)"),
        (7, args[7][..., :6], r"Expected `gate_scale` to have the shape of `conv_preactivation`, \(2, 8, 7\), but "
                              r"got \(2, 8, 6\)"),
        (5, args[5][:, 0], r"Expected `conv_weight` to have shape \(H·P, K\), but got \(8,\)"),
    ]
    with pytest.raises(ValueError, match=r"Expected `conv_bias` to have shape \(H·P,\) with H·P = 8, but got \(7,\)"):
        _bias(args, torch.zeros(7, dtype=torch.float64))
    for index, value, message in cases:
        bad = list(args)
        bad[index] = value
        with pytest.raises(ValueError, match=message):
            _unified(bad)
