"""Placed digits: shapes, determinism, masks equal to the digit's pixels, placement, labels from scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attnlens.datasets import PlacedDigits, placed_digits, write_placed_digits
from attnlens.datasets.placed_digits import _split_indices


def _sklearn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def test_shapes_and_dtypes():
    data = placed_digits(7, size=24, seed=3)
    assert isinstance(data, PlacedDigits)
    assert data.images.shape == (7, 3, 24, 24) and data.images.dtype == torch.float32
    assert data.labels.shape == (7,) and data.labels.dtype == torch.long
    assert data.masks.shape == (7, 24, 24) and data.masks.dtype == torch.bool
    assert data.boxes.shape == (7, 4) and data.quadrants.shape == (7,) and data.source_indices.shape == (7,)
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert torch.equal(data.images[:, 0], data.images[:, 1]) and torch.equal(data.images[:, 0], data.images[:, 2])


def test_deterministic_and_seed_dependent():
    first, again, other = placed_digits(20, seed=5), placed_digits(20, seed=5), placed_digits(20, seed=6)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first.images, other.images)


@pytest.mark.parametrize("quadrant", [True, False])
@pytest.mark.parametrize(("size", "digit_size"), [(32, None), (32, 8), (17, 8), (20, 5)])
def test_mask_is_the_pasted_digit(quadrant, size, digit_size):
    data = placed_digits(30, size=size, seed=1, digit_size=digit_size, quadrant=quadrant)
    side = digit_size or size // 2
    digits, targets = _sklearn()
    assert torch.equal(data.masks, data.images[:, 0] > 0)
    for index in range(30):
        top, left, bottom, right = data.boxes[index].tolist()
        assert bottom - top == side and right - left == side and 0 <= top and bottom <= size and right <= size
        inside = torch.zeros(size, size, dtype=torch.bool)
        inside[top:bottom, left:right] = True
        assert not bool(data.masks[index][~inside].any())  # nothing drawn outside the box
        # The box holds the nearest-neighbour upscaled digit (loop reference).
        source = digits[int(data.source_indices[index])] / 16.0
        expected = np.array([[source[(r * 8) // side, (c * 8) // side] for c in range(side)] for r in range(side)])
        pasted = data.images[index, 0, top:bottom, left:right].numpy()
        np.testing.assert_allclose(pasted, expected, atol=0.5 / 255)
        assert int(data.labels[index]) == int(targets[int(data.source_indices[index])])


def test_quadrant_placement_and_rate():
    size = 32
    data = placed_digits(400, size=size, seed=2, digit_size=10)
    half = size // 2
    for index in range(400):
        top, left, bottom, right = data.boxes[index].tolist()
        quadrant = int(data.quadrants[index])
        rows = range(0, half) if quadrant < 2 else range(size - half, size)
        columns = range(0, half) if quadrant % 2 == 0 else range(size - half, size)
        assert top in rows and bottom - 1 in rows and left in columns and right - 1 in columns
    counts = torch.bincount(data.quadrants, minlength=4)
    assert int(counts.min()) > 70  # about 100 each


def test_default_digit_fills_its_quadrant():
    data = placed_digits(50, size=32, seed=0)
    tops_lefts = data.boxes[:, :2]
    assert set(tops_lefts.flatten().tolist()) <= {0, 16}
    expected_quadrant = 2 * (tops_lefts[:, 0] == 16) + (tops_lefts[:, 1] == 16)
    assert torch.equal(data.quadrants, expected_quadrant)


def test_uniform_placement_reaches_every_offset():
    data = placed_digits(2000, size=20, seed=0, digit_size=8, quadrant=False)
    assert set(data.boxes[:, 0].tolist()) == set(range(13)) and set(data.boxes[:, 1].tolist()) == set(range(13))


def test_splits_partition_the_sklearn_digits():
    train, test, everything = _split_indices("train"), _split_indices("test"), _split_indices("all")
    assert len(set(train) & set(test)) == 0 and sorted(set(train) | set(test)) == list(everything)
    assert len(test) == 359
    assert set(placed_digits(500, seed=0, split="test").source_indices.tolist()) <= set(test.tolist())
    assert set(placed_digits(500, seed=0, split="train").source_indices.tolist()) <= set(train.tolist())


def test_write_placed_digits_round_trips(tmp_path):
    written = write_placed_digits(tmp_path / "digits", 12, size=16, seed=4)
    assert written.masks == tmp_path / "digits_masks"
    data = placed_digits(12, size=16, seed=4)
    for index in range(12):
        label = int(data.labels[index])
        image = np.array(Image.open(written.images / str(label) / f"{index:05d}.png"))
        mask = np.asarray(Image.open(written.masks / str(label) / f"{index:05d}.png"))
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8
        assert torch.equal(torch.from_numpy(image).permute(2, 0, 1).float() / 255, data.images[index])
        np.testing.assert_array_equal(mask > 0, data.masks[index].numpy())
        assert set(np.unique(mask).tolist()) <= {0, 255}
    images = sorted(p.relative_to(written.images) for p in written.images.rglob("*.png"))
    masks = sorted(p.relative_to(written.masks) for p in written.masks.rglob("*.png"))
    assert images == masks and len(images) == 12


def test_write_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "other.txt").write_text("x")
    with pytest.raises(ValueError, match="Expected `folder` to be a new or empty folder"):
        write_placed_digits(tmp_path / "digits", 3, size=16)
    assert not (tmp_path / "digits_masks").exists()
    with pytest.raises(ValueError, match="Expected `masks_folder` to differ from `folder`"):
        write_placed_digits(tmp_path / "new", 3, size=16, masks_folder=tmp_path / "new")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 0}, "Expected `n` to be a positive integer, but got 0."),
    ({"n": 2, "size": 1}, "Expected `size` to be an integer of at least 2, but got 1."),
    ({"n": 2, "seed": -1}, "Expected `seed` to be a non-negative integer, but got -1."),
    ({"n": 2, "size": 16, "digit_size": 9}, r"Expected `digit_size` to be at most size // 2 = 8 .*, but got 9."),
    ({"n": 2, "digit_size": 0}, "Expected `digit_size` to be a positive integer, but got 0."),
    ({"n": 2, "split": "dev"}, "Expected `split` to be one of 'all', 'train', 'test', but got 'dev'."),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)") if "*" not in message
                       else message):
        placed_digits(**kwargs)


def test_bad_argument_type():
    with pytest.raises(TypeError, match="Expected `n` to be a positive integer, but got float."):
        placed_digits(2.0)
