"""The SST-2 preset as `Examples`: ids, class names, the same files and messages as `load_sst2`."""

from __future__ import annotations

import sys
import types

import pytest

from attnlens.datasets import load_examples, load_sst2, load_sst2_examples, read_sst2_tsv
from tests.conftest import SHARED_DATA, needs_shared_data


def test_preset_examples(tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_text("sentence\tlabel\ngood film\t1\n\nbad film \t 0\n")
    data = load_sst2_examples("dev", data_dir=tmp_path)
    assert data.ids == ["sst2-dev-0", "sst2-dev-1"]
    assert data.texts == ["good film", "bad film"] and data.labels == [1, 0]
    assert data.class_names == ("negative", "positive") and data.num_classes == 2
    assert data.name == "sst2/dev" and data.source == str(tmp_path / "sst2" / "dev.tsv")
    assert load_examples(tmp_path).ids == data.ids  # the generic loader derives the same ids


def test_preset_keeps_sst2_rules_and_messages(tmp_path):
    (tmp_path / "dev.tsv").write_text("id\tsentence\tlabel\na\tgood\t1\na\tbad\t2\n")
    with pytest.raises(ValueError, match=r"Expected label 0 or 1 on line 3 of .*dev.tsv, but got '2'\.$"):
        load_sst2_examples("dev", data_dir=tmp_path)
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\ngood\tpos\n")
    with pytest.raises(ValueError, match=r"Expected label 0 or 1 on line 2 of .*, but got 'pos'\.$"):
        load_sst2_examples("dev", data_dir=tmp_path)  # no string labels in the preset
    (tmp_path / "dev.tsv").write_text("text\tlabel\ngood\t1\n")
    assert load_sst2_examples("dev", data_dir=tmp_path).texts == ["good"]
    (tmp_path / "dev.tsv").write_text("label\tbody\n1\tgood\n")
    with pytest.raises(ValueError, match=r"to have a `label` column and a `sentence` \(or `content`/`text`\) column, "
                                         r"but got columns \['label', 'body'\]\.$"):
        load_sst2_examples("dev", data_dir=tmp_path)
    (tmp_path / "dev.tsv").write_bytes(b"label\tsentence\n1\tcaf\xe9\n")
    with pytest.raises(ValueError, match=r"Expected a readable UTF-8 TSV file at .*dev.tsv, but reading failed: "):
        load_sst2_examples("dev", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"Expected an SST-2 TSV file at .*, but it does not exist\.$"):
        read_sst2_tsv(tmp_path / "missing.tsv")
    with pytest.raises(ValueError, match="Expected `split` to be one of 'train', 'dev', but got 'test'"):
        load_sst2_examples("test", data_dir=tmp_path)
    with pytest.raises(ValueError, match="to hold sst2/train.tsv, but it does not"):
        load_sst2_examples("train", data_dir=tmp_path)


def test_header_only_file_stays_empty(tmp_path):
    (tmp_path / "dev.tsv").write_text("label\tsentence\n")
    assert len(read_sst2_tsv(tmp_path / "dev.tsv")) == 0  # as before the generic reader
    assert len(load_sst2_examples("dev", data_dir=tmp_path)) == 0


def test_preset_reads_the_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "train.tsv").write_text("label\tsentence\n0\tbad\n")
    monkeypatch.setenv("ATTNLENS_DATA", str(tmp_path))
    assert load_sst2_examples("train").ids == ["sst2-train-0"]


def test_preset_from_the_hub(monkeypatch, tmp_path):
    import attnlens.datasets.sst2

    monkeypatch.setattr(attnlens.datasets.sst2, "_PACKAGED_DIR", tmp_path)  # an installation without the packaged copy
    module = types.ModuleType("datasets")
    calls = []

    def load_dataset(path, config=None, split=None):
        calls.append((path, config, split))
        return {"sentence": ["good", "bad"], "label": [1, 0]}

    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    monkeypatch.delenv("ATTNLENS_DATA", raising=False)
    data = load_sst2_examples("dev")
    assert calls == [("glue", "sst2", "validation")]
    assert data.ids == ["sst2-dev-0", "sst2-dev-1"] and data.labels == [1, 0] and data.source == "hf:glue/sst2"
    assert data.class_names == ("negative", "positive")


@needs_shared_data
def test_shared_sst2_dev():
    data = load_sst2_examples("dev", data_dir=SHARED_DATA)
    legacy = load_sst2("dev", data_dir=SHARED_DATA)
    assert len(data) == 872
    assert data.texts == legacy.sentences and data.labels == legacy.labels
    assert data.ids[-1] == "sst2-dev-871" and data.indices == list(range(872))
    assert data.ids == load_examples(SHARED_DATA).ids
