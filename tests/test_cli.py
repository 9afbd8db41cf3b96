"""CLI commands other than sst2/finetune: explain and attention-map, end to end on tiny models."""

from __future__ import annotations

import re

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
    assert re.search(r"Expected `--model` to be .*local model folder", capsys.readouterr().err)
    if not torch.cuda.is_available():
        out = tmp_path / "m.png"
        assert main(["attention-map", "--model", str(tiny_bert_dir), "--text", "good", "--device", "cuda",
                     "--out", str(out)]) == 2
        assert "to be available" in capsys.readouterr().err and not out.exists()
        assert main(["explain", "--model", str(tiny_bert_dir), "good", "--device", "cuda"]) == 2


def _table(err: str) -> dict[int, tuple[str, float, float]]:
    """position -> (token, relevance, saliency) from the table printed by `explain`."""
    rows = {}
    for line in err.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0].isdigit() and parts[1].isdigit():
            rows[int(parts[1])] = (parts[2], float(parts[3]), float(parts[4]))
    return rows


def test_explain_prints_numbers_and_saliency_follows_target(tiny_bert_dir, capsys):
    text = "the movie is good but the plot is boring"
    assert main(["explain", "--model", str(tiny_bert_dir), text, "--target", "0"]) == 0
    zero = capsys.readouterr().err
    assert main(["explain", "--model", str(tiny_bert_dir), text, "--target", "1", "--top", "3"]) == 0
    one = capsys.readouterr().err
    assert "special tokens (grey) hold" in zero and "relevance" in zero and "saliency" in zero
    assert "rollout is class-agnostic" in zero and "the saliency column is for the target ('negative')" in zero
    rows_zero, rows_one = _table(zero), _table(one)
    assert len(rows_zero) == 9 and len(rows_one) == 3 and 0 not in rows_zero and 10 not in rows_zero  # no specials
    assert [rows_zero[pos][0] for pos in range(1, 10)] == text.split()
    assert all(rows_zero[pos][:2] == rows_one[pos][:2] for pos in rows_one)  # rollout: same relevance
    assert any(rows_zero[pos][2] != rows_one[pos][2] for pos in rows_one)  # saliency: changes


def test_explain_bad_options_exit_2(tiny_bert_dir, tmp_path, capsys):
    assert main(["explain", "--model", str(tiny_bert_dir), "good", "--method", "mamba_attr"]) == 2
    assert ("Expected a Mamba model for `--method` 'mamba_attr' (it needs hidden-attention gradients), but got a "
            "'text'-family model (BertForSequenceClassification).") in capsys.readouterr().err
    assert main(["explain", "--model", str(tmp_path / "nope"), "good", "--html", str(tmp_path)]) == 2
    assert "Expected `--html` to be a file path, but" in capsys.readouterr().err
    assert main(["explain", "--model", str(tiny_bert_dir), "good", "--top", "0"]) == 2
    assert "Expected `--top` to be an integer in [1, inf], but got 0." in capsys.readouterr().err


def test_attention_map_format_follows_extension(tiny_bert_dir, tmp_path, capsys):
    page, png = tmp_path / "sub" / "map.html", tmp_path / "map.png"
    base = ["--quiet", "attention-map", "--model", str(tiny_bert_dir), "--text", "a good movie"]
    assert main([*base, "--out", str(page)]) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert main([*base, "--out", str(png)]) == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = ["attention-map", "--model", str(tmp_path / "nope"), "--text", "good"]  # checked before loading
    assert main([*missing, "--out", str(tmp_path / "x.jpg")]) == 2
    assert f"attnlens: error: Expected `--out` to end in .png or .html, but got '{tmp_path / 'x.jpg'}'." in (
        capsys.readouterr().err)
    assert main([*missing, "--html", "--out", str(tmp_path / "x.png")]) == 2
    assert "Expected `--out` to end in .html (an HTML page was asked for)" in capsys.readouterr().err
    assert main([*missing, "--out", str(tmp_path / "sub")]) == 2
    assert "Expected `--out` to be a file path, but" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "x.png").exists()
