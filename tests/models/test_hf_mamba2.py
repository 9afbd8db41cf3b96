import functools

import pytest
import torch
import torch.nn.functional as F
from transformers import Mamba2Config, MambaConfig

from attnlens.methods.ssd_attention import ssd_hidden_attention, ssd_unified_attention, ssd_unified_attention_bias
from attnlens.models._registry import adapter_for_config, get_adapter_class
from attnlens.models._tiny import _CAUSAL_SPECIALS, _tokenizer
from attnlens.models._tiny_mamba2 import tiny_mamba2_lm
from attnlens.models.hf_mamba import MambaAdapter
from attnlens.models.hf_mamba2 import Mamba2Adapter

torch.set_num_threads(1)
TEXTS = ["the movie was very good and the plot was fun", "bad", "a boring plot"]
ATOL = 1e-5


@functools.cache
def _adapter(groups=1, bias=True):
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    return Mamba2Adapter(tiny_mamba2_lm(len(tokenizer), n_groups=groups, use_conv_bias=bias), tokenizer)


def _ids(adapter, text):
    return torch.tensor([adapter.tokenizer.encode(text)])


def _mixer_outputs(model, ids):
    outputs = []
    handles = [layer.mixer.register_forward_hook(lambda m, i, o: outputs.append(o)) for layer in model.backbone.layers]
    try:
        with torch.no_grad():
            model(ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_registered_and_accepts_only_mamba2_configs():
    assert get_adapter_class("mamba2") is Mamba2Adapter
    assert adapter_for_config(Mamba2Config()) is Mamba2Adapter
    assert adapter_for_config(MambaConfig()) is MambaAdapter
    assert not Mamba2Adapter.accepts(MambaConfig()) and not Mamba2Adapter.accepts(object())
    assert not Mamba2Adapter.accepts(Mamba2Config(architectures=["Mamba2ForSequenceClassification"]))
    assert Mamba2Adapter.task == "language_modeling" and Mamba2Adapter.family == "mamba2"


@pytest.mark.parametrize(("groups", "bias"), [(1, True), (2, True), (2, False)])
def test_both_forms_reproduce_every_layer(groups, bias):
    """Scan form: Σ_c α_h[r, c] u_hp[c] + D_h u_hp[r] is the scan output y the gated norm receives.
    Unified form: out_proj(Ω x + β) is the mixer's output (hooked on every mixer), β the conv bias's share."""
    adapter = _adapter(groups, bias)
    model, ids = adapter.model, _ids(adapter, TEXTS[0])  # 11 tokens: the model's scan crosses chunks of 4
    outputs = _mixer_outputs(model, ids)
    scans = adapter.scan_inputs(ids)
    assert len(scans) == len(outputs) == 2
    for scan, layer, output in zip(scans, model.backbone.layers, outputs):
        assert scan.B.shape == (1, groups, 4, ids.shape[1]) and scan.delta.shape == (1, 4, ids.shape[1])
        alpha = ssd_hidden_attention(scan.delta, scan.A, scan.B, scan.C, heads="none")
        u = scan.u.view(1, 4, 8, -1)
        y = torch.einsum("bhrc,bhpc->bhpr", alpha, u) + scan.D[None, :, None, None] * u
        torch.testing.assert_close(y.flatten(1, 2).transpose(1, 2), scan.scan_output, atol=ATOL, rtol=0)

        omega = ssd_unified_attention(scan.delta, scan.A, scan.B, scan.C, skip=scan.D, conv_weight=scan.conv_weight,
                                      conv_preactivation=scan.conv_preactivation, gate_scale=scan.gate_scale,
                                      channels="none")
        beta = ssd_unified_attention_bias(scan.delta, scan.A, scan.B, scan.C, skip=scan.D,
                                          conv_preactivation=scan.conv_preactivation, conv_bias=scan.conv_bias,
                                          gate_scale=scan.gate_scale)
        inner = torch.einsum("bdrc,bdc->bdr", omega, scan.conv_input) + beta
        torch.testing.assert_close(inner.transpose(1, 2), scan.mixer_input, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.mixer.out_proj(inner.transpose(1, 2)), output, atol=ATOL, rtol=0)
        assert (beta.abs().max() > 1e-2) == bias  # the bias term matters exactly when there is a bias
        assert (omega.triu(1) == 0).all()
        for other in (alpha, omega):  # not trivial: off-diagonal entries of both signs
            lower = other.tril(-1)
            assert (lower > 1e-3).any() and (lower < -1e-3).any()


def test_gate_scale_is_the_gated_rmsnorm_diagonal():
    adapter = _adapter()
    ids = _ids(adapter, TEXTS[2])
    for scan, layer in zip(adapter.scan_inputs(ids), adapter.model.backbone.layers):
        with torch.no_grad():
            normed = layer.mixer.norm(scan.scan_output, _gate(adapter, layer, ids))
        torch.testing.assert_close(scan.gate_scale.transpose(1, 2) * scan.scan_output, normed, atol=1e-6, rtol=0)


def _gate(adapter, layer, ids):
    """z, the in_proj's gate part, recomputed from the layer's own input."""
    seen = []
    handle = layer.mixer.in_proj.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        with torch.no_grad():
            adapter.model(ids, use_cache=False)
    finally:
        handle.remove()
    return seen[0][..., : layer.mixer.intermediate_size]


@pytest.mark.parametrize("form", ["scan", "unified"])
@pytest.mark.parametrize("groups", [1, 2])
def test_trace_shapes_normalisation_padding_and_logits(form, groups):
    adapter = _adapter(groups)
    trace = adapter.trace(TEXTS, form=form)
    n = len(TEXTS[0].split())
    assert trace.attentions.shape == (3, 2, 1, n, n)
    assert trace.mask[1].tolist() == [False] * (n - 1) + [True]  # left padding
    assert trace.readout.tolist() == [n - 1] * 3 and trace.logits.shape == (3, adapter.num_classes)
    attn = trace.attentions[:, :, 0]
    assert (attn >= 0).all() and (attn.triu(1) == 0).all()
    rows = attn.sum(-1)
    valid = trace.mask[:, None, :].expand_as(rows)
    torch.testing.assert_close(rows[valid], torch.ones(int(valid.sum())))
    assert (rows[~valid] == 0).all()
    raw = trace.extras["hidden_attention"]
    pair = trace.mask[:, None, :, None] & trace.mask[:, None, None, :]
    expected = raw.abs() / raw.abs().sum(-1, keepdim=True).clamp_min(1e-30)
    torch.testing.assert_close(attn[pair.expand_as(attn)], expected[pair.expand_as(attn)])
    for key, shape in (("hidden_attention_grad", (3, 2, n, n)), ("residual_grad", (3, 2, n))):
        assert trace.extras[key].shape == shape and torch.isfinite(trace.extras[key]).all()
    for b, text in enumerate(TEXTS):  # each example alone gives the same, and the model's own logits
        alone = adapter.trace([text], form=form, target=trace.target[b : b + 1])
        m = alone.mask.shape[1]
        for key in ("hidden_attention", "hidden_attention_grad"):
            torch.testing.assert_close(trace.extras[key][b, :, -m:, -m:], alone.extras[key][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(trace.saliency[b, -m:], alone.saliency[0], atol=1e-6, rtol=1e-4)
        with torch.no_grad():
            logits = adapter.model(_ids(adapter, text), use_cache=False).logits[0, -1]
        torch.testing.assert_close(trace.logits[b], logits, atol=ATOL, rtol=0)
    assert trace.target.tolist() == trace.logits.argmax(-1).tolist()


def test_trace_extras_are_the_method_on_the_captured_inputs():
    adapter = _adapter(2)
    text = TEXTS[2]
    scans = adapter.scan_inputs(_ids(adapter, text))
    for form, channels in (("scan", "mean"), ("scan", "abs_mean"), ("unified", "mean"), ("unified", "abs_mean")):
        raw = adapter.trace([text], form=form, channels=channels, saliency=None).extras["hidden_attention"][0]
        for layer, scan in enumerate(scans):
            if form == "scan":
                expected = ssd_hidden_attention(scan.delta, scan.A, scan.B, scan.C, heads=channels)
            else:
                expected = ssd_unified_attention(scan.delta, scan.A, scan.B, scan.C, skip=scan.D,
                                                 conv_weight=scan.conv_weight, gate_scale=scan.gate_scale,
                                                 conv_preactivation=scan.conv_preactivation, channels=channels)
            torch.testing.assert_close(raw[layer], expected[0], atol=1e-6, rtol=0)


# the last layer's row r reaches the logit only for r = n - 1
@pytest.mark.parametrize(("layer", "r", "c"), [(0, 3, 1), (1, 4, 2)])
@pytest.mark.parametrize("form", ["scan", "unified"])
def test_hidden_attention_grad_is_the_channel_tied_gradient(form, layer, r, c):
    """d logit / d E where every channel's attention entry [r, c] gets + E: a central finite difference."""
    adapter = _adapter(2)
    text, eps, token = "the movie was very good", 1e-3, 5
    ids = _ids(adapter, text)
    trace = adapter.trace([text], target=token, form=form)
    scan = adapter.scan_inputs(ids)[layer]
    mixer = adapter.model.backbone.layers[layer].mixer
    module, values = (mixer.norm, scan.u) if form == "scan" else (mixer.out_proj, scan.conv_input)

    def shifted(sign):
        def hook(module, args):
            extra = torch.zeros_like(args[0])
            extra[0, r] = sign * eps * values[0, :, c]
            return (args[0] + extra, *args[1:])

        handle = module.register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                return adapter.model(ids, use_cache=False).logits[0, -1, token].double()
        finally:
            handle.remove()

    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    got = float(trace.extras["hidden_attention_grad"][0, layer, r, c])
    assert abs(got - float(numeric)) < 1e-3 * max(1.0, abs(float(numeric)))
    assert abs(float(numeric)) > 1e-4  # the check is not vacuous


def test_residual_grad_is_the_positive_gradient_at_each_layer_input():
    adapter = _adapter()
    texts = ["the movie was good", "bad"]
    trace = adapter.trace(texts, saliency=None)
    backbone = adapter.model.backbone
    for b, text in enumerate(texts):
        hidden, inputs = backbone.embeddings(_ids(adapter, text)), []
        for block in backbone.layers:
            inputs.append(hidden)
            hidden = block(hidden)
        logits = adapter.model.lm_head(backbone.norm_f(hidden))
        grads = torch.autograd.grad(logits[0, -1, int(trace.target[b])], inputs)
        expected = torch.stack([g[0].clamp(min=0).amax(dim=-1) for g in grads])
        valid = trace.mask[b]
        torch.testing.assert_close(trace.extras["residual_grad"][b][:, valid], expected, atol=1e-6, rtol=1e-5)
        assert (trace.extras["residual_grad"][b][:, ~valid] == 0).all()


def test_predict_and_perturb_are_the_model_on_the_kept_tokens():
    adapter = _adapter(2)
    trace = adapter.trace(TEXTS, saliency=None)
    torch.testing.assert_close(adapter.predict(TEXTS), trace.logits, atol=ATOL, rtol=0)
    keep = trace.mask.clone()
    keep[0, -2] = False  # drop the second-to-last token of the first text
    words = TEXTS[0].split()
    with torch.no_grad():
        expected = adapter.model(_ids(adapter, " ".join(words[:-2] + words[-1:])), use_cache=False).logits[0, -1]
    torch.testing.assert_close(adapter.perturb(TEXTS, keep)[0], expected, atol=ATOL, rtol=0)


def test_hooks_and_flags_restored_after_success_and_failure(monkeypatch):
    adapter = _adapter()
    model = adapter.model
    model.train()
    try:
        before, flags = _hook_count(model), [p.requires_grad for p in model.parameters()]
        for form in ("scan", "unified"):
            adapter.trace(["the movie"], form=form)
            assert _hook_count(model) == before and model.training
            assert [p.requires_grad for p in model.parameters()] == flags

        def boom(*args, **kwargs):
            raise RuntimeError("forced failure")

        monkeypatch.setattr("attnlens.models.hf_mamba2.ssd_hidden_attention", boom)
        monkeypatch.setattr("attnlens.models.hf_mamba2.ssd_unified_attention", boom)
        for form in ("scan", "unified"):
            with pytest.raises(RuntimeError, match="forced failure"):
                adapter.trace(["the movie"], form=form)
            assert _hook_count(model) == before and model.training
            assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_rejects_bad_input():
    adapter = _adapter()
    with pytest.raises(ValueError, match="Expected `form` to be one of 'scan', 'unified', but got 'full'"):
        adapter.trace(["the movie"], form="full")
    with pytest.raises(ValueError, match="Expected `channels` to be one of 'mean', 'abs_mean', but got 'none'"):
        adapter.trace(["the movie"], channels="none")
    with pytest.raises(ValueError, match="Expected `texts` to hold at least one text"):
        adapter.trace([])
    with pytest.raises(ValueError, match="Expected a Hugging Face Mamba-2 model with `layers` of Mamba-2 mixers"):
        Mamba2Adapter(torch.nn.Linear(2, 2), None)
    mamba1 = torch.nn.Module()
    mamba1.layers = torch.nn.ModuleList()
    with pytest.raises(ValueError, match="Expected a Hugging Face Mamba-2 model"):
        Mamba2Adapter(mamba1, None)


def test_unified_form_needs_silu(monkeypatch):
    adapter = _adapter()
    mixer = adapter.model.backbone.layers[0].mixer
    monkeypatch.setattr(mixer, "activation", "relu")
    with pytest.raises(ValueError, match="Expected `form` 'unified' to see SiLU convolution activations .* 'relu'"):
        adapter.trace(["the movie"], form="unified")


def test_no_fallback_warnings_on_trace(capfd):
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    adapter = Mamba2Adapter(tiny_mamba2_lm(len(tokenizer), seed=1), tokenizer)
    adapter.trace(["the movie"])
    captured = capfd.readouterr()
    assert "falling back" not in captured.err + captured.out


def test_time_step_limit_is_applied_like_the_model():
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    adapter = Mamba2Adapter(tiny_mamba2_lm(len(tokenizer), n_groups=2), tokenizer)
    for layer in adapter.model.backbone.layers:
        layer.mixer.time_step_limit = (0.05, 0.3)
    ids = _ids(adapter, TEXTS[0])
    outputs = _mixer_outputs(adapter.model, ids)
    for scan, layer, output in zip(adapter.scan_inputs(ids), adapter.model.backbone.layers, outputs):
        assert scan.delta.min() >= 0.05 and scan.delta.max() <= 0.3
        assert ((scan.delta == 0.05) | (scan.delta == 0.3)).any()  # the clamp is active
        omega = ssd_unified_attention(scan.delta, scan.A, scan.B, scan.C, skip=scan.D, conv_weight=scan.conv_weight,
                                      conv_preactivation=scan.conv_preactivation, gate_scale=scan.gate_scale,
                                      channels="none")
        beta = ssd_unified_attention_bias(scan.delta, scan.A, scan.B, scan.C, skip=scan.D,
                                          conv_preactivation=scan.conv_preactivation, conv_bias=scan.conv_bias,
                                          gate_scale=scan.gate_scale)
        inner = torch.einsum("bdrc,bdc->bdr", omega, scan.conv_input) + beta
        torch.testing.assert_close(layer.mixer.out_proj(inner.transpose(1, 2)), output, atol=ATOL, rtol=0)


def test_backbone_without_head_reads_out_through_the_input_embeddings():
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    model = tiny_mamba2_lm(len(tokenizer))
    adapter = Mamba2Adapter(model.backbone, tokenizer)
    trace = adapter.trace(TEXTS[:2], form="unified")
    with torch.no_grad():
        hidden = model.backbone(_ids(adapter, TEXTS[1]), use_cache=False).last_hidden_state[0, -1]
    torch.testing.assert_close(trace.logits[1], hidden @ model.backbone.embeddings.weight.T, atol=ATOL, rtol=0)
    assert adapter.num_classes == len(tokenizer) and adapter.num_layers == 2


def test_unified_form_without_the_rms_division_misses_the_output():
    """Negative control: the gated RMSNorm's 1/rms is part of the per-token diagonal; without it Ω is wrong."""
    adapter = _adapter(2)
    ids = _ids(adapter, TEXTS[0])
    layer = adapter.model.backbone.layers[0]
    scan = adapter.scan_inputs(ids)[0]
    plain = (layer.mixer.norm.weight * F.silu(_gate(adapter, layer, ids))).transpose(1, 2).detach()
    for gate_scale, close in ((scan.gate_scale, True), (plain, False)):
        omega = ssd_unified_attention(scan.delta, scan.A, scan.B, scan.C, skip=scan.D, conv_weight=scan.conv_weight,
                                      gate_scale=gate_scale, conv_preactivation=scan.conv_preactivation,
                                      channels="none")
        beta = ssd_unified_attention_bias(scan.delta, scan.A, scan.B, scan.C, skip=scan.D, gate_scale=gate_scale,
                                          conv_preactivation=scan.conv_preactivation, conv_bias=scan.conv_bias)
        inner = torch.einsum("bdrc,bdc->bdr", omega, scan.conv_input) + beta
        error = (inner.transpose(1, 2) - scan.mixer_input).abs().max()
        assert (error < ATOL) == close and (close or error > 1e-2)
