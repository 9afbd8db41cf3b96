"""The image faithfulness study on placed digits, for the tiny ViT and Vision Mamba, and its speed.

Trains the two models of :func:`attnlens.training.vision.train_placed_digits_models` (or reads them from
``--models DIR``), writes held-out placed digits (digits of ``split="test"``, never seen in training)
as an ImageFolder with masks, and runs :func:`attnlens.experiments.image_study.run_image_study`
(``attnlens image-study``) on them: raw attention, rollout, selective rollout (threshold 0.5),
diffused rollout (α 0.9) and GAE (ViT) or Mamba-Attr (Vim), plus the random map; positive/negative
perturbation AUC through the adapter's ``perturb`` (``mask`` and ``remove``), deletion/insertion AUC
(black baseline, one patch per step), pointing game (tolerance 0: the paper's 15 px would cover most
of a 16 px canvas) and mIoU.

Speed (``--speed``): images per second of the whole study (reading, traces, maps, every perturbed
forward, summary and files; the imports and a first model load done before) against the floor, the
model's plain batched forward (``adapter.predict``) over the same number of perturbed images, batch
for batch, measured before and after the study and averaged (the CPU is shared).

Writes ``benchmarks/results/image_study.md`` and ``.json`` (``--speed``: ``image_study_speed.json``).

    python benchmarks/image_study.py [--models DIR] [--examples 1000] [--threads 1] [--speed]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from attnlens.datasets import write_placed_digits
from attnlens.experiments.image_study import ImageStudyConfig, run_image_study
from attnlens.metrics.perturbation import PERTURBATION_FRACTIONS, removed_counts
from attnlens.models import load_adapter

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("positive", "negative", "deletion", "insertion", "pointing", "miou")
COMMON = ("raw", "rollout", "selective", "diffused_rollout")


def forward_count(images: int, methods: int, patches: int, steps: int) -> int:
    """Perturbed images the study runs: per image and map, 9 positive + 9 negative removals, steps - 1
    deletions and insertions each, and one all-baseline image per image."""
    perturbation = sum(1 for c in removed_counts(PERTURBATION_FRACTIONS, patches) if c > 0)
    inner = sum(1 for k in range(1, steps) if 0 < (k * patches + steps // 2) // steps < patches)
    return images * (methods * (2 * perturbation + 2 * inner) + 1)


def floor_seconds(adapter, pixels: torch.Tensor, count: int, batch: int) -> float:
    """Seconds of `count` plain forward passes of `pixels`-shaped images in batches of `batch`."""
    chunk = pixels[:1].expand(batch, *pixels.shape[1:]).contiguous()
    adapter.predict(chunk)  # warm-up
    started = time.perf_counter()
    done = 0
    while done < count:
        size = min(batch, count - done)
        adapter.predict(chunk[:size])
        done += size
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="folder with vit/ and vim/ (trained into it when missing)")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7, help="seed of the held-out draws")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed", action="store_true", help="only the speed against the forward-pass floor")
    parser.add_argument("--only", choices=("ViT", "Vim"), default=None, help="with --speed: one model only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from attnlens.training.vision import PlacedDigitsRecipe, train_placed_digits_models

    recipe = PlacedDigitsRecipe()
    folder = Path(args.models) if args.models else Path(tempfile.mkdtemp(prefix="placed-digits-"))
    if not (folder / "vit").is_dir() or not (folder / "vim").is_dir():
        train_placed_digits_models(folder, recipe=recipe, progress=False)
    work = Path(tempfile.mkdtemp(prefix="image-study-"))
    data = write_placed_digits(work / "digits", args.examples, recipe.size, args.seed, split="test")
    runs = [("ViT", str(folder / "vit"), "gae", "mask"), ("ViT", str(folder / "vit"), "gae", "remove"),
            ("Vim", f"vim={folder / 'vim'}", "mamba_attr", "mask"),
            ("Vim", f"vim={folder / 'vim'}", "mamba_attr", "remove")]
    if args.speed:
        speed = {}
        for model, spec, extra, mode in [run for run in runs if args.only in (None, run[0])]:
            config = ImageStudyConfig(model=spec, data=str(data.images), masks=str(data.masks),
                                      out=str(work / f"speed-{model}-{mode}"), methods=COMMON + (extra,),
                                      metrics=METRICS, perturb=mode, steps=16, tolerance=0.0, threshold=0.5,
                                      batch_size=args.batch, resamples=200)
            adapter = load_adapter(spec)  # imports and the first load outside the timing (a fixed cost, ~4 s)
            pixels = adapter.pixel_values([sorted(data.images.rglob("*.png"))[0]])
            count = forward_count(args.examples, len(COMMON) + 2, 16, 16)
            before = floor_seconds(adapter, pixels, count, args.batch)
            started = time.perf_counter()
            summary = run_image_study(config)
            seconds = time.perf_counter() - started
            assert count == forward_count(summary.n_images, len(summary.methods), 16, 16)
            floor = (before + floor_seconds(adapter, pixels, count, args.batch)) / 2  # before and after: CPU drift
            speed[f"{model} {mode}"] = {"images": summary.n_images, "seconds": seconds,
                                        "images_per_second": summary.n_images / seconds,
                                        "perturbed_forwards": count, "floor_seconds": floor,
                                        "floor_images_per_second": summary.n_images / floor, "ratio": seconds / floor}
            print(model, mode, json.dumps(speed[f"{model} {mode}"]), flush=True)
        RESULTS.mkdir(exist_ok=True)
        name = "image_study_speed.json" if args.only is None else f"image_study_speed_{args.only.lower()}.json"
        (RESULTS / name).write_text(json.dumps({"threads": args.threads, "batch": args.batch,
                                                "examples": args.examples, "runs": speed}, indent=2) + "\n")
        return
    results, lines = {}, []
    for model, spec, extra, mode in runs:
        config = ImageStudyConfig(model=spec, data=str(data.images), masks=str(data.masks),
                                  out=str(work / f"{model}-{mode}"), methods=COMMON + (extra,), metrics=METRICS,
                                  perturb=mode, steps=16, tolerance=0.0, threshold=0.5, batch_size=args.batch)
        started = time.perf_counter()
        summary = run_image_study(config)
        seconds = time.perf_counter() - started
        results[f"{model} {mode}"] = {"accuracy": summary.accuracy, "seconds": seconds,
                                      "table": summary.to_json()["table"]}
        lines.append(f"### {model}, perturbation by {mode} (accuracy {summary.accuracy:.3f}, {seconds:.0f} s)\n")
        lines.append((Path(config.out) / "table.md").read_text().split("\n\n", 1)[1])
        print(lines[-2] + lines[-1], flush=True)
    header = (f"Held-out placed digits: {args.examples} images of {recipe.size} px (split='test', seed {args.seed}); "
              f"models of PlacedDigitsRecipe(); {args.threads} torch thread(s). Mean per image [bootstrap 95 % "
              f"interval of the mean] and the Wilcoxon p-value against rollout; deletion/insertion with the black "
              f"baseline, one patch per step; pointing tolerance 0.\n\n")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "image_study.md").write_text(header + "\n".join(lines), encoding="utf-8")
    (RESULTS / "image_study.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
