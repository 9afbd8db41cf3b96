import json
import os
import re
from html.parser import HTMLParser

import pytest
import torch
from transformers import MambaConfig, MambaForCausalLM

from attnlens.experiments.explain import explain
from attnlens.models.hf_mamba import MambaAdapter  # noqa: F401  (registers the "mamba" family)
from tests.conftest import word_level_tokenizer

torch.set_num_threads(1)
WORDS = "the movie was great not bad at all".split()


@pytest.fixture(scope="module")
def saved_mamba(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_mamba")
    word_level_tokenizer(WORDS).save_pretrained(folder)
    torch.manual_seed(0)
    config = MambaConfig(vocab_size=len(WORDS) + 2, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2,
                         time_step_rank=2)
    MambaForCausalLM(config).save_pretrained(folder)
    return folder


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.spans = [], 0

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta",):
            self.stack.append(tag)
        self.spans += tag == "span"

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag


@pytest.mark.parametrize("method", ["rollout", "mamba_attr"])
def test_explain_tiny_mamba_writes_valid_html(saved_mamba, tmp_path, method):
    page = tmp_path / "out.html"
    result = explain(str(saved_mamba), "the movie was not bad", method=method, html=page, target="great")
    assert result.tokens == ["the", "movie", "was", "not", "bad"]
    assert result.relevance.shape == (5,) and torch.isfinite(result.relevance).all()
    assert result.target == WORDS.index("great") + 2 and result.target_label == "great"
    assert result.saliency.shape == (5,) and not bool(result.special.any())
    checker = _Checker()
    checker.feed(page.read_text(encoding="utf-8"))
    assert checker.stack == [] and checker.spans == 5
    if method == "rollout":  # the last row of a rollout is a distribution over the tokens
        assert abs(float(result.relevance.sum()) - 1.0) < 1e-5


def test_explain_default_target_and_errors(saved_mamba):
    result = explain(str(saved_mamba), "the movie")
    assert result.html is None and result.method == "rollout"
    with pytest.raises(ValueError, match="Expected `method` to be one of"):
        explain(str(saved_mamba), "the movie", method="magic")
    with pytest.raises(ValueError, match="Expected `text` to be a non-empty string"):
        explain(str(saved_mamba), "  ")
    with pytest.raises(ValueError, match="Expected `target` to be a single token"):
        explain(str(saved_mamba), "the movie", target="not bad")


def test_explain_classifier_flags_specials_and_saliency_follows_target(tiny_bert_dir, tmp_path):
    text = "the movie is good"
    first = explain(str(tiny_bert_dir), text, target=0, html=tmp_path / "deep" / "er" / "zero.html")
    second = explain(str(tiny_bert_dir), text, target=1)
    assert first.tokens == ["[CLS]", "the", "movie", "is", "good", "[SEP]"]
    assert first.special.tolist() == [True, False, False, False, False, True]
    assert first.saliency.shape == (6,) and bool((first.saliency >= 0).all())
    # rollout does not depend on the class; the saliency of the target's logit does
    torch.testing.assert_close(first.relevance, second.relevance, atol=0, rtol=0)
    assert float((first.saliency - second.saliency).abs().max()) > 1e-6
    page = first.html.read_text(encoding="utf-8")
    assert first.html.parent.name == "er" and "class-agnostic" in page and page.count("<tr") == 7
    assert os.listdir(first.html.parent) == ["zero.html"]


def test_explain_mamba_attr_needs_a_mamba_model(tiny_bert_dir):
    with pytest.raises(ValueError, match=r"Expected a Mamba model for `method` 'mamba_attr' \(it needs residual-stream "
                       r"gradients\), but got a 'text'-family model \(BertForSequenceClassification\)\."):
        explain(str(tiny_bert_dir), "good", method="mamba_attr")


def test_explain_checks_the_html_path_before_loading(tmp_path):
    missing_model = str(tmp_path / "no-model")
    with pytest.raises(ValueError, match="Expected `html` to be a file path, but .* is an existing folder"):
        explain(missing_model, "good", html=tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="Expected `html` to be in a folder, but .* is a file"):
        explain(missing_model, "good", html=tmp_path / "file" / "x.html")


def test_explanation_holds_prediction_and_probabilities(tiny_bert_dir):
    from attnlens.models.hf_text import load_text_classifier

    adapter = load_text_classifier(str(tiny_bert_dir))
    result = explain(None, "the plot is boring", target="positive", adapter=adapter)
    expected = torch.softmax(adapter.predict(["the plot is boring"])[0].double(), dim=-1)
    torch.testing.assert_close(result.probabilities.double(), expected, atol=1e-6, rtol=0)
    assert result.prediction == int(expected.argmax()) and result.target == 1 and result.target_label == "positive"
    assert result.prediction_label == ["negative", "positive"][result.prediction]
    assert result.text == "the plot is boring"
    order = sorted(["negative", "positive"], key=lambda label: -float(expected[adapter.class_index(label)]))
    assert [label for label, _ in result.top_classes] == order
    assert result.top is None


def test_explanation_displays_in_notebooks_as_the_page_fragment(tiny_bert_dir, tmp_path):
    result = explain(str(tiny_bert_dir), "the movie is good but the plot is boring", html=tmp_path / "p.html", top=3)
    fragment = result._repr_html_()
    assert fragment == result.to_html() and fragment in result.html.read_text(encoding="utf-8")
    assert fragment.startswith('<div class="attnlens-heatmap">') and "<html" not in fragment and "<body" not in fragment
    assert fragment.count("<tr") == 4 and fragment.count('class="tok"') == 9  # header + top 3; every word coloured
    assert "explaining" in fragment and re.search(r"Prediction: (negative|positive) \(\d\.\d\d\); ", fragment)
    checker = _Checker()
    checker.feed(fragment)
    assert checker.stack == []


def test_explanation_to_dict_is_json_ready(saved_mamba):
    result = explain(str(saved_mamba), "the movie was", top=2)
    document = json.loads(json.dumps(result.to_dict()))
    assert document["tokens"] == ["the", "movie", "was"] and document["special"] == [False] * 3
    assert len(document["probabilities"]) == 5 and document["prediction_label"] == next(iter(document["probabilities"]))
    assert sorted(r for r in document["rank"] if r is not None) == [1, 2] and document["top"] == 2
    assert result.probabilities.shape == (len(WORDS) + 2,) and len(result.top_classes) == 5
    assert abs(float(result.probabilities.sum()) - 1.0) < 1e-5


def test_explain_config_reads_every_non_empty_line_with_one_model_load(saved_mamba, tmp_path, monkeypatch):
    import attnlens.models as models
    from attnlens.experiments.explain import ExplainConfig, explain_config

    lines = tmp_path / "lines.txt"
    lines.write_text("the movie\n\nnot bad at all\n", encoding="utf-8")
    loads = []
    real = models.load_adapter
    monkeypatch.setattr(models, "load_adapter", lambda *a, **k: loads.append(a) or real(*a, **k))
    results = explain_config(ExplainConfig(model=str(saved_mamba), file=str(lines), html=str(tmp_path / "all.html")))
    assert [r.text for r in results] == ["the movie", "not bad at all"] and len(loads) == 1
    assert all(r.html == tmp_path / "all.html" and r.top == 10 for r in results)
    with pytest.raises(ValueError, match=r"Expected a `text` or a `file`, but got neither\."):
        explain_config(ExplainConfig(model=str(saved_mamba)))
    with pytest.raises(ValueError, match=r"Expected `top` to be an integer in \[1, inf\], but got 0\."):
        explain(str(saved_mamba), "the movie", top=0)


def test_flow_on_a_long_text_is_announced():
    from attnlens.experiments.explain import _warn_if_flow_is_long

    with pytest.warns(UserWarning, match=r"attention flow on 200 tokens will take about \d+ minutes"):
        _warn_if_flow_is_long(200, 6)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_flow_is_long(20, 6)  # seconds: no warning
