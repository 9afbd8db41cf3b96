"""SST-2 loader: both column orders, clear errors for bad files and folders."""

from __future__ import annotations

import pytest

from attnlens.datasets import load_sst2, read_sst2_tsv
from tests.conftest import SHARED_DATA, needs_shared_data


def test_reads_either_column_order(tmp_path):
    (tmp_path / "a.tsv").write_text("label\tsentence\n1\tgood film\n0\tbad film\n")
    (tmp_path / "b.tsv").write_text("sentence\tlabel\ngood film\t1\nbad film\t0\n")
    assert read_sst2_tsv(tmp_path / "a.tsv").sentences == read_sst2_tsv(tmp_path / "b.tsv").sentences
    assert read_sst2_tsv(tmp_path / "b.tsv").labels == [1, 0]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "Expected a header row"),
        ("foo\tbar\n1\tx\n", "to have a `label` column"),
        ("label\tsentence\n2\tx\n", "Expected label 0 or 1 on line 2"),
        ("label\tsentence\n1\n", "Expected 2 columns on line 2"),
        ("label\tsentence\n0\tbad film\textra\n", r"Expected 2 columns on line 2 .*, but got 3"),
        ("label\tsentence\n1\tgood\n0\t  \n", "Expected a non-empty sentence on line 3"),
    ],
)
def test_bad_files(tmp_path, content, match):
    (tmp_path / "dev.tsv").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_sst2_tsv(tmp_path / "dev.tsv")


def test_bad_folders(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="is not a folder"):
        load_sst2("dev", data_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="to hold sst2/dev.tsv"):
        load_sst2("dev", data_dir=tmp_path)
    with pytest.raises(ValueError, match="Expected `split` to be one of"):
        load_sst2("test", data_dir=tmp_path)
    monkeypatch.delenv("ATTNLENS_DATA", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # no `datasets` package
    with pytest.raises(ValueError, match=r"Expected SST-2 in `--data DIR` or \$ATTNLENS_DATA"):
        load_sst2("dev")


def test_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("label\tsentence\n1\tgood\n")
    monkeypatch.setenv("ATTNLENS_DATA", str(tmp_path))
    assert load_sst2("train").sentences == ["good"]


@needs_shared_data
def test_shared_sst2_sizes():
    assert len(load_sst2("dev", data_dir=SHARED_DATA)) == 872
