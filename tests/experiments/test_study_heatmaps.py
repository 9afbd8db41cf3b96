"""Token heatmaps of the study's report: the maps drawn are the ones the study scored."""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from scipy.stats import spearmanr

from attnlens.cli import main
from attnlens.datasets import load_examples
from attnlens.experiments import StudyConfig, run_study
from attnlens.experiments.study_heatmaps import study_heatmaps
from attnlens.methods.registry import expand_methods
from attnlens.models import load_adapter

torch.set_num_threads(1)


def test_drawn_maps_reproduce_the_studys_last_layer_rho(tiny_bert_dir, tiny_sst2_dir):
    adapter = load_adapter(str(tiny_bert_dir))
    examples = load_examples(str(tiny_sst2_dir / "sst2" / "dev.tsv"))[:7]
    config = StudyConfig(model=str(tiny_bert_dir), methods=("raw", "rollout", "selective"), thresholds=("1",))
    result = run_study(config, adapter=adapter, examples=examples)
    methods = expand_methods(["raw", "rollout", "selective"], threshold=["1"])
    drawn = study_heatmaps(adapter, examples, methods, batch_size=3)
    assert set(drawn) == set(examples.ids)
    layers = result.summary.num_layers
    for row in result.summary.examples:
        entry = drawn[row.id]
        assert list(entry["maps"]) == [m.name for m in methods] + ["gradient"]
        assert len(entry["tokens"]) == len(entry["special"]) == row.tokens
        assert 0 < entry["confidence"] <= 1
        for slot, method in enumerate(methods):
            expected = row.spearman[slot * layers + layers - 1]
            rho = spearmanr(entry["maps"][method.name], entry["maps"]["gradient"]).statistic
            if expected is None or not math.isfinite(expected):
                assert not math.isfinite(rho) or np.ptp(entry["maps"][method.name]) < 1e-12
            else:
                assert abs(rho - expected) < 1e-5, (row.id, method.name)


def test_study_report_draws_heatmaps_for_the_first_examples(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    out = tmp_path / "study"
    assert main(["--quiet", "study", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "6",
                 "--methods", "raw,rollout", "--report", "--report-examples", "4", "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    blocks = page.split('<div class="example"')[1:]
    assert len(blocks) == 6
    with_maps = [b for b in blocks if 'class="method"' in b]
    assert len(with_maps) == 4
    for block in with_maps:
        assert re.findall(r'class="method">([^<]+)<', block) == ["raw", "rollout", "gradient"]
        assert re.search(r'data-confidence="0\.\d+|data-confidence="1', block)
    assert '<option value="+confidence">' in page
    assert "for 4 of the 6 examples" in page


def test_report_examples_must_not_be_negative(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    code = main(["--quiet", "study", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "6",
                 "--report", "--report-examples", "-1", "--out", str(tmp_path / "x")])
    assert code != 0 and "report_examples" in capsys.readouterr().err.replace("-", "_")
    assert not (tmp_path / "x").exists()
