"""Studies over several processes: shard files, torchrun on gloo, --shard + merge, --resume after
SIGKILL and after a cut line, and merges refused across runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attnlens.cli import main
from attnlens.experiments.distributed import launch_from_environment, rank_device
from attnlens.experiments.shards import ShardSpec, merge_shards, read_shard
from attnlens.experiments.study import shard_folder
from tests.conftest import SHARED_DATA, SHARED_MODEL, needs_shared_data, needs_shared_model

ROOT = Path(__file__).resolve().parents[2]


def _methods(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())["methods"]


def _close(one: dict, two: dict, atol: float = 1e-6) -> None:
    assert set(one) == set(two)
    for name in one:
        for key in ("median", "mean", "count", "entropy_median", "gini_median"):
            np.testing.assert_allclose(np.asarray(one[name][key], dtype=float), np.asarray(two[name][key], dtype=float),
                                       atol=atol, err_msg=f"{name} {key}")


def _tiny_study(model, data, out, *extra):
    return ["--quiet", "sst2", "--model", str(model), "--data", str(data), "--limit", "20", "--batch-size", "4",
            "--thresholds", "0.1", "--out", str(out), *extra]


def test_shard_spec_and_launch():
    assert ShardSpec.parse("2/5") == ShardSpec(2, 5) and ShardSpec(2, 5).positions(12) == [2, 7]
    for bad in ("5/5", "a/2", "1", "-1/2"):
        with pytest.raises(ValueError, match=r"Expected `shard` to be i/N with 0 <= i < N"):
            ShardSpec.parse(bad)
    launch = launch_from_environment(None, {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (launch.rank, launch.world, launch.launched, launch.is_main) == (1, 2, True, False)
    assert rank_device("cuda", launch) == "cuda:1" and rank_device("cpu", launch) == "cpu"
    assert launch_from_environment("0/3", {}).manual and not launch_from_environment(None, {}).sharded
    with pytest.raises(ValueError, match="Expected `shard` to be unset under torchrun"):
        launch_from_environment("0/2", {"RANK": "0", "WORLD_SIZE": "2"})


def test_one_process_run_leaves_no_shards_and_keeps_them_on_request(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    out, kept = tmp_path / "run", tmp_path / "kept"
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, out)) == 0
    assert not shard_folder(out).exists() and (out / "results.json").is_file()
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, kept, "--keep-shards")) == 0
    shard = read_shard(shard_folder(kept) / "shard-00000-of-00001.jsonl")
    assert shard.footer["examples"] == 20 and shard.examples_done == 20 and len(shard.batches) == 5
    assert _methods(out) == _methods(kept)
    document = json.loads((kept / "results.json").read_text())
    assert document["timings_seconds"]["ranks"][0]["examples"] == 20


def test_manual_shards_then_merge_equal_one_process(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, whole)) == 0
    for index in range(3):
        assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, parts, "--shard", f"{index}/3")) == 0
    assert not parts.exists() and len(list(shard_folder(parts).iterdir())) == 3
    assert main(["--quiet", "merge", str(shard_folder(parts))]) == 0  # --out defaults to the folder's name
    _close(_methods(whole), _methods(parts))
    assert not shard_folder(parts).exists()


def test_merge_refuses_incomplete_and_foreign_shards(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    from transformers import BertForSequenceClassification

    parts = tmp_path / "parts"
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, parts, "--shard", "0/2")) == 0
    folder = shard_folder(parts)
    assert main(["merge", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "these rank/world shards are missing: 1/2" in capsys.readouterr().err
    changed = tmp_path / "changed-model"  # the same files, other weights
    model = BertForSequenceClassification.from_pretrained(tiny_bert_dir)
    model.classifier.bias.data += 1.0
    model.save_pretrained(changed)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tiny_bert_dir / name).exists():
            (changed / name).write_bytes((tiny_bert_dir / name).read_bytes())
    other = tmp_path / "other"
    assert main(_tiny_study(changed, tiny_sst2_dir, other, "--shard", "1/2")) == 0
    (shard_folder(other) / "shard-00001-of-00002.jsonl").rename(folder / "shard-00001-of-00002.jsonl")
    assert main(["merge", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "differs in `config`" in capsys.readouterr().err  # the model path is part of the config
    shard = folder / "shard-00001-of-00002.jsonl"
    lines = shard.read_text().splitlines()
    header = json.loads(lines[0])
    header["config"]["model"] = str(tiny_bert_dir)
    shard.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert main(["merge", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "differs in `model_hash`" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_resume_after_a_cut_line_equals_an_uninterrupted_run(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, whole)) == 0
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, cut, "--shard", "0/1")) == 0
    shard = shard_folder(cut) / "shard-00000-of-00001.jsonl"
    lines = shard.read_bytes().split(b"\n")
    shard.write_bytes(b"\n".join(lines[:3]) + b"\n" + lines[3][: len(lines[3]) // 2])  # header, 2 batches, half
    assert read_shard(shard).examples_done == 8
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, cut)) == 2  # without --resume: refused
    assert "pass `--resume` to continue it" in capsys.readouterr().err
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, cut, "--resume")) == 0
    assert _methods(whole) == _methods(cut)  # the same batches, so the same numbers, exactly
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, tmp_path / "x", "--resume")) == 0  # nothing to resume: fine


def test_resume_with_another_batch_size_is_refused(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, out, "--shard", "0/1")) == 0
    assert main([*_tiny_study(tiny_bert_dir, tiny_sst2_dir, out, "--resume"), "--batch-size", "5"]) == 2
    assert "Expected `--batch-size` to be the one the resumed shard was scored with" in capsys.readouterr().err


def test_sharded_runs_need_an_output_folder(tiny_bert_dir, tiny_sst2_dir, capsys):
    args = ["sst2", "--model", str(tiny_bert_dir), "--data", str(tiny_sst2_dir), "--shard", "0/2"]
    assert main(args) == 2
    assert "Expected `--out` to name the output folder of a sharded or resumed run" in capsys.readouterr().err


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _real_study(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "attnlens.cli", "--quiet", "--threads", "1", "sst2", "--model", str(SHARED_MODEL),
            "--data", str(SHARED_DATA), "--limit", "96", "--batch-size", "16", "--out", str(out), *extra]


@needs_shared_model
@needs_shared_data
def test_torchrun_two_processes_on_gloo_equal_one_process_and_shards_with_merge(tmp_path):
    one, two, manual = tmp_path / "one", tmp_path / "two", tmp_path / "manual"
    subprocess.run(_real_study(one), check=True, env=_env(), timeout=300)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command = _real_study(two)
    subprocess.run([*launcher, *command[1:]], check=True, env=_env(), timeout=300, capture_output=True)
    _close(_methods(one), _methods(two))
    document = json.loads((two / "results.json").read_text())
    assert [r["rank"] for r in document["timings_seconds"]["ranks"]] == [0, 1]
    assert sum(r["examples"] for r in document["timings_seconds"]["ranks"]) == 96
    jobs = [subprocess.Popen(_real_study(manual, "--shard", f"{i}/2"), env=_env()) for i in range(2)]
    assert [job.wait(timeout=300) for job in jobs] == [0, 0]
    assert main(["--quiet", "merge", str(shard_folder(manual)), "--out", str(manual)]) == 0
    _close(_methods(one), _methods(manual))


@needs_shared_model
@needs_shared_data
def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    job = subprocess.Popen(_real_study(killed, "--batch-size", "2"), env=_env())  # 48 batches: time to kill
    shard = shard_folder(killed) / "shard-00000-of-00001.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        if shard.exists() and shard.read_bytes().count(b'{"batch"') >= 1:
            break
        time.sleep(0.005)
    assert job.poll() is None, "the run ended before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=60)
    done = read_shard(shard)
    assert done.footer is None and 0 < done.examples_done < 96 and not killed.exists()
    subprocess.run(_real_study(killed, "--batch-size", "2", "--resume"), check=True, env=_env(), timeout=300)
    subprocess.run(_real_study(whole, "--batch-size", "2"), check=True, env=_env(), timeout=300)
    assert _methods(killed) == _methods(whole)  # the resumed run: exactly the uninterrupted one


def test_merge_shards_checks_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        merge_shards([tmp_path / "nope"])
    with pytest.raises(ValueError, match="to hold shard-\\*-of-\\*.jsonl files"):
        merge_shards([tmp_path])
    bad = tmp_path / "shard-00000-of-00001.jsonl"
    bad.write_text('{"format": "other"}\n')
    with pytest.raises(ValueError, match="to be an attnlens shard"):
        merge_shards([bad])


def test_resume_with_another_number_of_processes_is_refused(tiny_bert_dir, tiny_sst2_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, out, "--shard", "0/2")) == 0
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, out, "--resume")) == 2
    assert "to come from 1 process(es), but it holds shards of 2" in capsys.readouterr().err


def test_torchrun_two_processes_on_a_tiny_model(tiny_bert_dir, tiny_sst2_dir, tmp_path):
    """The 2-process gloo run on a model built here, so CI runs it wherever ../shared is missing."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_tiny_study(tiny_bert_dir, tiny_sst2_dir, one)) == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "attnlens.cli", "--threads", "1", *_tiny_study(tiny_bert_dir, tiny_sst2_dir, two)]
    subprocess.run(command, check=True, env=_env(), timeout=300, capture_output=True)
    _close(_methods(one), _methods(two))
    ranks = json.loads((two / "results.json").read_text())["timings_seconds"]["ranks"]
    assert [r["examples"] for r in ranks] == [10, 10] and not shard_folder(two).exists()
