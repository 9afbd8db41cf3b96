import pytest
import torch
import torch.nn.functional as F
from transformers import MambaConfig

from attnlens.methods.hidden_attention import hidden_attention
from attnlens.models._registry import adapter_for_config, get_adapter_class
from attnlens.models._tiny import tiny_mamba_lm as seeded_mamba_lm
from attnlens.models.hf_mamba import MambaAdapter
from tests.conftest import tiny_mamba_lm, word_level_tokenizer

torch.set_num_threads(1)
WORDS = ["the", "movie", "was", "great", "not", "bad", "at", "all", "a", "film", "i", "loved", "hated", "it"]


def tiny_tokenizer():
    return word_level_tokenizer(WORDS)


def tiny_mamba(seed=0):
    return tiny_mamba_lm(len(WORDS) + 2, seed)


@pytest.fixture(scope="module")
def adapter():
    return MambaAdapter(tiny_mamba(), tiny_tokenizer())


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_registered_and_accepts_mamba_configs():
    assert get_adapter_class("mamba") is MambaAdapter
    assert adapter_for_config(MambaConfig()) is MambaAdapter
    assert not MambaAdapter.accepts(object())


def test_hidden_attention_reproduces_every_mixer_output(adapter):
    model = adapter.model
    ids = torch.tensor([adapter.tokenizer.encode("the movie was great not bad at all")])
    outputs = []
    handles = [layer.mixer.register_forward_hook(lambda m, i, o: outputs.append(o)) for layer in model.backbone.layers]
    try:
        with torch.no_grad():
            model(ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    scans = adapter.scan_inputs(ids)
    assert len(scans) == 2
    for scan, layer, output in zip(scans, model.backbone.layers, outputs):
        alpha = hidden_attention(scan.delta, scan.A, scan.B, scan.C, channels="none")
        u = scan.u
        y = (torch.einsum("bdrc,bdc->bdr", alpha, u) + scan.D[None, :, None] * u) * torch.nn.functional.silu(scan.gate)
        rebuilt = layer.mixer.out_proj(y.transpose(1, 2))
        torch.testing.assert_close(rebuilt, output, atol=1e-5, rtol=0)


def test_trace_shapes_normalisation_and_padding(adapter):
    texts = ["the movie was great", "not bad at all a film", "i loved it"]
    trace = adapter.trace(texts)
    assert trace.attentions.shape == (3, 2, 1, 6, 6)
    assert trace.mask.tolist()[2] == [False, False, False, True, True, True]  # left padding
    assert trace.logits.shape == (3, len(WORDS) + 2) and trace.target.dtype == torch.long
    assert trace.saliency.shape == (3, 6) and (trace.saliency[2, :3] == 0).all()
    assert trace.tokens[2] == ["i", "loved", "it"]
    attn = trace.attentions[:, :, 0]
    assert (attn >= 0).all() and (attn.triu(1) == 0).all()
    rows = attn.sum(-1)
    valid = trace.mask[:, None, :].expand_as(rows)
    torch.testing.assert_close(rows[valid], torch.ones(int(valid.sum())))
    assert (rows[~valid] == 0).all()
    raw = trace.extras["hidden_attention"]
    expected = raw.abs() / raw.abs().sum(-1, keepdim=True).clamp_min(1e-30)
    torch.testing.assert_close(attn[trace.mask[:, None, :, None].expand_as(attn) & trace.mask[:, None, None, :]],
                               expected[trace.mask[:, None, :, None].expand_as(attn) & trace.mask[:, None, None, :]])
    for b, text in enumerate(texts):  # each example alone gives exactly the same
        alone = adapter.trace([text])
        n = alone.mask.shape[1]
        torch.testing.assert_close(trace.attentions[b, :, :, -n:, -n:], alone.attentions[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(trace.extras["hidden_attention_grad"][b, :, -n:, -n:],
                                   alone.extras["hidden_attention_grad"][0], atol=1e-6, rtol=0)
        assert trace.target[b] == alone.target[0]


def test_default_target_is_next_token_argmax_and_given_target_used(adapter):
    trace = adapter.trace(["the movie was"])
    with torch.no_grad():
        logits = adapter.model(torch.tensor([adapter.tokenizer.encode("the movie was")])).logits[:, -1]
    assert int(trace.target[0]) == int(logits.argmax())
    torch.testing.assert_close(trace.logits, logits, atol=1e-5, rtol=0)
    assert adapter.trace(["the movie was"], target=5).target.tolist() == [5]
    assert adapter.target_id("great") == WORDS.index("great") + 2


def test_gradient_is_channel_tied_hidden_attention_gradient(adapter):
    """d logit / d E where every channel's α gets + E: compare with a finite difference on one entry."""
    ids = torch.tensor([adapter.tokenizer.encode("not bad at all")])
    trace = adapter.trace(["not bad at all"], target=3)
    model, layer, r, c, eps = adapter.model, 1, 3, 1, 1e-3
    scans = adapter.scan_inputs(ids)
    mixer = model.backbone.layers[layer].mixer
    u, gate = scans[layer].u, scans[layer].gate

    def shifted(sign):
        def hook(module, inputs):
            extra = torch.zeros_like(inputs[0])
            extra[0, r] = sign * eps * u[0, :, c] * torch.nn.functional.silu(gate[0, :, r])
            return (inputs[0] + extra,)
        handle = mixer.out_proj.register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                return model(ids).logits[0, -1, 3].double()
        finally:
            handle.remove()

    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    assert abs(float(trace.extras["hidden_attention_grad"][0, layer, r, c]) - float(numeric)) < 1e-3


def test_hooks_and_flags_restored_after_success_and_failure(adapter, monkeypatch):
    model = adapter.model
    model.train()
    before = _hook_count(model)
    flags = [p.requires_grad for p in model.parameters()]
    adapter.trace(["the movie"])
    assert _hook_count(model) == before and model.training
    assert [p.requires_grad for p in model.parameters()] == flags

    def boom(*args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr("attnlens.models.hf_mamba.hidden_attention", boom)
    with pytest.raises(RuntimeError, match="forced failure"):
        adapter.trace(["the movie"])
    assert _hook_count(model) == before and model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    model.eval()


def test_rejects_bad_input(adapter):
    with pytest.raises(ValueError, match="Expected `texts` to hold at least one text"):
        adapter.trace([])
    with pytest.raises(ValueError, match="Expected every text to give at least one token"):
        adapter.trace([""])
    with pytest.raises(ValueError, match="Expected `saliency` to be one of"):
        adapter.trace(["the"], saliency="grad")
    with pytest.raises(ValueError, match=r"Expected `target` to hold one token id per text \(2\)"):
        adapter.trace(["the", "a"], target=[1, 2, 3])
    with pytest.raises(ValueError, match="Expected `target` to be a single token"):
        adapter.target_id("the movie")
    with pytest.raises(ValueError, match="Expected a Hugging Face Mamba model with `layers`"):
        MambaAdapter(torch.nn.Linear(2, 2), None)


BAD_TYPE = r"Expected `target` to be a token id \(int\), a list or tuple of ids, or an integer tensor, but got "
OUT_OF_RANGE = r"Expected `target` to hold token ids in \[0, 16\), but got "


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        (10**6, ValueError, OUT_OF_RANGE + "1000000"),
        (-1, ValueError, OUT_OF_RANGE + "-1"),
        ([3, 16], ValueError, OUT_OF_RANGE + "16"),
        (torch.tensor([-2]), ValueError, OUT_OF_RANGE + "-2"),
        (2.7, TypeError, BAD_TYPE + "float 2.7"),
        (True, TypeError, BAD_TYPE + "bool True"),
        ("good", ValueError, "Expected `target` to be a single token of the vocabulary, but 'good' is unknown"),
        ("not bad", ValueError, "Expected `target` to be a single token, but 'not bad' is 2 tokens"),
        (None.__class__, TypeError, BAD_TYPE + "type <class 'NoneType'>"),
        ([1, 2.5], TypeError, BAD_TYPE + r"\[1, 2.5\] \(holding a float\)"),
        ([1, False], TypeError, BAD_TYPE + r"\[1, False\] \(holding a bool\)"),
        (torch.tensor([2.0]), TypeError, BAD_TYPE + "a tensor of dtype torch.float32"),
        (torch.tensor([True]), TypeError, BAD_TYPE + "a tensor of dtype torch.bool"),
    ],
)
def test_rejects_bad_target(adapter, target, error, message):
    with pytest.raises(error, match=message):
        adapter.trace(["good movie", "the film"], target=target)


def test_target_forms_accepted(adapter):
    texts = ["the movie was", "not bad"]
    last = len(WORDS) + 1  # vocabulary size 16: ids 0..15
    forms = (last, [0, last], (3, 4), torch.tensor([5, 6]), torch.tensor(7), torch.tensor([8], dtype=torch.int32))
    for target in forms:
        got = adapter.trace(texts, target=target, saliency="none").target
        expected = torch.as_tensor(target).reshape(-1).long().expand(2)
        assert got.tolist() == expected.tolist()
    assert adapter.trace(["the movie"], target=adapter.target_id("great")).target.tolist() == [WORDS.index("great") + 2]
    assert adapter.trace(["the movie"], target="great").target.tolist() == [WORDS.index("great") + 2]
    assert adapter.trace(["the movie"], target="pred").target.tolist() == adapter.trace(["the movie"]).target.tolist()


def test_trace_uses_the_shared_flag_context_managers(adapter, monkeypatch):
    """STYLE 23: eval mode and frozen parameters come from attnlens.models._hooks, not inline code."""
    from attnlens.models import _hooks

    entered = []

    def spy(name, manager):
        def wrapped(model):
            entered.append(name)
            return manager(model)
        return wrapped

    monkeypatch.setattr("attnlens.models.hf_mamba.eval_mode", spy("eval_mode", _hooks.eval_mode), raising=False)
    monkeypatch.setattr("attnlens.models.hf_mamba.frozen_parameters",
                        spy("frozen_parameters", _hooks.frozen_parameters), raising=False)
    adapter.trace(["the movie"])
    assert sorted(entered) == ["eval_mode", "frozen_parameters"]


def test_residual_grad_is_the_positive_gradient_at_each_layer_input():
    """extras["residual_grad"][b, l, t] = max_d (∂ target logit / ∂ h_l[t, d])⁺, with h_l the hidden states
    entering layer l, computed here by running the blocks one by one and calling autograd directly."""
    from attnlens.models import create_tiny_adapter

    adapter = create_tiny_adapter("test_mamba")
    texts = ["the movie was good", "bad"]
    trace = adapter.trace(texts, saliency=None)
    backbone = adapter.model.backbone
    for b, text in enumerate(texts):
        ids = torch.tensor([adapter.tokenizer.encode(text)])
        hidden, inputs = backbone.embeddings(ids), []
        for block in backbone.layers:
            inputs.append(hidden)
            hidden = block(hidden)
        logits = adapter.model.lm_head(backbone.norm_f(hidden))
        grads = torch.autograd.grad(logits[0, -1, int(trace.target[b])], inputs)
        expected = torch.stack([g[0].clamp(min=0).amax(dim=-1) for g in grads])
        valid = trace.mask[b]
        torch.testing.assert_close(trace.extras["residual_grad"][b][:, valid], expected, atol=1e-6, rtol=1e-5)
        assert (trace.extras["residual_grad"][b][:, ~valid] == 0).all()


# --- the unified form (Zimerman, Ali & Wolf, ICLR 2025) -------------------------------------------


def mixer_outputs(model, ids):
    """Every layer's mixer output for `ids (1, n)`, by forward hooks on the mixers."""
    outputs = []
    handles = [layer.mixer.register_forward_hook(lambda m, i, o: outputs.append(o)) for layer in model.backbone.layers]
    try:
        with torch.no_grad():
            model(ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def unified_rebuilt(adapter, ids, *, with_bias=True):
    """Per layer out_proj(Ω x + β) from the captured inputs alone (Ω per channel, β the conv bias's share)."""
    from attnlens.methods.unified_attention import unified_attention_bias

    rebuilt = []
    for scan, layer in zip(adapter.scan_inputs(ids), adapter.model.backbone.layers):
        omega = hidden_attention(scan.delta, scan.A, scan.B, scan.C, channels="none", form="unified", gate=scan.gate,
                                 skip=scan.D, conv_weight=scan.conv_weight, conv_preactivation=scan.conv_preactivation)
        gated = torch.einsum("bdrc,bdc->bdr", omega, scan.conv_input)
        if with_bias:
            gated = gated + unified_attention_bias(scan.delta, scan.A, scan.B, scan.C, gate=scan.gate, skip=scan.D,
                                                   conv_preactivation=scan.conv_preactivation,
                                                   conv_bias=scan.conv_bias)
        rebuilt.append(layer.mixer.out_proj(gated.transpose(1, 2)))
    return rebuilt


def scan_rebuilt(adapter, ids):
    """Per layer out_proj((α u + D u) · SiLU(z)) from the captured inputs alone."""
    rebuilt = []
    for scan, layer in zip(adapter.scan_inputs(ids), adapter.model.backbone.layers):
        alpha = hidden_attention(scan.delta, scan.A, scan.B, scan.C, channels="none")
        y = (torch.einsum("bdrc,bdc->bdr", alpha, scan.u) + scan.D[None, :, None] * scan.u) * F.silu(scan.gate)
        rebuilt.append(layer.mixer.out_proj(y.transpose(1, 2)))
    return rebuilt


@pytest.mark.parametrize("conv_bias", [True, False])
def test_unified_form_reproduces_every_mixer_output(conv_bias):
    """out_proj(Ω x + β) = the mixer's output, with a (non-zero) conv bias and with none (β = 0)."""
    options = {"conv_bias": True} if conv_bias else {"use_conv_bias": False}
    adapter = MambaAdapter(seeded_mamba_lm(len(WORDS) + 2, seed=3, **options), tiny_tokenizer())
    ids = torch.tensor([adapter.tokenizer.encode("the movie was great not bad at all a film")])
    outputs = mixer_outputs(adapter.model, ids)
    scans = adapter.scan_inputs(ids)
    assert (scans[0].conv_bias is not None) == conv_bias
    if conv_bias:
        assert scans[0].conv_bias.abs().min() > 0
        unbiased = unified_rebuilt(adapter, ids, with_bias=False)
        assert (unbiased[0] - outputs[0]).abs().max() > 1e-3  # β matters: the test can fail
    for scan in scans:
        torch.testing.assert_close(F.silu(scan.conv_preactivation), scan.u, atol=1e-6, rtol=0)
    for rebuilt, output in zip(unified_rebuilt(adapter, ids), outputs):
        torch.testing.assert_close(rebuilt, output, atol=1e-5, rtol=0)


def test_unified_trace_normalisation_padding_and_extras(adapter):
    texts = ["the movie was great", "not bad at all a film", "i loved it"]
    trace = adapter.trace(texts, form="unified")
    assert trace.attentions.shape == (3, 2, 1, 6, 6)
    attn = trace.attentions[:, :, 0]
    assert (attn >= 0).all() and (attn.triu(1) == 0).all()
    raw = trace.extras["hidden_attention"]
    pair = trace.mask[:, None, :, None] & trace.mask[:, None, None, :]
    expected = raw.abs() / raw.abs().sum(-1, keepdim=True).clamp_min(1e-30)
    torch.testing.assert_close(attn[pair.expand_as(attn)], expected[pair.expand_as(attn)])
    ids = torch.tensor([adapter.tokenizer.encode(texts[1])])
    for layer, scan in enumerate(adapter.scan_inputs(ids)):  # the extra is the signed channel mean of Ω
        omega = hidden_attention(scan.delta, scan.A, scan.B, scan.C, form="unified", gate=scan.gate, skip=scan.D,
                                 conv_weight=scan.conv_weight, conv_preactivation=scan.conv_preactivation)
        torch.testing.assert_close(raw[1, layer], omega[0], atol=1e-6, rtol=0)
    scan_trace = adapter.trace(texts)
    assert not torch.allclose(scan_trace.extras["hidden_attention"], raw)
    for b, text in enumerate(texts):
        alone = adapter.trace([text], form="unified")
        n = alone.mask.shape[1]
        torch.testing.assert_close(trace.attentions[b, :, :, -n:, -n:], alone.attentions[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(trace.extras["hidden_attention_grad"][b, :, -n:, -n:],
                                   alone.extras["hidden_attention_grad"][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(trace.extras["residual_grad"], scan_trace.extras["residual_grad"])
    torch.testing.assert_close(trace.logits, scan_trace.logits)
    abs_mean = adapter.trace(texts[:1], form="unified", channels="abs_mean").extras["hidden_attention"]
    assert (abs_mean >= 0).all()


def test_scan_is_the_default_form(adapter):
    texts = ["the movie was great", "i loved it"]
    default, scan = adapter.trace(texts), adapter.trace(texts, form="scan")
    for key in ("hidden_attention", "hidden_attention_grad", "residual_grad"):
        torch.testing.assert_close(default.extras[key], scan.extras[key], atol=0, rtol=0)
    with pytest.raises(ValueError, match="Expected `form` to be one of 'scan', 'unified', but got 'mixer'"):
        adapter.trace(texts, form="mixer")


def test_unified_gradient_is_channel_tied_omega_gradient(adapter):
    """d logit / d E where every channel's Ω_d[r, c] gets + E: the gated output at r moves by E · x_d[c]."""
    ids = torch.tensor([adapter.tokenizer.encode("not bad at all")])
    trace = adapter.trace(["not bad at all"], target=3, form="unified")
    model, layer, r, c, eps = adapter.model, 1, 3, 1, 1e-3
    x = adapter.scan_inputs(ids)[layer].conv_input
    mixer = model.backbone.layers[layer].mixer

    def shifted(sign):
        def hook(module, inputs):
            extra = torch.zeros_like(inputs[0])
            extra[0, r] = sign * eps * x[0, :, c]
            return (inputs[0] + extra,)
        handle = mixer.out_proj.register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                return model(ids).logits[0, -1, 3].double()
        finally:
            handle.remove()

    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    assert abs(float(trace.extras["hidden_attention_grad"][0, layer, r, c]) - float(numeric)) < 1e-3
    assert (trace.extras["hidden_attention_grad"].triu(1) == 0).all()
