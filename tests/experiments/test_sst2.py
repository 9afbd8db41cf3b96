"""The SST-2 study end to end through the CLI: output files, schema, bad input, and a real model."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from attnlens.cli import main
from attnlens.experiments.scoring import length_batches as _length_batches
from attnlens.experiments.sst2 import SST2StudyConfig, run_sst2_study
from attnlens.models import TextClassifierAdapter
from tests.conftest import SHARED_DATA, SHARED_MODEL, needs_shared_data, needs_shared_model

OUTPUT_FILES = {"results.json", "results.csv", "per_example.csv", "table.md", "layers.png"}


def _check_schema(document: dict, layers: int, thresholds: list[str]) -> None:
    for key in ("model", "split", "n_examples", "accuracy", "saliency", "reduce", "methods"):
        assert key in document
    assert 0.0 <= document["accuracy"] <= 1.0
    names = {"raw", "rollout"} | {f"selective@{t}" for t in thresholds}
    assert set(document["methods"]) == names
    for name, entry in document["methods"].items():
        for key in ("median", "mean", "std", "ci95"):
            assert len(entry[key]) == layers, (name, key)
        for (low, high), median in zip(entry["ci95"], entry["median"]):
            assert median is None or low <= median <= high
        if name.startswith("selective@"):
            assert 1.0 <= entry["layers_used_mean"] <= layers
            assert len(entry["ratio_to_rollout"]) == layers


def test_cli_end_to_end_on_tiny_bert(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--quiet", "sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "24",
                 "--thresholds", "0.05,0.5", "--batch-size", "5", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    document = json.loads((out / "results.json").read_text())
    assert document["n_examples"] == 24 and document["split"] == "dev"
    _check_schema(document, layers=2, thresholds=["0.05", "0.5"])
    assert (out / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| selective@0.05 |" in (out / "table.md").read_text()
    rows = list(csv.DictReader((out / "per_example.csv").open()))
    assert len(rows) == 24 and {"gold", "predicted", "sentence"} <= set(rows[0])
    assert document["config"]["thresholds"] == ["0.05", "0.5"] and document["config"]["limit"] == 24
    accuracy = sum(r["gold"] == r["predicted"] for r in rows) / 24
    assert accuracy == pytest.approx(document["accuracy"])


def test_batching_does_not_change_results(tiny_bert_dir, tiny_sst2_dir):
    adapter = TextClassifierAdapter.from_pretrained(str(tiny_bert_dir))
    base = dict(data=str(tiny_sst2_dir), limit=20, thresholds=("0.1",), exclude_special=True)
    one = run_sst2_study(SST2StudyConfig(batch_size=1, **base), adapter=adapter)
    many = run_sst2_study(SST2StudyConfig(batch_size=7, **base), adapter=adapter)
    for name in one.correlations:
        np.testing.assert_allclose(one.correlations[name], many.correlations[name], atol=1e-5)
    assert one.accuracy == many.accuracy


def test_length_batches_sort_and_cover():
    batches = _length_batches([3, 9, 1, 7, 5], 2)
    assert batches == [[1, 3], [4, 0], [2]]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--methods", "raw,magic"], "Expected every entry of `--methods` to be one of"),
        (["--thresholds", "0.5,abc"], "Expected every entry of `--thresholds` to be a number, but got 'abc'"),
        (["--thresholds", "-1"], "Expected every entry of `--thresholds` to lie in [0, inf]"),
        (["--alpha", "1.5", "--methods", "diffusion"], "Expected every entry of `--alpha` to lie in [0, 1)"),
        (["--limit", "0"], "Expected `--limit` to be a positive integer"),
        (["--batch-size", "0"], "Expected `--batch-size` to be a positive integer"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys, extra, match):
    out = tmp_path / "run"
    code = main(["sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert match in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_data_exit_2(tiny_bert_dir, tmp_path, capsys):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_text("foo\tbar\n1\tgood\n")
    for data, match in [(tmp_path / "missing", "is not a folder"), (tmp_path, "to have a `label` column")]:
        code = main(["sst2", "--model", str(tiny_bert_dir), "--data", str(data), "--out", str(tmp_path / "o")])
        assert code == 2 and match in capsys.readouterr().err
    (tmp_path / "sst2" / "dev.tsv").write_text("label\tsentence\n1\tgood\n0\t \n")
    code = main(["sst2", "--model", str(tiny_bert_dir), "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2 and "non-empty sentence on line 3" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_not_a_classifier_exit_2(tmp_path, tiny_sst2_dir, capsys):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "m")
    code = main(["sst2", "--model", str(tmp_path / "m"), "--data", str(tiny_sst2_dir), "--out", str(tmp_path / "o")])
    assert code == 2 and "sequence classifier" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "sst2" in capsys.readouterr().err


@needs_shared_model
@needs_shared_data
def test_cli_on_real_minilm(tmp_path):
    out = tmp_path / "run"
    code = main(["--quiet", "sst2", "--model", str(SHARED_MODEL), "--data", str(SHARED_DATA), "--limit", "24",
                 "--out", str(out)])
    assert code == 0
    document = json.loads((out / "results.json").read_text())
    _check_schema(document, layers=6, thresholds=["0.5", "1", "2"])
    assert document["accuracy"] > 0.75  # a trained classifier, not chance
    rollout_last = document["methods"]["rollout"]["median"][-1]
    assert math.isfinite(rollout_last) and -1 <= rollout_last <= 1


def test_diffusion_methods_and_clarity(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    out = tmp_path / "run"
    code = main(["--quiet", "sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "12",
                 "--methods", "rollout,diffusion,diffused_rollout,diffused_selective", "--alpha", "0.5,0.9",
                 "--thresholds", "0.1", "--out", str(out)])
    assert code == 0
    methods = json.loads((out / "results.json").read_text())["methods"]
    assert set(methods) == {"rollout", "diffusion@0.5", "diffusion@0.9", "diffused_rollout@0.5",
                            "diffused_rollout@0.9", "diffused_selective@0.5:0.1", "diffused_selective@0.9:0.1"}
    for entry in methods.values():
        assert all(0 <= e <= 1 for e in entry["entropy_median"]) and all(0 <= g <= 1 for g in entry["gini_median"])
    assert "Clarity of the relevance maps" in (out / "table.md").read_text()


def test_flow_in_the_study(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["--quiet", "sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "6",
                 "--methods", "rollout,flow", "--out", str(out)]) == 0
    document = json.loads((out / "results.json").read_text())
    assert len(document["methods"]["flow"]["median"]) == 2
    assert "| flow |" in (out / "table.md").read_text()


# the registry's equality with the public functions lives in tests/methods/test_registry.py


def test_flow_reports_progress_within_a_batch(tiny_bert_dir, tiny_sst2_dir):
    adapter = TextClassifierAdapter.from_pretrained(str(tiny_bert_dir))
    calls: list[tuple[float, int]] = []
    run_sst2_study(SST2StudyConfig(data=str(tiny_sst2_dir), limit=6, batch_size=3, methods=("flow",)),
                   adapter=adapter, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6)
    assert any(done != int(done) for done, _ in calls)  # fractions of a batch
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
