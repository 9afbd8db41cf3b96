"""`load_examples`: one entry for a data file, a data folder or a Hugging Face dataset name.

Rules (the study's ``--data``, ``--split``, ``--text-column``, ``--label-column`` and ``--limit``):

- **File** (by suffix): ``.tsv`` (tabs, no quoting: a row is a line, as in GLUE), ``.csv`` (the
  csv module's quoting, so texts may hold commas, quotes and newlines), ``.jsonl`` or ``.json``
  (one JSON object per line); each may end in ``.gz``. TSV and CSV need a header row. Blank rows
  are skipped; texts are stripped of surrounding whitespace.
- **Columns**: the text column is `text_column`, else the first of ``sentence``, ``text``,
  ``content`` present; the label column is `label_column`, else ``label`` when present, else the
  examples have no labels (``Examples.labels`` is None). Names match exactly, else ignoring case.
- **Labels**: integers >= 0 (or strings that all read as such) are class indices and
  ``class_names`` is None; otherwise every label is a string, ``class_names`` are the sorted
  distinct strings and a label is its name's index. A label is computed over the whole source,
  so `limit` never changes labels, class names or ids.
- **Ids**: the ``id`` column when present (unique, non-empty), else derived from the name and
  the 0-based example position: ``f"{name with '/' as '-'}-{index}"``. A file's name is
  ``<parent folder>/<stem>``, so ``data/sst2/dev.tsv`` gives ``sst2/dev`` and ids ``sst2-dev-0``,
  ``sst2-dev-1``, ... however the file was reached (as a file, through its folder or the SST-2
  preset). A hub split's name is ``<dataset>[/<config>]/<split>`` (``glue/sst2/validation``).
- **Folder**: ``DIR/<split>.{tsv,csv,jsonl,json}`` (optionally ``.gz``), else ``DIR/sst2/<split>.tsv``.
  Without `split`, the first of ``dev``, ``validation``, ``test``, ``train`` that exists; ``dev``
  and ``validation`` stand in for each other when only one exists.
- **Hugging Face dataset** (anything that is not an existing path and does not look like one):
  ``NAME``, ``NAME:CONFIG`` or ``OWNER/NAME`` (``glue/sst2`` is tried as a repository, then as
  dataset ``glue`` with config ``sst2``), through ``datasets.load_dataset`` (``pip install
  'attnlens[hub]'``). Without `split`, the same order as for folders. A ClassLabel column gives
  ``class_names``; a split whose labels are all -1 (GLUE test splits) has no labels. Without the
  package, without network (checked with a 3-second probe unless ``HF_DATASETS_OFFLINE`` or
  ``HF_HUB_OFFLINE`` asks for the cache) or for an unknown name, the error is one line.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from attnlens._checks import _check_integer
from attnlens.datasets._tables import (
    FORMATS,
    LABEL_COLUMN,
    _Problem,
    _Table,
    build_examples,
    describe,
    file_format,
    file_stem,
    find_column,
    read_file,
)
from attnlens.datasets.examples import Examples

SPLIT_ORDER = ("dev", "validation", "test", "train")
"""Splits tried, in order, when none is asked for."""
_ALIASES = {"dev": "validation", "validation": "dev"}
_DATA = "Expected `data` to be a file, a folder, or a Hugging Face dataset name, but"


def _check_column_name(value: object, argument: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"Expected `{argument}` to be a column name (str), but got {type(value).__name__}.")
    if not value.strip():
        raise ValueError(f"Expected `{argument}` to be a column name, but got {value!r}.")
    return value


def read_examples_file(path: str | os.PathLike, *, text_column: str | None = None,
                       label_column: str | None = None) -> Examples:
    """Read one `.tsv`/`.csv`/`.jsonl`/`.json` file (optionally `.gz`) into `Examples`.

    Args:
        path: the file.
        text_column: the text column; default the first of ``sentence``, ``text``, ``content``.
        label_column: the label column; default ``label`` when present, else no labels.

    Returns:
        The file's examples, named ``<parent folder>/<stem>``.

    Raises:
        ValueError: a one-line message naming the file and line for a missing or unsupported file,
            an unknown column, an empty text, a bad or duplicate id, a bad label, a wrong column
            count, an empty file or a file without examples.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "toy"
        >>> folder.mkdir()
        >>> _ = (folder / "dev.csv").write_text('text,label\\n"good, really",pos\\nbad,neg\\n')
        >>> data = read_examples_file(folder / "dev.csv")
        >>> data.name, data.ids, data.labels, data.class_names
        ('toy/dev', ['toy-dev-0', 'toy-dev-1'], [1, 0], ('neg', 'pos'))
    """
    text_column = _check_column_name(text_column, "text_column")
    label_column = _check_column_name(label_column, "label_column")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"Expected `data` to be a data file, but {path} does not exist.")
    if file_format(path) is None:
        suffixes = ", ".join(FORMATS)
        raise ValueError(f"Expected `data` file {path.name} to end in {suffixes} (optionally .gz), but got "
                         f"{''.join(path.suffixes) or 'no suffix'!r}.")
    resolved = path.resolve()
    name = f"{resolved.parent.name}/{file_stem(path)}" if resolved.parent.name else file_stem(path)
    try:
        table = read_file(path)
        examples = build_examples(table, name=name, source=str(resolved), text_column=text_column,
                                  label_column=label_column)
        if not examples:
            raise _Problem("header_only" if file_format(path) != "jsonl" else "empty")
    except _Problem as problem:
        raise ValueError(describe(problem, path.name, tsv=file_format(path) == "tsv")) from None
    return examples


def _split_file(folder: Path, split: str) -> Path | None:
    """``folder/<split>.<format>[.gz]`` (exactly one), else ``folder/sst2/<split>.tsv``, else None."""
    found = sorted(p for p in folder.iterdir() if p.is_file() and file_format(p) and file_stem(p) == split)
    if len(found) > 1:
        raise ValueError(f"Expected one file for `split` {split!r} in {folder}, but found "
                         f"{', '.join(p.name for p in found)}.")
    if found:
        return found[0]
    preset = folder / "sst2" / f"{split}.tsv"
    return preset if preset.is_file() else None


def _folder_file(folder: Path, split: str | None) -> Path:
    if split is not None:
        for candidate in (split, _ALIASES.get(split)):
            found = _split_file(folder, candidate) if candidate else None
            if found is not None:
                return found
        raise ValueError(f"Expected `split` {split!r} to be a file in {folder} ({split}.tsv, .csv or .jsonl, or "
                         f"sst2/{split}.tsv), but there is none.")
    for candidate in SPLIT_ORDER:
        found = _split_file(folder, candidate)
        if found is not None:
            return found
    raise ValueError(f"Expected `data` folder {folder} to hold a split file ({', '.join(SPLIT_ORDER)} as .tsv, "
                     f".csv or .jsonl, or sst2/<split>.tsv), but it holds none.")


def _looks_like_path(text: str) -> bool:
    lowered = text.lower().removesuffix(".gz")
    return (text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
            or any(lowered.endswith(suffix) for suffix in FORMATS))


def _hub_candidates(data: str) -> list[tuple[str, str | None]]:
    """(dataset, config) pairs to try: ``a:b`` -> (a, b); ``a/b`` -> (a/b, None) then (a, b); ``a`` -> (a, None)."""
    if ":" in data:
        dataset, _, config = data.partition(":")
        return [(dataset, config or None)]
    if "/" in data:
        dataset, _, config = data.partition("/")
        return [(data, None), (dataset, config)]
    return [(data, None)]


def _hub_offline() -> bool:
    return any(os.environ.get(variable, "0").strip().lower() not in ("0", "", "false", "no")
               for variable in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within `timeout` seconds (assumed yes
    behind a proxy, which only the loader's own requests go through)."""
    if any(os.environ.get(variable) for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                                      "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _failure_names(err: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(err).__mro__}


_NETWORK_ERRORS = {"ConnectionError", "ConnectError", "ConnectTimeout", "Timeout", "TimeoutError", "TimeoutException",
                   "NetworkError", "OfflineModeIsEnabled"}
_NOT_FOUND_ERRORS = {"DatasetNotFoundError", "FileNotFoundError", "RepositoryNotFoundError"}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:160]}" if text else type(err).__name__


def _choose_split(names: list[str], split: str | None, data: str) -> str:
    if split is not None:
        for candidate in (split, _ALIASES.get(split)):
            if candidate in names:
                return candidate
        raise ValueError(f"Expected `split` {split!r} to be a split of {data}, but its splits are "
                         f"{', '.join(names)}.")
    for candidate in SPLIT_ORDER:
        if candidate in names:
            return candidate
    if names:
        return names[0]
    raise ValueError(f"{_DATA} {data!r} has no splits.")


def _load_hub(data: str, *, split: str | None, text_column: str | None, label_column: str | None) -> Examples:
    try:
        import datasets  # noqa: PLC0415 - optional extra attnlens[hub]
    except ImportError:
        raise ValueError(f"{_DATA} {data!r} is not a path and the `datasets` package is missing (pip install "
                         f"'attnlens[hub]').") from None
    if not _hub_offline() and not _hub_reachable():
        raise ValueError(f"{_DATA} {data!r} is not a path and the Hugging Face hub cannot be reached (no network; "
                         f"set HF_DATASETS_OFFLINE=1 to read a cached copy).")
    failures: list[BaseException] = []
    for dataset, config in _hub_candidates(data):
        try:
            chosen = _choose_split(list(datasets.get_dataset_split_names(dataset, config)), split, data)
            loaded = datasets.load_dataset(dataset, config, split=chosen)
        except ValueError as err:
            if str(err).startswith("Expected"):
                raise
            failures.append(err)
        except Exception as err:  # noqa: BLE001 - hub and loader errors of every kind become one line
            if _failure_names(err) & _NETWORK_ERRORS:
                raise ValueError(f"{_DATA} {data!r} could not be loaded: the Hugging Face hub cannot be reached "
                                 f"(no network; {_first_line(err)}).") from None
            failures.append(err)
        else:
            return _hub_examples(loaded, dataset=dataset, config=config, split=chosen, text_column=text_column,
                                 label_column=label_column)
    last = failures[-1]  # every candidate failed; the last is the most specific reading of the name
    if all(_failure_names(failure) & _NOT_FOUND_ERRORS for failure in failures):
        raise ValueError(f"{_DATA} {data!r} is not a path and not a dataset on the Hugging Face hub "
                         f"({_first_line(last)}).")
    raise ValueError(f"{_DATA} {data!r} could not be loaded from the Hugging Face hub ({_first_line(last)}).")


def _hub_examples(loaded: object, *, dataset: str, config: str | None, split: str, text_column: str | None,
                  label_column: str | None) -> Examples:
    """A loaded hub split (a `datasets.Dataset`) through the same checks as a file; rows count from 1."""
    columns = tuple(loaded.column_names)  # type: ignore[attr-defined]
    values = [list(loaded[column]) for column in columns]  # type: ignore[index]
    table = _Table(columns=columns, rows=tuple((i + 1, cells) for i, cells in enumerate(zip(*values))),
                   unit="row")
    name = "/".join(part for part in (dataset, config, split) if part)
    where = f"hf:{dataset}{'/' + config if config else ''}[{split}]"
    features = getattr(loaded, "features", None) or {}
    label_at = find_column(columns, label_column or LABEL_COLUMN)
    class_names = None if label_at is None else getattr(features.get(columns[label_at]), "names", None)
    labels = values[label_at] if label_at is not None else []
    unlabelled = label_column is None and bool(labels) and all(v == -1 for v in labels)  # GLUE test splits
    try:
        examples = build_examples(table, name=name, source=where, text_column=text_column,
                                  label_column=label_column, class_names=class_names, use_labels=not unlabelled)
        if not examples:
            raise _Problem("empty")
    except _Problem as problem:
        raise ValueError(describe(problem, where, table.unit)) from None
    return examples


def load_examples(data: str | os.PathLike, *, split: str | None = None, text_column: str | None = None,
                  label_column: str | None = None, limit: int | None = None) -> Examples:
    """Load examples from a data file, a data folder or a Hugging Face dataset name.

    The rules for formats, columns, labels, ids, folders and hub names are in this module's docstring.

    Args:
        data: a ``.tsv``/``.csv``/``.jsonl``/``.json`` file (optionally ``.gz``), a folder holding
            ``<split>.<format>`` or ``sst2/<split>.tsv``, or a Hugging Face dataset name
            (``imdb``, ``glue:sst2``, ``glue/sst2``, ``owner/name``).
        split: the split of a folder or hub dataset; default the first of ``dev``, ``validation``,
            ``test``, ``train`` present. Must be unset for a file (a file is one split).
        text_column: the text column; default the first of ``sentence``, ``text``, ``content``.
        label_column: the label column; default ``label`` when present, else no labels.
        limit: keep only the first `limit` examples (a positive integer); ids and labels are those
            of the whole source.

    Returns:
        The examples, in source order.

    Raises:
        ValueError: a one-line message naming the argument (`data`, `split`, `text_column`,
            `label_column`, `limit`), and the file and line for a bad row.
        TypeError: for a column name or limit of the wrong type.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "dev.tsv").write_text("label\\tsentence\\n1\\tgood film\\n0\\tbad film\\n")
        >>> data = load_examples(folder, limit=1)
        >>> data.texts, data.labels, data[0].id == f"{folder.name}-dev-0"
        (['good film'], [1], True)
    """
    if limit is not None:
        limit = _check_integer(limit, "limit", low=1)
    if split is not None and (not isinstance(split, str) or not split.strip()):
        raise ValueError(f"Expected `split` to be a split name such as 'dev', but got {split!r}.")
    text_column = _check_column_name(text_column, "text_column")
    label_column = _check_column_name(label_column, "label_column")
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"Expected `data` to be a path or a dataset name (str), but got {type(data).__name__}.")
    text = os.fspath(data)
    if not str(text).strip():
        raise ValueError(f"{_DATA} got {text!r}.")
    path = Path(text).expanduser()
    if path.is_dir():
        examples = read_examples_file(_folder_file(path, split), text_column=text_column, label_column=label_column)
    elif path.is_file():
        if split is not None:
            raise ValueError(f"Expected `split` to be unset when `data` is a file ({path.name} is one split), but "
                             f"got {split!r}.")
        examples = read_examples_file(path, text_column=text_column, label_column=label_column)
    elif isinstance(data, os.PathLike) or _looks_like_path(text):
        raise ValueError(f"{_DATA} {text} does not exist.")
    else:
        examples = _load_hub(text, split=split, text_column=text_column, label_column=label_column)
    return examples if limit is None else examples.head(limit)
