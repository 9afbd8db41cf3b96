"""The tiny-vision trainer, the tiny ViT/Vim factories and the placed-digits models saved for attnlens."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from attnlens.datasets import placed_digits, write_placed_digits
from attnlens.datasets.images import ImagePreprocessing
from attnlens.training.vision import (
    TRAINING_RECORD,
    evaluate_image_classifier,
    tiny_vim_classifier,
    tiny_vit_classifier,
    train_image_classifier,
    train_placed_digits_models,
)


@pytest.fixture(scope="module")
def small_digits():
    return placed_digits(256, size=16, seed=0, split="train")


def _tiny_vit():
    return tiny_vit_classifier(16, 4, 10, layers=1, hidden=32, heads=2, seed=0)


def test_training_lowers_the_loss(small_digits):
    model = _tiny_vit()
    result = train_image_classifier(model, small_digits.images, small_digits.labels, max_steps=40, batch_size=32,
                                    learning_rate=3e-3, progress=False)
    assert result.steps == 40 and result.stopped_by == "max_steps" and len(result.losses) == 40
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.2, (first, last)
    assert result.accuracy is None and result.examples_per_second > 0 and not model.training


def test_same_seed_same_run_and_global_rng_untouched(small_digits):
    runs = []
    for _ in range(2):
        state = torch.random.get_rng_state()
        model = _tiny_vit()
        runs.append(train_image_classifier(model, small_digits.images, small_digits.labels, max_steps=6,
                                           batch_size=16, seed=3, progress=False).losses)
        assert torch.equal(state, torch.random.get_rng_state())
    assert runs[0] == runs[1]
    other = train_image_classifier(_tiny_vit(), small_digits.images, small_digits.labels, max_steps=6, batch_size=16,
                                   seed=4, progress=False).losses
    assert other != runs[0]


def test_plain_module_epochs_eval_and_time_budget(small_digits):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
    result = train_image_classifier(model, small_digits.images, small_digits.labels, epochs=2, batch_size=64,
                                    progress=False, eval_images=small_digits.images[:50],
                                    eval_labels=small_digits.labels[:50])
    assert result.steps == 8 and result.stopped_by == "epochs" and result.epochs_done == 2.0
    assert result.accuracy == evaluate_image_classifier(model, small_digits.images[:50], small_digits.labels[:50])
    budget = train_image_classifier(model, small_digits.images, small_digits.labels, epochs=10_000, time_budget=0.2,
                                    batch_size=8, progress=False)
    assert budget.stopped_by == "time_budget" and budget.seconds >= 0.2
    capped = train_image_classifier(model, small_digits.images, small_digits.labels, epochs=1, max_steps=2,
                                    progress=False)
    assert capped.steps == 2 and capped.stopped_by == "max_steps"


def test_progress_bar_runs(small_digits, capsys):
    train_image_classifier(_tiny_vit(), small_digits.images, small_digits.labels, max_steps=2, batch_size=8,
                           progress=True)
    assert "examples/s" in capsys.readouterr().err


def test_bad_arguments(small_digits):
    images, labels = small_digits.images, small_digits.labels
    model = _tiny_vit()
    with pytest.raises(TypeError, match="Expected `model` to be a torch.nn.Module, but got function."):
        train_image_classifier(lambda x: x, images, labels)
    with pytest.raises(ValueError, match=r"Expected `labels` to have shape \(B,\) = \(256,\), but got \(255,\)."):
        train_image_classifier(model, images, labels[:-1])
    with pytest.raises(ValueError, match=r"Expected `images` to have shape \(B, 3, H, W\) with B > 0"):
        train_image_classifier(model, images[0], labels)
    with pytest.raises(TypeError, match="Expected `labels` to be an integer torch.Tensor, but got torch.float32."):
        train_image_classifier(model, images, labels.float())
    with pytest.raises(ValueError, match="Expected `eval_images` and `eval_labels` to be given together, but got only "
                                         "`eval_images`."):
        train_image_classifier(model, images, labels, eval_images=images)
    with pytest.raises(ValueError, match="Expected `max_steps` to be a positive integer, but got 0."):
        train_image_classifier(model, images, labels, max_steps=0)
    with pytest.raises(ValueError, match=r"Expected `time_budget` to lie in \(0, inf\], but got 0."):
        train_image_classifier(model, images, labels, time_budget=0)
    with pytest.raises(ValueError, match="Expected `patch` to divide `size` = 16, but got 5."):
        tiny_vit_classifier(16, 5)
    with pytest.raises(ValueError, match="Expected `hidden` to be a multiple of `heads` = 4, but got 30."):
        tiny_vit_classifier(16, 4, hidden=30, heads=4)
    with pytest.raises(ValueError, match="Expected `models` to name some of 'vit', 'vim', but got"):
        train_placed_digits_models("unused", models=("bert",))


def test_tiny_factories_are_seeded():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = tiny_vit_classifier(16, 4, 3, layers=1, hidden=8, heads=2), tiny_vit_classifier(16, 4, 3, layers=1,
                                                                                          hidden=8, heads=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.config._attn_implementation == "eager"
    vim_a, vim_b = tiny_vim_classifier(16, 4, 3, layers=1, hidden=8, state=2), tiny_vim_classifier(16, 4, 3, layers=1,
                                                                                                  hidden=8, state=2)
    assert all(torch.equal(p, q) for p, q in zip(vim_a.parameters(), vim_b.parameters()))
    assert torch.equal(state, torch.random.get_rng_state())
    assert vim_a(torch.zeros(2, 3, 16, 16)).shape == (2, 3)


# ---------------------------------------------------------------------------------------------- trained models


def test_trained_models_are_accurate_and_load(trained_vision_models, tmp_path):
    from attnlens.models import load_adapter

    models = trained_vision_models
    held_out = models.held_out
    for folder, spec, result in ((models.vit, str(models.vit), models.vit_result),
                                 (models.vim, f"vim={models.vim}", models.vim_result)):
        record = json.loads((folder / TRAINING_RECORD).read_text(encoding="utf-8"))
        assert record["accuracy"] == result.accuracy and record["steps"] == result.steps
        assert result.accuracy > 0.9, (spec, result)
        adapter = load_adapter(spec)
        predicted = adapter.predict(held_out.images).argmax(dim=-1)
        assert float((predicted == held_out.labels).float().mean()) > 0.9, spec
        assert adapter.grid == (4, 4)
    # The saved preprocessing is the identity on placed-digit PNGs: paths give the tensors' predictions.
    assert ImagePreprocessing.from_hf(models.vit) == ImagePreprocessing(size=(16, 16), resize_to=(16, 16),
                                                                          mean=(0.0,) * 3, std=(1.0,) * 3)
    written = write_placed_digits(tmp_path / "digits", 6, size=16, seed=2, split="test")
    paths = sorted(written.images.rglob("*.png"), key=lambda p: p.name)
    images = placed_digits(6, 16, seed=2, split="test").images
    for spec in (str(models.vit), f"vim={models.vim}"):
        adapter = load_adapter(spec)
        torch.testing.assert_close(adapter.predict([str(p) for p in paths]), adapter.predict(images))


def test_module_entry_point_refuses_bad_options(tmp_path, capsys):
    from attnlens.training.vision import main

    assert main(["--out", str(tmp_path / "models"), "--models", "bert"]) == 2
    assert "Expected `models` to name some of 'vit', 'vim'" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()
