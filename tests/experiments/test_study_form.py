"""`--form scan|unified`: the study explains a state-space classifier with either hidden attention."""

from __future__ import annotations

import numpy as np
import torch

from attnlens.cli import main
from attnlens.datasets import load_examples
from attnlens.experiments import StudyConfig, run_study
from attnlens.experiments.scoring import ScoreOptions, _score_batch
from attnlens.methods.registry import expand_methods
from attnlens.models import create_tiny_adapter

torch.set_num_threads(1)


def test_study_scores_the_traces_of_the_chosen_form(tiny_sst2_dir):
    adapter = create_tiny_adapter("test_mamba_classifier")
    examples = load_examples(str(tiny_sst2_dir / "sst2" / "dev.tsv"))[:6]
    methods = expand_methods(["raw", "rollout"])
    rho = {}
    for form in ("scan", "unified"):
        config = StudyConfig(methods=("raw", "rollout"), form=form, batch_size=6)
        result = run_study(config, adapter=adapter, examples=examples)
        rho[form] = np.array([row.spearman for row in result.summary.examples], dtype=float)
        # the same numbers as scoring one trace of that form by hand (padding changes nothing)
        trace = adapter.trace(examples.texts, form=form)
        values, _ = _score_batch(trace, methods, ScoreOptions(), None)
        spearman = values[0].permute(1, 0, 2).reshape(len(examples), -1).double().numpy()  # (B, M·L) method-major
        np.testing.assert_allclose(rho[form], spearman, atol=1e-5)
    assert np.isfinite(rho["unified"]).any()
    assert not np.allclose(rho["scan"], rho["unified"], equal_nan=True)


def test_form_on_a_model_without_state_space_layers_is_one_line(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    code = main(["--quiet", "study", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "4",
                 "--form", "unified", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "`--form`" in err and "state-space" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
