"""The image study: batched curves against a per-image loop, the tiny trained ViT and Vim, files, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnlens.cli import main
from attnlens.datasets import write_placed_digits
from attnlens.experiments.image_maps import check_image_methods, image_maps
from attnlens.experiments.image_study import (
    ImageStudyConfig,
    baseline_images,
    deletion_insertion_curves,
    perturbation_curves,
    pixel_cells,
    run_image_study,
)
from attnlens.experiments.image_study_writers import IMAGE_STUDY_FILES
from attnlens.metrics import pointing_game, segmentation_scores
from attnlens.metrics.perturbation import PERTURBATION_FRACTIONS, removed_counts
from attnlens.models import load_adapter

# Measured on 1000 held-out placed digits (benchmarks/image_study.py, RESULTS.md): rollout's positive-perturbation
# AUC 0.196 (ViT, mask), 0.197 (ViT, remove), 0.120-0.203 (Vim) against a random map's 0.52-0.57; pointing
# (tolerance 0) 0.445 (ViT) / 0.43-0.55 (Vim) against a uniform map's ~0.05; mIoU 0.62 / 0.60 against a uniform
# map's ~0.45. Thresholds leave a margin for the 120-image subset used here.
POSITIVE_MAX = 0.32
POSITIVE_GAP = 0.15
POINTING_MIN = 0.25
MIOU_MIN = 0.55


@pytest.fixture(scope="module")
def digits(trained_vision_models, tmp_path_factory):
    """120 held-out placed digits written as an ImageFolder with masks."""
    root = tmp_path_factory.mktemp("image-study")
    return write_placed_digits(root / "digits", 120, trained_vision_models.size, seed=5, split="test")


def _loop_curves(adapter, pixels, maps, labels, target, mode, positions, cells, baseline, steps):
    """Obviously-correct reference: one image, one map, one step at a time."""
    batch, methods, patches = maps.shape
    counts = removed_counts(PERTURBATION_FRACTIONS, patches)
    out = {"positive": np.zeros((batch, methods, len(counts))), "negative": np.zeros((batch, methods, len(counts))),
           "deletion": np.zeros((batch, methods, steps + 1)), "insertion": np.zeros((batch, methods, steps + 1))}
    for b in range(batch):
        for m in range(methods):
            values = maps[b, m].tolist()
            for order in ("positive", "negative"):
                ranked = sorted(range(patches), key=lambda i: (-values[i] if order == "positive" else values[i], i))
                for s, count in enumerate(counts):
                    keep = torch.ones(1, adapter.num_tokens, dtype=torch.bool)
                    for patch in ranked[:count]:
                        keep[0, int(positions[patch])] = False
                    logits = adapter.perturb(pixels[b:b + 1], keep, mode=mode)
                    out[order][b, m, s] = float(torch.softmax(logits.double(), -1)[0, int(target[b])])
            ranked = sorted(range(patches), key=lambda i: (-values[i], i))
            for k in range(steps + 1):
                count = (k * patches + steps // 2) // steps
                chosen = torch.zeros(patches, dtype=torch.bool)
                chosen[ranked[:count]] = True
                for kind, replaced in (("deletion", chosen), ("insertion", ~chosen)):
                    where = replaced[cells].reshape(1, 1, *pixels.shape[-2:])
                    image = torch.where(where, baseline[b:b + 1], pixels[b:b + 1])
                    logits = adapter.predict(image)
                    out[kind][b, m, k] = float(torch.softmax(logits.double(), -1)[0, int(target[b])])
    return out


@pytest.mark.parametrize(("model", "mode"), [("vit", "mask"), ("vit", "remove"), ("vim", "remove")])
def test_batched_curves_equal_a_per_image_loop(trained_vision_models, model, mode):
    spec = str(trained_vision_models.vit) if model == "vit" else f"vim={trained_vision_models.vim}"
    adapter = load_adapter(spec)
    held_out = trained_vision_models.held_out
    images, labels = held_out.images[:3], held_out.labels[:3]
    variants = check_image_methods(adapter, ["rollout", "raw"])
    batch = image_maps(adapter, images, variants)
    maps = batch.maps.flatten(2).double()
    maps[1, 0] = 0.0  # a constant map: ties resolved by position in both
    probe = adapter.trace(images[:1], saliency=None)
    positions, grid = probe.patch_positions, tuple(probe.grid)
    cells = pixel_cells(tuple(images.shape[-2:]), grid)
    baseline = baseline_images(batch.pixel_values, "blur", adapter.preprocessing, grid)
    steps = 5
    found = perturbation_curves(adapter, batch.pixel_values, maps, labels, batch.target, batch.logits, mode=mode,
                                patch_positions=positions, batch_size=7)
    found.update(deletion_insertion_curves(adapter, batch.pixel_values, maps, batch.target, batch.logits,
                                           baseline=baseline, cells=cells, steps=steps, batch_size=5))
    expected = _loop_curves(adapter, batch.pixel_values, maps, labels, batch.target, mode, positions, cells, baseline,
                            steps)
    for kind in ("positive", "negative"):
        np.testing.assert_allclose(found[f"{kind}_probability"].numpy(), expected[kind], atol=1e-5, rtol=0)
    for kind in ("deletion", "insertion"):
        np.testing.assert_allclose(found[kind].numpy(), expected[kind], atol=1e-5, rtol=0)
    assert found["fractions"].tolist() == [(k * 16 + 2) // 5 / 16 for k in range(6)]


def _uniform_scores(masks_folder, config_size):
    masks = torch.stack([torch.from_numpy(np.array(Image.open(p))) > 0 for p in sorted(masks_folder.rglob("*.png"))])
    uniform = torch.ones(masks.shape, dtype=torch.float64)
    return float(pointing_game(uniform, masks, tolerance=0).mean()), float(
        segmentation_scores(uniform, masks)["miou"].mean())


@pytest.mark.parametrize(("model", "mode"), [("vit", "mask"), ("vit", "remove"), ("vim", "mask")])
def test_rollout_beats_random_and_uniform_maps_on_the_trained_models(trained_vision_models, digits, tmp_path, model,
                                                                     mode):
    spec = str(trained_vision_models.vit) if model == "vit" else f"vim={trained_vision_models.vim}"
    out = tmp_path / "study"
    summary = run_image_study(ImageStudyConfig(model=spec, data=str(digits.images), masks=str(digits.masks),
                                               out=str(out), methods=("rollout",),
                                               metrics=("positive", "pointing", "miou"), perturb=mode,
                                               tolerance=0.0, resamples=200))
    rollout, random = summary.table["rollout"], summary.table["random"]
    uniform_pointing, uniform_miou = _uniform_scores(digits.masks, trained_vision_models.size)
    assert rollout["positive"].mean <= POSITIVE_MAX, rollout["positive"]
    assert rollout["positive"].mean < random["positive"].mean - POSITIVE_GAP, (rollout["positive"], random["positive"])
    assert rollout["pointing"].mean >= POINTING_MIN and rollout["pointing"].mean > uniform_pointing + 0.15
    assert rollout["miou"].mean >= MIOU_MIN and rollout["miou"].mean > uniform_miou + 0.05
    assert random["positive"].wilcoxon_p_vs_rollout < 1e-3
    assert sorted(p.name for p in out.iterdir()) == sorted(IMAGE_STUDY_FILES)
    document = json.loads((out / "results.json").read_text())
    assert document["methods"] == ["rollout", "random"] and document["n_images"] == 120
    assert len(document["curves"]["positive"]["rollout"]) == len(PERTURBATION_FRACTIONS)
    assert (out / "per_image.csv").read_text().count("\n") == 121


def test_cli_on_a_csv_with_every_metric(trained_vision_models, digits, tmp_path, capsys):
    files = sorted(digits.images.rglob("*.png"))[:6]
    table = tmp_path / "list.csv"
    table.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    out = tmp_path / "out"
    code = main(["--quiet", "image-study", "--model", str(trained_vision_models.vit), "--data", str(table), "--out",
                 str(out), "--methods", "rollout,gae", "--steps", "4", "--baseline", "mean", "--batch-size", "5"])
    assert code == 0, capsys.readouterr().err
    document = json.loads((out / "results.json").read_text())
    assert document["metrics"] == ["positive", "negative", "positive_probability", "negative_probability",
                                   "deletion", "insertion"]
    assert document["methods"] == ["rollout", "gae", "random"] and document["n_images"] == 6
    assert "p=" in (out / "table.md").read_text() and (out / "curves.png").stat().st_size > 1000
    # with masks, the CSV's images must lie under its folder (the masks mirror their relative paths)
    code = main(["image-study", "--model", str(trained_vision_models.vit), "--data", str(table), "--masks",
                 str(digits.masks), "--out", str(tmp_path / "out2")])
    assert code == 2 and "Expected the images of `--data` to lie under its folder" in capsys.readouterr().err
    inside = digits.images / "list.csv"
    inside.write_text("".join(f"{p.relative_to(digits.images)},{p.parent.name}\n" for p in files))
    try:
        assert main(["--quiet", "image-study", "--model", str(trained_vision_models.vit), "--data", str(inside),
                     "--masks", str(digits.masks), "--out", str(tmp_path / "out3"), "--methods", "rollout",
                     "--metrics", "miou"]) == 0, capsys.readouterr().err
    finally:
        inside.unlink()
    document = json.loads((tmp_path / "out3" / "results.json").read_text())
    assert document["table"]["rollout"]["miou"]["mean"] > 0.5


def _bad_case(name, digits_root, tmp_path):
    """Copy the small data set and break it one way; return (data, masks)."""
    import shutil

    data, masks = tmp_path / "data", tmp_path / "data_masks"
    shutil.copytree(digits_root.images, data)
    shutil.copytree(digits_root.masks, masks)
    first = sorted(data.rglob("*.png"))[0]
    if name == "missing mask":
        (masks / first.relative_to(data)).unlink()
    elif name == "mask of another size":
        Image.new("L", (8, 8)).save(masks / first.relative_to(data))
    elif name == "empty class folder":
        (data / "zz").mkdir()
    elif name == "label outside the classes":
        (masks / first.parent.name).rename(masks / "12")
        first.parent.rename(data / "12")
    elif name == "non-image file":
        (first.parent / "notes.txt").write_text("not an image")
    elif name == "text named png":
        (first.parent / "broken.png").write_text("not an image")
        (masks / first.parent.name / "broken.png").write_text("not an image")
    return data, masks


@pytest.mark.parametrize(("name", "match"), [
    ("missing mask", "Expected `--masks` to hold a mask for every image"),
    ("mask of another size", "Expected every mask to have its image's size 16×16"),
    ("empty class folder", "Expected every class folder of `--data` to hold images"),
    ("label outside the classes", "Expected every label of `--data` to be one of the model's 10 classes"),
    ("non-image file", "Expected every class folder of `--data` to hold only image files"),
    ("text named png", "Expected every file of `--data` to be an image Pillow can read"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(trained_vision_models, tmp_path, capsys, name, match):
    small = write_placed_digits(tmp_path / "small", 8, trained_vision_models.size, seed=1, split="test")
    data, masks = _bad_case(name, small, tmp_path)
    out = tmp_path / "out"
    code = main(["image-study", "--model", str(trained_vision_models.vit), "--data", str(data), "--masks", str(masks),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and match in err, err
    assert not out.exists()


def test_bad_options_exit_2(trained_vision_models, digits, tmp_path, capsys):
    base = ["image-study", "--model", str(trained_vision_models.vit), "--data", str(digits.images), "--out",
            str(tmp_path / "out")]
    for extra, match in ((["--metrics", "miou"], "Expected `--masks` to be given for the metric 'miou'"),
                         (["--steps", "17", "--limit", "2"], "Expected `--steps` to be at most the model's 16 patches"),
                         (["--batch-size", "0"], "Expected `--batch-size` to be a positive integer"),
                         (["--methods", "mamba_attr"], "Expected every entry of `--methods` to be a method")):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err, err
        assert not (tmp_path / "out").exists()


def test_baselines_by_hand():
    from attnlens.datasets import ImagePreprocessing

    pre = ImagePreprocessing(size=(8, 8), resize_to=(8, 8), mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    pixels = torch.arange(2 * 3 * 8 * 8, dtype=torch.float64).reshape(2, 3, 8, 8) / 100
    zeros = baseline_images(pixels, "zeros", pre, (2, 2))
    assert torch.equal(zeros[:, :, 3, 5], torch.tensor([[-1.0, -1.0, 0.0]] * 2, dtype=torch.float64))  # raw black
    mean = baseline_images(pixels, "mean", pre, (2, 2))
    torch.testing.assert_close(mean[:, :, 0, 0], pixels.mean(dim=(-2, -1)), atol=1e-12, rtol=0)
    constant = torch.full((1, 3, 8, 8), 0.3, dtype=torch.float64)
    torch.testing.assert_close(baseline_images(constant, "blur", pre, (2, 2)), constant, atol=1e-12, rtol=0)
    blurred = baseline_images(pixels, "blur", pre, (2, 2))
    assert blurred.shape == pixels.shape and float(blurred.std()) < float(pixels.std())


def test_shards_merge_to_the_unsharded_results(trained_vision_models, digits, tmp_path, capsys):
    """Three --shard runs and a --merge write the same results.json and per_image.csv as one run."""
    common = ["--quiet", "image-study", "--model", f"vim={trained_vision_models.vim}", "--data", str(digits.images),
              "--masks", str(digits.masks), "--methods", "rollout,mamba_attr", "--steps", "4", "--limit", "10",
              "--tolerance", "0"]
    whole, merged = tmp_path / "whole", tmp_path / "merged"
    assert main([*common, "--out", str(whole)]) == 0, capsys.readouterr().err
    for index in (2, 0, 1):  # any order
        assert main([*common, "--out", str(merged), "--shard", f"{index}/3"]) == 0, capsys.readouterr().err
        assert not merged.exists()
    assert sorted(p.name for p in (tmp_path / "merged.shards").iterdir()) == [
        "image-shard-0-of-3.npz", "image-shard-1-of-3.npz", "image-shard-2-of-3.npz"]
    assert main([*common, "--out", str(merged), "--merge"]) == 0, capsys.readouterr().err
    # equal up to float32 round-off: the model sees the images in other batches
    got, expected = (json.loads((folder / "results.json").read_text()) for folder in (merged, whole))
    assert got["methods"] == expected["methods"] and got["n_images"] == expected["n_images"] == 10
    for method, row in expected["table"].items():
        for metric, entry in row.items():
            assert got["table"][method][metric]["mean"] == pytest.approx(entry["mean"], abs=1e-6)
            assert got["table"][method][metric]["ci95"] == pytest.approx(entry["ci95"], abs=1e-6)
    merged_rows = list(csv.reader((merged / "per_image.csv").open()))
    whole_rows = list(csv.reader((whole / "per_image.csv").open()))
    assert [r[:3] for r in merged_rows] == [r[:3] for r in whole_rows]  # same images, methods, order
    assert not (tmp_path / "merged.shards").exists()


def test_shard_errors_exit_2(trained_vision_models, digits, tmp_path, capsys):
    common = ["image-study", "--model", str(trained_vision_models.vit), "--data", str(digits.images), "--methods",
              "rollout", "--steps", "4", "--limit", "4"]
    out = tmp_path / "out"
    assert main([*common, "--out", str(out), "--shard", "3/3"]) == 2
    assert "Expected `--shard` to be i/N with 0 <= i < N, but got '3/3'" in capsys.readouterr().err
    assert main([*common, "--out", str(out), "--merge"]) == 2
    assert "Expected `--out` to have shard files in" in capsys.readouterr().err
    assert main(["--quiet", *common, "--out", str(out), "--shard", "0/2"]) == 0
    assert main([*common, "--out", str(out), "--merge"]) == 2
    err = capsys.readouterr().err
    assert "Expected all 2 shards in" in err and "shard(s) 1/2 are missing" in err
    assert main(["--quiet", *common[:-2], "--limit", "5", "--out", str(out), "--shard", "1/2"]) == 0
    assert main([*common, "--out", str(out), "--merge"]) == 2
    assert "differs in limit" in capsys.readouterr().err
    assert not out.exists()


def test_report_is_one_self_contained_page(trained_vision_models, digits, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--quiet", "image-study", "--model", str(trained_vision_models.vit), "--data", str(digits.images),
                 "--methods", "rollout,gae", "--steps", "4", "--limit", "6", "--out", str(out), "--report"]) == 0, \
        capsys.readouterr().err
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    for name in ("rollout", "gae", "random", "positive", "insertion"):
        assert name in page
