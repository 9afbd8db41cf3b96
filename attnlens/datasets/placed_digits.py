"""Placed digits: scikit-learn's 8×8 handwritten digits pasted into a blank canvas, with the digit's mask.

A synthetic image task whose answer has a known location: the label is the digit, and the pixels
that decide it are exactly the digit's own. It is the localisation benchmark of the tiny ViT and
Vision Mamba trained in the tests (pointing game, segmentation scores), in the spirit of the
object-localisation checks of Zhang et al. (ECCV 2016) and Chefer et al. (CVPR 2021).

Conventions:
    * a **white digit on a black canvas**: the digit's ink (scikit-learn's 0–16 grey levels) is
      scaled to [0, 1], the canvas is 0; the grey image is replicated to 3 channels (RGB), and the
      model's preprocessing is the identity (mean 0, std 1, no resize);
    * the 8×8 digit is upscaled to ``digit_size`` pixels a side by nearest-neighbour
      interpolation, so the mask (``ink > 0``) is exactly the set of non-zero pixels;
    * pixel values are 8-bit levels divided by 255 in float32, so an image written as an 8-bit
      PNG by `write_placed_digits` reads back identical (``torch.uint8 -> float32 / 255``);
    * quadrants are numbered 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice, _check_creatable_folder, _check_integer
from attnlens._files import _write_folder_atomically

SPLITS = ("all", "train", "test")
"""Which scikit-learn digits may be drawn: all 1,797, or a fixed 80 % / 20 % partition of them."""
_TEST_FRACTION = 0.2
_PARTITION_SEED = 20240515  # fixed forever: the train/test partition of the scikit-learn digits


class PlacedDigits(NamedTuple):
    """A batch of placed digits (see `placed_digits`).

    Attributes:
        images: `(n, 3, size, size)` float32 in [0, 1], white digit on black.
        labels: `(n,)` long, the digit 0–9.
        masks: `(n, size, size)` bool, True on the digit's ink (pixel > 0).
        boxes: `(n, 4)` long, the pasted square as ``(top, left, bottom, right)``, bottom and right
            exclusive (``images[i, :, top:bottom, left:right]`` is the upscaled digit).
        quadrants: `(n,)` long, the quadrant holding the centre of the box (0 top-left,
            1 top-right, 2 bottom-left, 3 bottom-right; a centre on a middle line counts as
            bottom/right).
        source_indices: `(n,)` long, the index of each digit in scikit-learn's ``load_digits()``.
    """

    images: Tensor
    labels: Tensor
    masks: Tensor
    boxes: Tensor
    quadrants: Tensor
    source_indices: Tensor


@lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as `(1797, 8, 8)` float64 in [0, 16] and `(1797,)` int labels."""
    from sklearn.datasets import load_digits  # noqa: PLC0415 - heavy import, only when used

    bunch = load_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(np.int64)


def _split_indices(split: str) -> np.ndarray:
    """Indices into ``load_digits()`` that `split` may draw from (a fixed seeded 80/20 partition)."""
    count = len(_sklearn_digits()[1])
    if split == "all":
        return np.arange(count)
    order = np.random.default_rng(_PARTITION_SEED).permutation(count)
    test_count = int(round(count * _TEST_FRACTION))
    chosen = order[:test_count] if split == "test" else order[test_count:]
    return np.sort(chosen)


def _placed_digits_check(n: object, size: object, seed: object, digit_size: object, split: object) -> tuple[int, int,
                                                                                                            int, int]:
    n = _check_integer(n, "n", low=1, description="a positive integer")
    size = _check_integer(size, "size", low=2, description="an integer of at least 2")
    seed = _check_integer(seed, "seed", low=0, description="a non-negative integer")
    if digit_size is None:
        digit_size = size // 2
    digit_size = _check_integer(digit_size, "digit_size", low=1, description="a positive integer")
    if digit_size > size // 2:
        raise ArgumentError(f"Expected `digit_size` to be at most size // 2 = {size // 2} (the digit fits in a "
                            f"quadrant), but got {digit_size}.", "digit_size")
    _check_choice(split, "split", SPLITS)
    return n, size, seed, digit_size


def placed_digits(n: int, size: int = 32, seed: int = 0, *, digit_size: int | None = None, quadrant: bool = True,
                  split: str = "all") -> PlacedDigits:
    """Draw `n` scikit-learn digits and paste each, upscaled, into a random place of a black canvas.

    Task of the attnlens vision tests (issue "Vision"): a known object location for pointing-game
    and segmentation scores (Zhang et al., ECCV 2016; Chefer et al., CVPR 2021).

    Each example draws, from a NumPy generator seeded with `seed`, a digit of `split` (with
    replacement) and a position: with `quadrant` a uniformly random quadrant, and inside it a
    uniformly random offset (none when the digit fills the quadrant, the default); without it a
    uniformly random top-left corner anywhere on the canvas. The same arguments give the same
    images; different seeds give independent draws. For a held-out set whose *digits* (not only
    placements) were never seen in training, draw training data from ``split="train"`` and test
    data from ``split="test"`` (a fixed 80 % / 20 % partition of the 1,797 digits).

    Args:
        n: number of images.
        size: canvas side in pixels.
        seed: seed of the draws.
        digit_size: side of the upscaled digit in pixels, at most ``size // 2``; default
            ``size // 2`` (the digit fills its quadrant).
        quadrant: paste inside one quadrant (True) or anywhere (False).
        split: ``"all"``, ``"train"`` or ``"test"``: which scikit-learn digits may be drawn.

    Returns:
        A `PlacedDigits`: `images` `(n, 3, size, size)` float32 in [0, 1], `labels` `(n,)` long,
        `masks` `(n, size, size)` bool, `boxes` `(n, 4)` long, `quadrants` `(n,)` long,
        `source_indices` `(n,)` long.

    Raises:
        ValueError: for a non-positive `n`, a `size` below 2, a negative `seed`, a `digit_size`
            larger than ``size // 2`` or an unknown `split`.
        TypeError: for a count of the wrong type.

    Example:
        >>> data = placed_digits(4, size=16, seed=0)
        >>> tuple(data.images.shape), tuple(data.masks.shape), data.labels.dtype
        ((4, 3, 16, 16), (4, 16, 16), torch.int64)
        >>> bool((data.masks == (data.images[:, 0] > 0)).all())
        True
    """
    n, size, seed, digit_size = _placed_digits_check(n, size, seed, digit_size, split)
    digits, targets = _sklearn_digits()
    pool = _split_indices(split)
    rng = np.random.default_rng(seed)
    chosen = pool[rng.integers(0, len(pool), size=n)]
    half = size // 2
    if quadrant:
        quadrants = rng.integers(0, 4, size=n)
        room = half - digit_size
        top = (quadrants // 2) * (size - half) + rng.integers(0, room + 1, size=n)
        left = (quadrants % 2) * (size - half) + rng.integers(0, room + 1, size=n)
        # A quadrant is [0, half) or [size - half, size): an odd canvas keeps its middle line blank.
    else:
        top = rng.integers(0, size - digit_size + 1, size=n)
        left = rng.integers(0, size - digit_size + 1, size=n)

    # Nearest-neighbour upscaling, as torch's "nearest": source pixel floor(i * 8 / digit_size).
    source = (np.arange(digit_size) * 8) // digit_size
    ink = digits[chosen][:, source][:, :, source] / 16.0  # (n, d, d) in [0, 1]
    ink = np.round(ink * 255.0).astype(np.float32) / np.float32(255.0)  # as a reader's uint8 / 255 in float32
    canvas = np.zeros((n, size, size), dtype=np.float32)
    for index in range(n):
        canvas[index, top[index]:top[index] + digit_size, left[index]:left[index] + digit_size] = ink[index]
    images = torch.from_numpy(canvas)
    centre_row = top + digit_size / 2
    centre_column = left + digit_size / 2
    quadrant_of_centre = 2 * (centre_row >= size / 2) + (centre_column >= size / 2)
    boxes = np.stack([top, left, top + digit_size, left + digit_size], axis=1)
    return PlacedDigits(
        images=images[:, None].expand(n, 3, size, size).contiguous(),
        labels=torch.from_numpy(targets[chosen].astype(np.int64)),
        masks=images > 0,
        boxes=torch.from_numpy(boxes.astype(np.int64)),
        quadrants=torch.from_numpy(quadrant_of_centre.astype(np.int64)),
        source_indices=torch.from_numpy(chosen.astype(np.int64)),
    )


class PlacedDigitsFolders(NamedTuple):
    """Where `write_placed_digits` wrote: the ImageFolder of images and the parallel folder of masks."""

    images: Path
    masks: Path


def write_placed_digits(folder: str | os.PathLike, n: int, size: int = 32, seed: int = 0, *,
                        masks_folder: str | os.PathLike | None = None, digit_size: int | None = None,
                        quadrant: bool = True, split: str = "all") -> PlacedDigitsFolders:
    """Write `placed_digits` as PNG files: an ImageFolder of images and a parallel folder of masks.

    Layout for ``attnlens image-study --data DIR --masks DIR`` (Chefer et al., CVPR 2021, evaluate
    against same-named binary masks):

    * ``folder/<label>/<index>.png``: 8-bit RGB image, ``<label>`` the digit ``0``–``9``,
      ``<index>`` the example's index zero-padded to 5 digits (``00042.png``);
    * ``masks_folder/<label>/<index>.png``: 8-bit grey mask of the same name, 255 on the digit, 0 elsewhere.

    `masks_folder` defaults to the sibling ``<folder>_masks`` (a ``masks`` sub-folder inside `folder`
    would read as an eleventh class). Each folder is written into a staging folder and renamed into
    place when complete: nothing half-written is left. Both must be new or empty.

    Args:
        folder: the image folder to create.
        n: number of images.
        size: canvas side in pixels.
        seed: seed of the draws (as `placed_digits`).
        masks_folder: the mask folder to create; default ``<folder>_masks``.
        digit_size: as `placed_digits`.
        quadrant: as `placed_digits`.
        split: as `placed_digits`.

    Returns:
        `PlacedDigitsFolders` with the two paths.

    Raises:
        ValueError: for the options `placed_digits` refuses, or a folder that exists with files in it
            or cannot be created.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> written = write_placed_digits(root / "digits", 3, size=16, seed=0)
        >>> sorted(p.relative_to(root).as_posix() for p in written.masks.rglob("*.png"))
        ['digits_masks/2/00000.png', 'digits_masks/3/00002.png', 'digits_masks/5/00001.png']
        >>> sorted(p.relative_to(root).as_posix() for p in written.images.rglob("*.png"))[0]
        'digits/2/00000.png'
    """
    from PIL import Image  # noqa: PLC0415 - only for writing

    images_path = Path(folder).expanduser()
    masks_path = Path(masks_folder).expanduser() if masks_folder is not None else \
        images_path.with_name(images_path.name + "_masks")
    if images_path.resolve() == masks_path.resolve():
        raise ArgumentError(f"Expected `masks_folder` to differ from `folder`, but both are {images_path}.",
                            "masks_folder")
    for path, name in ((images_path, "folder"), (masks_path, "masks_folder")):
        _check_creatable_folder(path, name)
        if path.is_dir() and any(path.iterdir()):
            raise ArgumentError(f"Expected `{name}` to be a new or empty folder, but {path} already holds files.", name)
    data = placed_digits(n, size, seed, digit_size=digit_size, quadrant=quadrant, split=split)
    pixels = (data.images.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()
    masks = (data.masks.to(torch.uint8) * 255).numpy()
    labels = data.labels.tolist()

    def fill(staging: Path, arrays: np.ndarray) -> None:
        for index, (array, label) in enumerate(zip(arrays, labels)):
            (staging / str(label)).mkdir(exist_ok=True)
            Image.fromarray(array).save(staging / str(label) / f"{index:05d}.png")  # (H, W, 3) RGB or (H, W) L

    _write_folder_atomically(masks_path, lambda staging: fill(staging, masks), name="masks_folder")
    try:
        _write_folder_atomically(images_path, lambda staging: fill(staging, pixels), name="folder")
    except BaseException:
        import shutil  # noqa: PLC0415

        shutil.rmtree(masks_path, ignore_errors=True)
        raise
    return PlacedDigitsFolders(images=images_path, masks=masks_path)
