"""The distances view (`--distances`) and `--thresholds auto:Q`: checked against direct computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnlens.cli import main
from attnlens.experiments.layer_distances import (
    DistanceDistribution,
    distance_rows,
    measure_layer_distances,
    parse_auto_threshold,
    resolve_thresholds,
    write_distance_outputs,
)
from attnlens.experiments.sst2 import SST2StudyConfig, run_sst2_study
from attnlens.methods.selective_rollout import selective_rollout
from attnlens.models import TextClassifierAdapter
from tests.conftest import SHARED_DATA, SHARED_MODEL, needs_shared_data, needs_shared_model


def _direct_pairwise(model_dir, sentences: list[str]) -> tuple[np.ndarray, np.ndarray, list[torch.Tensor]]:
    """Each sentence alone through the Hugging Face model: head mean, + I, rows normalised, all layer pairs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32,
                                                               attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pairwise, tokens, attentions = [], [], []
    for sentence in sentences:
        with torch.no_grad():
            output = model(**tokenizer(sentence, return_tensors="pt"), output_attentions=True)
        attn = torch.stack(output.attentions, dim=1)[0].double()  # (L, H, n, n)
        n = attn.shape[-1]
        fused = attn.mean(dim=1) + torch.eye(n, dtype=torch.float64)
        fused = fused / fused.sum(dim=-1, keepdim=True)
        layers = fused.shape[0]
        pairwise.append(np.array([[float(torch.linalg.norm(fused[i] - fused[j])) for j in range(layers)]
                                  for i in range(layers)]))
        tokens.append(n)
        attentions.append(attn)
    return np.stack(pairwise), np.array(tokens), attentions


@needs_shared_model
@needs_shared_data
def test_distances_on_minilm_sst2_match_a_direct_computation(tmp_path):
    from attnlens.datasets import load_sst2_examples

    examples = load_sst2_examples("dev", data_dir=SHARED_DATA)[:10]
    adapter = TextClassifierAdapter.from_pretrained(str(SHARED_MODEL))
    distribution = measure_layer_distances(adapter, examples, batch_size=4, model="minilm-sst2")
    pairwise, tokens, attentions = _direct_pairwise(SHARED_MODEL, examples.texts)
    assert distribution.pairwise.shape == (10, 6, 6)
    np.testing.assert_allclose(distribution.pairwise, pairwise, atol=2e-5, rtol=0)
    assert distribution.tokens.tolist() == tokens.tolist()
    consecutive = np.array([[pairwise[b, i, i - 1] for i in range(1, 6)] for b in range(10)])
    np.testing.assert_allclose(distribution.consecutive("frobenius"), consecutive, atol=2e-5, rtol=0)
    np.testing.assert_allclose(distribution.consecutive("frobenius_per_token"), consecutive / np.sqrt(tokens)[:, None],
                               atol=1e-5, rtol=0)
    assert distribution.quantile(0.5) == pytest.approx(float(np.median(consecutive)), abs=2e-5)

    # The layers used at a threshold are those selective rollout composes, example by example.
    for threshold in (distribution.quantile(0.25), distribution.quantile(0.75), 0.5):
        used = [int(selective_rollout(a[None], threshold=threshold).used.sum()) for a in attentions]
        assert distribution.layers_used(threshold).tolist() == used
    per_token = distribution.quantile(0.5, "frobenius_per_token")
    used = [int(selective_rollout(a[None], threshold=per_token, distance="frobenius_per_token").used.sum())
            for a in attentions]
    assert distribution.layers_used(per_token, "frobenius_per_token").tolist() == used

    # The table: per transition medians, then thresholds with the layers they use.
    head, rows, choice_head, choices = distance_rows(distribution)
    assert [row[0] for row in rows] == ["1→2", "2→3", "3→4", "4→5", "5→6", "all"]
    for layer in range(5):
        assert float(rows[layer][1]) == pytest.approx(float(np.median(consecutive[:, layer])), abs=1e-4)
    assert float(rows[-1][1]) == pytest.approx(float(np.median(consecutive)), abs=1e-4)
    by_choice = {row[0]: row for row in choices}
    assert float(by_choice["auto:0.5"][1]) == pytest.approx(float(np.median(consecutive)), rel=1e-3)
    skip = float(by_choice["skip 50%"][1])  # rounded up: still skips half the layers
    assert distribution.skipped_share(skip) >= 0.5 and skip >= distribution.threshold_for_skipped(0.5)
    assert float(by_choice["skip 50%"][2]) == pytest.approx(distribution.layers_used(skip).mean(), abs=5e-3)

    out = write_distance_outputs(distribution, tmp_path / "distances")
    assert sorted(p.name for p in out.iterdir()) == ["distances.csv", "distances.json", "distances.md", "distances.png"]
    assert (out / "distances.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads((out / "distances.json").read_text())
    assert document["layers"] == 6 and document["examples"] == 10
    assert document["quantiles"]["frobenius"]["0.5"] == pytest.approx(float(np.median(consecutive)), abs=2e-5)
    assert "| 1→2 |" in (out / "distances.md").read_text()


def test_distances_do_not_depend_on_batching(tiny_bert_dir, tiny_sst2_dir):
    from attnlens.datasets import load_sst2_examples

    examples = load_sst2_examples("dev", data_dir=tiny_sst2_dir)[:9]
    adapter = TextClassifierAdapter.from_pretrained(str(tiny_bert_dir))
    one = measure_layer_distances(adapter, examples, batch_size=1)
    many = measure_layer_distances(adapter, examples, batch_size=4)
    np.testing.assert_allclose(one.pairwise, many.pairwise, atol=1e-6, rtol=0)
    assert one.ids == many.ids == tuple(e.id for e in examples)


def test_auto_thresholds_are_quantiles_of_the_consecutive_distances(tiny_bert_dir, tiny_sst2_dir):
    from attnlens.datasets import load_sst2_examples

    adapter = TextClassifierAdapter.from_pretrained(str(tiny_bert_dir))
    config = SST2StudyConfig(data=str(tiny_sst2_dir), limit=12, thresholds=("auto:0.25", "auto:0.75", "0.5"),
                             batch_size=5)
    result = run_sst2_study(config, adapter=adapter)
    distribution = measure_layer_distances(adapter, load_sst2_examples("dev", data_dir=tiny_sst2_dir)[:12])
    expected = [f"selective@{distribution.quantile(q):.4g}" for q in (0.25, 0.75)] + ["selective@0.5"]
    assert [name for name in result.summaries if name.startswith("selective@")] == expected
    assert result.summary.config["thresholds"] == ["auto:0.25", "auto:0.75", "0.5"]


def test_resolve_thresholds_per_token():
    pairwise = np.array([[[0.0, 2.0, 0.0], [2.0, 0.0, 4.0], [0.0, 4.0, 0.0]]])
    distribution = DistanceDistribution("m", "t", ("a",), pairwise, np.array([4]))
    assert resolve_thresholds(["auto:0", "auto:1", "7"], distribution) == ("2", "4", "7")
    assert resolve_thresholds(["auto:1"], distribution, distance="frobenius_per_token") == ("2",)
    assert distribution.layers_used(1.9).tolist() == [3]
    assert distribution.layers_used(2.0).tolist() == [1]  # layer 3's distance to layer 1 (0) is not above


@pytest.mark.parametrize("text", ["auto:2", "auto:-0.1", "auto:half", "auto:"])
def test_bad_auto_thresholds(text):
    with pytest.raises(ValueError, match=rf"Expected `thresholds` entry '{text}' to be auto:Q with Q a quantile in "
                                         r"\[0, 1\]"):
        parse_auto_threshold(text)


def test_cli_bad_auto_threshold_exits_2_before_loading(tmp_path, capsys):
    code = main(["sst2", "--model", str(tmp_path / "absent"), "--thresholds", "auto:1.5", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "Expected `--thresholds` entry 'auto:1.5' to be auto:Q" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_distances_writes_the_view(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    out = tmp_path / "d"
    code = main(["sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "8", "--distances",
                 "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "| skip 50% |" in err and f"distances written to {out}" in err
    assert sorted(p.name for p in out.iterdir()) == ["distances.csv", "distances.json", "distances.md", "distances.png"]
    code = main(["sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--distances", "--out", str(out)])
    assert code == 2 and "already holds files" in capsys.readouterr().err
