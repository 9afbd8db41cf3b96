"""One contract for every tiny registered adapter variant (timm's `test_models` over `list_models()`):
Trace shapes and dtypes, readout, finite values, row-stochastic attention, zero padding, gradients,
padding invariance, predict and perturb against the model called directly, layers, labels, and
hooks, `requires_grad` and the training flag restored after success and after a forced failure."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from attnlens.models import (
    Adapter,
    adapter_for_config,
    create_tiny_adapter,
    get_adapter_class,
    list_adapters,
    list_tiny_variants,
)
from attnlens.models._registry import register_tiny_variant

TEXTS = ["the movie was very good", "bad", "a boring plot"]
# text families only; image families have their own contract (test_image_adapter_contract.py)
VARIANTS = sorted(name for family in list_adapters() if get_adapter_class(family).modality == "text"
                  for name in list_tiny_variants(family))
ATOL = 1e-5


@functools.cache
def _adapter(name: str) -> Adapter:
    return create_tiny_adapter(name)


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _direct(adapter: Adapter, rows: list[list[int]]) -> torch.Tensor:
    """The model itself on each row of token ids alone (no padding): `(B, C)` logits at its readout."""
    out = []
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row], device=adapter.device)
            if adapter.task == "language_modeling":
                out.append(adapter.model(ids, use_cache=False).logits[0, -1])
            else:
                out.append(adapter.model(input_ids=ids).logits[0])
    return torch.stack(out)


def _rows(trace) -> list[list[int]]:
    return [ids[m].tolist() for ids, m in zip(trace.input_ids, trace.mask)]


def test_every_registered_family_has_a_tiny_variant():
    for family in list_adapters():
        assert list_tiny_variants(family), f"family {family!r} has no tiny variant"
    assert list_tiny_variants() == sorted(set(list_tiny_variants()))


def test_unknown_tiny_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Expected `name` to be one of test_albert, .*test_roberta.*, but got 'nope'"):
        create_tiny_adapter("nope")
    with pytest.raises(ValueError, match="Expected a new tiny variant name, but 'test_bert' is already registered"):
        register_tiny_variant("test_bert", family="text")(lambda: None)


@pytest.mark.parametrize("name", VARIANTS)
def test_family_and_routing(name):
    adapter = _adapter(name)
    assert isinstance(adapter, Adapter) and name in list_tiny_variants(adapter.family)
    assert adapter_for_config(adapter.model.config) is type(adapter)
    assert adapter.modality == "text" and adapter.device == torch.device("cpu")


@pytest.mark.parametrize("name", VARIANTS)
def test_trace_contract(name):
    adapter = _adapter(name)
    trace = adapter.trace(TEXTS, labels=[1, 0, 0], saliency="l2")
    batch, n = trace.mask.shape
    assert batch == len(TEXTS) and trace.mask.dtype == torch.bool
    assert trace.attentions.ndim == 5 and trace.attentions.shape[:2] == (batch, adapter.num_layers)
    assert trace.attentions.shape[-2:] == (n, n) and trace.attentions.is_floating_point()
    assert trace.logits.shape == (batch, adapter.num_classes)
    for tensor in (trace.attentions, trace.logits, trace.saliency):
        assert torch.isfinite(tensor).all()
    rows = trace.attentions.sum(dim=-1)[trace.mask[:, None, None, :].expand_as(trace.attentions[..., 0])]
    torch.testing.assert_close(rows, torch.ones_like(rows), atol=ATOL, rtol=0)
    assert (trace.attentions * ~trace.mask[:, None, None, None, :]).abs().sum() == 0
    assert (trace.attentions * ~trace.mask[:, None, None, :, None]).abs().sum() == 0
    assert trace.target.dtype == torch.long and trace.target.shape == (batch,)
    assert trace.readout.dtype == torch.long and trace.readout.shape == (batch,)
    assert trace.mask.gather(1, trace.readout[:, None]).all()  # the readout is a valid token
    assert trace.labels.tolist() == [1, 0, 0] and trace.grid is None
    assert trace.saliency.shape == (batch, n) and (trace.saliency[~trace.mask] == 0).all()
    assert (trace.saliency[trace.mask] > 0).any()  # gradients flowed
    assert [len(tokens) for tokens in trace.tokens] == trace.mask.sum(dim=-1).tolist()
    assert trace.input_ids.shape == (batch, n) and trace.input_ids.dtype == torch.long
    assert adapter.count_tokens(TEXTS) == trace.mask.sum(dim=-1).tolist()
    assert adapter.trace(TEXTS, saliency=None).saliency is None


@pytest.mark.parametrize("name", VARIANTS)
def test_padding_invariance(name):
    adapter = _adapter(name)
    batched = adapter.trace(TEXTS, saliency="l2")
    for b, text in enumerate(TEXTS):
        alone = adapter.trace([text], saliency="l2", target=batched.target[b : b + 1])
        valid = batched.mask[b]
        assert alone.mask.all() and int(valid.sum()) == alone.mask.shape[1]
        attention = batched.attentions[b][:, :, valid][:, :, :, valid]
        torch.testing.assert_close(attention, alone.attentions[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(batched.logits[b], alone.logits[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(batched.saliency[b][valid], alone.saliency[0], atol=ATOL, rtol=1e-4)
        assert int(valid[: batched.readout[b]].sum()) == int(alone.readout[0])  # the same token
        assert batched.input_ids[b][valid].tolist() == alone.input_ids[0].tolist()


@pytest.mark.parametrize("name", VARIANTS)
def test_predict_equals_trace_and_the_model_itself(name):
    adapter = _adapter(name)
    trace = adapter.trace(TEXTS, saliency=None)
    predicted = adapter.predict(TEXTS)
    assert predicted.shape == trace.logits.shape and not predicted.requires_grad
    torch.testing.assert_close(predicted, trace.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(predicted, _direct(adapter, _rows(trace)), atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ["remove", "mask"])
@pytest.mark.parametrize("name", VARIANTS)
def test_perturb_equals_the_model_on_hand_built_ids(name, mode):
    adapter = _adapter(name)
    trace = adapter.trace(TEXTS, saliency=None)
    keep = torch.ones_like(trace.mask)
    rows = _rows(trace)
    replacement = adapter.tokenizer.mask_token_id
    replacement = adapter.tokenizer.unk_token_id if replacement is None else replacement
    for b, row in enumerate(rows):
        if len(row) > 1:  # drop (or mask) the second valid token
            position = int(trace.mask[b].nonzero()[1])
            keep[b, position] = False
            rows[b] = row[:1] + row[2:] if mode == "remove" else row[:1] + [replacement] + row[2:]
    got = adapter.perturb(TEXTS, keep, mode=mode)
    torch.testing.assert_close(got, _direct(adapter, rows), atol=ATOL, rtol=0)
    everything = adapter.perturb(TEXTS, torch.ones_like(trace.mask), mode=mode)
    torch.testing.assert_close(everything, trace.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(adapter.perturb(TEXTS, keep & trace.mask, mode=mode), got)  # padding ignored


@pytest.mark.parametrize("name", ["test_bert", "test_gpt2_left", "test_mamba"])
def test_perturb_rejects_bad_input(name):
    adapter = _adapter(name)
    mask = adapter.trace(TEXTS, saliency=None).mask
    batch, n = mask.shape
    with pytest.raises(ValueError, match=rf"Expected `keep_mask` to have shape \(B, n\) = \({batch}, {n}\), but got "
                                         rf"\({batch}, {n - 1}\)"):
        adapter.perturb(TEXTS, mask[:, 1:])
    with pytest.raises(TypeError, match="Expected `keep_mask` to be a bool tensor, but got torch.float32"):
        adapter.perturb(TEXTS, mask.float())
    with pytest.raises(TypeError, match="Expected `keep_mask` to be a torch.Tensor"):
        adapter.perturb(TEXTS, mask.tolist())
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match="Expected `keep_mask` to keep at least one token of every example with "
                                         "`mode` 'remove', but example 1 keeps none"):
        adapter.perturb(TEXTS, empty)
    adapter.perturb(TEXTS, empty, mode="mask")  # masking every token is fine
    with pytest.raises(ValueError, match="Expected `mode` to be one of 'remove', 'mask', but got 'zero'"):
        adapter.perturb(TEXTS, mask, mode="zero")


def test_mask_mode_needs_a_mask_or_unknown_token():
    adapter = create_tiny_adapter("test_mamba")
    mask = adapter.trace(TEXTS[:1], saliency=None).mask
    adapter.tokenizer.unk_token = None
    with pytest.raises(ValueError, match="Expected the tokenizer to have a mask or unknown token for `mode` 'mask'"):
        adapter.perturb(TEXTS[:1], ~mask, mode="mask")


@pytest.mark.parametrize("name", VARIANTS)
def test_layers_labels_and_class_names(name):
    adapter = _adapter(name)
    layers = adapter.layers()
    assert len(layers) == adapter.num_layers == 2 and all(isinstance(m, torch.nn.Module) for m in layers)
    classes = range(adapter.num_classes) if adapter.num_classes < 5 else [5, 7, 9]
    for index in classes:
        assert adapter.class_index(adapter.label(index)) == index
    assert adapter.class_index("1") == 1
    with pytest.raises(ValueError, match="Expected `class_index` to be an integer in"):
        adapter.label(adapter.num_classes)
    with pytest.raises(ValueError, match="Expected `target` to be"):
        adapter.class_index("not a class at all")
    trace = adapter.trace(TEXTS[:2], target=adapter.label(1), saliency=None)
    assert trace.target.tolist() == [1, 1]


@pytest.mark.parametrize("name", VARIANTS)
def test_target_forms(name):
    adapter = _adapter(name)
    pred = adapter.trace(TEXTS[:2], saliency=None).target
    forms = {"pred": pred.tolist(), None: pred.tolist(), 1: [1, 1], np.int64(1): [1, 1], (0, 1): [0, 1],
             torch.tensor([1, 0]): [1, 0], torch.tensor(1, dtype=torch.int32): [1, 1]}
    for target, expected in forms.items():
        assert adapter.trace(TEXTS[:2], target=target, saliency=None).target.tolist() == expected
    assert adapter.trace(TEXTS[:2], target="gold", labels=[0, 1], saliency=None).target.tolist() == [0, 1]
    for bad in (0.5, True, torch.tensor([1.0, 0.0]), [1, 0.5]):
        with pytest.raises(TypeError, match="Expected `target` to be"):
            adapter.trace(TEXTS[:2], target=bad, saliency=None)
    with pytest.raises(ValueError, match="Expected `target` to hold"):
        adapter.trace(TEXTS[:2], target=adapter.num_classes, saliency=None)


@pytest.mark.parametrize("name", VARIANTS)
def test_state_restored_after_success_and_failure(name):
    adapter = create_tiny_adapter(name)  # a fresh one: this test changes the training flag
    model = adapter.model
    adapter.trace(TEXTS[:1])  # transformers 5 installs its own output-recording hooks on first use
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    hooks = _hooks(model)
    adapter.trace(TEXTS[:2])
    adapter.predict(TEXTS[:2])
    adapter.perturb(TEXTS[:2], adapter.trace(TEXTS[:2], saliency=None).mask)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == hooks

    def explode(module, args, output):
        raise RuntimeError("forced failure")

    last = [m for m in model.modules() if list(m.parameters(recurse=False))][-1]
    handle = last.register_forward_hook(explode)
    try:
        for call in (lambda: adapter.trace(TEXTS[:2]), lambda: adapter.predict(TEXTS[:2])):
            with pytest.raises(RuntimeError, match="forced failure"):
                call()
    finally:
        handle.remove()
    assert model.training and [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == hooks
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ["test_gpt2", "test_gpt2_left", "test_llama"])
def test_causal_classifier_reads_the_last_valid_token_batched(name):
    """Regression: a right-padded GPT-2 traced through `inputs_embeds` read the last (padding)
    position, so "bad" batched with a longer sentence got other logits than alone."""
    adapter = _adapter(name)
    texts = ["bad", "the movie was very good and the acting was fun"]
    batched = adapter.trace(texts, saliency=None)
    alone = adapter.trace(texts[:1], saliency=None)
    ids = adapter.tokenizer("bad", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        direct = adapter.model(input_ids=ids).logits[0]
    assert batched.mask[0].sum() == 1 and batched.readout[0] == batched.mask[0].nonzero()[0, 0]
    torch.testing.assert_close(batched.logits[0], alone.logits[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(batched.logits[0], direct, atol=ATOL, rtol=0)
    torch.testing.assert_close(adapter.predict(texts)[0], direct, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_task_and_what_traces_provide(name):
    adapter = _adapter(name)
    trace = adapter.trace(TEXTS[:2], saliency="sum_abs")  # gradients are taken when the backward pass runs
    assert adapter.task in ("classification", "language_modeling") and "attention" in adapter.provides
    extras = {"attention_gradients": "attention_grad", "hidden_attention_gradients": "hidden_attention_grad",
              "residual_gradients": "residual_grad", "readout_rows": "readout_rows"}  # as models/base.py says
    for need in adapter.provides - {"attention"}:
        assert extras[need] in trace.extras, f"{name} provides {need!r} but its trace lacks {extras[need]!r}"
    if "attention_gradients" in adapter.provides:
        assert trace.extras["attention_grad"].shape == trace.attentions.shape
    assert (adapter.task == "language_modeling") == (adapter.family in ("mamba", "mamba2", "jamba"))


@pytest.mark.parametrize("name", VARIANTS)
def test_saliency_is_the_gradient_at_the_first_layer_input(name):
    adapter = _adapter(name)
    text = TEXTS[0]
    trace = adapter.trace([text], target=1, saliency="l2")
    seen = []

    def capture(module, args, kwargs):
        seen.append(args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor)))

    handle = adapter.layers()[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        ids = trace.input_ids.clone()
        logits = adapter.model(input_ids=ids).logits
        logits = logits[:, -1] if adapter.task == "language_modeling" else logits
        (grad,) = torch.autograd.grad(logits[0, 1], seen[0])
    finally:
        handle.remove()
    torch.testing.assert_close(trace.saliency[0], grad[0].norm(dim=-1), atol=1e-6, rtol=1e-4)
    if adapter.task == "language_modeling":  # the embedding output is the first layer's input
        words = adapter.trace([text], target=1, saliency="l2", saliency_at="word_embeddings").saliency
        torch.testing.assert_close(words, trace.saliency, atol=0, rtol=0)
