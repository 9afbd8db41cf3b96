"""Parsing shared by every loader: rows of a TSV/CSV/JSON-lines file (or a hub split) into `Examples`.

The parsing reports a problem as a `_Problem` (a kind plus its details) instead of a finished
message, so that each front end words it: `load_examples` in the generic form, `read_sst2_tsv`
in its historical one. The checks themselves live only here.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from attnlens.datasets.examples import Example, Examples, _id_prefix

TEXT_COLUMNS = ("sentence", "text", "content")
"""Default text columns, first present wins (matched exactly, else ignoring case)."""
LABEL_COLUMN = "label"
ID_COLUMN = "id"
FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
"""File suffix -> format; each may end in ``.gz`` in addition (read through gzip)."""

_MISSING = object()  # a JSON object without the key
_INT_LIKE = re.compile(r"[+-]?\d+")


class _Problem(Exception):
    """A bad file or row: `kind` says what, `details` carry the line and values for the message."""

    def __init__(self, kind: str, **details: object) -> None:
        super().__init__(kind)
        self.kind = kind
        self.details = details


@dataclass(frozen=True)
class _Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[int, tuple[object, ...]], ...]
    unit: str = "line"  # what a row's line counts, for messages: "line" in files, "row" in hub splits


def file_format(path: Path) -> str | None:
    """``"tsv"``, ``"csv"`` or ``"jsonl"`` from the suffix (``.gz`` allowed after it), else None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None


def file_stem(path: Path) -> str:
    """The file name without ``.gz`` and the format suffix (``dev.tsv.gz`` -> ``dev``)."""
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    stem = Path(name).stem if file_format(path) else name
    return stem


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def read_delimited(path: Path, *, delimiter: str, quoting: int = csv.QUOTE_MINIMAL) -> _Table:
    """Read a TSV/CSV file with a header row; blank rows are skipped.

    A TSV uses ``quoting=csv.QUOTE_NONE`` (a row is a line, cells split on every tab), as GLUE's files need;
    a CSV is read in the csv module's strict mode, so an unclosed quote is an error, not a swallowed file.

    Raises:
        _Problem: ``unreadable`` (I/O, decoding, gzip or CSV error), ``empty`` (no header), ``column_count``.
    """
    records: list[tuple[int, list[str]]] = []
    previous = 0
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE)
            for cells in reader:
                records.append((previous + 1, cells))
                previous = reader.line_num
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as err:
        raise _Problem("unreadable", error=err, line=previous + 1) from err
    if not records:
        raise _Problem("empty")
    columns = tuple(cell.strip() for cell in records[0][1])
    rows = []
    for line, cells in records[1:]:
        if not "".join(cells).strip():
            continue
        if len(cells) != len(columns):
            raise _Problem("column_count", line=line, count=len(columns), got=len(cells))
        rows.append((line, tuple(cells)))
    return _Table(columns=columns, rows=tuple(rows))


def read_json_lines(path: Path) -> _Table:
    """Read one JSON object per line; blank lines are skipped. Columns are the keys in first-seen order.

    Raises:
        _Problem: ``unreadable``, ``empty`` (no object at all), ``json`` (invalid line), ``json_object``.
    """
    objects: list[tuple[int, dict]] = []
    line = 0
    try:
        with _open_text(path) as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as err:
                    raise _Problem("json", line=line, error=err.msg) from err
                if not isinstance(value, dict):
                    raise _Problem("json_object", line=line, got=type(value).__name__)
                objects.append((line, value))
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise _Problem("unreadable", error=err, line=line + 1) from err
    if not objects:
        raise _Problem("empty")
    columns = tuple(dict.fromkeys(key for _, value in objects for key in value))
    rows = tuple((line, tuple(value.get(key, _MISSING) for key in columns)) for line, value in objects)
    return _Table(columns=columns, rows=rows)


def read_file(path: Path) -> _Table:
    """Read a `.tsv`, `.csv` or `.jsonl`/`.json` file (each optionally `.gz`)."""
    fmt = file_format(path)
    if fmt == "jsonl":
        return read_json_lines(path)
    if fmt == "tsv":
        return read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE)
    return read_delimited(path, delimiter=",")


def find_column(columns: Sequence[str], name: str) -> int | None:
    """Position of column `name`: an exact match, else the first match ignoring case; None if absent."""
    if name in columns:
        return list(columns).index(name)
    folded = name.casefold()
    return next((i for i, column in enumerate(columns) if column.casefold() == folded), None)


def _resolve(columns: Sequence[str], asked: str | None, argument: str, defaults: Sequence[str]) -> int | None:
    if asked is not None:
        position = find_column(columns, asked)
        if position is None:
            raise _Problem("no_column", argument=argument, column=asked, columns=tuple(columns))
        return position
    return next((p for p in (find_column(columns, d) for d in defaults) if p is not None), None)


def _label_token(value: object, line: int, label_values: Sequence[str] | None) -> int | str:
    """A raw label as an int (JSON integers) or a stripped string; checks what can be checked per row."""
    if isinstance(value, str):
        token = value.strip()
        if (label_values is not None and token not in label_values) or not token:
            raise _Problem("label", line=line, value=token)
        return token
    if isinstance(value, bool) or not isinstance(value, int) or label_values is not None:
        raise _Problem("label", line=line, value=value)
    if value < 0:
        raise _Problem("negative_label", line=line, value=value)
    return value


def _labels_from_tokens(tokens: list[int | str], lines: list[int]) -> tuple[list[int], tuple[str, ...] | None]:
    """Integer labels when every token is an integer (or int-like string), else indices of the sorted names."""
    if all(isinstance(t, int) or _INT_LIKE.fullmatch(t) for t in tokens):
        labels = [int(t) for t in tokens]
        bad = next((i for i, label in enumerate(labels) if label < 0), None)
        if bad is not None:
            raise _Problem("negative_label", line=lines[bad], value=labels[bad])
        return labels, None
    names = tuple(sorted({str(t) for t in tokens}))
    position = {name: i for i, name in enumerate(names)}
    return [position[str(t)] for t in tokens], names


def build_examples(table: _Table, *, name: str, source: str, text_column: str | None = None,
                   label_column: str | None = None, text_names: Sequence[str] = TEXT_COLUMNS,
                   require_label: bool = False, id_names: Sequence[str] = (ID_COLUMN,),
                   label_values: Sequence[str] | None = None,
                   class_names: Sequence[str] | None = None, use_labels: bool = True) -> Examples:
    """Turn parsed rows into `Examples` (the rules are documented in `attnlens.datasets.loaders`).

    Args:
        table: the parsed rows.
        name: name of the result; derived ids are ``f"{name with / as -}-{index}"``.
        source: path or hub name of the result.
        text_column: text column asked for, else the first of `text_names` present.
        label_column: label column asked for, else ``label`` when present (else no labels).
        text_names: default text columns, first present wins.
        require_label: whether a missing default label column is a problem.
        id_names: columns taken as the id when present (first wins); empty for always-derived ids.
        label_values: the only allowed label strings (SST-2's ``"0"``/``"1"``), or None for any.
        class_names: names of integer labels when the source knows them (a hub ClassLabel, SST-2).
        use_labels: False to ignore the label column (a GLUE test split, whose labels are all -1).

    Raises:
        _Problem: ``no_column``, ``no_text_column``, ``no_label_column``, ``missing_key``, ``label``,
            ``negative_label``, ``empty_text``, ``empty_id``, ``duplicate_id``, ``label_range``.
    """
    columns = table.columns
    text_at = _resolve(columns, text_column, "text_column", text_names)
    label_at = _resolve(columns, label_column, "label_column", (LABEL_COLUMN,)) if use_labels else None
    if require_label and label_at is None:
        raise _Problem("no_label_column", columns=columns)
    if text_at is None:
        raise _Problem("no_text_column", columns=columns)
    id_at = _resolve(columns, None, "id", id_names)
    texts: list[str] = []
    tokens: list[int | str] = []
    lines: list[int] = []
    ids: list[str] = []
    first_line: dict[str, int] = {}
    used = tuple(at for at in (label_at, text_at, id_at) if at is not None)
    for line, cells in table.rows:
        missing = next((at for at in used if cells[at] is _MISSING), None)
        if missing is not None:
            raise _Problem("missing_key", line=line, column=columns[missing],
                           keys=tuple(c for c, v in zip(columns, cells) if v is not _MISSING))
        if label_at is not None:
            tokens.append(_label_token(cells[label_at], line, label_values))
        text = cells[text_at]
        if not isinstance(text, str) or not text.strip():
            raise _Problem("empty_text", line=line, value=text)
        texts.append(text.strip())
        lines.append(line)
        if id_at is not None:
            raw = cells[id_at]
            identifier = raw.strip() if isinstance(raw, str) else (
                str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else "")
            if not identifier:
                raise _Problem("empty_id", line=line, value=raw)
            if identifier in first_line:
                raise _Problem("duplicate_id", line=line, value=identifier, first=first_line[identifier])
            first_line[identifier] = line
            ids.append(identifier)
    labels: list[int | None] = [None] * len(texts)
    names = None if class_names is None else tuple(class_names)
    if label_at is not None:
        labels, string_names = _labels_from_tokens(tokens, lines)
        names = string_names if string_names is not None else names
        bad = None if names is None else next((i for i, label in enumerate(labels) if label >= len(names)), None)
        if bad is not None:
            raise _Problem("label_range", line=lines[bad], value=labels[bad], count=len(names))
    prefix = _id_prefix(name)
    records = tuple(Example(id=ids[i] if id_at is not None else f"{prefix}-{i}", index=i, text=text, label=labels[i])
                    for i, text in enumerate(texts))
    return Examples(records, name=name, source=source, class_names=names)


def _join(names: Sequence[str]) -> str:
    return ", ".join(names) or "none"


# kind -> message, from the problem's details `d`, the place `w` (a file name or a hub split), "on line 7 of w" `at`
# and the TSV hint `h`; every message is one line of the form "Expected ..., but ...".
_MESSAGES = {
    "unreadable": lambda d, w, at, h: f"Expected `data` file {w} to be readable UTF-8 text, but reading failed near "
                                      f"line {d['line']}: {d['error']}.",
    "empty": lambda d, w, at, h: f"Expected `data` file {w} to have a header row and examples, but it is empty.",
    "header_only": lambda d, w, at, h: f"Expected `data` file {w} to hold at least one example, but it has only a "
                                       f"header row.",
    "json": lambda d, w, at, h: f"Expected valid JSON {at}, but got an error: {d['error']}.",
    "json_object": lambda d, w, at, h: f"Expected a JSON object {at}, but got a JSON {d['got']}.",
    "column_count": lambda d, w, at, h: f"Expected {d['count']} columns {at}, but got {d['got']}{h}.",
    "no_column": lambda d, w, at, h: f"Expected `{d['argument']}` {d['column']!r} to be a column of {w}, but its "
                                     f"columns are {_join(d['columns'])}.",
    "no_text_column": lambda d, w, at, h: f"Expected {w} to have a text column ({', '.join(TEXT_COLUMNS)}; or pass "
                                          f"`text_column`), but its columns are {_join(d['columns'])}.",
    "no_label_column": lambda d, w, at, h: f"Expected {w} to have a `label` column (or pass `label_column`), but its "
                                           f"columns are {_join(d['columns'])}.",
    "missing_key": lambda d, w, at, h: f"Expected key {d['column']!r} {at}, but the object has keys "
                                       f"{_join(d['keys'])}.",
    "label": lambda d, w, at, h: f"Expected a label (an integer >= 0 or a class name) {at}, but got {d['value']!r}.",
    "negative_label": lambda d, w, at, h: f"Expected a label >= 0 {at}, but got {d['value']!r}.",
    "label_range": lambda d, w, at, h: f"Expected a label below the {d['count']} class names {at}, but got "
                                       f"{d['value']!r}.",
    "empty_text": lambda d, w, at, h: f"Expected a non-empty text {at}, but got {d['value']!r}.",
    "empty_id": lambda d, w, at, h: f"Expected a non-empty id {at}, but got {d['value']!r}.",
}


def describe(problem: _Problem, where: str, unit: str = "line", *, tsv: bool = False) -> str:
    """The generic one-line message for a problem in `where` (a file name or a hub split)."""
    d = problem.details
    if problem.kind == "duplicate_id":
        return f"Expected unique ids in {where}, but id {d['value']!r} on {unit} {d['line']} repeats {unit} " \
               f"{d['first']}."
    hint = " (a tab inside a text?)" if tsv else ""
    return _MESSAGES[problem.kind](d, where, f"on {unit} {d.get('line')} of {where}", hint)
