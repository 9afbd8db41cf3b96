"""The study runner: any dataset and class count through the CLI, shards that merge to the same
numbers, the sst2 preset equal to the generic study on the shared SST-2 file, ties, truncation."""

from __future__ import annotations

import csv
import dataclasses
import json
import random

import numpy as np
import pytest
import torch

from attnlens.cli import main
from attnlens.datasets import load_examples
from attnlens.experiments import ScoreTable, StudyConfig, run_study, score, summarize
from attnlens.experiments.scoring import ScoreOptions
from attnlens.methods.registry import expand_methods
from attnlens.metrics import spearman
from attnlens.models import load_adapter
from tests.conftest import SHARED_DATA, SHARED_MODEL, WORDS, needs_shared_data, needs_shared_model

CLASSES = ("negative", "neutral", "positive")


@pytest.fixture(scope="module")
def three_class_bert(tiny_tokenizer_dir, tmp_path_factory):
    """A seeded 2-layer BertForSequenceClassification with three named classes."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(3)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3,
                        id2label=dict(enumerate(CLASSES)), label2id={n: i for i, n in enumerate(CLASSES)})
    folder = tmp_path_factory.mktemp("three-class")
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_tokenizer_dir).save_pretrained(folder)
    return folder


def _write_csv(path, count=18, seed=0, string_labels=True):
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for row in range(count):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))
            label = CLASSES[row % 3] if string_labels else row % 3
            writer.writerow([f"r{row:03d}", words, label])
    return path


def test_study_cli_on_a_three_class_csv(three_class_bert, tmp_path):
    data = _write_csv(tmp_path / "three.csv")
    out = tmp_path / "run"
    code = main(["--quiet", "study", "--model", str(three_class_bert), "--data", str(data), "--methods",
                 "raw,rollout,selective,diffused_rollout", "--thresholds", "0.1", "--batch-size", "4",
                 "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "per_example.csv", "table.md",
                                               "layers.png"}
    document = json.loads((out / "results.json").read_text())
    assert document["n_examples"] == 18 and document["num_layers"] == 2
    assert set(document["methods"]) == {"raw", "rollout", "selective@0.1", "diffused_rollout@0.9"}
    rows = list(csv.DictReader((out / "per_example.csv").open()))
    assert [r["id"] for r in rows] == [f"r{i:03d}" for i in range(18)]
    assert {r["gold"] for r in rows} == {"0", "1", "2"}
    assert {int(r["predicted"]) for r in rows} <= {0, 1, 2}
    accuracy = sum(r["gold"] == r["predicted"] for r in rows) / 18
    assert accuracy == pytest.approx(document["accuracy"])
    assert document["config"]["data"] == str(data)


def test_string_labels_follow_the_model_class_names(three_class_bert, tmp_path):
    named = _write_csv(tmp_path / "named.csv", string_labels=True)
    numbered = _write_csv(tmp_path / "numbered.csv", string_labels=False)
    adapter = load_adapter(str(three_class_bert))
    config = StudyConfig(methods=("rollout",), target="gold")
    by_name = run_study(dataclasses.replace(config, data=str(named)), adapter=adapter)
    by_number = run_study(dataclasses.replace(config, data=str(numbered)), adapter=adapter)
    np.testing.assert_array_equal(by_name.table.labels, by_number.table.labels)
    np.testing.assert_allclose(by_name.correlations["rollout"], by_number.correlations["rollout"])


def test_labels_unknown_to_the_model_are_refused(three_class_bert, tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("text,label\ngood movie,great\nbad movie,awful\n", encoding="utf-8")
    assert main(["study", "--model", str(three_class_bert), "--data", str(path), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_shards_merge_to_the_same_numbers(three_class_bert, tmp_path):
    examples = load_examples(_write_csv(tmp_path / "d.csv", count=21))
    adapter = load_adapter(str(three_class_bert))
    methods = expand_methods(["raw", "rollout", "selective"], threshold=["0.05", "0.2"])
    options = ScoreOptions(batch_size=4)
    whole = score(adapter, examples, methods, options=options)
    order = list(range(len(examples)))
    random.Random(1).shuffle(order)
    shards = [examples.select(sorted(order[i::3])) for i in range(3)]
    tables = [score(adapter, shard, methods, options=ScoreOptions(batch_size=5)) for shard in shards]
    merged = ScoreTable.concat(tables[::-1])
    assert merged.ids == whole.ids and len(merged) == 21 * 4 * 2
    for name in whole.scores:
        np.testing.assert_allclose(merged.scores[name], whole.scores[name], atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(merged.layers_used, whole.layers_used)
    exact = ScoreTable.concat([whole.sorted().select(np.arange(i, 21, 3)) for i in (2, 0, 1)])
    assert json.dumps(summarize(exact).method_dicts()) == json.dumps(summarize(whole).method_dicts())  # same numbers
    with pytest.raises(ValueError, match="appears twice"):
        ScoreTable.concat([tables[0], tables[0]])
    with pytest.raises(ValueError, match="the same `methods`"):
        ScoreTable.concat([tables[0], score(adapter, shards[1], methods[:1])])


def test_ties_reach_the_study(three_class_bert, tmp_path):
    data = _write_csv(tmp_path / "d.csv", count=9)
    adapter = load_adapter(str(three_class_bert))
    config = StudyConfig(data=str(data), methods=("raw",), ties="dense")
    result = run_study(config, adapter=adapter)
    assert result.summary.config["ties"] == "dense" and result.summary.settings["ties"] == "dense"
    trace = adapter.trace(load_examples(data).texts[:1])
    joint = expand_methods(["raw"])[0]
    from attnlens.methods.registry import MethodCache
    from attnlens.methods.relevance import relevance

    maps = relevance(joint.compute(MethodCache(trace.attentions, trace.mask)).joint, mask=trace.mask, reduce="max")
    expected = spearman(maps[:, -1], trace.saliency, mask=trace.mask, ties="dense")
    assert result.correlations["raw"][0, -1] == pytest.approx(float(expected[0]), abs=1e-6)


def test_long_texts_are_truncated_with_one_warning(three_class_bert, tmp_path):
    path = tmp_path / "long.csv"
    long_text = " ".join(["good"] * 100)
    path.write_text(f"text,label\n{long_text},0\n{long_text},1\nbad,2\n", encoding="utf-8")
    adapter = load_adapter(str(three_class_bert))
    with pytest.warns(UserWarning) as record:
        result = run_study(StudyConfig(data=str(path), methods=("rollout",)), adapter=adapter)
    messages = [str(w.message) for w in record if "truncated" in str(w.message)]
    assert messages == ["2 of 3 texts were longer than 64 tokens and were truncated."]
    assert result.table.tokens.max() == 64


def test_study_needs_data(three_class_bert, tmp_path, capsys):
    assert main(["study", "--model", str(three_class_bert), "--out", str(tmp_path / "o")]) == 2
    assert "Expected `--data` to be a file" in capsys.readouterr().err


@needs_shared_model
@needs_shared_data
def test_sst2_preset_equals_the_study_on_the_shared_files(tmp_path):
    sst2, study = tmp_path / "sst2", tmp_path / "study"
    common = ["--model", str(SHARED_MODEL), "--limit", "64", "--methods", "raw,rollout,selective"]
    assert main(["--quiet", "sst2", "--data", str(SHARED_DATA), *common, "--out", str(sst2)]) == 0
    assert main(["--quiet", "study", "--data", str(SHARED_DATA / "sst2" / "dev.tsv"), *common, "--out",
                 str(study)]) == 0
    one, two = (json.loads((folder / "results.json").read_text()) for folder in (sst2, study))
    assert one["methods"] == two["methods"] and one["accuracy"] == two["accuracy"] and one["n_examples"] == 64
    rows_one = list(csv.DictReader((sst2 / "per_example.csv").open()))
    rows_two = list(csv.DictReader((study / "per_example.csv").open()))
    drop = {"id"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows_one] == [
        {k: v for k, v in r.items() if k not in drop} for r in rows_two]


def test_long_flow_runs_are_announced_and_tokens_can_be_capped(three_class_bert, tmp_path, capsys):
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + "".join(f"{' '.join(['good'] * 60)},{i % 3}\n" for i in range(400)),
                    encoding="utf-8")
    adapter = load_adapter(str(three_class_bert))
    config = StudyConfig(data=str(path), methods=("flow",), limit=1)
    from attnlens.experiments.study import _prepare

    with pytest.warns(UserWarning, match=r"attention flow on these 400 examples \(up to 62 tokens\) will take about"):
        _prepare(dataclasses.replace(config, limit=None), adapter, None)
    capped = run_study(dataclasses.replace(config, max_tokens=8), adapter=adapter)
    assert capped.table.tokens.tolist() == [8]
    assert main(["study", "--model", str(three_class_bert), "--data", str(path), "--max-tokens", "1",
                 "--out", str(tmp_path / "o")]) == 2
    assert "Expected `--max-tokens` to be an integer of at least 2, but got 1." in capsys.readouterr().err
