"""The Jamba adapter on a tiny seeded 5-layer hybrid (Mamba, attention, Mamba, Mamba, attention): layer kinds in
model order, attention layers against the model's own `output_attentions`, Mamba layers against their mixer outputs
and a per-entry float64 loop for α, one row-stochastic normalisation, padding invariance, rollout against a loop
composed layer by layer, the registry's methods through all layers, gradients, predict, loading and state restored."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from transformers import JambaConfig, MambaConfig

from attnlens.methods.hidden_attention import hidden_attention
from attnlens.methods.registry import MethodCache, expand_methods, list_methods
from attnlens.methods.rollout import rollout
from attnlens.models import adapter_for_config, get_adapter_class, load_adapter
from attnlens.models._tiny import _CAUSAL_SPECIALS, _tokenizer
from attnlens.models._tiny_hybrid import tiny_jamba_lm
from attnlens.models.hf_hybrid import JambaAdapter
from attnlens.models.hf_mamba import MambaAdapter

torch.set_num_threads(1)
TEXTS = ["the movie was very good and fun", "bad", "a boring plot", "the acting was not great"]
ATOL = 1e-5


def _make(seed: int = 0) -> JambaAdapter:
    tokenizer = _tokenizer(_CAUSAL_SPECIALS, template=False)
    return JambaAdapter(tiny_jamba_lm(len(tokenizer), seed=seed, layers=5, attn_layer_period=3), tokenizer)


@functools.cache
def _adapter() -> JambaAdapter:
    return _make()


def _ids(adapter: JambaAdapter, text: str) -> torch.Tensor:
    return torch.tensor([adapter.tokenizer.encode(text)])


def n_pad(trace, b: int) -> int:
    return int((~trace.mask[b]).sum())


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _reference_alpha(delta, A, B, C):
    """α[d, r, c] = Σ_s C[s, r] exp(A[d, s] Σ_{k=c+1..r} Δ_k[d]) Δ_c[d] B[s, c], entry by entry (one example)."""
    channels, n = delta.shape
    alpha = torch.zeros(channels, n, n, dtype=torch.float64)
    for r in range(n):
        for c in range(r + 1):
            decay = torch.exp(A * delta[:, c + 1 : r + 1].sum(dim=1)[:, None])  # (D, N)
            alpha[:, r, c] = (C[:, r][None] * decay * delta[:, c][:, None] * B[:, c][None]).sum(dim=1)
    return alpha


def _norm_rows(x):
    return x / x.sum(dim=-1, keepdim=True)


def _reference_layers(adapter: JambaAdapter, text: str) -> list[torch.Tensor]:
    """Each layer's `(n, n)` matrix in float64, built here from the model alone: the head mean of an attention layer's
    `output_attentions`, norm_rows(|channel mean of the loop α|) of a Mamba layer's scan inputs."""
    ids = _ids(adapter, text)
    with torch.no_grad():
        attentions = iter(adapter.model(ids, output_attentions=True, use_cache=False).attentions)
    scans = adapter.scan_inputs(ids)
    layers = []
    for index, kind in enumerate(adapter.model.config.layers_block_type):
        if kind == "attention":
            layers.append(next(attentions)[0].double().mean(dim=0))
        else:
            scan = scans[index]
            alpha = _reference_alpha(scan.delta[0].double(), scan.A.double(), scan.B[0].double(), scan.C[0].double())
            layers.append(_norm_rows(alpha.mean(dim=0).abs()))
    return layers


def test_registered_and_accepts_jamba_configs_only():
    assert get_adapter_class("jamba") is JambaAdapter
    assert adapter_for_config(JambaConfig()) is JambaAdapter
    assert not JambaAdapter.accepts(MambaConfig()) and not MambaAdapter.accepts(JambaConfig())
    assert not JambaAdapter.accepts(JambaConfig(architectures=["JambaForSequenceClassification"]))


def test_trace_has_each_kind_of_layer_in_model_order():
    adapter = _adapter()
    layout = adapter.model.config.layers_block_type
    assert layout == ["mamba", "attention", "mamba", "mamba", "attention"]
    trace = adapter.trace(TEXTS)
    heads = adapter.model.config.num_attention_heads
    batch, n = trace.mask.shape
    assert trace.attentions.shape == (batch, len(layout), heads, n, n) == (4, 5, 2, 7, 7)
    assert adapter.layer_kinds == layout and adapter.num_layers == len(layout)
    assert [type(layer).__name__ for layer in adapter.layers()] == [
        "JambaMambaDecoderLayer" if kind == "mamba" else "JambaAttentionDecoderLayer" for kind in layout]
    ssm = trace.extras["ssm_layers"]
    assert ssm.dtype == torch.bool and ssm.shape == (batch, len(layout))
    assert all(row == [kind == "mamba" for kind in layout] for row in ssm.tolist())
    assert int(ssm[0].sum()) == layout.count("mamba") == 3 and int((~ssm[0]).sum()) == layout.count("attention") == 2
    # a Mamba layer's one matrix is repeated over the heads; an attention layer's heads are its own
    attn = trace.attentions
    for layer, kind in enumerate(layout):
        same = torch.equal(attn[:, layer, 0], attn[:, layer, 1])
        assert same == (kind == "mamba")


def test_attention_layers_are_the_models_own_attention_left_padded():
    adapter = _adapter()
    trace = adapter.trace(TEXTS)
    attention_layers = [i for i, kind in enumerate(adapter.layer_kinds) if kind == "attention"]
    for b, text in enumerate(TEXTS):
        with torch.no_grad():
            own = adapter.model(_ids(adapter, text), output_attentions=True, use_cache=False).attentions
        assert len(own) == len(attention_layers)
        length = int(trace.mask[b].sum())
        for layer, weights in zip(attention_layers, own):
            torch.testing.assert_close(trace.attentions[b, layer, :, -length:, -length:], weights[0], atol=ATOL, rtol=0)
            torch.testing.assert_close(trace.extras["hidden_attention"][b, layer, -length:, -length:],
                                       weights[0].mean(dim=0), atol=ATOL, rtol=0)
        assert (trace.attentions[b, :, :, : n_pad(trace, b)] == 0).all()
        assert (trace.attentions[b, :, :, :, : n_pad(trace, b)] == 0).all()


def test_hidden_attention_reproduces_every_mamba_mixer_output():
    """out_proj((α·u + D·u)·SiLU(z)), Δ, B, C as captured (after the mixer's RMS norms), is the mixer's output."""
    adapter = _adapter()
    model = adapter.model
    ids = _ids(adapter, "the movie was very good and the acting was fun")
    outputs = {}
    mixers = {i: layer.mamba for i, layer in enumerate(adapter.layers()) if hasattr(layer, "mamba")}
    handles = [mixer.register_forward_hook(lambda m, i, o, index=index: outputs.__setitem__(index, o))
               for index, mixer in mixers.items()]
    try:
        with torch.no_grad():
            model(ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    scans = adapter.scan_inputs(ids)
    assert sorted(scans) == sorted(mixers) == [0, 2, 3]
    for index, scan in scans.items():
        alpha = hidden_attention(scan.delta, scan.A, scan.B, scan.C, channels="none")
        u = scan.u
        y = (torch.einsum("bdrc,bdc->bdr", alpha, u) + scan.D[None, :, None] * u) * F.silu(scan.gate)
        torch.testing.assert_close(mixers[index].out_proj(y.transpose(1, 2)), outputs[index], atol=ATOL, rtol=0)
        torch.testing.assert_close(y.transpose(1, 2), scan.scan_output, atol=ATOL, rtol=0)
        # B and C are the normalised ones: the raw x_proj output would not reproduce the layer
        rank, states = mixers[index].time_step_rank, mixers[index].ssm_state_size
        raw_b = mixers[index].x_proj(u.transpose(1, 2))[..., rank : rank + states].transpose(1, 2)
        assert not torch.allclose(raw_b, scan.B, atol=1e-3)


def test_every_layer_matches_the_loop_reference_and_is_row_stochastic():
    adapter = _adapter()
    trace = adapter.trace(TEXTS)
    mask = trace.mask
    rows = trace.attentions.sum(dim=-1)  # (B, L, H, n)
    valid = mask[:, None, None, :].expand_as(rows)
    torch.testing.assert_close(rows[valid], torch.ones(int(valid.sum())), atol=ATOL, rtol=0)
    assert (rows[~valid] == 0).all() and (trace.attentions >= 0).all()
    assert (trace.attentions.triu(1) == 0).all()  # causal, both kinds
    for b, text in enumerate(TEXTS):
        length = int(mask[b].sum())
        for layer, expected in enumerate(_reference_layers(adapter, text)):
            got = trace.attentions[b, layer, :, -length:, -length:].double().mean(dim=0)
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
        for layer in (0, 2, 3):  # Mamba layers: the signed channel mean, normalised the documented way
            raw = trace.extras["hidden_attention"][b, layer, -length:, -length:]
            torch.testing.assert_close(trace.attentions[b, layer, 0, -length:, -length:], _norm_rows(raw.abs()),
                                       atol=ATOL, rtol=0)


def test_padding_invariance_alone_and_in_a_batch_with_longer_ones():
    adapter = _adapter()
    batched = adapter.trace(TEXTS, saliency="l2")
    for b, text in enumerate(TEXTS):
        alone = adapter.trace([text], saliency="l2")
        valid = batched.mask[b]
        assert int(valid.sum()) == alone.mask.shape[1] and alone.mask.all()
        torch.testing.assert_close(batched.attentions[b][:, :, valid][:, :, :, valid], alone.attentions[0],
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(batched.extras["hidden_attention"][b][:, valid][:, :, valid],
                                   alone.extras["hidden_attention"][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(batched.extras["residual_grad"][b][:, valid], alone.extras["residual_grad"][0],
                                   atol=1e-6, rtol=1e-5)
        assert (batched.extras["residual_grad"][b][:, ~valid] == 0).all()
        torch.testing.assert_close(batched.logits[b], alone.logits[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(batched.saliency[b][valid], alone.saliency[0], atol=1e-6, rtol=1e-5)
        assert batched.target[b] == alone.target[0] and batched.readout[b] == batched.mask.shape[1] - 1


def test_rollout_through_every_layer_equals_a_loop_composed_layer_by_layer():
    adapter = _adapter()
    trace = adapter.trace(TEXTS, saliency=None)
    joint = rollout(trace.attentions.double(), mask=trace.mask)
    cache = MethodCache(trace.attentions.double(), trace.mask, extras=trace.extras, readout=trace.readout)
    (variant,) = expand_methods(["rollout"])
    torch.testing.assert_close(variant.compute(cache).joint, joint, atol=1e-12, rtol=0)
    for b, text in enumerate(TEXTS):
        length = int(trace.mask[b].sum())
        expected = torch.eye(length, dtype=torch.float64)
        for layer, matrix in enumerate(_reference_layers(adapter, text)):  # J_l = norm_rows(A_l + I) J_{l-1}
            augmented = _norm_rows(matrix + torch.eye(length, dtype=torch.float64))
            step = torch.zeros(length, length, dtype=torch.float64)
            for r in range(length):
                for c in range(length):
                    step[r, c] = sum(augmented[r, k] * expected[k, c] for k in range(length))
            expected = step
            torch.testing.assert_close(joint[b, layer, -length:, -length:], expected, atol=ATOL, rtol=0)
        assert (joint[b, :, : n_pad(trace, b)] == 0).all()


def test_registry_methods_run_through_all_layers():
    adapter = _adapter()
    trace = adapter.trace(TEXTS)
    names = list_methods(needs=sorted(adapter.provides))
    assert {"raw", "rollout", "selective", "flow", "diffusion", "mamba_attr"} <= set(names)
    cache = MethodCache(trace.attentions, trace.mask, extras=trace.extras, readout=trace.readout)
    batch, layers, _, n, _ = trace.attentions.shape
    for variant in expand_methods(["raw", "rollout", "selective", "flow", "diffusion", "diffused_rollout",
                                   "mamba_attr"]):
        result = variant.compute(cache)
        assert result.joint.shape == (batch, layers, n, n) and torch.isfinite(result.joint).all(), variant.name
    ssm = trace.extras["ssm_layers"][0]
    for how in ("mean", "max", "min"):  # every head fusion gives a Mamba layer's matrix back exactly
        torch.testing.assert_close(cache.fused(how)[:, ssm], trace.attentions[:, ssm, 0], atol=0, rtol=0)


def test_residual_grad_is_the_positive_gradient_at_each_layer_input():
    adapter = _adapter()
    texts = TEXTS[:2]
    trace = adapter.trace(texts, saliency=None)
    for b, text in enumerate(texts):
        seen = []
        handles = [layer.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0]), with_kwargs=True)
                   for layer in adapter.layers()]
        try:
            embeds = adapter.model.get_input_embeddings()(_ids(adapter, text)).detach().requires_grad_(True)
            logits = adapter.model(inputs_embeds=embeds, use_cache=False).logits
            grads = torch.autograd.grad(logits[0, -1, int(trace.target[b])], seen)
        finally:
            for handle in handles:
                handle.remove()
        expected = torch.stack([g[0].clamp(min=0).amax(dim=-1) for g in grads])
        valid = trace.mask[b]
        torch.testing.assert_close(trace.extras["residual_grad"][b][:, valid], expected, atol=1e-6, rtol=1e-5)


def test_predict_and_trace_agree_with_the_models_logits():
    adapter = _adapter()
    trace = adapter.trace(TEXTS, saliency=None)
    predicted = adapter.predict(TEXTS)
    with torch.no_grad():
        direct = torch.stack([adapter.model(_ids(adapter, t), use_cache=False).logits[0, -1] for t in TEXTS])
    torch.testing.assert_close(predicted, direct, atol=ATOL, rtol=0)
    torch.testing.assert_close(trace.logits, direct, atol=ATOL, rtol=0)
    assert trace.target.tolist() == direct.argmax(dim=-1).tolist()
    assert adapter.trace(TEXTS[:1], target="good").target.tolist() == [adapter.tokenizer.convert_tokens_to_ids("good")]


def test_load_adapter_reads_a_saved_jamba_folder(tmp_path):
    adapter = _adapter()
    adapter.model.save_pretrained(tmp_path)
    adapter.tokenizer.save_pretrained(tmp_path)
    loaded = load_adapter(str(tmp_path))
    assert isinstance(loaded, JambaAdapter) and loaded.model.config._attn_implementation == "eager"
    torch.testing.assert_close(loaded.predict(TEXTS), adapter.predict(TEXTS), atol=ATOL, rtol=0)


def test_hooks_and_flags_restored_after_a_failure_inside_the_capture(monkeypatch):
    adapter = _make()
    model = adapter.model
    adapter.trace(TEXTS[:1])  # transformers 5 installs its own output-recording hooks on first use
    model.train()
    hooks, flags = _hooks(model), [p.requires_grad for p in model.parameters()]

    def boom(*args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr("attnlens.models.hf_hybrid.hidden_attention", boom)
    with pytest.raises(RuntimeError, match="forced failure"):
        adapter.trace(TEXTS[:2])
    assert model.training and _hooks(model) == hooks and [p.requires_grad for p in model.parameters()] == flags


def test_rejects_bad_input_and_models_without_attention_weights():
    adapter = _make()
    with pytest.raises(ValueError, match="Expected a Hugging Face Jamba model with `layers`"):
        JambaAdapter(torch.nn.Linear(2, 2), None)
    with pytest.raises(ValueError, match="Expected `channels` to be one of"):
        adapter.trace(TEXTS[:1], channels="sum")
    with pytest.raises(ValueError, match="Expected `texts` to hold at least one text"):
        adapter.trace([])
    adapter.model.set_attn_implementation("sdpa")
    with pytest.raises(ValueError, match="Expected the model's attention layers to return attention weights"):
        adapter.trace(TEXTS[:1])
    assert JambaAdapter(adapter.model, adapter.tokenizer).model.config._attn_implementation == "eager"
