"""Tests of `attnlens._files._write_folder_atomically`, the folder writer that finetune saves through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attnlens._files import _write_folder_atomically
from attnlens.experiments.outputs import write_atomically


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fill(text: str):
    def fill(folder: Path) -> None:
        (folder / "sub").mkdir()
        (folder / "sub" / "weights.bin").write_text(text)
        (folder / "record.json").write_text(text)

    return fill


def test_new_folder_with_parents_and_usual_modes(tmp_path):
    def private(folder: Path) -> None:
        (folder / "secret.txt").write_text("x")
        (folder / "secret.txt").chmod(0o600)  # as mkstemp-based writers leave files

    out = _write_folder_atomically(tmp_path / "a" / "b" / "model", private)
    assert out == tmp_path / "a" / "b" / "model"
    assert os.listdir(out.parent) == ["model"], "the staging folder was left behind"
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert (out / "secret.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_replace_swaps_an_earlier_output_and_leaves_no_old_folder(tmp_path):
    out = tmp_path / "model"
    _write_folder_atomically(out, _fill("first"))
    (out / "stale.txt").write_text("from the first run")
    _write_folder_atomically(out, _fill("second"), replace=True)
    assert (out / "record.json").read_text() == "second"
    assert (out / "sub" / "weights.bin").read_text() == "second"
    assert not (out / "stale.txt").exists()
    assert os.listdir(tmp_path) == ["model"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failing_fill_leaves_the_earlier_output_untouched(tmp_path, error):
    out = tmp_path / "model"
    _write_folder_atomically(out, _fill("first"))

    def broken(folder: Path) -> None:
        (folder / "record.json").write_text("half")
        raise error

    with pytest.raises(type(error)):
        _write_folder_atomically(out, broken, replace=True)
    assert (out / "record.json").read_text() == "first"
    assert os.listdir(tmp_path) == ["model"]


def test_a_failing_rename_puts_the_earlier_output_back(tmp_path, monkeypatch):
    out = tmp_path / "model"
    _write_folder_atomically(out, _fill("first"))
    rename = Path.rename

    def refuse_staging(self: Path, target):
        if self.name.endswith(".tmp"):
            raise OSError("rename refused")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse_staging)
    with pytest.raises(OSError, match="rename refused"):
        _write_folder_atomically(out, _fill("second"), replace=True)
    assert (out / "record.json").read_text() == "first"
    assert os.listdir(tmp_path) == ["model"]


def test_without_replace_only_a_new_or_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert (_write_folder_atomically(tmp_path / "empty", _fill("x")) / "record.json").read_text() == "x"
    with pytest.raises(ValueError, match=r"Expected `out_dir` to be a new or empty folder, but .* already holds"):
        _write_folder_atomically(tmp_path / "empty", _fill("y"))
    assert (tmp_path / "empty" / "record.json").read_text() == "x"
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"Expected `out_dir` to be a folder, but .* is a file"):
        _write_folder_atomically(tmp_path / "file", _fill("y"), replace=True)


def test_write_atomically_keeps_the_output_folder_check(tmp_path):
    out = write_atomically(tmp_path / "study", _fill("x"))
    assert (out / "record.json").read_text() == "x"
    with pytest.raises(ValueError, match=r"Expected `out` to be a new or empty folder, but .* already holds files\."):
        write_atomically(out, _fill("y"))
    assert (out / "record.json").read_text() == "x"
