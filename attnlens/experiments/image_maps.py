"""Relevance maps of image models: the thesis's figure row, one image at a time.

``attnlens image`` runs an image classifier (ViT, DeiT, Vision Mamba) on image files, computes
registered methods from one trace per batch (raw attention, rollout, diffused rollout, GAE,
Mamba-Attr, ...), reads the class token's row of each method's last joint attention (wherever
the class token sits), arranges it on the patch grid (:func:`~attnlens.methods.patch_map`) and
writes, per image, a PNG row — the image, then one overlay per method — the patch maps as
``.npy``, and the top-k predictions. :func:`image_maps` is the computation; the views in
:mod:`attnlens.viz.image_rows` only draw.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_integer
from attnlens._options import option
from attnlens.methods.patch_map import patch_map
from attnlens.methods.registry import MethodCache, MethodVariant, expand_methods, list_methods
from attnlens.methods.relevance import relevance

COMBINES = ("sum", "mean", "splice")


class ImageMaps(NamedTuple):
    """One batch of images explained by several methods.

    Attributes:
        methods: the M method variant names, in order.
        maps: `(B, M, rows, columns)` patch maps (the class token's row of each method's joint
            attention after the last layer, on the patch grid).
        logits: `(B, C)` the model's outputs.
        target: `(B,)` the explained classes.
        pixel_values: `(B, 3, H, W)` the model's input.
        grid: `(rows, columns)` of the patch grid (``Trace.grid``).
        patch_positions: `(rows * columns,)` the token position of every patch (``Trace.patch_positions``).
    """

    methods: list[str]
    maps: Tensor
    logits: Tensor
    target: Tensor
    pixel_values: Tensor
    grid: tuple[int, int] | None = None
    patch_positions: Tensor | None = None


def default_image_methods(adapter: Any) -> list[str]:
    """The thesis's row for a model: raw attention, rollout, diffused rollout, and the gradient
    method the model supports (Mamba-Attr for Vision Mamba, GAE for softmax attention)."""
    provides = set(getattr(adapter, "provides", ("attention",)))
    methods = ["raw", "rollout", "diffused_rollout"]
    if "residual_gradients" in provides:
        methods.append("mamba_attr")
    elif "attention_gradients" in provides:
        methods.append("gae")
    return methods


def check_image_methods(adapter: Any, names: Sequence[str] | None, **options: object) -> list[MethodVariant]:
    """The variants of `names` (None: :func:`default_image_methods`), each one the model can run.

    Raises:
        ArgumentError: naming `methods` on an unknown method or one whose needs the model lacks.
    """
    names = default_image_methods(adapter) if not names else list(names)
    variants = expand_methods(names, **{k: v for k, v in options.items() if v is not None})
    provides = set(getattr(adapter, "provides", ("attention",)))
    for variant in variants:
        missing = sorted(variant.spec.needs - provides)
        if missing:
            usable = ", ".join(list_methods(needs=sorted(provides)))
            raise ArgumentError(f"Expected every entry of `methods` to be a method this model supports ({usable}), "
                                f"but {variant.spec.name!r} needs {', '.join(missing)}.", "methods")
    return variants


def image_maps(adapter: Any, images: Tensor | Sequence[Any], methods: Sequence[MethodVariant], *,
               target: object = "pred", combine: str | None = None) -> ImageMaps:
    """Every method's patch map of one batch of images, from one trace.

    Args:
        adapter: an image adapter (``modality == "image"``).
        images: `(B, 3, H, W)` preprocessed pixels, or B image paths / PIL images.
        methods: method variants (:func:`check_image_methods`).
        target: what to explain (see :meth:`attnlens.models.base.Adapter.trace`).
        combine: for Vision Mamba, how the two scan directions are combined (``"sum"``,
            ``"mean"``, ``"splice"``); None keeps the adapter's default; ignored by other models.

    Returns:
        An :class:`ImageMaps`.

    Raises:
        ValueError: on a model that is not an image model.
    """
    if getattr(adapter, "modality", "text") != "image":
        raise ArgumentError(f"Expected `model` to be an image model (ViT, DeiT, Vision Mamba), but got a "
                            f"{getattr(adapter, 'family', type(adapter).__name__)!r}-family model.", "model")
    options: dict[str, object] = {"target": target, "saliency": None}
    if combine is not None and "combine" in inspect.signature(adapter.trace).parameters:
        options["combine"] = combine
    needs_gradients = any(v.spec.needs - {"attention", "readout_rows"} for v in methods)
    if needs_gradients:
        options["saliency"] = "sum_abs"  # runs the backward pass that fills the gradients
    elif "gradients" in inspect.signature(adapter.trace).parameters:
        options["gradients"] = False  # forward only
    pixel_values = _pixels(adapter, images)
    trace = adapter.trace(pixel_values, **options)
    cache = MethodCache(trace.attentions, trace.mask, extras=trace.extras, readout=trace.readout)
    maps = []
    for variant in methods:
        joint = variant.compute(cache).joint[:, -1]
        scores = relevance(joint, mask=trace.mask, reduce="readout", readout=trace.readout)
        maps.append(patch_map(scores, trace.patch_positions, trace.grid))
    return ImageMaps([v.name for v in methods], torch.stack(maps, dim=1).detach(), trace.logits.detach(),
                     trace.target, pixel_values, tuple(trace.grid), trace.patch_positions)


def _pixels(adapter: Any, images: Tensor | Sequence[Any]) -> Tensor:
    from attnlens.datasets.images import as_pixel_values  # noqa: PLC0415

    return as_pixel_values(images, adapter.preprocessing).to(adapter.device)


def top_classes(logits: Tensor, names: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Per image the `k` most probable classes as (name, probability), most probable first.

    Args:
        logits: `(B, C)` model outputs.
        names: the C class names.
        k: how many (at most C).

    Example:
        >>> top_classes(torch.tensor([[0.0, 2.0, 1.0]]), ["a", "b", "c"], k=2)
        [[('b', 0.6652), ('c', 0.2447)]]
    """
    probabilities = torch.softmax(logits.detach().double(), dim=-1)
    values, indices = probabilities.topk(min(k, probabilities.shape[-1]), dim=-1)
    return [[(names[int(i)], round(float(v), 4)) for v, i in zip(row_v, row_i)] for row_v, row_i in
            zip(values, indices)]


def read_class_names(path: str | os.PathLike, classes: int) -> list[str]:
    """Class names from a JSON list (index = class id, like ``imagenet_classes.json``) or an object
    mapping ids to names.

    Raises:
        ArgumentError: naming `class_names` when the file is unreadable or has the wrong count.
    """
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ArgumentError(f"Expected `class_names` to be a readable JSON file, but {file} is not ({err}).",
                            "class_names") from None
    if isinstance(data, dict):
        try:
            data = [data[str(i)] if str(i) in data else data[i] for i in range(classes)]
        except KeyError:
            raise ArgumentError(f"Expected `class_names` to name classes 0..{classes - 1}, but {file} does not.",
                                "class_names") from None
    if not isinstance(data, list) or len(data) != classes:
        count = len(data) if isinstance(data, list) else type(data).__name__
        raise ArgumentError(f"Expected `class_names` to hold {classes} names (the model's classes), but {file} "
                            f"holds {count}.", "class_names")
    return [str(name) for name in data]


@dataclass(frozen=True)
class ImageConfig:
    """Options of ``attnlens image``; each field is a command-line option (see :func:`explain_images`)."""

    images: tuple[str, ...] = field(metadata=option("image files or folders of images", positional=True,
                                                    metavar="IMAGE"))
    model: str = field(metadata=option("a Hugging Face ViT/DeiT id or folder, vim-tiny|vim-small|vim-tiny-stride8|"
                                       "vim-small-stride8=FILE.pth, or vim=DIR", metavar="SPEC"))
    out: str = field(metadata=option("output folder (new or empty; written atomically)", metavar="DIR"))
    methods: tuple[str, ...] | None = field(default=None, metadata=option(
        "registered methods, one panel each (default: raw, rollout, diffused_rollout and mamba_attr for Vision "
        "Mamba or gae for ViT/DeiT)", choices=list_methods))
    alpha: float = field(default=0.9, metadata=option("network-diffusion strength in [0, 1) for diffused methods"))
    start_layer: int | None = field(default=None, metadata=option(
        "first layer composed by rollout-type methods (default: each method's own; the released-code methods use "
        "the last nine layers)", metavar="L"))
    combine: str = field(default="sum", metadata=option(
        "Vision Mamba: how the two scan directions combine", choices=COMBINES))
    shared_scale: bool = field(default=False, metadata=option(
        "one colour scale for all panels of an image (default: each map min-max scaled)"))
    html: bool = field(default=False, metadata=option("also write index.html showing every row"))
    top_k: int = field(default=5, metadata=option("predicted classes listed per image"))
    class_names: str | None = field(default=None, metadata=option(
        "JSON list of class names (e.g. imagenet_classes.json; default: the model's own labels)", metavar="FILE"))
    batch_size: int = field(default=8, metadata=option("images per forward pass"))
    device: str = field(default="cpu", metadata=option("where the model runs", choices=("cpu", "cuda")))


class ImageResult(NamedTuple):
    """What ``attnlens image`` wrote for one image."""

    image: str
    figure: Path
    maps: Path
    top: list[tuple[str, float]]


def explain_images(config: ImageConfig, *, progress: Any = None) -> list[ImageResult]:
    """Run :class:`ImageConfig`: check every input first, explain the images in batches, write the folder.

    Writes into `config.out`, atomically: ``<stem>.png`` (the figure row), ``<stem>.npy``
    (`(M, rows, columns)` float32 patch maps in the order of ``maps.json``), ``predictions.json``
    and, with ``html``, ``index.html``.

    Raises:
        ArgumentError: on a bad option, an unreadable image, a folder without images, or a model
            that cannot run a method — before anything is written.
    """
    from attnlens.datasets.images import find_images, load_image  # noqa: PLC0415
    from attnlens.experiments.outputs import check_output_folder, write_atomically  # noqa: PLC0415
    from attnlens.models import load_adapter  # noqa: PLC0415

    top_k = _check_integer(config.top_k, "top_k", low=1)
    batch_size = _check_integer(config.batch_size, "batch_size", low=1)
    check_output_folder(config.out)
    paths = _image_paths(config.images, find_images)
    pictures = [load_image(path) for path in paths]  # every file is checked before the model loads
    adapter = load_adapter(config.model, device=config.device)
    variants = check_image_methods(adapter, config.methods, alpha=config.alpha, start_layer=config.start_layer)
    _check_start_layer(config.start_layer, adapter.num_layers)
    names = (read_class_names(config.class_names, adapter.num_classes) if config.class_names else
             [adapter.label(i) for i in range(adapter.num_classes)])
    batches = []
    for start in range(0, len(pictures), batch_size):
        batches.append(image_maps(adapter, pictures[start:start + batch_size], variants, combine=config.combine))
        if progress is not None:
            progress(min(start + batch_size, len(pictures)), len(pictures))
    return _write_results(config, paths, batches, names, top_k, adapter, write_atomically)


def _check_start_layer(start_layer: int | None, layers: int) -> None:
    if start_layer is not None:
        _check_integer(start_layer, "start_layer", low=-layers, high=layers - 1)


def _image_paths(items: Sequence[str], find_images: Any) -> list[Path]:
    if not items:
        raise ArgumentError("Expected `images` to name at least one image file or folder, but got none.", "images")
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        paths.extend(find_images(path) if path.is_dir() else [path])
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        seen = sorted({s for s in stems if stems.count(s) > 1})
        raise ArgumentError(f"Expected `images` to have distinct file names (outputs are named after them), but "
                            f"{', '.join(seen)} repeat.", "images")
    return paths


def _write_results(config: ImageConfig, paths: list[Path], batches: list[ImageMaps], names: list[str], top_k: int,
                   adapter: Any, write_atomically: Any) -> list[ImageResult]:
    from attnlens.datasets.images import to_display  # noqa: PLC0415
    from attnlens.viz.image_rows import image_rows_html, plot_image_row  # noqa: PLC0415

    methods = batches[0].methods
    out = Path(config.out).expanduser()
    rows = [(maps, display, top)
            for batch in batches
            for maps, display, top in zip(batch.maps.cpu(), to_display(batch.pixel_values.cpu(), adapter.preprocessing),
                                          top_classes(batch.logits, names, top_k))]
    results = [ImageResult(str(path), out / f"{path.stem}.png", out / f"{path.stem}.npy", top)
               for path, (_, _, top) in zip(paths, rows)]

    def fill(staging: Path) -> None:
        for path, (maps, display, top) in zip(paths, rows):
            np.save(staging / f"{path.stem}.npy", maps.float().numpy())
            caption = f"{path.name}: " + ", ".join(f"{name.split(',')[0]} {p:.2f}" for name, p in top[:3])
            plot_image_row(display, maps, methods, staging / f"{path.stem}.png", caption=caption,
                           shared_scale=config.shared_scale)
        document = {"model": config.model, "methods": methods, "alpha": config.alpha,
                    "start_layer": config.start_layer, "combine": config.combine,
                    "images": [{"image": r.image, "figure": r.figure.name, "maps": r.maps.name,
                                "top": [{"class": c, "probability": p} for c, p in r.top]} for r in results]}
        (staging / "maps.json").write_text(json.dumps({"methods": methods, "shape": "(methods, rows, columns)"},
                                                      indent=2) + "\n", encoding="utf-8")
        (staging / "predictions.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        if config.html:
            image_rows_html([(r.figure.name, Path(r.image).name, r.top) for r in results],
                            staging / "index.html", staging=staging, title=f"attnlens: {config.model}")

    write_atomically(config.out, fill)
    return results


__all__ = [
    "COMBINES",
    "ImageConfig",
    "ImageMaps",
    "ImageResult",
    "check_image_methods",
    "default_image_methods",
    "explain_images",
    "image_maps",
    "read_class_names",
    "top_classes",
]
