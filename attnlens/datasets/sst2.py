"""SST-2 (GLUE) sentences and labels, from local TSV files, the copy shipped with attnlens, or the hub.

Socher et al. 2013, "Recursive Deep Models for Semantic Compositionality Over a Sentiment
Treebank"; binary split of GLUE (Wang et al. 2019).

The package ships both splits gzipped (``attnlens/datasets/data/sst2/{dev,train}.tsv.gz``, 872 and
67,349 sentences; source, license and checksums in the ``PROVENANCE.md`` beside them), so SST-2
never needs the network.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from attnlens._checks import _check_choice
from attnlens.datasets._tables import _Problem, build_examples, describe, file_stem, read_delimited
from attnlens.datasets.examples import Examples

_SPLITS = ("train", "dev")
_SENTENCE_COLUMNS = ("sentence", "content", "text")  # SST-2's historical order
CLASS_NAMES = ("negative", "positive")
DATA_ENV = "ATTNLENS_DATA"
_PACKAGED_DIR = Path(__file__).resolve().parent / "data" / "sst2"
"""The SST-2 splits shipped with attnlens, ``<split>.tsv.gz`` (see its ``PROVENANCE.md``)."""


@dataclass(frozen=True)
class SST2Split:
    """One split of SST-2: parallel lists of sentences and gold labels (0 negative, 1 positive)."""

    sentences: list[str]
    labels: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.sentences)


def _sst2_message(problem: _Problem, path: Path) -> str:
    """SST-2's historical wording of a parsing problem (the generic one for anything else)."""
    d = problem.details
    if problem.kind == "unreadable":
        return f"Expected a readable UTF-8 TSV file at {path}, but reading failed: {d['error']}."
    if problem.kind == "empty":
        return f"Expected a header row `label<TAB>sentence` in {path}, but the file is empty."
    if problem.kind in ("no_label_column", "no_text_column"):
        return (f"Expected {path} to have a `label` column and a `sentence` (or `content`/`text`) column, "
                f"but got columns {list(d['columns'])}.")
    if problem.kind == "column_count":
        return (f"Expected {d['count']} columns on line {d['line']} of {path}, but got {d['got']} "
                "(a tab inside a sentence?).")
    if problem.kind == "label":
        return f"Expected label 0 or 1 on line {d['line']} of {path}, but got {d['value']!r}."
    if problem.kind == "empty_text":
        return f"Expected a non-empty sentence on line {d['line']} of {path}, but it is empty."
    return describe(problem, str(path), tsv=True)


def _read_sst2_examples(path: str | os.PathLike, split: str | None = None) -> Examples:
    """The generic TSV reader with SST-2's rules: ``label`` and a ``sentence``/``content``/``text`` column
    required, labels 0/1 only, no id column (ids ``sst2-<split>-<index>``), SST-2's messages."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Expected an SST-2 TSV file at {path}, but it does not exist.")
    try:
        table = read_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE)
        return build_examples(table, name=f"sst2/{split or file_stem(path)}", source=str(path),
                              text_names=_SENTENCE_COLUMNS, require_label=True, id_names=(),
                              label_values=("0", "1"), class_names=CLASS_NAMES)
    except _Problem as problem:
        raise ValueError(_sst2_message(problem, path)) from None


def read_sst2_tsv(path: str | os.PathLike) -> SST2Split:
    """Read a GLUE-style SST-2 TSV: one header row, then `label<TAB>sentence` (either column order).

    Raises:
        ValueError: if the file is missing, unreadable, lacks `label`/sentence columns, or a
            label is not 0/1, naming the file and line.
    """
    examples = _read_sst2_examples(path)
    return SST2Split(sentences=examples.texts, labels=examples.labels or [], source=str(path))


_NO_SOURCE = (f"Expected SST-2 in `--data DIR` or ${DATA_ENV} (a folder with sst2/{{train,dev}}.tsv), in the copy "
              "shipped with attnlens (missing from this installation: reinstall attnlens), or")


def _load_from_hub(split: str) -> SST2Split:
    try:
        import datasets  # noqa: PLC0415
    except ImportError as err:
        raise ValueError(
            f"{_NO_SOURCE} the `datasets` package (pip install 'attnlens[hub]') with network access for glue/sst2, "
            "but found none of these."
        ) from err
    hub_split = "validation" if split == "dev" else "train"
    try:
        data = datasets.load_dataset("glue", "sst2", split=hub_split)
    except Exception as err:  # noqa: BLE001 - any hub failure means "not available"
        raise ValueError(
            f"{_NO_SOURCE} glue/sst2 from the Hugging Face hub, but the hub failed: {type(err).__name__}."
        ) from err
    return SST2Split(sentences=list(data["sentence"]), labels=list(data["label"]), source="hf:glue/sst2")


def _sst2_file(split: str, data_dir: str | os.PathLike | None) -> Path | None:
    """``sst2/<split>.tsv`` (or ``<split>.tsv``) in `data_dir`, else in ``$ATTNLENS_DATA``, else the
    packaged ``<split>.tsv.gz``; None (the hub) only when the installation lacks it."""
    _check_choice(split, "split", _SPLITS)
    folder = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    if folder is None:
        packaged = _PACKAGED_DIR / f"{split}.tsv.gz"
        return packaged if packaged.is_file() else None
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Expected `data` to be a folder holding sst2/{split}.tsv, but {folder} is not a folder.")
    for candidate in (folder / "sst2" / f"{split}.tsv", folder / f"{split}.tsv"):
        if candidate.is_file():
            return candidate
    raise ValueError(f"Expected `data` folder {folder} to hold sst2/{split}.tsv, but it does not.")


def load_sst2(split: str = "dev", *, data_dir: str | os.PathLike | None = None) -> SST2Split:
    """Load an SST-2 split.

    Looks in `data_dir`, else ``$ATTNLENS_DATA``, for ``sst2/<split>.tsv`` (or ``<split>.tsv``
    directly inside the folder); without either, reads the copy shipped with attnlens (GLUE's
    872 dev and 67,349 train sentences), and only if an installation lacks it, Hugging Face
    ``glue/sst2``.

    Args:
        split: ``"dev"`` or ``"train"``.
        data_dir: folder holding ``sst2/{train,dev}.tsv``.

    Returns:
        The split's sentences and labels.

    Raises:
        ValueError: for an unknown split, a folder without the file, or (an installation without the
            shipped files) no source at all.

    Example:
        >>> dev = load_sst2("dev")  # the shipped copy, offline
        >>> len(dev), dev.sentences[0], dev.labels[0]
        (872, 'one long string of cliches .', 0)
    """
    path = _sst2_file(split, data_dir)
    return _load_from_hub(split) if path is None else read_sst2_tsv(path)


def load_sst2_examples(split: str = "dev", *, data_dir: str | os.PathLike | None = None) -> Examples:
    """Load an SST-2 split as `Examples`: ids ``sst2-<split>-<index>``, labels 0/1, class names
    ``("negative", "positive")``, name ``sst2/<split>``.

    The same files, folder rules and messages as `load_sst2`.

    Args:
        split: ``"dev"`` or ``"train"``.
        data_dir: folder holding ``sst2/{train,dev}.tsv``; default ``$ATTNLENS_DATA``, else the copy
            shipped with attnlens.

    Returns:
        The split's examples in file order.

    Raises:
        ValueError: for an unknown split, a folder without the file, a bad file, or (an installation
            without the shipped files) no source at all.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "dev.tsv").write_text("sentence\\tlabel\\ngood film\\t1\\nbad film\\t0\\n")
        >>> data = load_sst2_examples("dev", data_dir=folder)
        >>> data.ids, data.labels, data.class_names
        (['sst2-dev-0', 'sst2-dev-1'], [1, 0], ('negative', 'positive'))
    """
    path = _sst2_file(split, data_dir)
    if path is None:
        hub = _load_from_hub(split)
        return Examples.from_texts(hub.sentences, hub.labels, name=f"sst2/{split}", source=hub.source,
                                   class_names=CLASS_NAMES)
    return _read_sst2_examples(path, split)
