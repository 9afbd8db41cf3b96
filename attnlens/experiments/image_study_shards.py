"""Sharded image studies: ``--shard i/N`` scores every N-th image from the i-th into ``<out>.shards/``, and
``--merge`` joins the N shard files into the one summary an unsharded run writes.

A shard file ``image-shard-<i>-of-<N>.npz`` holds its :class:`~attnlens.experiments.image_study.ImageStudyScores`
(per-image scores and curves, ids, gold and predicted classes), the positions of its images in the whole data
set, and the run's settings; it is written atomically, so a killed job leaves no partial file. Merging checks
that every shard is there once and that all were scored with the same model, data, methods, metrics and
settings, puts the images back in data order and summarises — per-image scores do not depend on the shard
they were scored in, so the merged summary equals the unsharded one.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnlens._checks import ArgumentError
from attnlens._files import _write_atomic

_NAME = re.compile(r"^image-shard-(\d+)-of-(\d+)\.npz$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` → (i, N) with 0 ≤ i < N.

    Raises:
        ArgumentError: naming `shard` on anything else.

    Example:
        >>> parse_shard("1/4")
        (1, 4)
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if match is None or not int(match.group(1)) < int(match.group(2)):
        raise ArgumentError(f"Expected `shard` to be i/N with 0 <= i < N, but got {text!r}.", "shard")
    return int(match.group(1)), int(match.group(2))


def shard_indices(count: int, index: int, shards: int) -> list[int]:
    """Positions of the images of shard `index` of `shards`: every `shards`-th from the `index`-th."""
    return list(range(index, count, shards))


def image_shard_folder(out: str | Path) -> Path:
    """Where the shard files of a run with output folder `out` go: ``<out>.shards`` beside it."""
    out = Path(out).expanduser()
    return out.parent / f"{out.name}.shards"


def write_image_shard(scores, positions: Sequence[int], meta: dict, out: str | Path, index: int,
                      shards: int) -> Path:
    """Write one shard's scores (atomically) into :func:`image_shard_folder` and return the file."""
    arrays = {"scores": scores.scores, "labels": scores.labels, "predictions": scores.predictions,
              "positions": np.asarray(positions, dtype=np.int64)}
    arrays.update({f"curve_{name}": values for name, values in scores.curves.items()})
    header = {"meta": meta, "methods": scores.methods, "metrics": scores.metrics, "ids": scores.ids,
              "fractions": scores.fractions, "index": index, "shards": shards}
    buffer = io.BytesIO()
    np.savez(buffer, header=np.array(json.dumps(header)), **arrays)
    folder = image_shard_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    return _write_atomic(folder / f"image-shard-{index}-of-{shards}.npz", buffer.getvalue())


def read_image_shards(out: str | Path, meta: dict):
    """The merged :class:`~attnlens.experiments.image_study.ImageStudyScores` of every shard of `out`, in data order.

    Raises:
        ArgumentError: naming `out` when there are no shard files, when one is missing, when shards of
            different splits are mixed, or when a shard was scored with other settings than `meta`.
    """
    from attnlens.experiments.image_study import ImageStudyScores  # noqa: PLC0415

    folder = image_shard_folder(out)
    files = sorted(folder.glob("image-shard-*-of-*.npz")) if folder.is_dir() else []
    if not files:
        raise ArgumentError(f"Expected `out` to have shard files in {folder} (written by --shard i/N), but there "
                            f"are none.", "out")
    found = {}
    for file in files:
        match = _NAME.match(file.name)
        if match is not None:
            found[(int(match.group(1)), int(match.group(2)))] = file
    counts = {shards for _, shards in found}
    if len(counts) != 1:
        raise ArgumentError(f"Expected the shards in {folder} to split the data one way, but they are of "
                            f"{', '.join(str(c) for c in sorted(counts))} shards.", "out")
    (shards,) = counts
    missing = [i for i in range(shards) if (i, shards) not in found]
    if missing:
        raise ArgumentError(f"Expected all {shards} shards in {folder}, but shard(s) "
                            f"{', '.join(f'{i}/{shards}' for i in missing)} are missing.", "out")
    parts = []
    for i in range(shards):
        with np.load(found[(i, shards)], allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            parts.append((header, {key: data[key] for key in data.files if key != "header"}))
    first = parts[0][0]
    for header, _ in parts:
        if header["meta"] != meta or header["methods"] != first["methods"] or header["metrics"] != first["metrics"]:
            changed = sorted(k for k in set(meta) | set(header["meta"]) if header["meta"].get(k) != meta.get(k))
            raise ArgumentError(f"Expected every shard in {folder} to be scored with this run's settings, but shard "
                                f"{header['index']}/{shards} differs in {', '.join(changed) or 'methods or metrics'}.",
                                "out")
    positions = np.concatenate([arrays["positions"] for _, arrays in parts])
    order = np.argsort(positions, kind="stable")

    def joined(key: str) -> np.ndarray:
        return np.concatenate([arrays[key] for _, arrays in parts])[order]

    ids = [identifier for header, _ in parts for identifier in header["ids"]]
    curves = {key[len("curve_"):]: joined(key) for key in parts[0][1] if key.startswith("curve_")}
    return ImageStudyScores(first["methods"], first["metrics"], joined("scores"), curves, first["fractions"],
                            [ids[i] for i in order], joined("labels"), joined("predictions"))
