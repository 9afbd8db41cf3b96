"""Dataset loaders."""

from attnlens.datasets.sst2 import SST2Split, load_sst2, read_sst2_tsv

__all__ = ["SST2Split", "load_sst2", "read_sst2_tsv"]
