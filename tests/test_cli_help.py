"""`--help` shows every option with its default, for every command (options come from the configs)."""

from __future__ import annotations

import pytest

from attnlens.cli import main


@pytest.mark.parametrize(("command", "expected"), [
    ("study", ["--batch-size B", "(default: 32)", "--ties {average,dense}", "--shard i/N", "--max-tokens N"]),
    ("sst2", ["--split {dev,train}", "(default: dev)", "(default: raw,rollout,selective)"]),
    ("explain", ["--top TOP", "(default: 10)", "--method"]),
    ("attention-map", ["--alpha ALPHA", "(default: 0.9)", "--no-shared-scale"]),
    ("finetune", ["--epochs EPOCHS", "passes over the training split", "--learning-rate", "peak AdamW learning rate",
                  "(default: 5e-05)"]),
    ("merge", ["shards", "--keep-shards"]),
])
def test_help_shows_options_and_defaults(command, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in expected:
        assert " ".join(fragment.split()) in text, fragment
