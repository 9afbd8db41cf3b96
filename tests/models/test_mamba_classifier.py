"""The Mamba sequence classifier and its adapter: last-valid-token pooling, padding, saving and loading,
routing, and the adapter's logits, targets and special tokens against the model itself."""

from __future__ import annotations

import json

import pytest
import torch

from attnlens.models import MambaAdapter, MambaClassifierAdapter, adapter_for_config, create_tiny_adapter, load_adapter
from attnlens.models._targets import ExplainError
from attnlens.models._tiny_mamba_classifier import tiny_mamba_classifier
from attnlens.models.mamba_classifier import MambaForSequenceClassification, last_valid_positions

torch.set_num_threads(1)
TEXTS = ["the movie was very good", "bad", "a boring plot and the acting was awful"]
ATOL = 1e-5


@pytest.fixture(scope="module")
def adapter() -> MambaClassifierAdapter:
    return create_tiny_adapter("test_mamba_classifier")


def _alone(model: torch.nn.Module, row: list[int]) -> torch.Tensor:
    """Reference: the head on the backbone's final hidden state at the last token of the row run alone."""
    with torch.no_grad():
        hidden = model.backbone(input_ids=torch.tensor([row]), use_cache=False).last_hidden_state
        return model.score(hidden[0, -1])


def _padded(rows: list[list[int]], *, left: bool, fill: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded to the longest with the ids `fill` (any ids: they must not matter), and the mask."""
    width = max(len(r) for r in rows)
    ids, mask = [], []
    for row in rows:
        pad = fill[: width - len(row)]
        ids.append(pad + row if left else row + pad)
        mask.append([0] * len(pad) + [1] * len(row) if left else [1] * len(row) + [0] * len(pad))
    return torch.tensor(ids), torch.tensor(mask)


def test_last_valid_positions_on_both_padding_sides():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    expected = [max(i for i, v in enumerate(row) if v) for row in mask.tolist()]
    assert last_valid_positions(mask, 4, 4, torch.device("cpu")).tolist() == expected
    assert last_valid_positions(None, 2, 5, torch.device("cpu")).tolist() == [4, 4]


@pytest.mark.parametrize("left", [False, True])
def test_head_pools_the_last_valid_token_and_padding_changes_nothing(adapter, left):
    model = adapter.model
    rows = adapter._encode(TEXTS)
    generator = torch.Generator().manual_seed(0)
    fill = torch.randint(0, model.config.vocab_size, (64,), generator=generator).tolist()  # garbage padding
    ids, mask = _padded(rows, left=left, fill=fill)
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
    reference = torch.stack([_alone(model, row) for row in rows])
    torch.testing.assert_close(batched, reference, atol=ATOL, rtol=0)
    if not left:  # causal: without the mask, right padding still cannot reach the last valid token
        with torch.no_grad():
            unmasked = model(input_ids=ids).logits  # pools position n - 1 when no mask is given
        longest = max(range(len(rows)), key=lambda b: len(rows[b]))
        torch.testing.assert_close(unmasked[longest], reference[longest], atol=ATOL, rtol=0)


def test_inputs_embeds_equal_input_ids_and_loss_is_the_cross_entropy(adapter):
    model = adapter.model
    ids, mask = _padded(adapter._encode(TEXTS), left=False, fill=[0] * 64)
    labels = torch.tensor([1, 0, 0])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        embedded = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask)
    torch.testing.assert_close(embedded.logits, out.logits, atol=ATOL, rtol=0)
    logits = out.logits.double()
    reference = sum(torch.logsumexp(logits[b], 0) - logits[b, labels[b]] for b in range(3)) / 3
    torch.testing.assert_close(out.loss.double(), reference, atol=1e-6, rtol=0)


def test_save_and_load_round_trip_through_load_adapter(adapter, tmp_path):
    from transformers import AutoModelForSequenceClassification

    adapter.model.save_pretrained(tmp_path)
    adapter.tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["MambaForSequenceClassification"] and config["model_type"] == "mamba"
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    loaded = load_adapter(str(tmp_path))
    assert type(loaded) is MambaClassifierAdapter and loaded.family == "mamba_classifier"
    assert loaded.num_classes == 2 and [loaded.label(i) for i in range(2)] == ["negative", "positive"]
    torch.testing.assert_close(loaded.predict(TEXTS), adapter.predict(TEXTS), atol=0, rtol=0)
    auto = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(auto) is MambaForSequenceClassification


def test_routing_keeps_classifiers_and_language_models_apart(adapter):
    from transformers import MambaConfig

    assert adapter_for_config(adapter.model.config) is MambaClassifierAdapter
    assert adapter_for_config(MambaConfig()) is MambaAdapter
    assert adapter_for_config(MambaConfig(architectures=["MambaForCausalLM"])) is MambaAdapter
    assert not MambaClassifierAdapter.accepts(MambaConfig(architectures=["MambaForCausalLM"]))


def test_a_language_model_folder_is_not_loaded_as_a_classifier(tmp_path):
    from attnlens.models._tiny import tiny_mamba_lm

    tiny_mamba_lm(25).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"Expected `model` to be a Mamba sequence classifier "
                                         r"\(MambaForSequenceClassification\), but .* is a MambaForCausalLM"):
        MambaClassifierAdapter.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="Expected `model` to be a MambaForSequenceClassification"):
        MambaClassifierAdapter(torch.nn.Linear(2, 2), None)


def test_adapter_logits_equal_the_model_on_a_padded_batch(adapter):
    encoded = adapter.tokenizer(TEXTS, padding=True, return_tensors="pt")  # right padding, the tokenizer's own
    with torch.no_grad():
        direct = adapter.model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits
    trace = adapter.trace(TEXTS, saliency=None)
    torch.testing.assert_close(trace.logits, direct, atol=ATOL, rtol=0)
    torch.testing.assert_close(adapter.predict(TEXTS), direct, atol=ATOL, rtol=0)
    assert trace.target.tolist() == direct.argmax(dim=-1).tolist()
    assert (trace.readout == trace.mask.shape[1] - 1).all()
    with torch.no_grad():  # the left-padded batch of `tokenize` (for captum) gives the same logits
        left = adapter.model(**adapter.tokenize(TEXTS)).logits
    torch.testing.assert_close(left, direct, atol=ATOL, rtol=0)


def test_targets_are_classes(adapter):
    assert adapter.trace(TEXTS[:2], target="Positive", saliency=None).target.tolist() == [1, 1]
    assert adapter.trace(TEXTS[:2], target="gold", labels=[1, 0], saliency=None).target.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"Expected `target` to hold 2 class indices in \[0, 1\], but got \[2, 2\]"):
        adapter.trace(TEXTS[:2], target=2, saliency=None)
    with pytest.raises(ValueError, match=r"Expected `labels` to be class indices in \[0, 1\], but got \[1, 5\]"):
        adapter.trace(TEXTS[:2], labels=[1, 5], saliency=None)
    with pytest.raises(ValueError, match="one of the class names 'negative', 'positive', but got 'neutral'"):
        adapter.trace(TEXTS[:2], target="neutral", saliency=None)
    with pytest.raises(ValueError, match=r"Expected every text to be a non-empty string, but text 1 is ' '"):
        adapter.trace(["good", " "], saliency=None)


def test_special_tokens_are_marked_and_hidden_attention_gradients_come_along(adapter):
    trace = adapter.trace(TEXTS, saliency="l2")
    special_ids = {adapter.tokenizer.cls_token_id, adapter.tokenizer.sep_token_id}
    expected = torch.tensor([[bool(m) and int(i) in special_ids for i, m in zip(ids, mask)]
                             for ids, mask in zip(trace.input_ids, trace.mask)])
    assert torch.equal(trace.special_mask, expected) and int(expected.sum()) == 2 * len(TEXTS)
    batch, layers, n = trace.mask.shape[0], adapter.num_layers, trace.mask.shape[1]
    assert trace.extras["hidden_attention"].shape == (batch, layers, n, n)
    assert trace.extras["residual_grad"].shape == (batch, layers, n)
    assert torch.isfinite(trace.extras["hidden_attention_grad"]).all()


def test_max_length_truncates_and_keeps_the_last_token_a_separator():
    tiny = create_tiny_adapter("test_mamba_classifier")
    full = tiny.count_tokens(TEXTS)
    tiny.max_length = 4
    assert tiny.count_tokens(TEXTS) == [min(4, count) for count in full]
    trace = tiny.trace(TEXTS, saliency=None)
    assert (trace.input_ids[:, -1] == tiny.tokenizer.sep_token_id).all()


def test_tiny_classifier_is_seeded():
    first, second = tiny_mamba_classifier(25), tiny_mamba_classifier(25)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ExplainError):
        create_tiny_adapter("test_mamba_classifier").trace([], saliency=None)


def test_unified_form_reaches_the_classifier(adapter):
    scan = adapter.trace(TEXTS, saliency=None)
    unified = adapter.trace(TEXTS, saliency=None, form="unified")
    torch.testing.assert_close(unified.logits, scan.logits, atol=0, rtol=0)  # the same model run
    assert unified.attentions.shape == scan.attentions.shape
    assert not torch.allclose(unified.extras["hidden_attention"], scan.extras["hidden_attention"])
