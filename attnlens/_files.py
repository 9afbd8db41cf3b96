"""Output files of the view commands: checked before any work, written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from attnlens._checks import _is_writable_folder, _nearest_existing


def _check_output_file(path: object, name: str, *, suffixes: Sequence[str] | None = None) -> Path:
    """Check, before any work, that a file can be written at `path`; return it as a Path.

    Missing parent folders are fine when they can be created (like ``mkdir -p``): the nearest
    existing ancestor must be a writable folder. They are created only when the file is written.

    Raises:
        ValueError: naming `name` when `path` is empty, an existing folder, has a suffix not in
            `suffixes` (compared in lower case), or lies under a file or a read-only folder.
    """
    if path is None or str(path).strip() == "":
        raise ValueError(f"Expected `{name}` to be a file path, but got an empty string.")
    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"Expected `{name}` to be a file path, but {str(target)!r} is an existing folder.")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        allowed = " or ".join(suffixes)
        raise ValueError(f"Expected `{name}` to end in {allowed}, but got {str(path)!r}.")
    if target.exists() and not target.is_file():
        raise ValueError(f"Expected `{name}` to be a regular file path, but {str(target)!r} is not a regular file.")
    ancestor = _nearest_existing(target.parent)
    if not ancestor.is_dir():
        raise ValueError(f"Expected `{name}` to be in a folder, but {str(ancestor)!r} is a file.")
    if not _is_writable_folder(ancestor):
        raise ValueError(f"Expected `{name}` to be in a writable folder, but {str(ancestor)!r} is not writable.")
    return target


def _write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` through a temporary file beside it and a rename.

    Missing parent folders are created; on any error the temporary file is removed and an
    existing file at `path` is left as it was.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
