"""`load_examples` on files (TSV, CSV, JSON lines, gzip), folders and hub names; every message."""

from __future__ import annotations

import csv
import gzip
import json
import sys
import time
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnlens.datasets import SPLIT_ORDER, load_examples, read_examples_file
from attnlens.datasets import loaders as loaders_module
from tests.conftest import SHARED_DATA, needs_shared_data

DATA = r"Expected `data` to be a file, a folder, or a Hugging Face dataset name, but "


def write(folder, name, content):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- formats ----------------------------------------------------------------------------------------------------------

def test_tsv(tmp_path):
    path = write(tmp_path / "movies", "dev.tsv", "label\tsentence\n1\tgood film\n\n0\t bad film \n")
    data = load_examples(path)
    assert data.texts == ["good film", "bad film"]  # blank rows skipped, texts stripped
    assert data.labels == [1, 0]
    assert data.ids == ["movies-dev-0", "movies-dev-1"]
    assert data.indices == [0, 1]
    assert data.name == "movies/dev" and data.source == str(path.resolve())
    assert data.class_names is None and data.num_classes == 2


def test_tsv_keeps_quotes_literally(tmp_path):
    path = write(tmp_path, "dev.tsv", 'text\tlabel\n"quoted" and, comma\t0\nit\'s "half\t1\n')
    assert load_examples(path).texts == ['"quoted" and, comma', 'it\'s "half']


def test_csv_with_quotes_commas_and_newlines(tmp_path):
    rows = [["text", "label"], ['He said "great", then left', "1"], ["a, b, c", "0"], ["two\nlines", "1"],
            ["last", "0"]]
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    data = load_examples(path)
    assert data.texts == ['He said "great", then left', "a, b, c", "two\nlines", "last"]
    assert data.labels == [1, 0, 1, 0]
    assert data.ids[0] == f"{tmp_path.name}-reviews-0"


def test_csv_line_numbers_count_physical_lines(tmp_path):
    path = write(tmp_path, "dev.csv", 'text,label\n"two\nlines",1\n"",0\n')
    with pytest.raises(ValueError, match=r"Expected a non-empty text on line 4 of dev.csv, but got ''\."):
        load_examples(path)


def test_jsonl_and_json(tmp_path):
    lines = [{"id": "a", "text": "good", "label": 1}, {"id": "b", "text": "bad", "label": 0, "extra": [1]}]
    content = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    for name in ("dev.jsonl", "dev.json"):
        data = load_examples(write(tmp_path / name.split(".")[1], name, content))
        assert data.texts == ["good", "bad"] and data.labels == [1, 0] and data.ids == ["a", "b"]


@pytest.mark.parametrize("name", ["dev.tsv.gz", "dev.csv.gz", "dev.jsonl.gz", "dev.json.gz"])
def test_gzip(tmp_path, name):
    if ".tsv" in name:
        content = "sentence\tlabel\ngood\tpos\nbad\tneg\n"
    elif ".csv" in name:
        content = "sentence,label\ngood,pos\nbad,neg\n"
    else:
        content = '{"sentence": "good", "label": "pos"}\n{"sentence": "bad", "label": "neg"}\n'
    data = load_examples(write(tmp_path / "g", name, content))
    assert data.texts == ["good", "bad"]
    assert data.labels == [1, 0] and data.class_names == ("neg", "pos")
    assert data.name == "g/dev" and data.ids == ["g-dev-0", "g-dev-1"]


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "dev.csv"
    path.write_bytes("\ufefftext,label\ngood,1\n".encode())
    assert load_examples(path).texts == ["good"]


# --- labels -----------------------------------------------------------------------------------------------------------

def test_three_classes_with_string_labels(tmp_path):
    path = write(tmp_path, "news.csv", "text,label\nstocks up,business\ngoal!,sports\nnew chip,tech\nmerger,business\n")
    data = load_examples(path)
    assert data.class_names == ("business", "sports", "tech")
    assert data.labels == [0, 1, 2, 0]
    assert data.num_classes == 3


def test_three_classes_with_int_labels(tmp_path):
    path = write(tmp_path, "news.csv", "text,label\nstocks up,0\ngoal!,2\nnew chip, 1 \n")
    data = load_examples(path)
    assert data.labels == [0, 2, 1] and data.class_names is None and data.num_classes == 3


def test_mixed_int_and_string_labels_are_all_strings(tmp_path):
    path = write(tmp_path, "mixed.csv", "text,label\na,1\nb,pos\nc,0\n")
    data = load_examples(path)
    assert data.class_names == ("0", "1", "pos") and data.labels == [1, 2, 0]
    json_path = write(tmp_path, "mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n')
    assert load_examples(json_path).class_names == ("1", "x")


def test_no_labels(tmp_path):
    data = load_examples(write(tmp_path, "plain.csv", "text,source\nhello,web\nworld,web\n"))
    assert data.labels is None and not data.has_labels and data.num_classes is None
    assert data.texts == ["hello", "world"]


def test_limit_keeps_labels_of_the_whole_file(tmp_path):
    path = write(tmp_path, "news.csv", "text,label\na,tech\nb,tech\nc,business\nd,sports\n")
    data = load_examples(path, limit=2)
    assert data.texts == ["a", "b"]
    assert data.class_names == ("business", "sports", "tech") and data.labels == [2, 2]
    assert load_examples(path, limit=10).texts == ["a", "b", "c", "d"]


# --- columns and ids --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    ("sentence,text,content,label", "s"), ("content,text,label", "t"), ("content,label", "c"), ("Text,label", "t"),
])
def test_default_text_column(tmp_path, header, expected):
    cells = {"sentence": "s", "text": "t", "Text": "t", "content": "c", "label": "1"}
    row = ",".join(cells[name] for name in header.split(","))
    assert load_examples(write(tmp_path, "d.csv", f"{header}\n{row}\n")).texts == [expected]


def test_column_overrides(tmp_path):
    path = write(tmp_path, "d.csv", "title,body,stars,label\nt1,b1,5,0\nt2,b2,3,1\n")
    data = load_examples(path, text_column="body", label_column="stars")
    assert data.texts == ["b1", "b2"] and data.labels == [5, 3] and data.num_classes == 6
    assert load_examples(path, text_column="title").labels == [0, 1]  # default label column still used


def test_id_column_and_derived_ids(tmp_path):
    with_ids = load_examples(write(tmp_path, "a.csv", "id,text,label\nx7,good,1\n 12 ,bad,0\n"))
    assert with_ids.ids == ["x7", "12"] and with_ids.indices == [0, 1]
    derived = load_examples(write(tmp_path / "set", "b.tsv", "text\tlabel\ngood\t1\nbad\t0\n"))
    assert derived.ids == ["set-b-0", "set-b-1"]
    json_ids = load_examples(write(tmp_path, "c.jsonl", '{"ID": 3, "text": "x"}\n{"ID": 4, "text": "y"}\n'))
    assert json_ids.ids == ["3", "4"]


def test_ids_are_stable_across_runs_and_entry_points(tmp_path):
    write(tmp_path / "data" / "sst2", "dev.tsv", "label\tsentence\n1\tgood\n0\tbad\n")
    by_file = load_examples(tmp_path / "data" / "sst2" / "dev.tsv")
    by_folder = load_examples(tmp_path / "data")
    assert by_file.ids == by_folder.ids == load_examples(str(tmp_path / "data")).ids == ["sst2-dev-0", "sst2-dev-1"]


# --- errors -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "match"), [
    ("dev.csv", "", r"Expected `data` file dev.csv to have a header row and examples, but it is empty\."),
    ("dev.jsonl", "\n\n", r"Expected `data` file dev.jsonl to have a header row and examples, but it is empty\."),
    ("dev.csv", "text,label\n", r"Expected `data` file dev.csv to hold at least one example, but it has only a "
                                r"header row\."),
    ("dev.csv", "text,label\n\n , \n", "to hold at least one example, but it has only a header row"),
    ("dev.csv", "text,label\ngood,1\n ,0\n", r"Expected a non-empty text on line 3 of dev.csv, but got ' '\."),
    ("dev.csv", "text,label\na,1\nb,1\nc,1\nd,1\ne,1\n,0\n", r"Expected a non-empty text on line 7 of dev.csv, "
                                                            r"but got ''\."),
    ("dev.tsv", "text\tlabel\ngood\t1\tx\n", r"Expected 2 columns on line 2 of dev.tsv, but got 3 \(a tab inside a "
                                             r"text\?\)\."),
    ("dev.csv", "text,label\ngood\n", r"Expected 2 columns on line 2 of dev.csv, but got 1\."),
    ("dev.csv", "a,b\n1,2\n", r"Expected dev.csv to have a text column \(sentence, text, content; or pass "
                              r"`text_column`\), but its columns are a, b\."),
    ("dev.csv", "text,label\ngood,1\nbad,\n", r"Expected a label \(an integer >= 0 or a class name\) on line 3 of "
                                              r"dev.csv, but got ''\."),
    ("dev.csv", "text,label\ngood,1\nbad,-1\n", r"Expected a label >= 0 on line 3 of dev.csv, but got -1\."),
    ("dev.jsonl", '{"text": "a", "label": 1.5}\n', r"Expected a label \(an integer >= 0 or a class name\) on line 1 "
                                                   r"of dev.jsonl, but got 1.5\."),
    ("dev.jsonl", '{"text": "a", "label": true}\n', r"on line 1 of dev.jsonl, but got True\."),
    ("dev.jsonl", '{"text": "a", "label": null}\n', r"on line 1 of dev.jsonl, but got None\."),
    ("dev.jsonl", '{"text": "a", "label": -2}\n', r"Expected a label >= 0 on line 1 of dev.jsonl, but got -2\."),
    ("dev.jsonl", '{"text": "a"}\n{"text": 5}\n', r"Expected a non-empty text on line 2 of dev.jsonl, but got 5\."),
    ("dev.jsonl", '{"text": "a", "label": 0}\n{"label": 1}\n', r"Expected key 'text' on line 2 of dev.jsonl, but "
                                                               r"the object has keys label\."),
    ("dev.jsonl", '{"text": "a"}\n{"text": \n', r"Expected valid JSON on line 2 of dev.jsonl, but got an error: "),
    ("dev.jsonl", '["a", 1]\n', r"Expected a JSON object on line 1 of dev.jsonl, but got a JSON list\."),
    ("dev.csv", "id,text\na,x\nb,y\na,z\n", r"Expected unique ids in dev.csv, but id 'a' on line 4 repeats line 2\."),
    ("dev.csv", "id,text\na,x\n ,y\n", r"Expected a non-empty id on line 3 of dev.csv, but got ' '\."),
    ("dev.csv", 'text,label\n"open,1\n', r"Expected `data` file dev.csv to be readable UTF-8 text, but reading "
                                         r"failed near line 2: unexpected end of data\."),
])
def test_bad_files(tmp_path, name, content, match):
    path = write(tmp_path, name, content)
    with pytest.raises(ValueError, match=match) as info:
        load_examples(path)
    assert "\n" not in str(info.value)


def test_unreadable_files(tmp_path):
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"Expected `data` file latin.csv to be readable UTF-8 text, but reading "
                                         r"failed near line \d+: 'utf-8' codec can't decode"):
        load_examples(tmp_path / "latin.csv")
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"Expected `data` file broken.csv.gz to be readable UTF-8 text, but "
                                         r"reading failed"):
        load_examples(tmp_path / "broken.csv.gz")


def test_bad_columns(tmp_path):
    path = write(tmp_path, "dev.csv", "id,text,label\n1,good,0\n")
    with pytest.raises(ValueError, match=r"Expected `text_column` 'body' to be a column of dev.csv, but its columns "
                                         r"are id, text, label\."):
        load_examples(path, text_column="body")
    with pytest.raises(ValueError, match=r"Expected `label_column` 'y' to be a column of dev.csv, but its columns "
                                         r"are id, text, label\."):
        load_examples(path, label_column="y")
    with pytest.raises(ValueError, match=r"Expected `text_column` to be a column name, but got ' '\."):
        load_examples(path, text_column=" ")
    with pytest.raises(TypeError, match=r"Expected `label_column` to be a column name \(str\), but got int\."):
        load_examples(path, label_column=3)  # type: ignore[arg-type]
    json_path = write(tmp_path, "dev.jsonl", '{"text": "a"}\n')
    with pytest.raises(ValueError, match=r"Expected `label_column` 'y' to be a column of dev.jsonl, but its columns "
                                         r"are text\."):
        load_examples(json_path, label_column="y")


def test_bad_arguments(tmp_path):
    path = write(tmp_path, "dev.csv", "text\nx\n")
    with pytest.raises(ValueError, match=r"Expected `limit` to be an integer in \[1, inf\], but got 0\."):
        load_examples(path, limit=0)
    with pytest.raises(TypeError, match=r"Expected `limit` to be an integer, but got str\."):
        load_examples(path, limit="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Expected `split` to be unset when `data` is a file \(dev.csv is one "
                                         r"split\), but got 'train'\."):
        load_examples(path, split="train")
    with pytest.raises(ValueError, match=r"Expected `split` to be a split name such as 'dev', but got ''\."):
        load_examples(path, split="")
    with pytest.raises(ValueError, match=DATA + r"got ''\."):
        load_examples("")
    with pytest.raises(TypeError, match=r"Expected `data` to be a path or a dataset name \(str\), but got int\."):
        load_examples(3)  # type: ignore[arg-type]
    (tmp_path / "notes.txt").write_text("text\nx\n")
    with pytest.raises(ValueError, match=r"Expected `data` file notes.txt to end in .tsv, .csv, .jsonl, .json "
                                         r"\(optionally .gz\), but got '.txt'\."):
        load_examples(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"Expected `data` to be a data file, but .* does not exist\."):
        read_examples_file(tmp_path / "missing.csv")


@pytest.mark.parametrize("data", ["./missing.csv", "/no/such/folder", "~/nope/dev.tsv", "a/b/c", "dev.jsonl"])
def test_missing_paths_are_not_hub_names(tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loaders_module, "_load_hub", pytest.fail)  # never reaches the hub
    with pytest.raises(ValueError, match=DATA + r".* does not exist\."):
        load_examples(data)
    with pytest.raises(ValueError, match=DATA + r".* does not exist\."):
        load_examples(tmp_path / "nothing")  # a Path object is always a path


# --- folders ----------------------------------------------------------------------------------------------------------

def test_folder_default_split_order(tmp_path):
    assert SPLIT_ORDER == ("dev", "validation", "test", "train")
    write(tmp_path, "train.csv", "text\ntrain row\n")
    assert load_examples(tmp_path).texts == ["train row"]
    write(tmp_path, "test.jsonl", '{"text": "test row"}\n')
    assert load_examples(tmp_path).texts == ["test row"]
    write(tmp_path, "validation.tsv.gz", "text\nvalidation row\n")
    assert load_examples(tmp_path).texts == ["validation row"]
    write(tmp_path, "dev.tsv", "text\ndev row\n")
    assert load_examples(tmp_path).name == f"{tmp_path.name}/dev"
    assert load_examples(tmp_path, split="train").texts == ["train row"]
    assert load_examples(tmp_path, split="validation").texts == ["validation row"]


def test_folder_aliases_and_sst2_layout(tmp_path):
    write(tmp_path, "validation.csv", "text\nv\n")
    assert load_examples(tmp_path, split="dev").texts == ["v"]  # dev and validation stand in for each other
    other = tmp_path / "other"
    write(other / "sst2", "dev.tsv", "label\tsentence\n1\tgood\n")
    write(other / "sst2", "train.tsv", "label\tsentence\n0\tbad\n")
    assert load_examples(other).ids == ["sst2-dev-0"]
    assert load_examples(other, split="train").texts == ["bad"]


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Expected `data` folder .* to hold a split file \(dev, validation, test, "
                                         r"train as .tsv, .csv or .jsonl, or sst2/<split>.tsv\), but it holds none\."):
        load_examples(tmp_path)
    write(tmp_path, "dev.csv", "text\nx\n")
    with pytest.raises(ValueError, match=r"Expected `split` 'train' to be a file in .* \(train.tsv, .csv or .jsonl, "
                                         r"or sst2/train.tsv\), but there is none\."):
        load_examples(tmp_path, split="train")
    write(tmp_path, "dev.tsv", "text\nx\n")
    with pytest.raises(ValueError, match=r"Expected one file for `split` 'dev' in .*, but found dev.csv, dev.tsv\."):
        load_examples(tmp_path)


# --- Hugging Face hub -------------------------------------------------------------------------------------------------

def test_hub_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    start = time.perf_counter()
    with pytest.raises(ValueError, match=DATA + r"'glue/sst2' is not a path and the `datasets` package is missing "
                                                r"\(pip install 'attnlens\[hub\]'\)\.") as info:
        load_examples("glue/sst2")
    assert time.perf_counter() - start < 1 and "\n" not in str(info.value)


def _fake_datasets(monkeypatch, *, split_names=None, load=None):
    module = types.ModuleType("datasets")
    module.get_dataset_split_names = split_names or (lambda path, config=None: ["train", "validation", "test"])
    module.load_dataset = load or (lambda path, config=None, split=None: pytest.fail("unexpected load"))
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hub_unreachable_fails_fast(monkeypatch):
    _fake_datasets(monkeypatch, split_names=lambda *a, **k: pytest.fail("must not try the hub"))
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loaders_module, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ValueError, match=DATA + r"'imdb' is not a path and the Hugging Face hub cannot be reached "
                                                r"\(no network; set HF_DATASETS_OFFLINE=1"):
        load_examples("imdb")


def test_hub_connection_error_is_one_line(monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'ag_news' on the Hub\n(long details)")

    _fake_datasets(monkeypatch, split_names=refuse)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # offline mode: no probe, the loader answers from its cache
    with pytest.raises(ValueError, match=DATA + r"'ag_news' could not be loaded: the Hugging Face hub cannot be "
                                                r"reached \(no network; ConnectionError: Couldn't reach") as info:
        load_examples("ag_news")
    assert "\n" not in str(info.value)


def test_hub_unknown_dataset(monkeypatch):
    class DatasetNotFoundError(FileNotFoundError):
        pass

    tried = []

    def not_found(path, config=None):
        tried.append((path, config))
        raise DatasetNotFoundError(f"Dataset '{path}' doesn't exist on the Hub")

    _fake_datasets(monkeypatch, split_names=not_found)
    monkeypatch.setattr(loaders_module, "_hub_reachable", lambda timeout=3.0: True)
    with pytest.raises(ValueError, match=DATA + r"'nobody/nothing' is not a path and not a dataset on the Hugging "
                                                r"Face hub \(DatasetNotFoundError: Dataset 'nobody' doesn't exist"):
        load_examples("nobody/nothing")
    assert tried == [("nobody/nothing", None), ("nobody", "nothing")]


def test_hub_other_failure(monkeypatch):
    _fake_datasets(monkeypatch, split_names=lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    monkeypatch.setattr(loaders_module, "_hub_reachable", lambda timeout=3.0: True)
    with pytest.raises(ValueError, match=DATA + r"'x:y' could not be loaded from the Hugging Face hub "
                                                r"\(RuntimeError: boom\)\."):
        load_examples("x:y")

    def needs_config(path, config=None):
        raise ValueError("Config name is missing.\nPlease pick one among the available configs: ['a', 'b']")

    _fake_datasets(monkeypatch, split_names=needs_config)
    with pytest.raises(ValueError, match=DATA + r"'glue' could not be loaded from the Hugging Face hub "
                                                r"\(ValueError: Config name is missing\.\)\.$"):
        load_examples("glue")


class _FakeSplit:
    """What `_hub_examples` uses of a `datasets.Dataset`: column names, columns, features."""

    def __init__(self, columns, features=None):
        self._columns = columns
        self.column_names = list(columns)
        self.features = features or {}

    def __getitem__(self, column):
        return self._columns[column]


def test_hub_success_with_class_label(monkeypatch):
    calls = []

    def load(path, config=None, split=None):
        calls.append((path, config, split))
        return _FakeSplit({"sentence": ["good", "bad"], "label": [1, 0], "idx": [0, 1]},
                          {"label": types.SimpleNamespace(names=["negative", "positive"])})

    _fake_datasets(monkeypatch, load=load)
    monkeypatch.setattr(loaders_module, "_hub_reachable", lambda timeout=3.0: True)
    data = load_examples("glue:sst2")
    assert calls == [("glue", "sst2", "validation")]  # default split order: dev, validation, test, train
    assert data.name == "glue/sst2/validation" and data.source == "hf:glue/sst2[validation]"
    assert data.ids == ["glue-sst2-validation-0", "glue-sst2-validation-1"]
    assert data.labels == [1, 0] and data.class_names == ("negative", "positive")
    assert load_examples("glue:sst2", split="dev").name == "glue/sst2/validation"  # dev -> validation
    with pytest.raises(ValueError, match=r"Expected `split` 'val' to be a split of glue:sst2, but its splits are "
                                         r"train, validation, test\."):
        load_examples("glue:sst2", split="val")


def test_hub_test_split_without_labels_and_bad_rows(monkeypatch):
    rows = {"text": ["a", "b"], "label": [-1, -1]}
    _fake_datasets(monkeypatch, split_names=lambda *a, **k: ["test"], load=lambda *a, **k: _FakeSplit(rows))
    monkeypatch.setattr(loaders_module, "_hub_reachable", lambda timeout=3.0: True)
    data = load_examples("imdb")
    assert data.labels is None and data.texts == ["a", "b"] and data.ids == ["imdb-test-0", "imdb-test-1"]
    rows["text"][1] = ""
    with pytest.raises(ValueError, match=r"Expected a non-empty text on row 2 of hf:imdb\[test\], but got ''\."):
        load_examples("imdb")


def test_hub_probe_is_quick(monkeypatch):
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    start = time.perf_counter()
    assert loaders_module._hub_reachable(timeout=0.5) is False
    assert time.perf_counter() - start < 2
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # behind a proxy only the loader can tell
    assert loaders_module._hub_reachable(timeout=0.5) is True


# --- shared SST-2 files -----------------------------------------------------------------------------------------------

@needs_shared_data
def test_shared_sst2_files():
    by_folder = load_examples(SHARED_DATA)
    assert len(by_folder) == 872 and by_folder.name == "sst2/dev"
    assert by_folder.ids[0] == "sst2-dev-0" and by_folder.ids[-1] == "sst2-dev-871"
    assert set(by_folder.labels) == {0, 1} and by_folder.class_names is None
    by_file = load_examples(SHARED_DATA / "sst2" / "dev.tsv", limit=5)
    assert by_file.ids == by_folder.ids[:5] and by_file.texts == by_folder.texts[:5]


# --- round trips ------------------------------------------------------------------------------------------------------

_texts = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30).map(
    str.strip).filter(bool)
_rows = st.lists(st.tuples(_texts, st.one_of(st.integers(0, 5), st.sampled_from(["neg", "pos", "mid"]))),
                 min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows, with_ids=st.booleans(), fmt=st.sampled_from(["csv", "jsonl", "csv.gz", "jsonl.gz"]))
def test_round_trip(tmp_path_factory, rows, with_ids, fmt):
    folder = tmp_path_factory.mktemp("round")
    ids = [f"r{i * 7}" for i in range(len(rows))]
    path = folder / f"data.{fmt}"
    opener = (lambda: gzip.open(path, "wt", encoding="utf-8", newline="")) if fmt.endswith(".gz") else (
        lambda: path.open("w", encoding="utf-8", newline=""))
    with opener() as handle:
        if fmt.startswith("csv"):
            writer = csv.writer(handle)
            writer.writerow(["id", "text", "label"] if with_ids else ["text", "label"])
            for i, (text, label) in enumerate(rows):
                writer.writerow([ids[i], text, label] if with_ids else [text, label])
        else:
            for i, (text, label) in enumerate(rows):
                handle.write(json.dumps({"id": ids[i], "text": text, "label": label} if with_ids else
                                        {"text": text, "label": label}) + "\n")
    data = load_examples(path)
    assert data.texts == [text for text, _ in rows]
    assert data.ids == (ids if with_ids else [f"{folder.name}-data-{i}" for i in range(len(rows))])
    raw = [str(label) for _, label in rows]
    if all(isinstance(label, int) for _, label in rows):
        assert data.labels == [label for _, label in rows] and data.class_names is None
    else:
        assert data.class_names == tuple(sorted(set(raw)))
        assert [data.class_names[label] for label in data.labels] == raw
