"""SST-2 (GLUE) sentences and labels, from local TSV files or the Hugging Face hub.

Socher et al. 2013, "Recursive Deep Models for Semantic Compositionality Over a Sentiment
Treebank"; binary split of GLUE (Wang et al. 2019).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from attnlens._checks import _check_choice

_SPLITS = ("train", "dev")
DATA_ENV = "ATTNLENS_DATA"


@dataclass(frozen=True)
class SST2Split:
    """One split of SST-2: parallel lists of sentences and gold labels (0 negative, 1 positive)."""

    sentences: list[str]
    labels: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.sentences)


def read_sst2_tsv(path: str | os.PathLike) -> SST2Split:
    """Read a GLUE-style SST-2 TSV: one header row, then `label<TAB>sentence` (either column order).

    Raises:
        ValueError: if the file is missing, unreadable, lacks `label`/sentence columns, or a
            label is not 0/1, naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Expected an SST-2 TSV file at {path}, but it does not exist.")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"Expected a readable UTF-8 TSV file at {path}, but reading failed: {err}.") from err
    if not rows:
        raise ValueError(f"Expected a header row `label<TAB>sentence` in {path}, but the file is empty.")
    header = [h.strip().lower() for h in rows[0]]
    sentence_names = ("sentence", "content", "text")
    if "label" not in header or not any(name in header for name in sentence_names):
        raise ValueError(
            f"Expected {path} to have a `label` column and a `sentence` (or `content`/`text`) column, "
            f"but got columns {rows[0]}."
        )
    label_col = header.index("label")
    text_col = next(header.index(name) for name in sentence_names if name in header)
    sentences: list[str] = []
    labels: list[int] = []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"Expected {len(header)} columns on line {line_number} of {path}, but got {len(row)} "
                             "(a tab inside a sentence?).")
        label = row[label_col].strip()
        if label not in ("0", "1"):
            raise ValueError(f"Expected label 0 or 1 on line {line_number} of {path}, but got {label!r}.")
        if not row[text_col].strip():
            raise ValueError(f"Expected a non-empty sentence on line {line_number} of {path}, but it is empty.")
        sentences.append(row[text_col].strip())
        labels.append(int(label))
    return SST2Split(sentences=sentences, labels=labels, source=str(path))


def _load_from_hub(split: str) -> SST2Split:
    try:
        import datasets  # noqa: PLC0415
    except ImportError as err:
        raise ValueError(
            f"Expected SST-2 in `--data DIR` or ${DATA_ENV} (a folder with sst2/{{train,dev}}.tsv), "
            "or the `datasets` package with network access for glue/sst2, but found neither."
        ) from err
    hub_split = "validation" if split == "dev" else "train"
    try:
        data = datasets.load_dataset("glue", "sst2", split=hub_split)
    except Exception as err:  # noqa: BLE001 - any hub failure means "not available"
        raise ValueError(
            f"Expected SST-2 in `--data DIR` or ${DATA_ENV} (a folder with sst2/{{train,dev}}.tsv), "
            f"or glue/sst2 from the Hugging Face hub, but the hub failed: {type(err).__name__}."
        ) from err
    return SST2Split(sentences=list(data["sentence"]), labels=list(data["label"]), source="hf:glue/sst2")


def load_sst2(split: str = "dev", *, data_dir: str | os.PathLike | None = None) -> SST2Split:
    """Load an SST-2 split.

    Looks in `data_dir`, else ``$ATTNLENS_DATA``, for ``sst2/<split>.tsv`` (or ``<split>.tsv``
    directly inside the folder); without either, reads Hugging Face ``glue/sst2``.

    Args:
        split: ``"dev"`` or ``"train"``.
        data_dir: folder holding ``sst2/{train,dev}.tsv``.

    Returns:
        The split's sentences and labels.

    Raises:
        ValueError: for an unknown split, a folder without the file, or no source at all.
    """
    _check_choice(split, "split", _SPLITS)
    folder = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    if folder is None:
        return _load_from_hub(split)
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Expected `data` to be a folder holding sst2/{split}.tsv, but {folder} is not a folder.")
    for candidate in (folder / "sst2" / f"{split}.tsv", folder / f"{split}.tsv"):
        if candidate.is_file():
            return read_sst2_tsv(candidate)
    raise ValueError(f"Expected `data` folder {folder} to hold sst2/{split}.tsv, but it does not.")
