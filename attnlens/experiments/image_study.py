"""The image faithfulness study: perturbation AUC, deletion/insertion, pointing game and segmentation of every method.

``attnlens image-study`` is this module's :func:`run_image_study`. For each batch of images it takes
every method's patch map from one trace (:func:`attnlens.experiments.image_maps.image_maps`) plus a
seeded uniformly random map (the ``random`` row, the chance level), then runs the model on the
perturbed images — all perturbed versions of the batch stacked and run in batches of `batch_size`:

* **positive / negative perturbation** (Chefer et al., CVPR 2021): 0 %, 10 %, ..., 90 % of the patches
  removed most / least relevant first through the adapter's ``perturb`` — ``"mask"`` sets the
  patch's pixels to 0 in normalised space (the dataset's mean colour), ``"remove"`` drops the patch
  tokens (ViT, DeiT, Vision Mamba all allow it); the curves are the top-1 hit against the label and
  the probability of the explained class (the prediction);
* **deletion / insertion** (Petsiuk et al., BMVC 2018): the patches' pixels replaced by a baseline
  (``zeros``: black; ``mean``: the image's mean colour per channel; ``blur``: a Gaussian blur of the
  image with σ half a patch side), most relevant first, in `steps` steps, in the normalised space of
  the adapter's preprocessing, then the plain forward pass; the curve is the explained class's
  probability. A pixel belongs to the patch-map cell ``floor(y · rows / H), floor(x · columns / W)``
  (the patch itself for non-overlapping ViT patches);
* **pointing game** (Zhang et al., ECCV 2016) and **segmentation** (Chefer et al.'s mIoU, pixel
  accuracy, AP) of the bilinearly upsampled map against the mask, when masks are given.

Per image and method it keeps one score per metric (the per-image AUC; the mIoU of the image), then
summarises: mean, a percentile-bootstrap 95 % interval of the mean (paired resamples across
methods), median, and the two-sided Wilcoxon signed-rank p-value of each method against rollout on
the same images. Writers read only that summary (:mod:`attnlens.experiments.image_study_writers`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice, _check_integer, _check_number
from attnlens._options import option
from attnlens.methods.patch_map import upsample_patch_map
from attnlens.methods.registry import list_methods
from attnlens.metrics.localization import pointing_game, segmentation_scores
from attnlens.metrics.perturbation import (
    PERTURBATION_FRACTIONS,
    deletion_auc,
    insertion_auc,
    perturbation_auc,
    perturbation_order,
    removed_counts,
)

METRICS = ("positive", "negative", "positive_probability", "negative_probability", "deletion", "insertion",
           "pointing", "miou", "pixel_accuracy", "average_precision")
"""Per-image scores: perturbation AUC of the top-1 hit (``positive``: lower is better, ``negative``: higher is
better) and of the explained class's probability; deletion (lower is better) and insertion (higher is better)
AUC; pointing game, mIoU, pixel accuracy and average precision against the masks (higher is better)."""
LOWER_IS_BETTER = frozenset({"positive", "positive_probability", "deletion"})
MASK_METRICS = frozenset({"pointing", "miou", "pixel_accuracy", "average_precision"})
CURVES = ("positive", "negative", "deletion", "insertion")
BASELINES = ("zeros", "blur", "mean")
PERTURB_MODES = ("mask", "remove")
RANDOM = "random"
REFERENCE = "rollout"


# --- reading the data -------------------------------------------------------------------------------------------
class ImageDataset(NamedTuple):
    """Image files with their class names and, optionally, their masks.

    Attributes:
        paths: the image files, in order.
        labels: each image's class as written (a folder name or the CSV's label).
        masks: each image's mask file, or None without masks.
        ids: each image's path relative to the data folder (or as the CSV gives it), posix style.
    """

    paths: list[Path]
    labels: list[str]
    masks: list[Path] | None
    ids: list[str]


def _image_size(path: Path, name: str) -> tuple[int, int]:
    """`(width, height)` from the header, or a one-line error naming `name` and the file."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with Image.open(path) as opened:
            return opened.size
    except UnidentifiedImageError:
        raise ArgumentError(f"Expected every file of `{name}` to be an image Pillow can read, but {path} is not an "
                            f"image.", name) from None
    except OSError as err:
        raise ArgumentError(f"Expected every file of `{name}` to be a readable image, but {path} is not "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}).", name) from None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _read_folder(root: Path) -> tuple[list[Path], list[str], list[str]]:
    from attnlens.datasets.images import IMAGE_EXTENSIONS  # noqa: PLC0415

    classes = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not classes:
        raise ArgumentError(f"Expected `data` to be an image folder with one sub-folder per class (or a CSV of "
                            f"path,label), but {root} has no sub-folder.", "data")
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and _visible(p))
    if stray:
        raise ArgumentError(f"Expected `data` to hold only class sub-folders, but {root} also holds the file "
                            f"{stray[0]}.", "data")
    paths, labels, ids = [], [], []
    for folder in classes:
        files = sorted(p for p in folder.iterdir() if _visible(p))
        if not files:
            raise ArgumentError(f"Expected every class folder of `data` to hold images, but {folder} is empty.", "data")
        for file in files:
            if not file.is_file() or file.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ArgumentError(f"Expected every class folder of `data` to hold only image files "
                                    f"({', '.join(IMAGE_EXTENSIONS)}), but got {file}.", "data")
            paths.append(file)
            labels.append(folder.name)
            ids.append(file.relative_to(root).as_posix())
    return paths, labels, ids


def _read_csv(file: Path) -> tuple[list[Path], list[str], list[str]]:
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ArgumentError(f"Expected `data` to be a readable CSV of path,label, but {file} is not ({err}).",
                            "data") from None
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    if not rows:
        raise ArgumentError(f"Expected `data` to list at least one image, but {file} lists none.", "data")
    paths, labels, ids = [], [], []
    for number, row in enumerate(rows, start=1):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise ArgumentError(f"Expected every row of `data` to be path,label, but row {number} of {file} is "
                                f"{','.join(row)!r}.", "data")
        path = Path(row[0].strip()).expanduser()
        path = path if path.is_absolute() else file.parent / path
        if not path.is_file():
            raise ArgumentError(f"Expected every image of `data` to exist, but {path} (row {number}) does not.",
                                "data")
        paths.append(path)
        labels.append(row[1].strip())
        try:  # the id (and the mask's relative path) is relative to the CSV's folder where possible
            ids.append(path.resolve().relative_to(file.parent.resolve()).as_posix())
        except ValueError:
            ids.append(path.as_posix())
    return paths, labels, ids


def read_image_dataset(data: str | os.PathLike, *, masks: str | os.PathLike | None = None,
                       limit: int | None = None) -> ImageDataset:
    """Find the images of an ImageFolder (one sub-folder per class) or a CSV of ``path,label``, and their masks.

    Chefer et al. 2021 (CVPR) evaluate maps against same-named binary masks (ImageNet-Segmentation).

    Masks are same-named PNGs: the image ``data/<class>/<name>.<ext>`` (or the CSV's relative path)
    has the mask ``masks/<class>/<name>.png``, non-zero on the object, of the image's size. Every
    image and mask header is read here, so a bad file is reported before the model runs.

    Args:
        data: the image folder or CSV file (relative paths in it are relative to its folder).
        masks: the mask folder, or None.
        limit: keep the first `limit` images (in sorted order), or None for all.

    Returns:
        An :class:`ImageDataset`.

    Raises:
        ValueError: in one line, on a missing folder or file, a file that is not an image, an empty
            class folder, a missing mask or one of another size.
    """
    limit = _check_integer(limit, "limit", low=1, allow_none=True, description="a positive integer")
    root = Path(data).expanduser()
    if not root.exists():
        raise ArgumentError(f"Expected `data` to be an image folder or a CSV of path,label, but {root} does not "
                            f"exist.", "data")
    paths, labels, ids = _read_folder(root) if root.is_dir() else _read_csv(root)
    if limit is not None:
        paths, labels, ids = paths[:limit], labels[:limit], ids[:limit]
    sizes = [_image_size(path, "data") for path in paths]
    mask_paths = None
    if masks is not None:
        mask_root = Path(masks).expanduser()
        if not mask_root.is_dir():
            raise ArgumentError(f"Expected `masks` to be a folder of same-named PNG masks, but {mask_root} is not a "
                                f"folder.", "masks")
        mask_paths = []
        for identifier, size in zip(ids, sizes):
            if Path(identifier).is_absolute():
                raise ArgumentError(f"Expected the images of `data` to lie under its folder when `masks` is given "
                                    f"(masks mirror their relative paths), but {identifier} does not.", "data")
            mask = mask_root / Path(identifier).with_suffix(".png")
            if not mask.is_file():
                raise ArgumentError(f"Expected `masks` to hold a mask for every image, but {mask} (for {identifier}) "
                                    f"does not exist.", "masks")
            mask_size = _image_size(mask, "masks")
            if mask_size != size:
                raise ArgumentError(f"Expected every mask to have its image's size {size[0]}×{size[1]}, but {mask} is "
                                    f"{mask_size[0]}×{mask_size[1]}.", "masks")
            mask_paths.append(mask)
    return ImageDataset(paths, labels, mask_paths, ids)


def class_indices(adapter: Any, labels: Sequence[str]) -> list[int]:
    """Each label as one of the model's class indices (a class name or a digit string, as
    :meth:`~attnlens.models.base.Adapter.class_index` reads it); `(N,)` ints.

    Raises:
        ValueError: naming `data` on a label outside the model's classes.
    """
    cache: dict[str, int] = {}
    for label in labels:
        if label not in cache:
            try:
                index = adapter.class_index(label)
            except (ValueError, TypeError):
                index = None
            if index is None or not 0 <= int(index) < adapter.num_classes:
                shown = ", ".join(adapter.label(i) for i in range(min(adapter.num_classes, 10)))
                more = ", ..." if adapter.num_classes > 10 else ""
                raise ArgumentError(f"Expected every label of `data` to be one of the model's {adapter.num_classes} "
                                    f"classes ({shown}{more}) or its index, but got {label!r}.", "data")
            cache[label] = int(index)
    return [cache[label] for label in labels]


def load_masks(paths: Sequence[Path], preprocessing: Any) -> Tensor:
    """`(B, H, W)` bool masks at the model's input size: the preprocessing's resize and crop with
    nearest-neighbour resampling, non-zero = object (Chefer et al. 2021, CVPR, segmentation masks)."""
    from PIL import Image  # noqa: PLC0415

    geometry = dataclasses.replace(preprocessing, resample="nearest", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    pictures = []
    for path in paths:
        with Image.open(path) as opened:
            pictures.append(opened.convert("L").convert("RGB"))
    return geometry(pictures)[:, 0] > 0


# --- perturbing ---------------------------------------------------------------------------------------------------
def pixel_cells(size: tuple[int, int], grid: tuple[int, int], *, device: torch.device | str = "cpu") -> Tensor:
    """`(H·W,)` long: the row-major patch-map cell of each pixel, ``floor(y·rows/H)·columns + floor(x·columns/W)``
    (ViT patches, Dosovitskiy et al. 2021, ICLR, when H = rows · patch).

    Example:
        >>> pixel_cells((4, 4), (2, 2)).reshape(4, 4)[:, 1:3]
        tensor([[0, 1],
                [0, 1],
                [2, 3],
                [2, 3]])
    """
    height, width = size
    rows, columns = grid
    row = torch.div(torch.arange(height, device=device) * rows, height, rounding_mode="floor")
    column = torch.div(torch.arange(width, device=device) * columns, width, rounding_mode="floor")
    return (row[:, None] * columns + column[None, :]).reshape(-1)


def baseline_images(pixels: Tensor, baseline: str, preprocessing: Any, grid: tuple[int, int]) -> Tensor:
    """`(B, 3, H, W)` the baseline each patch is replaced by, in normalised space (Petsiuk et al. 2018, BMVC:
    RISE deletes to zeros and inserts onto a blur).

    ``zeros``: black (raw 0, normalised ``-mean/std``); ``mean``: each image's mean colour per channel;
    ``blur``: a Gaussian blur of the image, σ = half a patch side (H / rows / 2 pixels), replicated borders.
    """
    if baseline == "zeros":
        mean = torch.tensor(preprocessing.mean, dtype=pixels.dtype, device=pixels.device)
        std = torch.tensor(preprocessing.std, dtype=pixels.dtype, device=pixels.device)
        return ((0 - mean) / std)[None, :, None, None].expand_as(pixels).clone()
    if baseline == "mean":
        return pixels.mean(dim=(-2, -1), keepdim=True).expand_as(pixels).clone()
    sigma = max(pixels.shape[-2] / grid[0], pixels.shape[-1] / grid[1]) / 2
    radius = max(1, int(math.ceil(2 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=pixels.dtype, device=pixels.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = pixels.shape[1]
    padded = F.pad(pixels, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def perturbation_curves(adapter: Any, pixels: Tensor, maps: Tensor, labels: Tensor, target: Tensor, logits: Tensor, *,
                        mode: str, patch_positions: Tensor, batch_size: int,
                        fractions: Sequence[float] = PERTURBATION_FRACTIONS,
                        orders: Sequence[str] = ("positive", "negative")) -> dict[str, Tensor]:
    """Chefer et al.'s perturbation curves of every map, through ``adapter.perturb``, all variants in batches.

    Chefer, Gur & Wolf 2021 (CVPR), Sec. 4: at each fraction, ``floor(fraction · P)`` patches removed
    most relevant first (``positive``) or least relevant first (``negative``). The unperturbed step
    reuses `logits`.

    Args:
        adapter: an image adapter.
        pixels: `(B, 3, H, W)` the model's input.
        maps: `(B, M, P)` relevance per patch, row-major on the grid.
        labels: `(B,)` long gold classes (for the top-1 hit).
        target: `(B,)` long explained classes (for the probability).
        logits: `(B, C)` the model's logits on `pixels`.
        mode: ``"mask"`` or ``"remove"`` (see the adapter's ``perturb``).
        patch_positions: `(P,)` the token position of each patch.
        batch_size: perturbed images per forward pass.
        fractions: the S fractions.
        orders: which orders.

    Returns:
        ``{"<order>": (B, M, S) hits, "<order>_probability": (B, M, S) probabilities}`` in float64.
    """
    batch, methods, patches = maps.shape
    counts = removed_counts(fractions, patches)
    steps = [s for s, count in enumerate(counts) if count > 0]
    tokens = int(adapter.num_tokens)
    positions = patch_positions.to(pixels.device)
    base_probability = torch.softmax(logits.double(), dim=-1).gather(1, target[:, None])[:, 0]
    base_hit = (logits.argmax(dim=-1) == labels).double()
    out = {}
    flat = maps.reshape(batch * methods, patches)
    image_of_row = torch.arange(batch, device=pixels.device).repeat_interleave(methods)
    for order in orders:
        ranked = perturbation_order(flat, order=order)
        hits = base_hit[:, None, None].repeat(1, methods, len(counts))
        probabilities = base_probability[:, None, None].repeat(1, methods, len(counts))
        # rows: (step, image, method), step-major so one forward batch mostly holds one count of removed patches
        total = len(steps) * batch * methods
        for start, end in _chunks(total, batch_size):
            rows = torch.arange(start, end, device=pixels.device)
            step_index, row = torch.div(rows, batch * methods, rounding_mode="floor"), rows % (batch * methods)
            step_counts = torch.tensor([counts[s] for s in steps], device=pixels.device)[step_index]
            rank = torch.arange(patches, device=pixels.device)
            removed_rank = rank[None, :] < step_counts[:, None]  # (R, P): the first `count` ranked patches
            removed = torch.zeros(len(rows), patches, dtype=torch.bool, device=pixels.device)
            removed.scatter_(1, ranked[row], removed_rank)
            keep = torch.ones(len(rows), tokens, dtype=torch.bool, device=pixels.device)
            keep[:, positions] = ~removed
            images = image_of_row[row]
            out_logits = adapter.perturb(pixels[images], keep, mode=mode).double()
            step_of_row = torch.tensor(steps, device=pixels.device)[step_index]
            method_of_row = row % methods
            hits[images, method_of_row, step_of_row] = (out_logits.argmax(dim=-1) == labels[images]).double()
            probabilities[images, method_of_row, step_of_row] = torch.softmax(out_logits, dim=-1).gather(
                1, target[images][:, None])[:, 0]
        out[order] = hits
        out[f"{order}_probability"] = probabilities
    return out


def deletion_insertion_curves(adapter: Any, pixels: Tensor, maps: Tensor, target: Tensor, logits: Tensor, *,
                              baseline: Tensor, cells: Tensor, steps: int, batch_size: int,
                              kinds: Sequence[str] = ("deletion", "insertion")) -> dict[str, Tensor]:
    """RISE deletion and insertion curves of every map: patch pixels replaced by (or restored from) a baseline,
    most relevant first, then ``adapter.predict``, all variants in batches.

    Petsiuk, Das & Saenko 2018 (BMVC), Sec. 4.1. Step k of `steps` replaces (deletion) or restores
    (insertion) the ``round(k · P / steps)`` most relevant patches; the intact image reuses `logits`,
    the all-baseline image runs once per image.

    Args:
        adapter: an image adapter.
        pixels: `(B, 3, H, W)` the model's input.
        maps: `(B, M, P)` relevance per patch.
        target: `(B,)` explained classes.
        logits: `(B, C)` the model's logits on `pixels`.
        baseline: `(B, 3, H, W)` what replaced pixels become (:func:`baseline_images`).
        cells: `(H·W,)` the patch of each pixel (:func:`pixel_cells`).
        steps: the number of steps (the curves have steps + 1 points).
        batch_size: perturbed images per forward pass.
        kinds: which curves.

    Returns:
        ``{"deletion": (B, M, steps + 1), "insertion": (B, M, steps + 1)}`` float64 probabilities, and
        ``"fractions"`` `(steps + 1,)` the fraction of patches replaced (deletion) or restored (insertion).
    """
    batch, methods, patches = maps.shape
    device = pixels.device
    counts = [(k * patches + steps // 2) // steps for k in range(steps + 1)]
    base = torch.softmax(logits.double(), dim=-1).gather(1, target[:, None])[:, 0]
    empty = torch.cat([adapter.predict(baseline[s:e]) for s, e in _chunks(batch, batch_size)]).double()
    empty = torch.softmax(empty, dim=-1).gather(1, target[:, None])[:, 0]
    ranked = perturbation_order(maps.reshape(batch * methods, patches), order="positive")
    image_of_row = torch.arange(batch, device=device).repeat_interleave(methods)
    inner = [k for k in range(1, steps) if 0 < counts[k] < patches]
    height, width = pixels.shape[-2:]
    out: dict[str, Tensor] = {"fractions": torch.tensor(counts, dtype=torch.float64) / patches}
    for kind in kinds:
        curve = torch.empty(batch, methods, steps + 1, dtype=torch.float64, device=device)
        for k in range(steps + 1):
            full = counts[k] == 0 if kind == "deletion" else counts[k] == patches
            gone = counts[k] == patches if kind == "deletion" else counts[k] == 0
            if full:
                curve[:, :, k] = base[:, None]
            elif gone:
                curve[:, :, k] = empty[:, None]
        total = len(inner) * batch * methods
        for start, end in _chunks(total, batch_size):
            rows = torch.arange(start, end, device=device)
            step_index, row = torch.div(rows, batch * methods, rounding_mode="floor"), rows % (batch * methods)
            step_of_row = torch.tensor(inner, device=device)[step_index]
            count = torch.tensor(counts, device=device)[step_of_row]
            first = torch.arange(patches, device=device)[None, :] < count[:, None]
            chosen = torch.zeros(len(rows), patches, dtype=torch.bool, device=device)
            chosen.scatter_(1, ranked[row], first)  # the most relevant `count` patches
            replaced = chosen if kind == "deletion" else ~chosen
            pixel_replaced = replaced[:, cells].reshape(len(rows), 1, height, width)
            images = image_of_row[row]
            perturbed = torch.where(pixel_replaced, baseline[images], pixels[images])
            probability = torch.softmax(adapter.predict(perturbed).double(), dim=-1).gather(
                1, target[images][:, None])[:, 0]
            curve[images, row % methods, step_of_row] = probability
        out[kind] = curve
    return out


# --- the study ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageStudyConfig:
    """Options of ``attnlens image-study``; each field is a command-line option (see :func:`run_image_study`)."""

    model: str = field(metadata=option("a Hugging Face ViT/DeiT id or folder, vim-tiny|vim-small|vim-tiny-stride8|"
                                       "vim-small-stride8=FILE.pth, or vim=DIR", metavar="SPEC"))
    data: str = field(metadata=option("an ImageFolder (one sub-folder per class, named by the model's class name or "
                                      "index) or a CSV of path,label", metavar="DIR|CSV"))
    out: str = field(metadata=option("output folder (new or empty; written atomically)", metavar="DIR"))
    masks: str | None = field(default=None, metadata=option(
        "folder of same-named PNG object masks (<class>/<name>.png, non-zero on the object); needed by pointing, "
        "miou, pixel_accuracy, average_precision", metavar="DIR"))
    methods: tuple[str, ...] | None = field(default=None, metadata=option(
        "registered methods (default: raw, rollout, diffused_rollout and mamba_attr for Vision Mamba or gae for "
        "ViT/DeiT); a seeded random map is always added as the chance row", choices=list_methods))
    metrics: tuple[str, ...] | None = field(default=None, metadata=option(
        "scores per image (default: all; those needing masks only with --masks)", choices=METRICS))
    perturb: str = field(default="mask", metadata=option(
        "how positive/negative perturbation removes a patch: its pixels set to the dataset mean (mask) or its token "
        "dropped (remove)", choices=PERTURB_MODES))
    baseline: str = field(default="zeros", metadata=option(
        "what deletion/insertion replaces a patch's pixels by: black, a blur of the image, or its mean colour",
        choices=BASELINES))
    steps: int = field(default=16, metadata=option("deletion/insertion steps (at most the number of patches)"))
    tolerance: float = field(default=15.0, metadata=option("pointing-game tolerance in pixels of the model input"))
    alpha: float = field(default=0.9, metadata=option("network-diffusion strength in [0, 1) for diffused methods"))
    threshold: float | None = field(default=None, metadata=option(
        "selective rollout's threshold (default: the method's own)"))
    limit: int | None = field(default=None, metadata=option("use the first N images (sorted)", metavar="N"))
    batch_size: int = field(default=64, metadata=option("images per trace and perturbed images per forward pass"))
    device: str = field(default="cpu", metadata=option("where the model runs", choices=("cpu", "cuda")))
    seed: int = field(default=0, metadata=option("seed of the random map and the bootstrap"))
    resamples: int = field(default=2000, metadata=option("bootstrap resamples of the 95 % intervals"))
    shard: str | None = field(default=None, metadata=option(
        "score only shard i of N (every N-th image from the i-th) into <out>.shards/, for job arrays; then run "
        "once more with --merge", metavar="i/N"))
    report: bool = field(default=False, metadata=option(
        "also write report.html: one self-contained page with the sortable table and the curves"))
    merge: bool = field(default=False, metadata=option(
        "summarise the shard files in <out>.shards/ (every shard, same settings) into --out, then remove them"))


class ImageStudyScores(NamedTuple):
    """Per-image scores of an image study (what the summary is computed from).

    Attributes:
        methods: the M rows (method variants, then ``random``).
        metrics: the K metric names.
        scores: `(N, M, K)` float64 per image, method and metric.
        curves: curve name → `(N, M, S)` float64 per image, method and step.
        fractions: curve name → its S abscissae.
        ids: the N image ids; labels `(N,)` and predictions `(N,)` the gold and predicted classes.
    """

    methods: list[str]
    metrics: list[str]
    scores: np.ndarray
    curves: dict[str, np.ndarray]
    fractions: dict[str, list[float]]
    ids: list[str]
    labels: np.ndarray
    predictions: np.ndarray


def _check_metrics(metrics: Sequence[str] | None, has_masks: bool) -> list[str]:
    if not metrics:
        return [m for m in METRICS if has_masks or m not in MASK_METRICS]
    chosen = []
    for metric in metrics:
        _check_choice(metric, "metrics", METRICS)
        if metric in MASK_METRICS and not has_masks:
            raise ArgumentError(f"Expected `masks` to be given for the metric {metric!r}, but got none.", "masks")
        if metric not in chosen:
            chosen.append(metric)
    return chosen


def score_image_study(adapter: Any, dataset: ImageDataset, labels: Sequence[int], variants: Sequence[Any], *,
                      metrics: Sequence[str], perturb: str = "mask", baseline: str = "zeros", steps: int = 16,
                      tolerance: float = 15.0, batch_size: int = 64, seed: int = 0,
                      progress: Callable[[int, int], None] | None = None,
                      image_positions: Sequence[int] | None = None) -> ImageStudyScores:
    """Score every image, method and metric (see the module docstring), in batches of `batch_size` images.

    Chefer et al., CVPR 2021 (perturbation, segmentation); Petsiuk et al., BMVC 2018 (deletion,
    insertion); Zhang et al., ECCV 2016 (pointing game).

    Args:
        adapter: an image adapter.
        dataset: the images (and masks).
        labels: N gold class indices.
        variants: method variants (:func:`~attnlens.experiments.image_maps.check_image_methods`).
        metrics: names from :data:`METRICS`.
        perturb, baseline, steps, tolerance, batch_size, seed: as :class:`ImageStudyConfig`.
        progress: called with (images done, images) after each batch.
        image_positions: each image's position in the whole data set (what seeds its random map), for a
            shard of it; None means 0, 1, ….

    Returns:
        :class:`ImageStudyScores`; method rows are the variants, then ``random``.
    """
    from attnlens.datasets.images import load_image  # noqa: PLC0415
    from attnlens.experiments.image_maps import image_maps  # noqa: PLC0415

    metrics = list(metrics)
    size = tuple(adapter.preprocessing.size)
    grid = positions = cells = None  # from the first batch's trace
    wanted_curves = {"perturbation": [o for o in ("positive", "negative")
                                      if o in metrics or f"{o}_probability" in metrics],
                     "pixels": [k for k in ("deletion", "insertion") if k in metrics]}
    names = [v.name for v in variants] + [RANDOM]
    count = len(dataset.paths)
    scores = np.full((count, len(names), len(metrics)), np.nan)
    curves: dict[str, list[np.ndarray]] = {}
    fractions: dict[str, list[float]] = {}
    predictions = np.zeros(count, dtype=np.int64)
    for start, end in _chunks(count, batch_size):
        pictures = [load_image(path) for path in dataset.paths[start:end]]
        batch = image_maps(adapter, pictures, variants)
        if grid is None:
            grid, positions = batch.grid, batch.patch_positions
            patches = grid[0] * grid[1]
            if steps > patches:
                raise ArgumentError(f"Expected `steps` to be at most the model's {patches} patches, but got {steps}.",
                                    "steps")
            cells = pixel_cells(size, grid, device=adapter.device)
        pixels = batch.pixel_values
        gold = torch.tensor(labels[start:end], dtype=torch.long, device=pixels.device)
        target = batch.target.to(pixels.device)
        maps = batch.maps.flatten(2).to(torch.float64)
        seeds = range(start, end) if image_positions is None else image_positions[start:end]
        random = torch.stack([torch.rand(patches, generator=torch.Generator().manual_seed(seed * 1_000_003 + index),
                                         dtype=torch.float64) for index in seeds]).to(maps.device)
        maps = torch.cat([maps, random[:, None]], dim=1)
        maps = torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
        found: dict[str, Tensor] = {}
        if wanted_curves["perturbation"]:
            found.update(perturbation_curves(adapter, pixels, maps, gold, target, batch.logits, mode=perturb,
                                             patch_positions=positions, batch_size=batch_size,
                                             orders=wanted_curves["perturbation"]))
            for order in wanted_curves["perturbation"]:
                fractions[order] = list(PERTURBATION_FRACTIONS)
                found[f"{order}_auc"] = perturbation_auc(found[order].flatten(0, 1)).view(maps.shape[:2])
                found[f"{order}_probability_auc"] = perturbation_auc(
                    found[f"{order}_probability"].flatten(0, 1)).view(maps.shape[:2])
        if wanted_curves["pixels"]:
            replacement = baseline_images(pixels, baseline, adapter.preprocessing, grid)
            pixel_curves = deletion_insertion_curves(adapter, pixels, maps, target, batch.logits,
                                                     baseline=replacement, cells=cells, steps=steps,
                                                     batch_size=batch_size, kinds=wanted_curves["pixels"])
            steps_at = pixel_curves.pop("fractions")
            for kind in wanted_curves["pixels"]:
                fractions[kind] = steps_at.tolist()
                area = deletion_auc if kind == "deletion" else insertion_auc
                found[kind] = pixel_curves[kind]
                found[f"{kind}_auc"] = area(pixel_curves[kind].flatten(0, 1), fractions=steps_at).view(maps.shape[:2])
        if any(m in MASK_METRICS for m in metrics):
            masks = load_masks(dataset.masks[start:end], adapter.preprocessing).to(pixels.device)
            rows = batch.maps.shape[0]
            upsampled = upsample_patch_map(maps.reshape(rows * len(names), *grid), size)
            repeated = masks.repeat_interleave(len(names), dim=0)
            found["pointing"] = pointing_game(upsampled, repeated, tolerance=tolerance).view(rows, len(names))
            segmentation = segmentation_scores(upsampled, repeated)
            for key in ("miou", "pixel_accuracy", "average_precision"):
                found[key] = segmentation[key].view(rows, len(names))
        for column, metric in enumerate(metrics):
            key = metric if metric in MASK_METRICS else f"{metric}_auc"
            scores[start:end, :, column] = found[key].double().cpu().numpy()
        for kind in CURVES:
            if kind in found:
                curves.setdefault(kind, []).append(found[kind].cpu().numpy())
        predictions[start:end] = batch.logits.argmax(dim=-1).cpu().numpy()
        if progress is not None:
            progress(end, count)
    return ImageStudyScores(names, metrics, scores, {k: np.concatenate(v) for k, v in curves.items()}, fractions,
                            list(dataset.ids), np.asarray(labels, dtype=np.int64), predictions)


# --- the summary --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageMetricSummary:
    """One method's summary of one metric over the images."""

    mean: float
    ci95: tuple[float, float]
    median: float
    count: int
    wilcoxon_p_vs_rollout: float | None


@dataclass(frozen=True)
class ImageStudySummary:
    """Everything the image-study writers read."""

    model: str
    n_images: int
    accuracy: float
    methods: list[str]
    metrics: list[str]
    table: dict[str, dict[str, ImageMetricSummary]]
    curves: dict[str, dict[str, list[float]]]
    fractions: dict[str, list[float]]
    settings: dict[str, object]
    scores: ImageStudyScores

    def to_json(self) -> dict:
        """The summary as a JSON-ready dict (per-image scores left to ``per_image.csv``)."""
        return {"model": self.model, "n_images": self.n_images, "accuracy": self.accuracy, "methods": self.methods,
                "metrics": self.metrics, "lower_is_better": sorted(m for m in self.metrics if m in LOWER_IS_BETTER),
                "settings": self.settings,
                "table": {method: {metric: dataclasses.asdict(entry) for metric, entry in row.items()}
                          for method, row in self.table.items()},
                "curves": {kind: {"fractions": self.fractions[kind], **by_method}
                           for kind, by_method in self.curves.items()}}


def _mean_intervals(values: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """`(M, 2)` percentile-bootstrap 95 % intervals of the mean of each row of `(M, N)`, paired resamples
    (Efron & Tibshirani 1993, ch. 13)."""
    count = values.shape[1]
    generator = np.random.default_rng(seed)
    out = np.empty((values.shape[0], 2))
    means = np.empty((values.shape[0], resamples))
    for start in range(0, resamples, 256):
        stop = min(start + 256, resamples)
        picks = generator.integers(0, count, size=(stop - start, count))
        means[:, start:stop] = values[:, picks].mean(axis=-1)
    out[:, 0] = np.quantile(means, 0.025, axis=1)
    out[:, 1] = np.quantile(means, 0.975, axis=1)
    return out


def summarize_image_study(scores: ImageStudyScores, *, model: str, settings: dict[str, object], seed: int = 0,
                          resamples: int = 2000) -> ImageStudySummary:
    """Mean, bootstrap 95 % interval of the mean, median and Wilcoxon p against rollout per method and metric.

    Percentile bootstrap (Efron & Tibshirani 1993, ch. 13) with the same resamples for every method;
    Wilcoxon 1945 signed-rank test on the paired per-image scores (`(N, M, K)` in `scores.scores`).
    """
    from attnlens.metrics.summary import paired_wilcoxon  # noqa: PLC0415

    resamples = _check_integer(resamples, "resamples", low=1)
    table: dict[str, dict[str, ImageMetricSummary]] = {name: {} for name in scores.methods}
    reference = scores.methods.index(REFERENCE) if REFERENCE in scores.methods else None
    for column, metric in enumerate(scores.metrics):
        values = scores.scores[:, :, column].T  # (M, N)
        intervals = _mean_intervals(values, resamples=resamples, seed=seed)
        for row, name in enumerate(scores.methods):
            p = None if reference is None or row == reference else paired_wilcoxon(values[row], values[reference])
            table[name][metric] = ImageMetricSummary(float(values[row].mean()), (float(intervals[row, 0]),
                                                     float(intervals[row, 1])), float(np.median(values[row])),
                                                     int(values.shape[1]), p)
    curves = {kind: {name: curve[:, row].mean(axis=0).tolist() for row, name in enumerate(scores.methods)}
              for kind, curve in scores.curves.items()}
    accuracy = float((scores.predictions == scores.labels).mean())
    return ImageStudySummary(model, len(scores.ids), accuracy, scores.methods, scores.metrics, table, curves,
                             scores.fractions, dict(settings), scores)


def run_image_study(config: ImageStudyConfig, *, progress: Callable[[int, int], None] | None = None
                    ) -> ImageStudySummary | None:
    """Run :class:`ImageStudyConfig`: check every input, score every image, summarise, write the folder.

    Writes into `config.out`, atomically: ``results.json`` (the summary and the mean curves),
    ``results.csv`` (one row per method and metric), ``per_image.csv``, ``table.md`` and ``curves.png``.
    With ``shard`` it scores its share of the images into a shard file and returns None; with ``merge``
    it summarises the shard files (:mod:`attnlens.experiments.image_study_shards`) instead of scoring.

    Raises:
        ValueError: in one line, before anything is written, on a bad option, a bad data folder, CSV or
            mask, a label outside the model's classes, or a method the model cannot run.
    """
    from attnlens.experiments.image_maps import check_image_methods  # noqa: PLC0415
    from attnlens.experiments.image_study_writers import write_image_study  # noqa: PLC0415
    from attnlens.experiments.outputs import check_output_folder  # noqa: PLC0415
    from attnlens.models import load_adapter  # noqa: PLC0415

    batch_size = _check_integer(config.batch_size, "batch_size", low=1, description="a positive integer")
    steps = _check_integer(config.steps, "steps", low=1, description="a positive integer")
    resamples = _check_integer(config.resamples, "resamples", low=1, description="a positive integer")
    tolerance = _check_number(config.tolerance, "tolerance", low=0)
    _check_choice(config.perturb, "perturb", PERTURB_MODES)
    _check_choice(config.baseline, "baseline", BASELINES)
    from attnlens.experiments import image_study_shards as sharding  # noqa: PLC0415

    if config.shard is not None and config.merge:
        raise ArgumentError("Expected `merge` without `shard` (merging reads every shard), but got both.", "merge")
    shard = None if config.shard is None else sharding.parse_shard(config.shard)
    check_output_folder(config.out)
    metrics = _check_metrics(config.metrics, config.masks is not None)
    settings = {"data": str(config.data), "masks": config.masks, "perturb": config.perturb,
                "baseline": config.baseline, "steps": steps, "tolerance": tolerance, "alpha": config.alpha,
                "threshold": config.threshold, "seed": config.seed, "resamples": resamples,
                "perturbation_fractions": list(PERTURBATION_FRACTIONS)}
    meta = {"model": config.model, "methods": list(config.methods or ()), "metrics": metrics, "limit": config.limit,
            **{k: v for k, v in settings.items() if k != "resamples"}}
    if config.merge:
        scores = sharding.read_image_shards(config.out, meta)
        summary = summarize_image_study(scores, model=config.model, settings=settings, seed=config.seed,
                                        resamples=resamples)
        write_image_study(summary, config.out, report=config.report)
        import shutil  # noqa: PLC0415

        shutil.rmtree(sharding.image_shard_folder(config.out), ignore_errors=True)
        return summary
    dataset = read_image_dataset(config.data, masks=config.masks, limit=config.limit)
    positions = None
    if shard is not None:
        positions = sharding.shard_indices(len(dataset.paths), *shard)
        if not positions:
            raise ArgumentError(f"Expected shard {config.shard} to hold images, but the data has only "
                                f"{len(dataset.paths)}.", "shard")
        dataset = ImageDataset([dataset.paths[i] for i in positions], [dataset.labels[i] for i in positions],
                               None if dataset.masks is None else [dataset.masks[i] for i in positions],
                               [dataset.ids[i] for i in positions])
    adapter = load_adapter(config.model, device=config.device)
    if getattr(adapter, "modality", "text") != "image":
        raise ArgumentError(f"Expected `model` to be an image model (ViT, DeiT, Vision Mamba), but got a "
                            f"{getattr(adapter, 'family', type(adapter).__name__)!r}-family model.", "model")
    labels = class_indices(adapter, dataset.labels)
    options: dict[str, object] = {"alpha": config.alpha}
    if config.threshold is not None:
        options["threshold"] = config.threshold
    variants = check_image_methods(adapter, config.methods, **options)
    scores = score_image_study(adapter, dataset, labels, variants, metrics=metrics, perturb=config.perturb,
                               baseline=config.baseline, steps=steps, tolerance=tolerance, batch_size=batch_size,
                               seed=config.seed, progress=progress, image_positions=positions)
    if shard is not None:
        sharding.write_image_shard(scores, positions, meta, config.out, *shard)
        return None
    summary = summarize_image_study(scores, model=config.model, settings=settings, seed=config.seed,
                                    resamples=resamples)
    write_image_study(summary, config.out, report=config.report)
    return summary


__all__ = [
    "BASELINES",
    "METRICS",
    "PERTURB_MODES",
    "ImageDataset",
    "ImageMetricSummary",
    "ImageStudyConfig",
    "ImageStudyScores",
    "ImageStudySummary",
    "baseline_images",
    "class_indices",
    "deletion_insertion_curves",
    "load_masks",
    "perturbation_curves",
    "pixel_cells",
    "read_image_dataset",
    "run_image_study",
    "score_image_study",
    "summarize_image_study",
]
