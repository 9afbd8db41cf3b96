"""CLI commands other than sst2/finetune: explain and attention-map, end to end on tiny models."""

from __future__ import annotations

from attnlens.cli import main


def test_explain_bert_classifier_writes_html(tiny_bert_dir, tmp_path, capsys):
    page = tmp_path / "explain.html"
    code = main(["explain", "--model", str(tiny_bert_dir), "the movie is good", "--html", str(page)])
    assert code == 0
    html = page.read_text()
    assert "<html" in html.lower() and "movie" in html
    assert "explaining" in capsys.readouterr().err


def test_explain_bad_input_exits_2(tiny_bert_dir, capsys):
    assert main(["explain", "--model", str(tiny_bert_dir), "  "]) == 2
    assert "Expected `text` to be a non-empty string" in capsys.readouterr().err
    assert main(["explain", "--model", str(tiny_bert_dir), "good", "--target", "9"]) == 2


def test_attention_map_png_and_html(tiny_bert_dir, tmp_path):
    png, page = tmp_path / "map.png", tmp_path / "map.html"
    assert main(["--quiet", "attention-map", "--model", str(tiny_bert_dir), "--text", "a good movie",
                 "--alpha", "0.8", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--quiet", "attention-map", "--model", str(tiny_bert_dir), "--text", "a good movie", "--html",
                 "--out", str(page)]) == 0
    assert "good" in page.read_text()


def test_attention_map_bad_alpha_exits_2(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "map.png"
    assert main(["attention-map", "--model", str(tiny_bert_dir), "--text", "good", "--alpha", "1.0",
                 "--out", str(out)]) == 2
    assert "alpha" in capsys.readouterr().err and not out.exists()


def test_explain_mamba_language_model_cli(tmp_path, capsys):
    from tests.conftest import WORDS, tiny_mamba_lm, word_level_tokenizer

    folder = tmp_path / "mamba"
    tiny_mamba_lm(len(WORDS) + 2).save_pretrained(folder)
    word_level_tokenizer(WORDS).save_pretrained(folder)
    page = tmp_path / "mamba.html"
    code = main(["explain", "--model", str(folder), "the movie is good", "--target", "fun", "--method", "mamba_attr",
                 "--html", str(page)])
    assert code == 0
    assert "explaining 'fun'" in capsys.readouterr().err
    html = page.read_text()
    assert html.count("<span") == 4 and "movie" in html


def test_missing_model_and_unavailable_device_exit_2(tiny_bert_dir, tmp_path, capsys):
    import torch

    assert main(["explain", "--model", str(tmp_path / "nope"), "good"]) == 2
    assert "Expected `model` to be a Hugging Face model id or a local model folder" in capsys.readouterr().err
    if not torch.cuda.is_available():
        out = tmp_path / "m.png"
        assert main(["attention-map", "--model", str(tiny_bert_dir), "--text", "good", "--device", "cuda",
                     "--out", str(out)]) == 2
        assert "to be available" in capsys.readouterr().err and not out.exists()
        assert main(["explain", "--model", str(tiny_bert_dir), "good", "--device", "cuda"]) == 2
