"""One contract for every registered adapter: Trace shapes, finite values, gradients, and hooks,
`requires_grad` and the training flag restored after success and after a forced failure."""

from __future__ import annotations

import pytest
import torch

from attnlens.models import MambaAdapter, TextClassifierAdapter, list_adapters
from tests.conftest import WORDS, tiny_mamba_lm, word_level_tokenizer

TEXTS = ["the movie was very good", "bad", "a boring plot"]


def _text_adapter(tiny_bert_dir):
    return TextClassifierAdapter.from_pretrained(str(tiny_bert_dir))


def _mamba_adapter(tiny_bert_dir):
    return MambaAdapter(tiny_mamba_lm(len(WORDS) + 2), word_level_tokenizer(WORDS))


FACTORIES = {"text": _text_adapter, "mamba": _mamba_adapter}


def test_every_registered_adapter_is_covered():
    assert set(FACTORIES) == set(list_adapters())


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("family", sorted(FACTORIES))
def test_trace_contract(family, tiny_bert_dir):
    adapter = FACTORIES[family](tiny_bert_dir)
    trace = adapter.trace(TEXTS)
    batch, n = trace.mask.shape
    assert batch == len(TEXTS) and trace.mask.dtype == torch.bool
    assert trace.attentions.ndim == 5 and trace.attentions.shape[0] == batch and trace.attentions.shape[-2:] == (n, n)
    for tensor in (trace.attentions, trace.logits, trace.saliency):
        assert torch.isfinite(tensor).all()
    rows = trace.attentions.sum(dim=-1)[trace.mask[:, None, None, :].expand_as(trace.attentions[..., 0])]
    torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-5, rtol=0)
    assert (trace.attentions * ~trace.mask[:, None, None, None, :]).abs().sum() == 0
    assert trace.target.dtype == torch.long and trace.target.shape == (batch,)
    assert trace.saliency.shape == (batch, n) and (trace.saliency[~trace.mask] == 0).all()
    assert (trace.saliency[trace.mask] > 0).any()  # gradients flowed
    assert [len(tokens) for tokens in trace.tokens] == trace.mask.sum(dim=-1).tolist()


@pytest.mark.parametrize("family", sorted(FACTORIES))
def test_state_restored_after_success_and_failure(family, tiny_bert_dir):
    adapter = FACTORIES[family](tiny_bert_dir)
    model = adapter.model
    adapter.trace(TEXTS[:1])  # transformers 5 installs its own output-recording hooks on first use
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    hooks = _hooks(model)
    adapter.trace(TEXTS[:2])
    assert model.training and [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == hooks

    def explode(module, args, output):
        raise RuntimeError("forced failure")

    last = [m for m in model.modules() if list(m.parameters(recurse=False))][-1]
    handle = last.register_forward_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="forced failure"):
            adapter.trace(TEXTS[:2])
    finally:
        handle.remove()
    assert model.training and [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == hooks
    assert all(p.grad is None for p in model.parameters())
