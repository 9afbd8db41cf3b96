"""Model-driving faithfulness: batched perturbations equal per-variant loops, AOPC on a known model,
leave-one-out, cascading randomisation restores the weights, and the sanity check flags constant maps."""

from __future__ import annotations

import math

import pytest
import torch

from attnlens.experiments.evaluate import EvaluateConfig, evaluate
from attnlens.experiments.faithfulness import (
    aopc_curves,
    cascading_randomization,
    leave_one_out_probabilities,
    perturbed_probabilities,
    target_probability,
)
from attnlens.metrics import aopc_comprehensiveness, aopc_sufficiency
from attnlens.trace import Trace
from tests.conftest import SHARED_MODEL, needs_shared_data, needs_shared_model

SENTENCES = ["the movie was good", "a very boring plot", "great fun", "the acting is not very good and the story"]


class KeywordAdapter:
    """A hand-built classifier over whitespace tokens between [CLS] and [SEP]: positive with probability
    0.99 when the word "good" is in the input, else 0.5 (logits 0 and log 99, or 0 and 0)."""

    num_layers = 1
    modality, task = "text", "classification"

    def __init__(self):
        self.calls: list[int] = []

    def _tokens(self, text):
        return ["[CLS]", *text.split(), "[SEP]"]

    def _logits(self, kept_tokens):
        rows = [[0.0, math.log(99.0) if "good" in tokens else 0.0] for tokens in kept_tokens]
        return torch.tensor(rows, dtype=torch.float64)

    def trace(self, texts, **_):
        tokens = [self._tokens(t) for t in texts]
        n = max(len(t) for t in tokens)
        mask = torch.tensor([[i < len(t) for i in range(n)] for t in tokens])
        special = torch.tensor([[i < len(t) and t[i] in ("[CLS]", "[SEP]") for i in range(n)] for t in tokens])
        logits = self._logits(tokens)
        return Trace(tokens=tokens, mask=mask, attentions=torch.ones(len(texts), 1, 1, n, n) / n, logits=logits,
                     target=torch.ones(len(texts), dtype=torch.long), special_mask=special)

    def perturb(self, texts, keep_mask, *, mode="remove"):
        self.calls.append(len(texts))
        kept = [[tok for tok, keep in zip(self._tokens(t), row.tolist()) if keep] for t, row in zip(texts, keep_mask)]
        return self._logits(kept)


def test_aopc_on_a_model_that_reads_one_known_token():
    adapter = KeywordAdapter()
    texts = ["the film was good and fun", "good"]
    trace = adapter.trace(texts)
    n = trace.mask.shape[1]
    good_first = torch.zeros(2, n, dtype=torch.float64)
    good_first[0, 4], good_first[1, 1] = 1.0, 1.0  # "good" ranked first
    reversed_map = 1.0 - good_first  # "good" ranked last
    curves = aopc_curves(adapter, texts, trace, torch.stack([good_first, reversed_map]), fractions=(0.01, 0.5))
    assert adapter.calls == [2 * 2 * 2 * 2]  # 2 methods × 2 (remove, keep) × 2 bins, one batch of copies
    p = curves.probability
    comp = aopc_comprehensiveness(p[None].expand(2, -1).reshape(-1), curves.removed.reshape(4, -1)).view(2, 2)
    suff = aopc_sufficiency(p[None].expand(2, -1).reshape(-1), curves.kept.reshape(4, -1)).view(2, 2)
    maximum = 0.99 - 0.5
    assert comp[0].tolist() == pytest.approx([maximum, maximum])  # removing "good" first: the largest drop
    assert suff[0].tolist() == pytest.approx([0.0, 0.0])  # keeping it alone: no drop
    assert comp[1, 0].item() == pytest.approx(0.0)  # the reversed order never removes it (up to 50 % of 6 tokens)
    assert suff[1, 0].item() == pytest.approx(maximum)
    specials = trace.special_mask
    assert curves.counts.tolist() == [[1, 3], [1, 1]] and bool(specials[:, 0].all())


def test_leave_one_out_of_the_known_model_marks_the_keyword_only():
    adapter = KeywordAdapter()
    texts = ["the film was good", "bad plot"]
    trace = adapter.trace(texts)
    without = leave_one_out_probabilities(adapter, texts, trace)
    p = target_probability(trace.logits, trace.target)
    drop = p[:, None] - without
    assert drop[0].tolist() == pytest.approx([0, 0, 0, 0, 0.49, 0])  # [CLS] and [SEP] are never removed
    assert drop[1].abs().max().item() == pytest.approx(0.0)


@pytest.fixture(scope="module")
def tiny_adapter(tiny_bert_dir):
    from attnlens.models import load_adapter

    return load_adapter(str(tiny_bert_dir))


def test_batched_perturbations_equal_one_call_per_variant(tiny_adapter):
    trace = tiny_adapter.trace(SENTENCES, saliency=None)
    generator = torch.Generator().manual_seed(0)
    keep = (torch.rand(len(SENTENCES), 5, trace.mask.shape[1], generator=generator) < 0.6) | trace.special_mask.cpu()[:, None]
    batched = perturbed_probabilities(tiny_adapter, SENTENCES, keep, trace.target, max_batch=7)
    for variant in range(5):
        for row, text in enumerate(SENTENCES):
            n_row = int(trace.mask[row].sum())
            alone = tiny_adapter.perturb([text], keep[row:row + 1, variant, :n_row])
            expected = target_probability(alone, trace.target[row:row + 1])
            assert batched[row, variant].item() == pytest.approx(expected.item(), abs=1e-5)


def test_cascading_randomization_changes_then_restores_the_weights(tiny_adapter):
    before = {k: v.clone() for k, v in tiny_adapter.model.state_dict().items()}
    logits = tiny_adapter.predict(SENTENCES)
    with pytest.raises(RuntimeError, match="boom"), cascading_randomization(tiny_adapter, seed=3) as randomize:
        randomize(1)
        top = tiny_adapter.layers()[-1]
        assert any(not torch.equal(p, before[k]) for k, p in tiny_adapter.model.state_dict().items()
                   if k in before and p.shape == before[k].shape and ".layer.1." in k)
        assert all(torch.equal(p, before[k]) for k, p in tiny_adapter.model.state_dict().items() if ".layer.0." in k)
        del top
        raise RuntimeError("boom")
    after = tiny_adapter.model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    torch.testing.assert_close(tiny_adapter.predict(SENTENCES), logits)


def test_evaluate_flags_a_constant_map_and_passes_gradients(tiny_adapter):
    from attnlens.datasets import Examples

    examples = Examples.from_texts(SENTENCES * 3, labels=[1, 0, 1, 0] * 3)
    config = EvaluateConfig(methods=("rollout", "gradient", "position", "random", "loo"), batch_size=4, seed=1)
    result = evaluate(config, adapter=tiny_adapter, examples=examples)
    by_name = {m["name"]: m for m in result.summary["methods"]}
    assert not by_name["position"]["sanity_passes"] and not by_name["random"]["sanity_passes"]
    assert by_name["gradient"]["sanity_passes"]
    assert by_name["loo"]["metrics"]["loo_tau"]["median"] == pytest.approx(1.0)
    assert len(by_name["rollout"]["sanity_curve"]) == tiny_adapter.num_layers
    assert result.scores["aopc_comp"].shape == (5, 12)


@needs_shared_model
@needs_shared_data
def test_leave_one_out_beats_random_on_minilm():
    from attnlens.datasets.sst2 import load_sst2_examples
    from attnlens.models import load_adapter

    adapter = load_adapter(str(SHARED_MODEL))
    examples = load_sst2_examples("dev")[:24]
    config = EvaluateConfig(methods=("loo", "random"), metrics=("aopc_comp", "aopc_suff"), batch_size=8)
    result = evaluate(config, adapter=adapter, examples=examples)
    loo, random = result.scores["aopc_comp"]
    assert loo.mean() > random.mean() + 0.05
    loo_s, random_s = result.scores["aopc_suff"]
    assert loo_s.mean() < random_s.mean()
