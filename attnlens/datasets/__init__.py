"""Dataset loaders: files, folders and Hugging Face datasets into `Examples`; SST-2 as a preset."""

from attnlens.datasets.examples import Example, Examples
from attnlens.datasets.images import (
    ImagePreprocessing,
    as_pixel_values,
    find_images,
    load_image,
    load_images,
    to_display,
)
from attnlens.datasets.loaders import SPLIT_ORDER, load_examples, read_examples_file
from attnlens.datasets.placed_digits import PlacedDigits, PlacedDigitsFolders, placed_digits, write_placed_digits
from attnlens.datasets.sst2 import SST2Split, load_sst2, load_sst2_examples, read_sst2_tsv

__all__ = [
    "Example",
    "Examples",
    "ImagePreprocessing",
    "PlacedDigits",
    "PlacedDigitsFolders",
    "SPLIT_ORDER",
    "SST2Split",
    "as_pixel_values",
    "find_images",
    "load_examples",
    "load_image",
    "load_images",
    "load_sst2",
    "load_sst2_examples",
    "placed_digits",
    "read_examples_file",
    "read_sst2_tsv",
    "to_display",
    "write_placed_digits",
]
