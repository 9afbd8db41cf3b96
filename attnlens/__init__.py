"""attnlens: explain what Transformer and Mamba models look at."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("attnlens")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
