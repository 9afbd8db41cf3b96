"""Text adapter: Trace contract, input gradients vs finite differences, flags restored, errors."""

from __future__ import annotations

import pytest
import torch

from attnlens.models import ExplainError, TextClassifierAdapter, adapter_for_config, list_adapters, reduce_saliency
from tests.conftest import SHARED_MODEL, needs_shared_model

TEXTS = ["the movie is good", "a very boring plot but great acting .", "bad"]


@pytest.fixture(scope="module")
def adapter(tiny_bert_dir):
    return TextClassifierAdapter.from_pretrained(str(tiny_bert_dir))


def test_trace_contract(adapter):
    trace = adapter.trace(TEXTS, labels=[1, 0, 0])
    batch, n = trace.mask.shape
    assert trace.attentions.shape == (batch, 2, 2, n, n)
    assert torch.isfinite(trace.attentions).all() and torch.isfinite(trace.saliency).all()
    valid_rows = trace.attentions.sum(-1)[trace.mask[:, None, None, :].expand(-1, 2, 2, -1)]
    torch.testing.assert_close(valid_rows, torch.ones_like(valid_rows))
    assert (trace.attentions.sum(-2)[..., ~trace.mask[0]][0] == 0).all()
    assert trace.saliency.shape == (batch, n) and (trace.saliency[~trace.mask] == 0).all()
    assert [len(t) for t in trace.tokens] == trace.mask.sum(-1).tolist()
    assert trace.tokens[0][0] == "[CLS]" and trace.tokens[0][-1] == "[SEP]"
    assert trace.special_mask[:, 0].all()
    torch.testing.assert_close(trace.target, trace.logits.argmax(-1))
    assert trace.target.dtype == torch.long


def test_flags_restored_after_success_and_failure(adapter):
    model = adapter.model
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    adapter.trace(TEXTS)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    with pytest.raises(ExplainError):
        adapter.trace(TEXTS, target=[0, 5, 1])
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    model.eval()


@pytest.mark.parametrize("saliency_at", ["layer_input", "word_embeddings"])
def test_gradients_match_finite_differences(tiny_bert_dir, saliency_at):
    adapter = TextClassifierAdapter.from_pretrained(str(tiny_bert_dir))
    adapter.model.double()
    text = ["the plot was not fun"]
    trace = adapter.trace(text, target=1, saliency="l2", saliency_at=saliency_at)
    encoded = adapter.tokenize(text)
    model = adapter.model
    delta = {"value": None}

    def shift(module, args, output):  # adds a perturbation to the layer input (embedding block output)
        return output + delta["value"] if delta["value"] is not None else output

    with torch.no_grad():
        words = model.get_input_embeddings()(encoded["input_ids"])
        shape = words.shape

        def logit(perturbation):
            if saliency_at == "word_embeddings":
                out = model(inputs_embeds=words + perturbation, attention_mask=encoded["attention_mask"])
                return out.logits[0, 1]
            delta["value"] = perturbation
            handle = model.bert.embeddings.register_forward_hook(shift)
            try:
                return model(inputs_embeds=words, attention_mask=encoded["attention_mask"]).logits[0, 1]
            finally:
                handle.remove()
                delta["value"] = None

        eps = 1e-6
        grad = torch.zeros(shape, dtype=torch.float64)
        for token in range(shape[1]):
            for dim in range(shape[2]):
                step = torch.zeros(shape, dtype=torch.float64)
                step[0, token, dim] = eps
                grad[0, token, dim] = (logit(step) - logit(-step)) / (2 * eps)
    torch.testing.assert_close(trace.saliency, grad.norm(dim=-1), atol=1e-6, rtol=1e-5)


def test_sum_abs_at_word_embeddings_is_annihilated_by_layernorm(tiny_bert_dir):
    adapter = TextClassifierAdapter.from_pretrained(str(tiny_bert_dir))
    adapter.model.double()
    words = adapter.trace(["the plot was not fun"], saliency="sum_abs", saliency_at="word_embeddings").saliency
    layer = adapter.trace(["the plot was not fun"], saliency="sum_abs", saliency_at="layer_input").saliency
    assert words.max() < 1e-12 < layer.max()


def test_reduce_saliency_by_hand():
    grad = torch.tensor([[[1.0, -3.0], [2.0, 2.0]]])
    emb = torch.tensor([[[2.0, 1.0], [1.0, -1.0]]])
    mask = torch.tensor([[True, False]])
    torch.testing.assert_close(reduce_saliency(grad, emb, mask, how="sum_abs"), torch.tensor([[2.0, 0.0]]))
    torch.testing.assert_close(reduce_saliency(grad, emb, mask, how="l2"), torch.tensor([[10.0 ** 0.5, 0.0]]))
    torch.testing.assert_close(reduce_saliency(grad, emb, mask, how="grad_x_input"), torch.tensor([[1.0, 0.0]]))


def test_truncation_warns_naming_the_example(tiny_bert_dir):
    adapter = TextClassifierAdapter(TextClassifierAdapter.from_pretrained(str(tiny_bert_dir)).model,
                                    TextClassifierAdapter.from_pretrained(str(tiny_bert_dir)).tokenizer, max_length=6)
    with pytest.warns(UserWarning, match=r"Text 1 \('a very boring plot"):
        trace = adapter.trace(["good", "a very boring plot but great acting ."])
    assert trace.mask.shape[1] == 6


@pytest.mark.parametrize(
    ("texts", "kwargs", "match"),
    [
        (["good", ""], {}, "Expected every text to be a non-empty string, but text 1"),
        (["good", "   "], {}, "text 1"),
        ([], {}, "Expected `texts` to be a non-empty list"),
        (["good"], {"target": "gold"}, "Expected `labels` when `target` is 'gold'"),
        (["good"], {"target": 7}, r"Expected `target` to hold 1 class indices in \[0, 1\]"),
        (["good"], {"labels": [0, 1]}, "Expected `labels` to have 1 entries"),
    ],
)
def test_bad_input(adapter, texts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        adapter.trace(texts, **kwargs)


def test_bad_saliency(adapter):
    with pytest.raises(ValueError, match="Expected `saliency` to be one of"):
        adapter.trace(["good"], saliency="abs")


def test_not_a_classifier(tmp_path, tiny_tokenizer_dir):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path)
    with pytest.raises(ExplainError, match="Expected `model` to be a sequence classifier"):
        TextClassifierAdapter.from_pretrained(str(tmp_path))


def test_missing_model():
    with pytest.raises(ExplainError, match="Expected `model` to be a (Hugging Face model id or a )?local model folder"):
        TextClassifierAdapter.from_pretrained("/nonexistent/model/folder")


def test_registry_finds_text_adapter(tiny_bert_dir):
    from transformers import AutoConfig

    assert "text" in list_adapters()
    assert adapter_for_config(AutoConfig.from_pretrained(tiny_bert_dir)) is TextClassifierAdapter


@needs_shared_model
def test_real_model_predicts_sentiment():
    adapter = TextClassifierAdapter.from_pretrained(str(SHARED_MODEL))
    assert next(adapter.model.parameters()).dtype == torch.float32
    trace = adapter.trace(["a wonderful , moving film .", "a dull , lifeless mess ."], saliency=None)
    assert trace.target.tolist() == [1, 0]
    assert trace.attentions.shape[1:3] == (6, 12) and trace.saliency is None


def test_tiny_tokenizer_knows_its_words(adapter):
    assert adapter.tokenizer.tokenize("the movie is good") == ["the", "movie", "is", "good"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": 0.5}, r"Expected `target` to be class indices \(int or list of ints\), but got 0.5"),
        ({"target": True}, "Expected `target` to be class indices"),
        ({"target": torch.tensor([0.0])}, "Expected `target` to be an integer tensor"),
        ({"target": "gold", "labels": ["x"]}, "Expected `labels` to be class indices"),
    ],
)
def test_bad_target_types(adapter, kwargs, match):
    with pytest.raises(TypeError, match=match):
        adapter.trace(["good"], **kwargs)


def test_unavailable_device(tiny_bert_dir):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="Expected `device` 'cuda' to be available"):
        TextClassifierAdapter.from_pretrained(str(tiny_bert_dir), device="cuda")


def test_unreachable_hub_fails_fast(monkeypatch):
    import huggingface_hub

    class ConnectError(Exception):
        pass

    def unreachable(*args, **kwargs):
        raise ConnectError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    with pytest.raises(ValueError, match="the Hugging Face hub cannot be reached and 'org/model' is not in the"):
        TextClassifierAdapter.from_pretrained("org/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):
        TextClassifierAdapter.from_pretrained("org/model")


def test_model_without_attention_weights_gets_one_line():
    from attnlens.models import create_tiny_adapter

    adapter = create_tiny_adapter("test_bert")
    adapter.model.set_attn_implementation("sdpa")
    with pytest.raises(ExplainError, match=r"^Expected the model to return attention weights, but it returned none "
                                           r"\(it needs attn_implementation='eager'\)\.$"):
        adapter.trace(["good"])


def test_class_names(adapter):
    assert adapter.label(1) == "positive" and adapter.class_index("positive") == 1
    assert adapter.class_index("Negative") == 0 and adapter.class_index("1") == 1
    assert adapter.trace(["good", "bad"], target="positive", saliency=None).target.tolist() == [1, 1]
    with pytest.raises(ExplainError, match="Expected `target` to be 'pred', 'gold', a class index or one of the class "
                                           "names 'negative', 'positive', but got 'neutral'"):
        adapter.trace(["good"], target="neutral")
    with pytest.raises(TypeError, match=r"Expected `name` to be a class name \(str\), but got int"):
        adapter.class_index(1)


@pytest.mark.parametrize("saliency_at", ["layer_input", "word_embeddings"])
def test_trace_is_numerically_the_inputs_embeds_trace(adapter, saliency_at):
    """Passing input_ids with an embedding hook gives what tracing through `inputs_embeds` gave."""
    texts = ["the movie is good", "bad"]
    trace = adapter.trace(texts, saliency="grad_x_input", saliency_at=saliency_at)
    encoded = adapter.tokenize(texts)
    model = adapter.model
    embeddings = model.get_input_embeddings()(encoded.pop("input_ids")).detach().requires_grad_(True)
    outputs = model(inputs_embeds=embeddings, output_hidden_states=True, **encoded)
    at = embeddings if saliency_at == "word_embeddings" else outputs.hidden_states[0]
    (grad,) = torch.autograd.grad(outputs.logits.gather(1, trace.target[:, None]).sum(), at)
    expected = reduce_saliency(grad, at.detach(), trace.mask, how="grad_x_input")
    torch.testing.assert_close(trace.logits, outputs.logits.detach(), atol=0, rtol=0)
    torch.testing.assert_close(trace.saliency, expected, atol=0, rtol=0)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """The tiny GPT-2 classifier saved with a tokenizer that has no padding token (as GPT-2's)."""
    from attnlens.models import create_tiny_adapter

    adapter = create_tiny_adapter("test_gpt2")
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    adapter.model.config.pad_token_id = None
    adapter.model.config.architectures = ["GPT2ForSequenceClassification"]
    adapter.model.save_pretrained(folder)
    tokenizer = adapter.tokenizer
    tokenizer.eos_token = "."
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    return folder


def test_causal_classifiers_route_to_their_own_family(gpt2_dir):
    from transformers import AutoConfig, BertConfig, GPT2Config, LlamaConfig

    from attnlens.models import CausalTextClassifierAdapter, load_adapter

    for config in (GPT2Config(), LlamaConfig(), AutoConfig.from_pretrained(gpt2_dir)):
        assert adapter_for_config(config) is CausalTextClassifierAdapter
        assert CausalTextClassifierAdapter.accepts(config) and not TextClassifierAdapter.accepts(config)
    assert adapter_for_config(BertConfig()) is TextClassifierAdapter
    assert not CausalTextClassifierAdapter.accepts(BertConfig())
    for loaded in (load_adapter(str(gpt2_dir)), TextClassifierAdapter.from_pretrained(str(gpt2_dir))):
        assert type(loaded) is CausalTextClassifierAdapter and loaded.family == "causal_text"
        assert loaded.tokenizer.pad_token == "." and loaded.model.config.pad_token_id == loaded.tokenizer.pad_token_id
        trace = loaded.trace(["bad", "the movie was very good"], saliency=None)
        assert trace.readout.tolist() == [0, 4]
        torch.testing.assert_close(trace.logits[0], loaded.predict(["bad"])[0], atol=1e-5, rtol=0)


def test_causal_tokenizer_without_any_fallback_token_is_refused():
    from attnlens.models import CausalTextClassifierAdapter, create_tiny_adapter

    adapter = create_tiny_adapter("test_gpt2")
    adapter.tokenizer.pad_token = None
    adapter.tokenizer.unk_token = None
    with pytest.raises(ExplainError, match="Expected the tokenizer to have a padding, end-of-text or unknown token"):
        CausalTextClassifierAdapter(adapter.model, adapter.tokenizer)


@pytest.mark.parametrize("name", ["test_bert", "test_distilbert", "test_roberta", "test_electra", "test_albert",
                                  "test_deberta_v2", "test_gpt2", "test_gpt2_left", "test_llama"])
def test_attention_grad_is_the_autograd_gradient_of_each_text_alone(name):
    """``extras["attention_grad"]`` (for gradient-weighted rollout) against autograd on the model itself, per
    text without padding; it is zero on padded rows and columns."""
    from attnlens.models import create_tiny_adapter

    adapter = create_tiny_adapter(name)
    assert "attention_gradients" in adapter.provides
    trace = adapter.trace(TEXTS, target=[1, 0, 1], saliency="l2")
    grad = trace.extras["attention_grad"]
    assert grad.shape == trace.attentions.shape and torch.isfinite(grad).all()
    pad = ~trace.mask
    assert (grad * pad[:, None, None, :, None]).abs().sum() == 0
    assert (grad * pad[:, None, None, None, :]).abs().sum() == 0
    for b in range(len(TEXTS)):
        valid = trace.mask[b]
        ids = trace.input_ids[b][valid][None]
        out = adapter.model(input_ids=ids, output_attentions=True)
        expected = torch.stack(torch.autograd.grad(out.logits[0, int(trace.target[b])], out.attentions), dim=1)
        torch.testing.assert_close(grad[b][:, :, valid][:, :, :, valid], expected[0], atol=1e-6, rtol=1e-4)
    assert "attention_grad" not in adapter.trace(TEXTS, saliency=None).extras


def test_text_family_leaves_state_space_classifiers_to_their_own_families():
    from transformers import MambaConfig

    from attnlens.models.hf_text import TextClassifierAdapter

    config = MambaConfig(architectures=["MambaForSequenceClassification"])
    assert not TextClassifierAdapter.accepts(config)
    assert adapter_for_config(config).family == "mamba_classifier"
