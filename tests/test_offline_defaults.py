"""A fresh machine: the default model's resolution order, `make demo`'s "is there a model" question, fine-tuning
from the packaged SST-2, and no folder of one particular machine anywhere in the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnlens.models import defaults
from attnlens.models.defaults import THESIS_MODEL_ID, resolve_sst2_model
from attnlens.paths import default_model_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """No $ATTNLENS_MODEL, an empty attnlens cache, and a hub that does not answer."""
    monkeypatch.delenv("ATTNLENS_MODEL", raising=False)
    monkeypatch.delenv("ATTNLENS_DATA", raising=False)
    monkeypatch.setenv("ATTNLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(defaults, "_hub_model_available", lambda model_id: False)
    return tmp_path


def _cache_default_model() -> None:
    default_model_dir().mkdir(parents=True)
    (default_model_dir() / "config.json").write_text("{}")


def test_resolution_order(fresh, monkeypatch):
    _cache_default_model()
    assert resolve_sst2_model(None) == str(default_model_dir())
    monkeypatch.setattr(defaults, "_hub_model_available", lambda model_id: model_id == THESIS_MODEL_ID)
    assert resolve_sst2_model(None) == THESIS_MODEL_ID  # the thesis's model before the fine-tuned one
    monkeypatch.setenv("ATTNLENS_MODEL", "env/model")
    assert resolve_sst2_model(None) == "env/model"
    assert resolve_sst2_model("given/model") == "given/model"


def test_no_model_is_one_line_naming_finetune_and_make_demo(fresh):
    message = (r"^Expected a model: pass `--model ID\|DIR`, set \$ATTNLENS_MODEL, make textattack/bert-base-uncased-"
               r"SST-2 reachable, or run `attnlens finetune` to create .*home/models/minilm-sst2 \(`make demo` does so "
               r"itself\), but none of these is available\.$")
    with pytest.raises(ValueError, match=message) as info:
        resolve_sst2_model(None)
    assert "\n" not in str(info.value)


def test_make_demo_question(fresh, capsys):
    assert defaults._main([]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("attnlens: Expected a model: ")
    assert "`attnlens finetune`" in captured.err and captured.err.count("\n") == 1
    assert defaults._main(["--quiet"]) == 1 and capsys.readouterr() == ("", "")
    _cache_default_model()
    assert defaults._main([]) == 0 and capsys.readouterr().out == f"{default_model_dir()}\n"
    assert defaults._main(["--quiet"]) == 0 and capsys.readouterr() == ("", "")


def test_make_demo_question_as_a_module(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ATTNLENS_HOME": str(tmp_path / "home"),
           "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run([sys.executable, "-m", "attnlens.models.defaults"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("attnlens: Expected a model: ") and run.stderr.count("\n") == 1
    run = subprocess.run([sys.executable, "-m", "attnlens.models.defaults"], capture_output=True, text=True,
                         env={**env, "ATTNLENS_MODEL": "some/model"}, cwd=ROOT, timeout=120)
    assert (run.returncode, run.stdout, run.stderr) == (0, "some/model\n", "")


def test_finetune_offline_from_the_packaged_data(fresh, tiny_bert_dir, monkeypatch, capsys):
    from attnlens.training.finetune import finetune_sst2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = finetune_sst2(base=tiny_bert_dir, max_steps=1, batch_size=4, max_length=16, eval_limit=8)
    assert result.steps == 1 and result.out_dir == default_model_dir()
    assert resolve_sst2_model(None) == str(default_model_dir())  # what `make demo` runs the study on next
    said = capsys.readouterr().err
    packaged = ROOT / "attnlens" / "datasets" / "data" / "sst2" / "train.tsv.gz"
    assert f"fine-tuning {tiny_bert_dir} on SST-2 train (67,349 sentences from {packaged}) on cpu: 1 steps" in said
    assert f"the accuracy on 8 dev sentences on top; saving to {default_model_dir()}" in said


# --- the Makefile and the repository -----------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_looks_only_beside_the_checkout(tmp_path):
    checkout = tmp_path / "clone"
    checkout.mkdir()
    shutil.copy(ROOT / "Makefile", checkout / "Makefile")
    (checkout / "pyproject.toml").write_text("")

    def dry_run(*args: str) -> str:
        venv = tmp_path / "venv"
        return subprocess.run(["make", "-n", "-o", f"{venv}/.installed-stamp", "demo", f"VENV={venv}", *args],
                              cwd=checkout, capture_output=True, text=True, check=True, timeout=60).stdout

    assert f'[ -d "{tmp_path}/shared/models/minilm-sst2" ]' in dry_run()
    assert '[ -d "/elsewhere/models/minilm-sst2" ]' in dry_run("SHARED=/elsewhere")
    assert "finetune --time-budget 300" in dry_run() and "finetune --time-budget 45" in dry_run("DEMO_BUDGET=45")


def test_no_folder_of_one_machine_in_the_repository():
    machine_folder = re.compile(r"(?<![\w.])/" + "work" + "/")  # the development VM's root, spelt so as not to match
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    suffixes = (".py", ".sh", ".md", ".toml", ".yml", ".yaml", ".cfg", ".txt")
    files = [name for name in tracked if name.endswith(suffixes) or Path(name).name in ("Makefile", "run")]
    files += [name for name in ("Makefile", ".ci/run") if name not in files]
    found = [f"{name}:{number}" for name in files if (ROOT / name).is_file()
             for number, line in enumerate((ROOT / name).read_text(encoding="utf-8").splitlines(), 1)
             if machine_folder.search(line)]
    assert found == []
