"""What a run says about itself: --version, the package version, data source and model hash in
results.json, and loading errors that carry their cause in one line."""

from __future__ import annotations

import json
import shutil

import pytest

import attnlens
from attnlens.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"attnlens {attnlens.__version__}"
    assert attnlens.__version__ and attnlens.__version__ != "0+unknown"


def test_results_record_version_data_source_and_model_hash(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["--quiet", "sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "6",
                 "--out", str(out)]) == 0
    document = json.loads((out / "results.json").read_text())
    assert document["attnlens_version"] == attnlens.__version__
    assert document["data_source"] == str(tiny_sst2_dir / "sst2" / "dev.tsv")
    assert len(document["model_hash"]) == 64


def test_a_truncated_weights_file_names_its_cause(tiny_bert_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["explain", "--model", str(broken), "a good movie"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "failed (" in err
    cause = err.split("failed (", 1)[1]
    assert ":" in cause and len(cause) > len("SafetensorError: )")  # the exception's own words, not just its name


def test_an_existing_empty_output_folder_keeps_its_mode(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    import os
    import stat

    out = tmp_path / "mine"
    out.mkdir()
    os.chmod(out, 0o775)
    assert main(["--quiet", "sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--limit", "4",
                 "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o775 and (out / "results.json").is_file()


def test_loading_a_mamba_model_is_quiet(tmp_path, capfd):
    from attnlens.models import load_adapter
    from tests.conftest import WORDS, tiny_mamba_lm, word_level_tokenizer

    folder = tmp_path / "mamba"
    tiny_mamba_lm(len(WORDS) + 2).save_pretrained(folder)
    word_level_tokenizer(WORDS).save_pretrained(folder)
    capfd.readouterr()
    load_adapter(str(folder))
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # no weight-loading bar, no fast-path fallback warning
