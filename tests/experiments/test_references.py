"""captum reference attributions on the tiny BERT: IG completeness, occlusion equals the adapter's masked
perturbation loop, Input×Gradient equals the trace's grad×input magnitude, zero on specials and padding."""

from __future__ import annotations

import pytest
import torch

from attnlens.experiments.references import captum_attributions

pytest.importorskip("captum")

SENTENCES = ["the movie was good", "a very boring plot and the story", "great fun"]


@pytest.fixture(scope="module")
def tiny_adapter(tiny_bert_dir):
    from attnlens.models import load_adapter

    return load_adapter(str(tiny_bert_dir))


def test_occlusion_equals_masking_each_token_through_the_adapter(tiny_adapter):
    trace = tiny_adapter.trace(SENTENCES, saliency=None)
    ours = captum_attributions(tiny_adapter, SENTENCES, trace.target, algorithm="occlusion",
                               special_mask=trace.special_mask)
    for row, text in enumerate(SENTENCES):
        n_row = int(trace.mask[row].sum())
        full = tiny_adapter.predict([text])[0, trace.target[row]]
        for i in range(n_row):
            if trace.special_mask[row, i]:
                assert ours[row, i].item() == 0.0
                continue
            keep = torch.ones(1, n_row, dtype=torch.bool)
            keep[0, i] = False
            masked = tiny_adapter.perturb([text], keep, mode="mask")[0, trace.target[row]]
            assert ours[row, i].item() == pytest.approx((full - masked).item(), abs=1e-4)
    assert (ours[~trace.mask] == 0).all()


def test_integrated_gradients_is_complete_and_input_x_gradient_matches_the_trace(tiny_adapter):
    trace = tiny_adapter.trace(SENTENCES, saliency="grad_x_input", saliency_at="word_embeddings")
    ig = captum_attributions(tiny_adapter, SENTENCES, trace.target, algorithm="ig", steps=200,
                             special_mask=trace.special_mask)
    keep = trace.special_mask.cpu() & trace.mask.cpu()
    baseline_logits = tiny_adapter.perturb(SENTENCES, keep | ~trace.mask.cpu(), mode="mask")  # every word masked
    delta = (trace.logits - baseline_logits).gather(-1, trace.target[:, None]).squeeze(-1)
    torch.testing.assert_close(ig.sum(dim=-1), delta.float(), atol=2e-2, rtol=2e-2)
    ixg = captum_attributions(tiny_adapter, SENTENCES, trace.target, algorithm="input_x_gradient")
    torch.testing.assert_close(ixg.abs(), trace.saliency.float(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("algorithm", ["kernel_shap", "lime"])
def test_sampling_attributions_run_and_unknown_algorithm_is_refused(tiny_adapter, algorithm):
    trace = tiny_adapter.trace(SENTENCES[:1], saliency=None)
    torch.manual_seed(0)
    values = captum_attributions(tiny_adapter, SENTENCES[:1], trace.target, algorithm=algorithm, samples=32,
                                 special_mask=trace.special_mask)
    assert values.shape == trace.mask.shape and torch.isfinite(values).all()
    assert (values[trace.special_mask] == 0).all()
    with pytest.raises(ValueError, match="Expected `algorithm` to be one of"):
        captum_attributions(tiny_adapter, SENTENCES, trace.target, algorithm="lrp")
