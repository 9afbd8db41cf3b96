"""Reading images with Pillow and preprocessing them as a vision model's own config says.

:func:`load_image` opens one file as an 8-bit RGB ``PIL.Image`` whatever its mode (grayscale,
palette, alpha, CMYK, 16-bit), or raises a one-line ``ValueError`` naming the file.
:class:`ImagePreprocessing` resizes, center-crops and normalises a batch into a `(B, 3, H, W)`
float32 tensor with PIL, numpy and torch only (no torchvision), read from a Hugging Face
``preprocessor_config.json`` (:meth:`ImagePreprocessing.from_hf`) or given as timm's ImageNet
defaults (:meth:`ImagePreprocessing.imagenet`). :func:`to_display` undoes the normalisation for
overlays.

Conventions (documented choices):

* Transparency (``RGBA``, ``LA``, ``PA``, palette images with a transparent colour) is
  composited on a white background, as Hugging Face's ``convert_to_rgb`` does; dropping the
  alpha channel would expose the arbitrary (often black) colour of fully transparent pixels.
* 16-bit and 32-bit integer grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, ``I``) holds
  samples in 0–65535 (values outside are clipped) and is scaled by 255/65535 to 8 bits;
  floating grayscale (``F``) is taken as 0–1 (clipped).
* An image must be at least :data:`MIN_IMAGE_SIDE` = 8 pixels on each side: smaller ones carry
  no spatial information a patch map could show (a 1×1 image is refused rather than upsampled).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attnlens._checks import ArgumentError, ArgumentTypeError

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_IMAGE_SIDE",
    "ImagePreprocessing",
    "as_pixel_values",
    "find_images",
    "load_image",
    "load_images",
    "to_display",
]

MIN_IMAGE_SIDE = 8
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_HALF = (0.5, 0.5, 0.5)
_RESAMPLE_NAMES = ("nearest", "bilinear", "bicubic", "lanczos")
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling values
_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _as_rgb(image: Any) -> Any:
    """An 8-bit RGB copy of a PIL image of any mode (see the module docstring for the conventions)."""
    from PIL import Image  # noqa: PLC0415

    if image.mode == "RGB":
        return image
    if image.mode in _INTEGER_MODES or image.mode == "F":
        values = np.asarray(image).astype(np.float64)
        scale = 255.0 if image.mode == "F" else 255.0 / 65535.0
        limit = 1.0 if image.mode == "F" else 65535.0
        gray = np.rint(np.clip(values, 0.0, limit) * scale).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    has_alpha = "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Any:
    """Read one image file as an 8-bit RGB ``PIL.Image`` (fully decoded, file closed).

    Grayscale (``1``, ``L``), palette (``P``), alpha (``LA``, ``RGBA``, ``PA``: composited on
    white), CMYK, YCbCr and 16-bit (``I;16``, ``I``: scaled by 255/65535) images are converted;
    see the module docstring.

    Args:
        path: the image file.

    Returns:
        A ``PIL.Image.Image`` in mode ``"RGB"``, at least 8×8 pixels.

    Raises:
        ValueError: in one line naming the file, when it does not exist, is a folder, is not an
            image Pillow can read (a text file named ``.jpg``), is truncated or corrupt, or is
            smaller than 8×8 pixels.

    Example:
        >>> load_image("/no/such/photo.jpg")
        Traceback (most recent call last):
        ...
        attnlens._checks.ArgumentError: Expected `path` to be an image file, but /no/such/photo.jpg does not exist.
    """
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"Expected `path` to be a file path (str or os.PathLike), but got "
                                f"{type(path).__name__}.", "path")
    file = Path(path).expanduser()
    if not file.exists():
        raise ArgumentError(f"Expected `path` to be an image file, but {file} does not exist.", "path")
    if not file.is_file():
        raise ArgumentError(f"Expected `path` to be an image file, but {file} is not a regular file.", "path")
    try:
        with Image.open(file) as opened:
            opened.load()  # decode now: a truncated file fails here, not later inside a transform
            image = _as_rgb(opened)
            image = image.copy() if image is opened else image
    except UnidentifiedImageError:
        raise ArgumentError(f"Expected `path` to be an image file Pillow can read (JPEG, PNG, ...), but {file} is "
                            f"not an image.", "path") from None
    except (OSError, ValueError, SyntaxError) as err:  # truncated data, broken headers, unsupported modes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArgumentError(f"Expected `path` to be a readable image file, but {file} is truncated or corrupt "
                            f"({first}).", "path") from None
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ArgumentError(f"Expected `path` to be an image of at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels, "
                            f"but {file} is {width}×{height}.", "path")
    return image


def find_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in `folder` (not recursive), sorted by name.

    Args:
        folder: a folder.

    Returns:
        The paths whose extension (any case) is one of :data:`IMAGE_EXTENSIONS`.

    Raises:
        ValueError: when `folder` does not exist, is not a folder, or holds no image file.

    Example:
        >>> find_images("/no/such/folder")
        Traceback (most recent call last):
        ...
        attnlens._checks.ArgumentError: Expected `folder` to be a folder of images, but /no/such/folder does not exist.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise ArgumentError(f"Expected `folder` to be a folder of images, but {root} does not exist.", "folder")
    if not root.is_dir():
        raise ArgumentError(f"Expected `folder` to be a folder of images, but {root} is not a folder.", "folder")
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        raise ArgumentError(f"Expected `folder` to hold images ({', '.join(IMAGE_EXTENSIONS)}), but {root} holds "
                            f"none.", "folder")
    return found


def _pair(value: object, name: str) -> tuple[int, int]:
    """An `(h, w)` pair of positive ints from an int or a pair."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)):
        raise ArgumentError(f"Expected `{name}` to be a positive int or a pair (height, width) of them, but got "
                            f"{value!r}.", name)
    return int(pair[0]), int(pair[1])


def _triple(value: object, name: str, *, positive: bool) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,) * 3
    if (not isinstance(value, (tuple, list)) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or (positive and not all(v > 0 for v in value))):
        kind = "positive numbers" if positive else "numbers"
        raise ArgumentError(f"Expected `{name}` to be 3 {kind} (one per RGB channel), but got {value!r}.", name)
    return float(value[0]), float(value[1]), float(value[2])


@dataclass(frozen=True)
class ImagePreprocessing:
    """How a vision model wants its images: resize, center crop, rescale to [0, 1], normalise.

    Output pixels are ``(x / 255 - mean) / std`` per RGB channel, after a PIL resize (of the
    shorter side to `resize_to` keeping the aspect ratio, the longer side truncated to an int as
    Hugging Face and torchvision do, or to exactly `resize_to` = (h, w)) and a center crop (the
    top-left corner at ``((H - h) // 2, (W - w) // 2)``, Hugging Face's rounding).

    Attributes:
        size: `(H, W)` of the output; must equal `crop` when cropping, or `resize_to` when that
            is an exact pair.
        resize_to: an int (the shorter side's new length), an exact `(h, w)`, or None (no resize).
        crop: `(h, w)` of the center crop, or None.
        mean: per-channel mean (of pixels in [0, 1]).
        std: per-channel standard deviation.
        resample: ``"bilinear"`` or ``"bicubic"`` (also ``"nearest"``, ``"lanczos"``).

    Example:
        >>> from PIL import Image
        >>> pre = ImagePreprocessing(size=(4, 4), resize_to=(4, 4), mean=(0.5,) * 3, std=(0.5,) * 3)
        >>> pre([Image.new("RGB", (8, 8), (255, 0, 128))])[0, :, 0, 0]
        tensor([ 1.0000, -1.0000,  0.0039])
    """

    size: tuple[int, int] = (224, 224)
    resize_to: int | tuple[int, int] | None = (224, 224)
    crop: tuple[int, int] | None = None
    mean: tuple[float, float, float] = _HALF
    std: tuple[float, float, float] = _HALF
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "size", _pair(self.size, "size"))
        exact = not (isinstance(self.resize_to, int) and not isinstance(self.resize_to, bool))
        if self.resize_to is not None and exact:
            set_(self, "resize_to", _pair(self.resize_to, "resize_to"))
        elif isinstance(self.resize_to, int) and self.resize_to <= 0:
            raise ArgumentError(f"Expected `resize_to` to be a positive int, a pair (height, width) or None, but got "
                                f"{self.resize_to}.", "resize_to")
        if self.crop is not None:
            set_(self, "crop", _pair(self.crop, "crop"))
        set_(self, "mean", _triple(self.mean, "mean", positive=False))
        set_(self, "std", _triple(self.std, "std", positive=True))
        if self.resample not in _RESAMPLE_NAMES:
            raise ArgumentError(f"Expected `resample` to be one of {', '.join(map(repr, _RESAMPLE_NAMES))}, but got "
                                f"{self.resample!r}.", "resample")
        final = self.crop if self.crop is not None else self.resize_to if isinstance(self.resize_to, tuple) else None
        if final is not None and final != self.size:
            raise ArgumentError(f"Expected `size` to be the output size {final} (the crop, else the exact resize), "
                                f"but got {self.size}.", "size")

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def imagenet(cls, size: int = 224) -> ImagePreprocessing:
        """timm's ImageNet evaluation defaults: the shorter side resized bicubically to
        ``floor(size / 0.875)``, a `size`×`size` center crop, ImageNet mean and std.

        timm: Wightman, github.com/huggingface/pytorch-image-models (``resolve_data_config``).

        Example:
            >>> ImagePreprocessing.imagenet().resize_to
            256
        """
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ArgumentError(f"Expected `size` to be a positive int, but got {size!r}.", "size")
        side = size
        return cls(size=(side, side), resize_to=int(side / 0.875), crop=(side, side), mean=IMAGENET_MEAN,
                   std=IMAGENET_STD, resample="bicubic")

    @classmethod
    def from_hf(cls, folder_or_config: str | os.PathLike | dict | object) -> ImagePreprocessing:
        """Read a Hugging Face image processor config (``ViTImageProcessor``, ``DeiTImageProcessor``).

        As Hugging Face transformers' image processors (Wolf et al., EMNLP 2020 demos) apply it.

        Keys read: ``do_resize``, ``size`` (``{"height", "width"}``, ``{"shortest_edge"}`` or an
        int), ``do_center_crop``, ``crop_size``, ``do_normalize``, ``image_mean``, ``image_std``
        and ``resample`` (a PIL int: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic); missing keys
        take ``ViTImageProcessor``'s defaults. Without a ``preprocessor_config.json``, the model
        config's ``image_size`` is used: an exact bilinear resize, mean = std = 0.5.

        Args:
            folder_or_config: a model folder (holding ``preprocessor_config.json`` and/or
                ``config.json``), the path of a ``preprocessor_config.json``, its content as a
                dict, or a model config object with ``image_size``.

        Returns:
            The preprocessing.

        Raises:
            ValueError: when nothing says the input size, or a value is malformed.

        Example:
            >>> from types import SimpleNamespace
            >>> ImagePreprocessing.from_hf(SimpleNamespace(image_size=16)).size
            (16, 16)
        """
        if isinstance(folder_or_config, dict):
            return cls._from_processor_dict(folder_or_config)
        if isinstance(folder_or_config, (str, os.PathLike)):
            path = Path(folder_or_config).expanduser()
            if path.is_file():
                return cls._from_processor_dict(_read_json(path))
            if not path.is_dir():
                raise ArgumentError(f"Expected `folder_or_config` to be a model folder or a preprocessor_config.json, "
                                    f"but {path} does not exist.", "folder_or_config")
            if (path / "preprocessor_config.json").is_file():
                return cls._from_processor_dict(_read_json(path / "preprocessor_config.json"))
            if (path / "config.json").is_file():
                return cls._from_model_config(_read_json(path / "config.json"), str(path))
            raise ArgumentError(f"Expected `folder_or_config` to hold preprocessor_config.json or config.json, but "
                                f"{path} holds neither.", "folder_or_config")
        config = folder_or_config.to_dict() if hasattr(folder_or_config, "to_dict") else vars(folder_or_config)
        return cls._from_model_config(config, type(folder_or_config).__name__)

    @classmethod
    def _from_model_config(cls, config: dict, where: str) -> ImagePreprocessing:
        size = config.get("image_size")
        if size is None:
            raise ArgumentError(f"Expected `folder_or_config` to say the input size (preprocessor_config.json or "
                                f"image_size), but {where} has neither.", "folder_or_config")
        pair = _pair(tuple(size) if isinstance(size, list) else size, "image_size")
        return cls(size=pair, resize_to=pair, crop=None, mean=_HALF, std=_HALF, resample="bilinear")

    @classmethod
    def _from_processor_dict(cls, config: dict) -> ImagePreprocessing:
        size = _hf_size(config.get("size", {"height": 224, "width": 224}), "size")
        resize_to = size if config.get("do_resize", True) else None
        crop = _hf_size(config.get("crop_size", {"height": 224, "width": 224}), "crop_size") \
            if config.get("do_center_crop", False) else None
        if isinstance(crop, int):
            crop = (crop, crop)
        final = crop if crop is not None else resize_to
        if not isinstance(final, tuple):
            raise ArgumentError(f"Expected the preprocessor config to give a fixed output size (a crop_size, or a size "
                                f"with height and width), but got size {config.get('size')!r} without a crop.",
                                "folder_or_config")
        if config.get("do_normalize", True):
            mean, std = config.get("image_mean", _HALF), config.get("image_std", _HALF)
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        factor = config.get("rescale_factor", 1 / 255)
        if config.get("do_rescale", True) is False or not math.isclose(float(factor), 1 / 255, rel_tol=1e-6):
            raise ArgumentError(f"Expected the preprocessor config to rescale pixels by 1/255, but got do_rescale "
                                f"{config.get('do_rescale', True)!r}, rescale_factor "
                                f"{config.get('rescale_factor', 1 / 255)!r}.", "folder_or_config")
        resample = config.get("resample", 2)
        if resample not in _PIL_RESAMPLE:
            raise ArgumentError(f"Expected `resample` in the preprocessor config to be a PIL filter 0–3, but got "
                                f"{resample!r}.", "folder_or_config")
        return cls(size=final, resize_to=resize_to, crop=crop, mean=tuple(mean), std=tuple(std),
                   resample=_PIL_RESAMPLE[resample])

    # --- applying it --------------------------------------------------------------------------
    def __call__(self, images: Sequence[Any]) -> Tensor:
        """Preprocess B PIL images (any mode; converted to RGB as :func:`load_image` does).

        Args:
            images: B ``PIL.Image.Image``.

        Returns:
            `(B, 3, H, W)` float32 pixel values, `(H, W)` = :attr:`size`.

        Raises:
            ValueError: on an empty list, or an image that does not come out at :attr:`size`
                (with a shorter-side resize and no crop, images of another aspect ratio).
            TypeError: on something that is not a PIL image.
        """
        from PIL import Image  # noqa: PLC0415

        if isinstance(images, Image.Image) or not isinstance(images, Sequence) or len(images) == 0:
            raise ArgumentError("Expected `images` to be a non-empty list of PIL images, but got "
                                f"{'an empty list' if isinstance(images, Sequence) else type(images).__name__}.",
                                "images")
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        out = []
        for index, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise ArgumentTypeError(f"Expected every image to be a PIL image, but image {index} is a "
                                        f"{type(image).__name__}.", "images")
            array = self._resized_and_cropped(_as_rgb(image))
            if array.shape[:2] != self.size:
                raise ArgumentError(f"Expected every image to come out at size {self.size}, but image {index} comes "
                                    f"out at {array.shape[:2]} (give a crop or an exact resize).", "images")
            pixels = torch.from_numpy(array).permute(2, 0, 1).to(torch.float32) / 255.0
            out.append((pixels - mean) / std)
        return torch.stack(out)

    def _resized_and_cropped(self, image: Any) -> np.ndarray:
        """`(h, w, 3)` uint8 after the resize and the center crop."""
        from PIL import Image  # noqa: PLC0415

        filters = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                   "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
        width, height = image.size
        if isinstance(self.resize_to, int):
            short, long = (width, height) if width <= height else (height, width)
            new_long = int(self.resize_to * long / short)
            new = (self.resize_to, new_long) if width <= height else (new_long, self.resize_to)
        elif isinstance(self.resize_to, tuple):
            new = (self.resize_to[1], self.resize_to[0])
        else:
            new = (width, height)
        if new != (width, height):
            image = image.resize(new, resample=filters[self.resample])
        array = np.array(image, dtype=np.uint8)
        if self.crop is not None:
            h, w = self.crop
            rows, cols = array.shape[:2]
            if h > rows or w > cols:  # Hugging Face pads with zeros; a crop larger than the image is refused here
                raise ArgumentError(f"Expected the center crop {self.crop} to fit the resized image, but it is "
                                    f"{(rows, cols)}.", "crop")
            top, left = (rows - h) // 2, (cols - w) // 2
            array = array[top:top + h, left:left + w]
        return np.ascontiguousarray(array)  # a writable copy, for torch.from_numpy


def _hf_size(value: object, name: str) -> int | tuple[int, int]:
    """A Hugging Face ``size``/``crop_size``: `(h, w)` for height/width, an int for a shortest edge."""
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return _pair((value["height"], value["width"]), name)
        if "shortest_edge" in value:
            return _pair(value["shortest_edge"], name)[0]
    elif isinstance(value, int) and not isinstance(value, bool):
        return _pair(value, name)
    raise ArgumentError(f"Expected `{name}` in the preprocessor config to be {{'height', 'width'}}, "
                        f"{{'shortest_edge'}} or an int, but got {value!r}.", "folder_or_config")


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArgumentError(f"Expected {path} to be a JSON file, but it could not be read ({err}).",
                            "folder_or_config") from None
    if not isinstance(content, dict):
        raise ArgumentError(f"Expected {path} to hold a JSON object, but got {type(content).__name__}.",
                            "folder_or_config")
    return content


def load_images(paths: Sequence[str | os.PathLike], preprocessing: ImagePreprocessing) -> Tensor:
    """Read and preprocess B image files into one batch.

    Args:
        paths: B image files (see :func:`load_image`).
        preprocessing: the model's preprocessing.

    Returns:
        `(B, 3, H, W)` float32 pixel values.

    Raises:
        ValueError: on an empty list or any unreadable file (naming it).
    """
    if isinstance(paths, (str, os.PathLike)) or not isinstance(paths, Sequence) or len(paths) == 0:
        raise ArgumentError(f"Expected `paths` to be a non-empty list of image files, but got {paths!r}.", "paths")
    return preprocessing([load_image(path) for path in paths])


def as_pixel_values(images: Tensor | Sequence[Any], preprocessing: ImagePreprocessing) -> Tensor:
    """An image model's input batch from what a user passes: pixels as they are, or files and PIL images read and
    preprocessed (what every image adapter's ``trace``, ``predict`` and ``perturb`` take).

    Args:
        images: a `(B, 3, H, W)` floating tensor already preprocessed (`(H, W)` =
            ``preprocessing.size``), or B image paths and/or ``PIL.Image`` objects.
        preprocessing: the model's preprocessing.

    Returns:
        `(B, 3, H, W)` floating pixel values (a given tensor is returned as it is).

    Raises:
        ValueError: on an empty list, a tensor of another shape, or an unreadable file.
        TypeError: on a non-floating tensor or an item that is neither a path nor a PIL image.

    Example:
        >>> as_pixel_values(torch.zeros(2, 3, 4, 4), ImagePreprocessing(size=(4, 4), resize_to=(4, 4))).shape
        torch.Size([2, 3, 4, 4])
    """
    from PIL import Image  # noqa: PLC0415

    if isinstance(images, Tensor):
        if not images.is_floating_point():
            raise ArgumentTypeError(f"Expected `images` to be a floating tensor of pixel values, but got "
                                    f"{images.dtype}.", "images")
        height, width = preprocessing.size
        if images.ndim != 4 or images.shape[0] == 0 or tuple(images.shape[1:]) != (3, height, width):
            raise ArgumentError(f"Expected `images` to have shape (B, 3, H, W) = (B, 3, {height}, {width}), but got "
                                f"{tuple(images.shape)}.", "images")
        return images
    if isinstance(images, (str, os.PathLike, Image.Image)) or not isinstance(images, Sequence) or not images:
        got = "an empty list" if isinstance(images, Sequence) and not isinstance(images, str) else type(images).__name__
        raise ArgumentError(f"Expected `images` to be a (B, 3, H, W) tensor or a non-empty list of image paths or PIL "
                            f"images, but got {got}.", "images")
    read = []
    for index, image in enumerate(images):
        if isinstance(image, (str, os.PathLike)):
            read.append(load_image(image))
        elif isinstance(image, Image.Image):
            read.append(image)
        else:
            raise ArgumentTypeError(f"Expected every image to be a path or a PIL image, but image {index} is a "
                                    f"{type(image).__name__}.", "images")
    return preprocessing(read)


def to_display(pixel_values: Tensor, preprocessing: ImagePreprocessing) -> np.ndarray:
    """Undo the normalisation of preprocessed pixels, for drawing overlays.

    Args:
        pixel_values: `(3, H, W)` or `(B, 3, H, W)` normalised pixels.
        preprocessing: the preprocessing that made them.

    Returns:
        `(H, W, 3)` (or `(B, H, W, 3)`) uint8 RGB, ``round(255 * (x * std + mean))`` clipped to 0–255.

    Raises:
        ValueError: on another shape.

    Example:
        >>> pre = ImagePreprocessing(size=(2, 2), resize_to=(2, 2))
        >>> to_display(torch.zeros(3, 2, 2), pre)[0, 0].tolist()
        [128, 128, 128]
    """
    if not isinstance(pixel_values, Tensor):
        raise ArgumentTypeError(f"Expected `pixel_values` to be a torch.Tensor, but got "
                                f"{type(pixel_values).__name__}.", "pixel_values")
    if pixel_values.ndim not in (3, 4) or pixel_values.shape[-3] != 3:
        raise ArgumentError(f"Expected `pixel_values` to have shape (3, H, W) or (B, 3, H, W), but got "
                            f"{tuple(pixel_values.shape)}.", "pixel_values")
    values = pixel_values.detach().to("cpu", torch.float64)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float64)[:, None, None]
    std = torch.tensor(preprocessing.std, dtype=torch.float64)[:, None, None]
    pixels = ((values * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return pixels.movedim(-3, -1).numpy()
