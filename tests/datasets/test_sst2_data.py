"""SST-2 loader: both column orders, clear errors for bad files and folders, the copy shipped with attnlens."""

from __future__ import annotations

import gzip
import hashlib
import re
import sys
import types
from pathlib import Path

import pytest

from attnlens.datasets import load_sst2, load_sst2_examples, read_sst2_tsv
from attnlens.datasets import sst2 as sst2_module
from tests.conftest import SHARED_DATA, needs_shared_data

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "attnlens" / "datasets" / "data" / "sst2"


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
    monkeypatch.setitem(sys.modules, "datasets", None)  # no `datasets` package
    assert len(load_sst2("dev")) == 872  # the shipped copy: no message any more
    monkeypatch.setattr(sst2_module, "_PACKAGED_DIR", tmp_path / "not-installed")  # an installation without it
    with pytest.raises(ValueError, match=r"Expected SST-2 in `--data DIR` or \$ATTNLENS_DATA .*, in the copy shipped "
                                         r"with attnlens \(missing from this installation: reinstall attnlens\), or "
                                         r"the `datasets` package \(pip install 'attnlens\[hub\]'\) with network "
                                         r"access for glue/sst2, but found none of these\.$"):
        load_sst2("dev")


def test_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("label\tsentence\n1\tgood\n")
    monkeypatch.setenv("ATTNLENS_DATA", str(tmp_path))
    assert load_sst2("train").sentences == ["good"]


@needs_shared_data
def test_shared_sst2_sizes():
    assert len(load_sst2("dev", data_dir=SHARED_DATA)) == 872


# --- the copy shipped with attnlens ------------------------------------------------------------------------------------

_SIZES = {"dev": (872, 428, 444), "train": (67_349, 29_780, 37_569)}


@pytest.mark.parametrize("split", ["dev", "train"])
def test_packaged_splits_are_glue_sst2(split, monkeypatch):
    monkeypatch.delenv("ATTNLENS_DATA", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # offline: no hub package either
    data = load_sst2(split)
    total, negative, positive = _SIZES[split]
    assert len(data) == total and data.labels.count(0) == negative and data.labels.count(1) == positive
    assert data.source == str(PACKAGED / f"{split}.tsv.gz")
    examples = load_sst2_examples(split)
    assert examples.name == f"sst2/{split}" and examples.ids[-1] == f"sst2-{split}-{total - 1}"
    assert examples.texts == data.sentences and examples.class_names == ("negative", "positive")


def test_packaged_files_match_their_provenance():
    provenance = (PACKAGED / "PROVENANCE.md").read_text(encoding="utf-8")
    for citation in ("Socher", "Wang", "GLUE", "License", "872", "67,349"):
        assert citation in provenance
    for split in ("dev", "train"):
        raw = gzip.decompress((PACKAGED / f"{split}.tsv.gz").read_bytes())
        row = re.search(rf"`{split}\.tsv\.gz` .* `([0-9a-f]{{64}})` \|", provenance)
        assert row and hashlib.sha256(raw).hexdigest() == row.group(1)
        assert raw.count(b"\n") == _SIZES[split][0] + 1  # header + rows


@needs_shared_data
@pytest.mark.parametrize("split", ["dev", "train"])
def test_packaged_files_equal_the_shared_ones(split):
    packaged = gzip.decompress((PACKAGED / f"{split}.tsv.gz").read_bytes())
    assert packaged == (SHARED_DATA / "sst2" / f"{split}.tsv").read_bytes()


def test_packaged_files_are_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["attnlens.datasets"]
    folder = ROOT / "attnlens" / "datasets"
    shipped = {path for pattern in patterns for path in folder.glob(pattern)}
    assert shipped == {PACKAGED / "dev.tsv.gz", PACKAGED / "train.tsv.gz", PACKAGED / "PROVENANCE.md"}


def test_folder_and_environment_come_before_the_packaged_copy(tmp_path, monkeypatch):
    for name, sentence in (("given", "given"), ("env", "from env")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "dev.tsv").write_text(f"label\tsentence\n1\t{sentence}\n")
    monkeypatch.setenv("ATTNLENS_DATA", str(tmp_path / "env"))
    assert load_sst2("dev", data_dir=tmp_path / "given").sentences == ["given"]
    assert load_sst2("dev").sentences == ["from env"]
    monkeypatch.setenv("ATTNLENS_DATA", "")  # empty counts as unset
    assert len(load_sst2("dev")) == 872


def test_hub_only_without_the_packaged_copy(tmp_path, monkeypatch):
    module = types.ModuleType("datasets")
    calls = []

    def load_dataset(path, config=None, split=None):
        calls.append((path, config, split))
        return {"sentence": ["good"], "label": [1]}

    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    monkeypatch.delenv("ATTNLENS_DATA", raising=False)
    assert len(load_sst2("dev")) == 872 and calls == []
    monkeypatch.setattr(sst2_module, "_PACKAGED_DIR", tmp_path)
    assert load_sst2_examples("dev").source == "hf:glue/sst2" and calls == [("glue", "sst2", "validation")]
