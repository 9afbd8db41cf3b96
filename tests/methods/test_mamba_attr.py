import pytest
import torch

from attnlens.methods.mamba_attr import mamba_attr_alpha_grad as mamba_attr

torch.set_num_threads(1)


def _reference(attn, grads, mask, start_layer=0):
    """Loop version: W = α⁺ ⊙ ∇⁺ scaled to max 1, rows of W + I normalised, multiplied layer by layer."""
    batch, layers, n, _ = attn.shape
    out = torch.zeros(batch, n, n, dtype=torch.float64)
    for b in range(batch):
        idx = mask[b].nonzero().flatten()
        joint = torch.eye(len(idx), dtype=torch.float64)
        for layer in range(start_layer, layers):
            w = (attn[b, layer].clamp(min=0) * grads[b, layer].clamp(min=0))[idx][:, idx]
            if w.max() > 0:
                w = w / w.max()
            w = w + torch.eye(len(idx), dtype=torch.float64)
            joint = (w / w.sum(-1, keepdim=True)) @ joint
        out[b][idx[:, None], idx[None, :]] = joint
    return out


def _inputs(seed=0, batch=2, layers=3, n=6):
    g = torch.Generator().manual_seed(seed)
    attn = torch.rand(batch, layers, n, n, generator=g, dtype=torch.float64).tril()
    grads = torch.randn(batch, layers, n, n, generator=g, dtype=torch.float64)
    return attn, grads


def test_matches_loop_reference_with_padding():
    attn, grads = _inputs()
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, :2] = False
    got = mamba_attr(attn, grads, mask=mask)
    torch.testing.assert_close(got, _reference(attn, grads, mask), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        mamba_attr(attn, grads, mask=mask, start_layer=1), _reference(attn, grads, mask, 1), atol=1e-12, rtol=0
    )


def test_padded_example_equals_alone_and_rows_sum_to_one():
    attn, grads = _inputs()
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, :2] = False
    got = mamba_attr(attn, grads, mask=mask)
    alone = mamba_attr(attn[1:, :, 2:, 2:], grads[1:, :, 2:, 2:])
    torch.testing.assert_close(got[1, 2:, 2:], alone[0], atol=1e-12, rtol=0)
    assert (got[1, :2] == 0).all() and (got[1, :, :2] == 0).all()
    torch.testing.assert_close(got[0].sum(-1), torch.ones(6, dtype=torch.float64))


def test_negative_gradients_give_identity_and_head_axis_accepted():
    attn, grads = _inputs()
    got = mamba_attr(attn[:, :, None], -grads.abs()[:, :, None])
    torch.testing.assert_close(got, torch.eye(6, dtype=torch.float64).expand(2, 6, 6))


def test_scale_of_gradients_does_not_matter():
    attn, grads = _inputs()
    torch.testing.assert_close(mamba_attr(attn, grads), mamba_attr(attn, grads * 1000.0))


def test_rejects_bad_inputs():
    attn, grads = _inputs()
    with pytest.raises(ValueError, match="Expected `attn` and `gradients` to have the same shape"):
        mamba_attr(attn, grads[:, :2])
    with pytest.raises(ValueError, match=r"Expected `attn` to have one head \(B, L, 1, n, n\)"):
        mamba_attr(attn[:, :, None].expand(-1, -1, 2, -1, -1), grads[:, :, None].expand(-1, -1, 2, -1, -1))
    with pytest.raises(ValueError, match=r"Expected `attn` to have shape \(B, L, n, n\) or \(B, L, H, n, n\)"):
        mamba_attr(attn[0], grads[0])
    with pytest.raises(ValueError, match=r"Expected `mask` to have shape \(B, n\)"):
        mamba_attr(attn, grads, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="Expected `start_layer` to be an integer"):
        mamba_attr(attn, grads, start_layer=3)


def test_rejects_gradients_that_are_not_floating_tensors():
    attn, grads = _inputs()
    with pytest.raises(TypeError, match="Expected `gradients` to be a torch.Tensor, but got list"):
        mamba_attr(attn, grads.tolist())
    with pytest.raises(TypeError, match="Expected `gradients` to have a floating dtype, but got torch.int64"):
        mamba_attr(attn, grads.round().long())
    with pytest.raises(TypeError, match="Expected `gradients` to have a floating dtype, but got torch.bool"):
        mamba_attr(attn, grads > 0)


def test_gradients_may_leave_out_the_head_axis():
    """`trace.attentions (B, L, 1, n, n)` goes with `trace.extras["hidden_attention_grad"] (B, L, n, n)`."""
    attn, grads = _inputs()
    expected = mamba_attr(attn, grads)
    torch.testing.assert_close(mamba_attr(attn[:, :, None], grads), expected, atol=0, rtol=0)
    torch.testing.assert_close(mamba_attr(attn, grads[:, :, None]), expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match="Expected `attn` and `gradients` to have the same shape"):
        mamba_attr(attn[:, :, None], grads[:, :2])


# --- Mamba-Attr as the authors' released code defines it: residual-stream gradient per token ----------


def _residual_reference(attn, grads, mask, start_layer=0):
    """Loop version: W[r, c] = mm(α⁺)[r, c] · mm(s)[c] over valid entries, rows of W + I normalised, composed."""
    from attnlens.methods.mamba_attr import mamba_attr as residual_attr  # noqa: F401 - the function under test

    batch, layers, n, _ = attn.shape
    out = torch.zeros(batch, n, n, dtype=torch.float64)
    for b in range(batch):
        idx = mask[b].nonzero().flatten()
        joint = torch.eye(len(idx), dtype=torch.float64)
        for layer in range(start_layer, layers):
            a = attn[b, layer][idx][:, idx].clamp(min=0)
            a = (a - a.min()) / (a.max() - a.min())
            s = grads[b, layer][idx]
            s = (s - s.min()) / (s.max() - s.min())
            w = a * s[None, :] + torch.eye(len(idx), dtype=torch.float64)
            joint = (w / w.sum(-1, keepdim=True)) @ joint
        out[b][idx[:, None], idx[None, :]] = joint
    return out


def test_residual_mamba_attr_matches_loop_reference_with_padding():
    from attnlens.methods.mamba_attr import mamba_attr as residual_attr

    g = torch.Generator().manual_seed(3)
    attn = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64).tril()
    grads = torch.rand(2, 3, 6, generator=g, dtype=torch.float64)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, :2] = False
    for start in (0, 1):
        got = residual_attr(attn, grads, mask=mask, start_layer=start)[:, -1]
        torch.testing.assert_close(got, _residual_reference(attn, grads, mask, start), atol=1e-12, rtol=0)
    alone = residual_attr(attn[1:, :, 2:, 2:], grads[1:, :, 2:])[:, -1]
    torch.testing.assert_close(residual_attr(attn, grads, mask=mask)[1, -1, 2:, 2:], alone[0], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match=r"Expected `residual_grad` to have shape \(B, L, n\)"):
        residual_attr(attn, grads[:, :, :5])
