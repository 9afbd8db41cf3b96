"""Tests of attnlens.experiments.attention_map on a tiny random BERT classifier."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from attnlens.experiments.attention_map import attention_map, attention_map_data
from tests.conftest import SHARED_MODEL, WORDS, needs_shared_model


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny BERT with a tokenizer built by `BertTokenizerFast(vocab=...)` (transformers 5
    ignores `vocab_file=` and maps every word to [UNK])."""
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert-words")
    shutil.copytree(tiny_bert_dir, folder, dirs_exist_ok=True)
    vocab = {word: index for index, word in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    BertTokenizerFast(vocab=vocab, model_max_length=64).save_pretrained(folder)
    return folder


def test_png_and_html_from_model_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    text = "the movie was not good"
    png = attention_map(str(tiny_model_dir), text, alpha=0.9, out=tmp_path / "map.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = attention_map(str(tiny_model_dir), text, alpha=0.5, out=tmp_path / "map.html", html=True, reduce="max")
    html_text = page.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="attnlens-data">(.*?)</script>', html_text, re.S).group(1))
    assert data["tokens"] == ["[CLS]", "the", "movie", "was", "not", "good", "[SEP]"]
    assert len(data["layers"]) == 2 and len(data["layers"][0]["before"]) == 7 and data["reduce"] == "max"
    for word in ("movie", "good"):
        assert word in html_text


def test_accepts_an_adapter(tiny_model_dir: Path) -> None:
    from attnlens.models.hf_text import load_text_classifier

    adapter = load_text_classifier(str(tiny_model_dir))
    amap = attention_map_data(adapter, "a good film", alpha=0.9, head_fusion="max")
    assert amap.before.shape == (2, 5, 5) and amap.after.shape == (2, 5, 5)
    assert float((amap.after.sum(dim=-1) - 1).abs().max()) < 1e-12


@needs_shared_model
def test_real_classifier(tmp_path: Path) -> None:
    amap = attention_map_data(str(SHARED_MODEL), "a gorgeous, witty, seductive movie.", alpha=0.9)
    assert amap.before.shape[0] == 6 and amap.tokens[0] == "[CLS]"


def test_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Expected `model` to be .*local model folder"):
        attention_map(str(tmp_path / "missing"), "good", out=tmp_path / "x.png")


def test_format_follows_the_extension(tiny_model_dir: Path, tmp_path: Path) -> None:
    page = attention_map(str(tiny_model_dir), "a good movie", out=tmp_path / "new" / "map.HTML")
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    png = attention_map(str(tiny_model_dir), "a good movie", out=tmp_path / "map.png", html=False)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["map.HTML", "map.png", "new"]  # no temporary files


@pytest.mark.parametrize(("name", "html", "message"), [
    ("x.jpg", None, r"Expected `out` to end in \.png or \.html, but got '.*x\.jpg'\."),
    ("x", None, r"Expected `out` to end in \.png or \.html, but got '.*x'\."),
    ("x.png", True, r"Expected `out` to end in \.html \(an HTML page was asked for\), but got '.*x\.png'\."),
    ("x.html", False, r"Expected `out` to end in \.png \(a PNG was asked for\), but got '.*x\.html'\."),
])
def test_bad_output_names_fail_before_loading(tmp_path: Path, name: str, html: bool | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attention_map(str(tmp_path / "no-model"), "good", out=tmp_path / name, html=html)
    assert not (tmp_path / name).exists()


def test_output_folders_fail_before_loading(tmp_path: Path) -> None:
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(ValueError, match="Expected `out` to be a file path, but .*taken.png' is an existing folder"):
        attention_map(str(tmp_path / "no-model"), "good", out=tmp_path / "taken.png")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="Expected `out` to be in a folder, but .*file' is a file"):
        attention_map(str(tmp_path / "no-model"), "good", out=tmp_path / "file" / "map.png")


def test_relevance_bars_follow_the_registered_method(tiny_model_dir):
    import torch

    from attnlens.methods import selective_rollout
    from attnlens.methods.relevance import relevance

    amap = attention_map_data(str(tiny_model_dir), "a good film", alpha=0.5, method="selective")
    expected = selective_rollout(amap.before[None], threshold=1.0).joint[:, -1]
    torch.testing.assert_close(amap.relevance_before, relevance(expected, reduce="cls")[0])
    with pytest.raises(ValueError, match="Expected `method` to be one of"):
        attention_map_data(str(tiny_model_dir), "a good film", method="mamba_attr")
