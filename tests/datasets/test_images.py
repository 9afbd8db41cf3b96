"""Image reading (every Pillow mode, bad files) and preprocessing (against a hand computation and
Hugging Face's own PIL image processor)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnlens.datasets.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_IMAGE_SIDE,
    ImagePreprocessing,
    find_images,
    load_image,
    load_images,
    to_display,
)

RNG = np.random.RandomState(0)
RGB = RNG.randint(0, 256, (12, 10, 3), dtype=np.uint8)  # (h, w, 3)
GRAY = RNG.randint(0, 256, (12, 10), dtype=np.uint8)


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def _pixels(path) -> np.ndarray:
    image = load_image(path)
    assert image.mode == "RGB"
    return np.asarray(image).astype(np.int64)


def test_rgb_and_grayscale(tmp_path):
    assert (_pixels(_save(Image.fromarray(RGB), tmp_path / "rgb.png")) == RGB).all()
    gray = _pixels(_save(Image.fromarray(GRAY), tmp_path / "gray.png"))
    assert gray.shape == (12, 10, 3) and (gray == GRAY[..., None]).all()
    bits = _pixels(_save(Image.fromarray(GRAY > 127), tmp_path / "bits.png"))  # mode "1"
    assert set(np.unique(bits)) <= {0, 255} and ((bits[..., 0] == 255) == (GRAY > 127)).all()


def test_alpha_is_composited_on_white(tmp_path):
    alpha = np.zeros((12, 10), dtype=np.uint8)
    alpha[:, 5:] = 255
    alpha[0, 0] = 128
    rgba = Image.fromarray(np.dstack([RGB, alpha]), mode="RGBA")
    got = _pixels(_save(rgba, tmp_path / "rgba.png"))
    assert (got[:, 5:] == RGB[:, 5:]).all()  # opaque: unchanged
    assert (got[1:, :5] == 255).all()  # transparent: white
    expected = np.rint(RGB[0, 0].astype(np.float64) * 128 / 255 + 255 * (1 - 128 / 255))
    assert np.abs(got[0, 0] - expected).max() <= 1  # half transparent: blended
    la = Image.fromarray(np.dstack([GRAY, alpha]), mode="LA")
    got = _pixels(_save(la, tmp_path / "la.png"))
    assert (got[:, 5:, 0] == GRAY[:, 5:]).all() and (got[1:, :5] == 255).all()


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.fromarray(RGB).quantize(colors=16)
    assert palette.mode == "P"
    expected = np.asarray(palette.convert("RGB")).astype(np.int64)
    assert (_pixels(_save(palette, tmp_path / "p.png")) == expected).all()
    index = int(np.asarray(palette)[0, 0])
    transparent = _pixels(_save(palette, tmp_path / "pt.png", transparency=index))
    hidden = np.asarray(palette) == index
    assert (transparent[hidden] == 255).all() and (transparent[~hidden] == expected[~hidden]).all()


def test_cmyk(tmp_path):
    cmyk = Image.fromarray(RGB).convert("CMYK")
    got = _pixels(_save(cmyk, tmp_path / "cmyk.tiff"))
    assert (got == np.asarray(cmyk.convert("RGB"))).all()
    assert np.abs(got - RGB).max() <= 1  # Pillow's CMYK is the complement of RGB


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_is_scaled_to_eight(tmp_path, mode):
    values = np.linspace(0, 65535, 120).astype(np.uint16).reshape(12, 10)
    if mode == "I;16B":
        image = Image.frombytes("I;16B", (10, 12), values.astype(">u2").tobytes())
    elif mode == "I":
        image = Image.fromarray(values.astype(np.int32))
    else:
        image = Image.fromarray(values)
    assert image.mode == mode
    path = tmp_path / "deep.tiff"
    image.save(path)
    got = _pixels(path)
    expected = np.rint(values.astype(np.float64) * 255 / 65535)
    assert (got == expected[..., None]).all() and got.max() == 255 and got.min() == 0


def test_preprocessing_converts_any_pil_mode_too():
    pre = ImagePreprocessing(size=(12, 10), resize_to=None)
    gray = pre([Image.fromarray(GRAY)])
    torch.testing.assert_close(gray[0, 0], torch.from_numpy(GRAY / 255.0 * 2 - 1).float())
    assert (gray[0, 0] == gray[0, 2]).all()


def test_bad_files_get_one_line_naming_them(tmp_path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ValueError, match=f"Expected `path` to be an image file, but {missing} does not exist"):
        load_image(missing)
    with pytest.raises(ValueError, match="is not a regular file"):
        load_image(tmp_path)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n")
    with pytest.raises(ValueError, match=r"Expected `path` to be an image file Pillow can read \(JPEG, PNG, \.\.\.\), "
                                         rf"but {text} is not an image"):
        load_image(text)
    whole = _save(Image.fromarray(np.repeat(np.repeat(RGB, 8, 0), 8, 1)), tmp_path / "whole.jpg", quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    with pytest.raises(ValueError, match=rf"Expected `path` to be a readable image file, but {truncated} is "
                                         r"truncated or corrupt \(") as info:
        load_image(truncated)
    assert "\n" not in str(info.value)
    tiny = _save(Image.new("RGB", (1, 1)), tmp_path / "dot.png")
    with pytest.raises(ValueError, match=rf"Expected `path` to be an image of at least {MIN_IMAGE_SIDE}×"
                                         rf"{MIN_IMAGE_SIDE} pixels, but {tiny} is 1×1"):
        load_image(tiny)
    load_image(_save(Image.new("RGB", (MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)), tmp_path / "smallest.png"))
    with pytest.raises(TypeError, match="Expected `path` to be a file path"):
        load_image(3)


def test_find_images(tmp_path):
    with pytest.raises(ValueError, match="Expected `folder` to be a folder of images, but .* does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"Expected `folder` to hold images \(.bmp, .*\), but .* holds none"):
        find_images(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        find_images(tmp_path / "readme.txt")
    for name in ("b.PNG", "a.jpg", "c.jpeg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="PNG" if name.endswith("PNG") else "JPEG")
    (tmp_path / "sub.jpg").mkdir()
    assert [p.name for p in find_images(tmp_path)] == ["a.jpg", "b.PNG", "c.jpeg"]


def _by_hand(image: Image.Image, pre: ImagePreprocessing, new_size: tuple[int, int], box: tuple[int, int]):
    """PIL's resize to `new_size` (w, h), a crop at `box` (top, left), then (x / 255 - mean) / std by numpy."""
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    array = np.asarray(image.resize(new_size, filters[pre.resample])).astype(np.float64)
    top, left = box
    h, w = pre.size
    array = array[top:top + h, left:left + w]
    return torch.from_numpy(((array / 255 - np.array(pre.mean)) / np.array(pre.std)).transpose(2, 0, 1)).float()


def test_preprocessing_against_a_hand_computation():
    wide = Image.fromarray(RNG.randint(0, 256, (30, 50, 3), dtype=np.uint8))  # 50 wide, 30 high
    tall = Image.fromarray(RNG.randint(0, 256, (47, 31, 3), dtype=np.uint8))
    pre = ImagePreprocessing(size=(16, 16), resize_to=20, crop=(16, 16), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             resample="bicubic")
    got = pre([wide, tall])
    assert got.shape == (2, 3, 16, 16) and got.dtype == torch.float32
    # shorter side to 20, the longer one int(20 * long / short); crop at ((H - 16) // 2, (W - 16) // 2)
    torch.testing.assert_close(got[0], _by_hand(wide, pre, (33, 20), (2, 8)), atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], _by_hand(tall, pre, (20, 30), (7, 2)), atol=1e-5, rtol=0)
    exact = ImagePreprocessing(size=(8, 12), resize_to=(8, 12), resample="bilinear")
    torch.testing.assert_close(exact([wide])[0], _by_hand(wide, exact, (12, 8), (0, 0)), atol=1e-5, rtol=0)
    plain = ImagePreprocessing(size=(30, 50), resize_to=None, mean=(0.0, 0.5, 1.0), std=(1.0, 2.0, 0.5))
    pixels = np.asarray(wide).astype(np.float64) / 255
    expected = np.stack([pixels[..., 0], (pixels[..., 1] - 0.5) / 2, (pixels[..., 2] - 1.0) / 0.5])
    torch.testing.assert_close(plain([wide])[0], torch.from_numpy(expected).float(), atol=1e-6, rtol=0)


def test_preprocessing_checks():
    with pytest.raises(ValueError, match=r"Expected `size` to be the output size \(16, 16\) \(the crop, else the exact "
                                         r"resize\), but got \(8, 8\)"):
        ImagePreprocessing(size=(8, 8), resize_to=20, crop=(16, 16))
    with pytest.raises(ValueError, match="Expected `resample` to be one of 'nearest', 'bilinear', 'bicubic', "
                                         "'lanczos', but got 'box'"):
        ImagePreprocessing(resample="box")
    with pytest.raises(ValueError, match=r"Expected `std` to be 3 positive numbers \(one per RGB channel\)"):
        ImagePreprocessing(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="Expected `images` to be a non-empty list of PIL images, but got an empty"):
        ImagePreprocessing()([])
    with pytest.raises(TypeError, match="Expected every image to be a PIL image, but image 0 is a ndarray"):
        ImagePreprocessing()([RGB])
    aspect = ImagePreprocessing(size=(16, 16), resize_to=16, crop=None)
    with pytest.raises(ValueError, match=r"Expected every image to come out at size \(16, 16\), but image 0 comes out "
                                         r"at \(19, 16\)"):
        aspect([Image.fromarray(RGB)])  # 10 wide, 12 high: 16 wide, int(16 * 12 / 10) = 19 high
    pre = ImagePreprocessing.imagenet(32)
    assert (pre.resize_to, pre.crop, pre.resample, pre.mean) == (36, (32, 32), "bicubic", IMAGENET_MEAN)
    assert ImagePreprocessing.imagenet().resize_to == 256


def _processor_config(folder, **values):
    config = {"image_processor_type": "DeiTImageProcessor", "do_resize": True, "size": {"height": 20, "width": 20},
              "resample": 3, "do_center_crop": True, "crop_size": {"height": 16, "width": 16}, "do_rescale": True,
              "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(IMAGENET_MEAN),
              "image_std": list(IMAGENET_STD), **values}
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    return config


def test_from_hf_reads_a_preprocessor_config(tmp_path):
    config = _processor_config(tmp_path)
    pre = ImagePreprocessing.from_hf(tmp_path)
    assert pre == ImagePreprocessing(size=(16, 16), resize_to=(20, 20), crop=(16, 16), mean=IMAGENET_MEAN,
                                     std=IMAGENET_STD, resample="bicubic")
    assert ImagePreprocessing.from_hf(tmp_path / "preprocessor_config.json") == pre
    assert ImagePreprocessing.from_hf(config) == pre
    image = Image.fromarray(RNG.randint(0, 256, (30, 50, 3), dtype=np.uint8))
    torch.testing.assert_close(pre([image])[0], _by_hand(image, pre, (20, 20), (2, 2)), atol=1e-5, rtol=0)
    from transformers.models.deit.image_processing_pil_deit import DeiTImageProcessorPil

    reference = DeiTImageProcessorPil(**{k: v for k, v in config.items() if k != "image_processor_type"})
    torch.testing.assert_close(pre([image]), reference(image, return_tensors="pt")["pixel_values"], atol=1e-5, rtol=0)
    edge = ImagePreprocessing.from_hf({"size": {"shortest_edge": 24}, "do_center_crop": True, "crop_size": 16,
                                       "resample": 2, "do_normalize": False})
    assert (edge.resize_to, edge.crop, edge.mean, edge.std) == (24, (16, 16), (0.0,) * 3, (1.0,) * 3)


def test_from_hf_falls_back_to_the_model_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", "image_size": 16}))
    pre = ImagePreprocessing.from_hf(tmp_path)
    assert pre == ImagePreprocessing(size=(16, 16), resize_to=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)
    from transformers import ViTConfig

    assert ImagePreprocessing.from_hf(ViTConfig(image_size=32)).size == (32, 32)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="Expected `folder_or_config` to say the input size"):
        ImagePreprocessing.from_hf(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="to hold preprocessor_config.json or config.json, but .* holds neither"):
        ImagePreprocessing.from_hf(tmp_path / "empty")
    with pytest.raises(ValueError, match="Expected `folder_or_config` to be a model folder or a "
                                         "preprocessor_config.json, but .* does not exist"):
        ImagePreprocessing.from_hf(tmp_path / "missing")
    with pytest.raises(ValueError, match="to give a fixed output size"):
        ImagePreprocessing.from_hf({"size": {"shortest_edge": 24}})
    with pytest.raises(ValueError, match="Expected the preprocessor config to rescale pixels by 1/255"):
        ImagePreprocessing.from_hf({"do_rescale": False})


def test_load_images_and_to_display(tmp_path):
    paths = [_save(Image.fromarray(RGB), tmp_path / "a.png"), _save(Image.fromarray(GRAY), tmp_path / "b.png")]
    pre = ImagePreprocessing(size=(12, 10), resize_to=None, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    batch = load_images(paths, pre)
    assert batch.shape == (2, 3, 12, 10)
    assert (to_display(batch[0], pre) == RGB).all()
    assert (to_display(batch, pre)[1] == GRAY[..., None]).all()
    with pytest.raises(ValueError, match=r"Expected `pixel_values` to have shape \(3, H, W\) or \(B, 3, H, W\)"):
        to_display(batch[:, :2], pre)
    with pytest.raises(ValueError, match="Expected `paths` to be a non-empty list of image files"):
        load_images([], pre)
    with pytest.raises(ValueError, match="does not exist"):
        load_images([tmp_path / "c.png"], pre)
