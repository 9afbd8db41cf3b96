"""Dataset loaders: files, folders and Hugging Face datasets into `Examples`; SST-2 as a preset."""

from attnlens.datasets.examples import Example, Examples
from attnlens.datasets.loaders import SPLIT_ORDER, load_examples, read_examples_file
from attnlens.datasets.placed_digits import PlacedDigits, PlacedDigitsFolders, placed_digits, write_placed_digits
from attnlens.datasets.sst2 import SST2Split, load_sst2, load_sst2_examples, read_sst2_tsv

__all__ = [
    "Example",
    "Examples",
    "PlacedDigits",
    "PlacedDigitsFolders",
    "SPLIT_ORDER",
    "SST2Split",
    "load_examples",
    "load_sst2",
    "load_sst2_examples",
    "placed_digits",
    "read_examples_file",
    "read_sst2_tsv",
    "write_placed_digits",
]
