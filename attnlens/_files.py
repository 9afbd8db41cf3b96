"""Atomic writing of output files and folders, and the check of an output file before any work.

This module owns atomic writing: :func:`_write_atomic` for one file (temporary file + rename) and
:func:`_write_folder_atomically` for a folder (staging folder + rename). Nothing half-written is
left on any error.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from attnlens._checks import ArgumentError, _is_writable_folder, _nearest_existing


def _check_output_file(path: object, name: str, *, suffixes: Sequence[str] | None = None) -> Path:
    """Check, before any work, that a file can be written at `path`; return it as a Path.

    Missing parent folders are fine when they can be created (like ``mkdir -p``): the nearest
    existing ancestor must be a writable folder. They are created only when the file is written.

    Raises:
        ValueError: naming `name` when `path` is empty, an existing folder, has a suffix not in
            `suffixes` (compared in lower case), or lies under a file or a read-only folder.
    """
    if path is None or str(path).strip() == "":
        raise ArgumentError(f"Expected `{name}` to be a file path, but got an empty string.", name)
    target = Path(path).expanduser()
    if target.is_dir():
        raise ArgumentError(f"Expected `{name}` to be a file path, but {str(target)!r} is an existing folder.", name)
    if suffixes is not None and target.suffix.lower() not in suffixes:
        allowed = " or ".join(suffixes)
        raise ArgumentError(f"Expected `{name}` to end in {allowed}, but got {str(path)!r}.", name)
    if target.exists() and not target.is_file():
        raise ArgumentError(f"Expected `{name}` to be a regular file path, but {str(target)!r} is not a regular "
                            f"file.", name)
    ancestor = _nearest_existing(target.parent)
    if not ancestor.is_dir():
        raise ArgumentError(f"Expected `{name}` to be in a folder, but {str(ancestor)!r} is a file.", name)
    if not _is_writable_folder(ancestor):
        raise ArgumentError(f"Expected `{name}` to be in a writable folder, but {str(ancestor)!r} is not "
                            f"writable.", name)
    return target


def _write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` through a temporary file beside it and a rename.

    Missing parent folders are created; the file gets the mode a plain ``open`` would give
    (``0o666 & ~umask``). On any error the temporary file is removed and an existing file at
    `path` is left as it was.

    Args:
        path: the file to write.
        data: its content; text is encoded as UTF-8.

    Returns:
        `path` as a Path (``~`` expanded).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _write_atomic(folder / "a" / "note.txt", "hello").read_text()
        'hello'
        >>> shutil.rmtree(folder)
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _write_folder_atomically(out_dir: str | os.PathLike, fill: Callable[[Path], None], *,
                             replace: bool = False, name: str = "out_dir") -> Path:
    """Let `fill` write into a hidden staging folder beside `out_dir`, then rename it into place.

    Nothing half-written is left behind: on any error (or interrupt) the staging folder is
    removed and an existing `out_dir` is left as it was. Missing parent folders are created
    (and stay). The staged folder and everything in it get the modes a plain ``mkdir``/``open``
    would give (folders ``0o777 & ~umask``, files ``0o666 & ~umask``); a folder that replaces an
    existing one (an empty one the user made, say) takes that folder's mode.

    An existing `out_dir` is moved aside, the staging folder renamed in, and the old folder
    deleted; if the rename fails, the old folder is put back. Callers check, before any work,
    that the folder may be replaced (see ``attnlens.experiments.outputs.check_output_folder``).

    Args:
        out_dir: the folder to write.
        fill: called once with the staging folder; writes the files.
        replace: allow replacing an `out_dir` that holds files (default: only a new or empty one).
        name: the argument named in messages.

    Returns:
        `out_dir` as a Path (``~`` expanded).

    Raises:
        ValueError: when `out_dir` is a file, or holds files and `replace` is False.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "results"
        >>> written = _write_folder_atomically(folder, lambda staging: (staging / "a.txt").write_text("1"))
        >>> sorted(path.name for path in written.iterdir())
        ['a.txt']
        >>> shutil.rmtree(folder.parent)
    """
    target = Path(out_dir).expanduser()
    if target.exists() and not target.is_dir():
        raise ArgumentError(f"Expected `{name}` to be a folder, but {target} is a file.", name)
    if not replace and target.is_dir() and any(target.iterdir()):
        raise ArgumentError(f"Expected `{name}` to be a new or empty folder, but {target} already holds files.", name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    previous = None
    try:
        fill(staging)
        _apply_umask(staging)
        if target.exists():
            os.chmod(staging, stat.S_IMODE(target.stat().st_mode))  # a replaced folder keeps its own mode
            previous = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(previous)
        try:
            staging.rename(target)
        except BaseException:
            if previous is not None:
                previous.rename(target)
                previous = None
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return target


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _apply_umask(folder: Path) -> None:
    """Give `folder` and everything in it the modes a plain mkdir/open would (mkdtemp makes it private)."""
    umask = _umask()
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
