"""Writing a study's results: JSON, CSV, markdown table and plot, all or nothing."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

from attnlens._checks import ArgumentError, _check_creatable_folder
from attnlens._files import _write_folder_atomically


def _clean(value: object) -> object:
    """JSON-safe copy: NaN/inf become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(document: dict, path: Path) -> None:
    """Write `document` as indented JSON (NaN and infinities become ``null``)."""
    path.write_text(json.dumps(_clean(document), indent=2) + "\n", encoding="utf-8")


def write_csv(header: list[str], rows: list[list[object]], path: Path) -> None:
    """Write a header row and `rows` as UTF-8 CSV."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def check_output_folder(out_dir: str | Path, name: str = "out") -> None:
    """Check, before any work, that `out_dir` is new or empty and can be created.

    Raises:
        ValueError: naming `name` when the folder holds files, is a file, or cannot be created.
    """
    _check_creatable_folder(out_dir, name)
    folder = Path(out_dir)
    if folder.is_dir() and any(folder.iterdir()):
        raise ArgumentError(f"Expected `{name}` to be a new or empty folder, but {folder} already holds files.", name)


def write_atomically(out_dir: str | Path, fill: Callable[[Path], None]) -> Path:
    """Let `fill` write into a temporary folder beside `out_dir`, then move it into place.

    :func:`check_output_folder`, then ``attnlens._files._write_folder_atomically``: nothing
    half-written is left behind, on any error the temporary folder is removed.

    Raises:
        ValueError: when `out_dir` exists and is not an empty folder.
    """
    check_output_folder(out_dir)
    return _write_folder_atomically(out_dir, fill, name="out")
