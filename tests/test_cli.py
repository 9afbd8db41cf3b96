"""CLI commands other than sst2/finetune: explain and attention-map, end to end on tiny models."""

from __future__ import annotations

import json
import re

import pytest

from attnlens.cli import main


def test_explain_bert_classifier_writes_html(tiny_bert_dir, tmp_path, capsys):
    page = tmp_path / "explain.html"
    code = main(["explain", "--model", str(tiny_bert_dir), "the movie is good", "--html", str(page)])
    assert code == 0
    html = page.read_text()
    assert "<html" in html.lower() and "movie" in html
    assert "explaining" in capsys.readouterr().out


def test_explain_bad_input_exits_2(tiny_bert_dir, capsys):
    assert main(["explain", "--model", str(tiny_bert_dir), "  "]) == 2
    assert "Expected `text` to be a non-empty string" in capsys.readouterr().err
    assert main(["explain", "--model", str(tiny_bert_dir), "good", "--target", "9"]) == 2


def test_attention_map_png_and_html(tiny_bert_dir, tmp_path):
    png, page = tmp_path / "map.png", tmp_path / "map.html"
    assert main(["--quiet", "attention-map", "--model", str(tiny_bert_dir), "a good movie",
                 "--alpha", "0.8", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--quiet", "attention-map", "--model", str(tiny_bert_dir), "a good movie", "--html",
                 "--out", str(page)]) == 0
    assert "good" in page.read_text()


def test_attention_map_bad_alpha_exits_2(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "map.png"
    assert main(["attention-map", "--model", str(tiny_bert_dir), "good", "--alpha", "1.0",
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
    assert "explaining 'fun'" in capsys.readouterr().out
    html = page.read_text()
    assert html.count("<span") == 4 and "movie" in html


def test_missing_model_and_unavailable_device_exit_2(tiny_bert_dir, tmp_path, capsys):
    import torch

    assert main(["explain", "--model", str(tmp_path / "nope"), "good"]) == 2
    assert re.search(r"Expected `--model` to be .*local model folder", capsys.readouterr().err)
    if not torch.cuda.is_available():
        out = tmp_path / "m.png"
        assert main(["attention-map", "--model", str(tiny_bert_dir), "good", "--device", "cuda",
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
    zero, zero_err = capsys.readouterr()
    assert main(["explain", "--model", str(tiny_bert_dir), text, "--target", "1", "--top", "3"]) == 0
    one = capsys.readouterr().out
    assert "special tokens (grey) hold" in zero_err and "relevance" in zero and "saliency" in zero
    assert "rollout is class-agnostic" in zero_err and "the saliency column is for the target ('negative')" in zero_err
    rows_zero, rows_one = _table(zero), _table(one)
    assert len(rows_zero) == 9 and len(rows_one) == 3 and 0 not in rows_zero and 10 not in rows_zero  # no specials
    assert [rows_zero[pos][0] for pos in range(1, 10)] == text.split()
    assert all(rows_zero[pos][:2] == rows_one[pos][:2] for pos in rows_one)  # rollout: same relevance
    assert any(rows_zero[pos][2] != rows_one[pos][2] for pos in rows_one)  # saliency: changes


def test_explain_bad_options_exit_2(tiny_bert_dir, tmp_path, capsys):
    assert main(["explain", "--model", str(tiny_bert_dir), "good", "--method", "mamba_attr"]) == 2
    assert ("Expected a Mamba model for `--method` 'mamba_attr' (it needs residual-stream gradients), but got a "
            "'text'-family model (BertForSequenceClassification).") in capsys.readouterr().err
    assert main(["explain", "--model", str(tmp_path / "nope"), "good", "--html", str(tmp_path)]) == 2
    assert "Expected `--html` to be a file path, but" in capsys.readouterr().err
    assert main(["explain", "--model", str(tiny_bert_dir), "good", "--top", "0"]) == 2
    assert "Expected `--top` to be an integer in [1, inf], but got 0." in capsys.readouterr().err


def test_attention_map_format_follows_extension(tiny_bert_dir, tmp_path, capsys):
    page, png = tmp_path / "sub" / "map.html", tmp_path / "map.png"
    base = ["--quiet", "attention-map", "--model", str(tiny_bert_dir), "a good movie"]
    assert main([*base, "--out", str(page)]) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert main([*base, "--out", str(png)]) == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = ["attention-map", "--model", str(tmp_path / "nope"), "good"]  # checked before loading
    assert main([*missing, "--out", str(tmp_path / "x.jpg")]) == 2
    assert f"attnlens: error: Expected `--out` to end in .png or .html, but got '{tmp_path / 'x.jpg'}'." in (
        capsys.readouterr().err)
    assert main([*missing, "--html", "--out", str(tmp_path / "x.png")]) == 2
    assert "Expected `--out` to end in .html (an HTML page was asked for)" in capsys.readouterr().err
    assert main([*missing, "--out", str(tmp_path / "sub")]) == 2
    assert "Expected `--out` to be a file path, but" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "x.png").exists()


def _prediction(out: str) -> tuple[str, float, str, float]:
    """(predicted class, its probability, the other class, its probability) from `explain`'s first line."""
    match = re.match(r"prediction: (\w+) \((0\.\d\d|1\.00)\); (\w+) (0\.\d\d|1\.00)\n", out)
    assert match, out
    return match.group(1), float(match.group(2)), match.group(3), float(match.group(4))


def test_explain_results_on_stdout_notes_on_stderr_quiet_silences_only_stderr(tiny_bert_dir, capsys):
    text = "the movie is good"
    assert main(["explain", "--model", str(tiny_bert_dir), text]) == 0
    out, err = capsys.readouterr()
    predicted, p_predicted, other, p_other = _prediction(out)
    assert {predicted, other} == {"negative", "positive"} and p_predicted >= p_other
    assert abs(p_predicted + p_other - 1.0) <= 0.011
    assert f"\nexplaining {predicted!r} with rollout:\n[CLS] the movie is good [SEP]\n" in out
    assert "the model predicted" not in out and len(_table(out)) == 4
    assert "note:" not in out and "special tokens (grey) hold" not in out
    assert err.splitlines() == [err.splitlines()[0], f"note: rollout is class-agnostic (the same for every target); "
                                f"the saliency column is for the target ({predicted!r})"]
    assert err.startswith("colours are scaled over the words; special tokens (grey) hold ")
    assert main(["--quiet", "explain", "--model", str(tiny_bert_dir), text]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == out


def test_explain_target_by_name_or_index_says_what_the_model_predicted(tiny_bert_dir, capsys):
    text = "a dull movie"
    assert main(["explain", "--model", str(tiny_bert_dir), text]) == 0
    predicted, _, other, p_other = _prediction(capsys.readouterr().out)
    index = ["negative", "positive"].index(other)
    assert main(["explain", "--model", str(tiny_bert_dir), text, "--target", other.upper()]) == 0
    by_name = capsys.readouterr().out
    assert main(["explain", "--model", str(tiny_bert_dir), text, "--target", str(index)]) == 0
    assert capsys.readouterr().out == by_name
    assert (f"\nexplaining {other!r} (the model predicted {predicted!r}; p({other!r}) = {p_other:.2f}) with "
            f"rollout:\n") in by_name
    assert main(["explain", "--model", str(tiny_bert_dir), text, "--target", "neutral"]) == 2
    assert ("attnlens: error: Expected `--target` to be 'pred', 'gold', a class index or one of the class names "
            "'negative', 'positive', but got 'neutral'.") in capsys.readouterr().err


def test_explain_json_is_one_document_on_stdout_ranking_the_top_tokens(tiny_bert_dir, capsys):
    assert main(["explain", "--model", str(tiny_bert_dir), "the plot is boring", "--json", "--top", "2",
                 "--target", "positive"]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert set(document) == {"text", "method", "target", "target_label", "prediction", "prediction_label",
                             "probabilities", "tokens", "relevance", "saliency", "special", "rank", "top"}
    assert document["text"] == "the plot is boring" and document["method"] == "rollout"
    assert document["target"] == 1 and document["target_label"] == "positive" and document["top"] == 2
    assert document["tokens"] == ["[CLS]", "the", "plot", "is", "boring", "[SEP]"]
    assert document["special"] == [True, False, False, False, False, True]
    assert set(document["probabilities"]) == {"negative", "positive"}
    assert abs(sum(document["probabilities"].values()) - 1.0) < 1e-6
    best = max(document["probabilities"], key=document["probabilities"].get)
    assert document["prediction_label"] == best and document["prediction"] == ["negative", "positive"].index(best)
    ordinary = sorted(range(1, 5), key=lambda i: -document["relevance"][i])
    assert [document["rank"][i] for i in ordinary] == [1, 2, None, None] and document["rank"][0] is None
    assert len(document["saliency"]) == 6 and "prediction:" not in out and "note: rollout" in err


def test_explain_html_honours_top(tiny_bert_dir, tmp_path, capsys):
    page = tmp_path / "page.html"
    assert main(["explain", "--model", str(tiny_bert_dir), "the movie is good but the plot is boring", "--top", "3",
                 "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count("<tr") == 4 and html.count('class="tok"') == 9  # header + 3 rows; every word coloured
    assert f"HTML written to {page}" in capsys.readouterr().err


def test_explain_file_explains_every_non_empty_line(tiny_bert_dir, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("a good movie\n\n   \nthe plot is boring\n", encoding="utf-8")
    base = ["explain", "--model", str(tiny_bert_dir), "--file", str(lines)]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert out.count("prediction: ") == 2 and out.count("explaining ") == 2
    assert out.index("[CLS] a good movie [SEP]") < out.index("[CLS] the plot is boring [SEP]")
    assert main([*base, "--json"]) == 0
    documents = json.loads(capsys.readouterr().out)
    assert [d["text"] for d in documents] == ["a good movie", "the plot is boring"]
    page = tmp_path / "all.html"
    assert main([*base, "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count('class="attnlens-heatmap"') == 2 and html.count("<html") == 1
    assert "<h1>attnlens rollout: 2 texts</h1>" in html


def test_explain_text_or_file_errors_exit_2(tiny_bert_dir, tmp_path, capsys):
    model = ["explain", "--model", str(tiny_bert_dir)]
    assert main(model) == 2
    assert capsys.readouterr().err == "attnlens: error: Expected a `text` or a `--file`, but got neither.\n"
    (tmp_path / "one.txt").write_text("good\n")
    assert main([*model, "good", "--file", str(tmp_path / "one.txt")]) == 2
    assert capsys.readouterr().err == "attnlens: error: Expected a `text` or a `--file`, but got both.\n"
    assert main([*model, "--file", str(tmp_path / "none.txt")]) == 2
    assert capsys.readouterr().err == (f"attnlens: error: Expected `--file` to be a readable text file, but "
                                       f"'{tmp_path / 'none.txt'}' does not exist.\n")
    (tmp_path / "blank.txt").write_text("\n  \n")
    assert main([*model, "--file", str(tmp_path / "blank.txt")]) == 2
    assert capsys.readouterr().err == (f"attnlens: error: Expected `--file` to hold at least one non-empty line, but "
                                       f"'{tmp_path / 'blank.txt'}' has none.\n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
    assert main([*model, "--file", str(tmp_path / "latin1.txt")]) == 2
    assert "Expected `--file` to be UTF-8 text, but" in capsys.readouterr().err


def test_explain_mamba_prints_top_5_next_tokens(tmp_path, capsys):
    from tests.conftest import WORDS, tiny_mamba_lm, word_level_tokenizer

    folder = tmp_path / "mamba"
    tiny_mamba_lm(len(WORDS) + 2).save_pretrained(folder)
    word_level_tokenizer(WORDS).save_pretrained(folder)
    assert main(["explain", "--model", str(folder), "the movie is"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    match = re.fullmatch(r"prediction: '(\S+)' \((\d\.\d\d)\)((?:; '\S+' \d\.\d\d){4})", first)
    assert match, first
    others = [float(p) for p in re.findall(r"\d\.\d\d", match.group(3))]
    assert float(match.group(2)) >= others[0] and others == sorted(others, reverse=True)
    target = next(word for word in WORDS if word != match.group(1))
    assert main(["explain", "--model", str(folder), "the movie is", "--target", target]) == 0
    assert f"explaining {target!r} (the model predicted {match.group(1)!r}; p({target!r}) = " in (
        capsys.readouterr().out)


def test_explain_heatmap_follows_the_terminal_colours(tiny_bert_dir, monkeypatch, capsys):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("COLORTERM", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    argv = ["--quiet", "explain", "--model", str(tiny_bert_dir), "a good movie"]
    for term, expected, absent in [("xterm", r"\x1b\[[\d;]*(4[0-7]|10[0-7])m", "48;5;"),
                                   ("xterm-256color", r"\x1b\[30;48;5;(231|224|217|210|203|196|160)m", "48;2;")]:
        monkeypatch.setenv("TERM", term)
        assert main(argv) == 0
        line = capsys.readouterr().out.splitlines()[2]
        assert re.search(expected, line) and absent not in line and "48;2;" not in line, (term, line)


def test_attention_map_text_is_positional(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "map.png"
    with pytest.raises(SystemExit) as missing:
        main(["attention-map", "--model", str(tiny_bert_dir), "--out", str(out)])
    assert missing.value.code == 2
    assert capsys.readouterr().err == ("attnlens: error: the following arguments are required: text (see `attnlens "
                                       "attention-map --help`)\n")
    with pytest.raises(SystemExit) as old:
        main(["attention-map", "--model", str(tiny_bert_dir), "--text", "good", "--out", str(out)])
    assert old.value.code == 2
    assert "unrecognized arguments: --text" in capsys.readouterr().err and not out.exists()
    assert main(["attention-map", "a good movie", "--model", str(tiny_bert_dir), "--out", str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().err
