"""`attnlens evaluate` end to end on the tiny BERT: outputs, one table, usage errors exit 2 with nothing written."""

from __future__ import annotations

import csv
import json

import pytest

from attnlens.cli import main
from attnlens.experiments.evaluate_outputs import OUTPUT_FILES


def test_evaluate_writes_every_output(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["--quiet", "evaluate", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "10",
                 "--methods", "raw,rollout,selective,diffused_rollout,gae,gradient,grad_x_input,loo,random",
                 "--thresholds", "0.5,1", "--sanity-steps", "last", "--batch-size", "4", "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    summary = json.loads((out / "results.json").read_text())
    names = [m["name"] for m in summary["methods"]]
    assert names == ["raw", "rollout", "selective@0.5", "selective@1", "diffused_rollout@0.9", "gae", "gradient",
                     "grad_x_input", "loo", "random"]
    rollout = summary["methods"][1]["metrics"]["aopc_comp"]
    assert rollout["count"] == 10 and rollout["wilcoxon_p_vs_rollout"] is None
    assert len(summary["methods"][1]["sanity_curve"]) == 1
    with (out / "per_example.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 11 and "loo:loo_tau" in rows[0]
    assert "AOPC comp." in (out / "table.md").read_text()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--metrics", "aopc", "Expected `--metrics` to be one of"),
    ("--fractions", "0,0.5", r"Expected `--fractions` to be numbers in \(0, 1\]"),
    ("--batch-size", "0", "Expected `--batch-size` to be a positive integer"),
])
def test_evaluate_usage_errors_exit_2_and_write_nothing(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys, option,
                                                        value, message):
    out = tmp_path / "never"
    code = main(["evaluate", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), option, value,
                 "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err)
    assert not out.exists()


def test_evaluate_reference_tau_with_a_captum_reference(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    pytest.importorskip("captum")
    out = tmp_path / "ref"
    assert main(["--quiet", "evaluate", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "6",
                 "--methods", "rollout,ig,occlusion", "--metrics", "reference_tau,aopc_comp", "--reference",
                 "occlusion", "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    by_name = {m["name"]: m["metrics"] for m in summary["methods"]}
    assert by_name["occlusion"]["reference_tau"]["median"] == pytest.approx(1.0)
    assert summary["settings"]["reference"] == "occlusion"


@pytest.mark.parametrize("reference", ["loo", "occlusion"])
def test_study_correlates_with_another_reference(tiny_bert_dir, tiny_sst2_dir, tmp_path, reference):
    if reference != "loo":
        pytest.importorskip("captum")
    out = tmp_path / reference
    assert main(["--quiet", "study", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "6",
                 "--methods", "rollout", "--reference", reference, "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["reference"] == reference
    assert f"|{reference}| reference attributions" in (out / "table.md").read_text()
