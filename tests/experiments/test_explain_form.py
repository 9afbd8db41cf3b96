"""`attnlens explain --form`: a Mamba model explained with the scan's or the whole mixer's hidden attention."""

from __future__ import annotations

import torch

from attnlens.cli import main
from attnlens.experiments.explain import explain
from attnlens.methods.registry import MethodCache, method_variant
from attnlens.methods.relevance import relevance
from attnlens.models import create_tiny_adapter

torch.set_num_threads(1)
TEXT = "the movie was great"


def test_explain_uses_the_traces_of_the_chosen_form():
    adapter = create_tiny_adapter("test_mamba")
    scores = {}
    for form in ("scan", "unified"):
        result = explain(None, TEXT, adapter=adapter, form=form)
        trace = adapter.trace([TEXT], form=form)
        cache = MethodCache(trace.attentions, trace.mask, extras=trace.extras, readout=trace.readout)
        joint = method_variant("rollout").compute(cache).joint[:, -1]
        expected = relevance(joint, mask=trace.mask, reduce="readout", readout=trace.readout)[0]
        torch.testing.assert_close(torch.as_tensor(result.relevance, dtype=torch.float32), expected.float())
        scores[form] = expected
    assert not torch.allclose(scores["scan"], scores["unified"])


def test_explain_form_on_a_model_without_state_space_layers_is_one_line(tiny_bert_dir, capsys):
    assert main(["--quiet", "explain", "--model", str(tiny_bert_dir), TEXT, "--form", "unified"]) == 2
    err = capsys.readouterr().err
    assert "`--form`" in err and len(err.strip().splitlines()) == 1
