"""Where attnlens keeps user files: ``$ATTNLENS_HOME`` or ``~/.cache/attnlens``."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ATTNLENS_HOME"
MODEL_ENV = "ATTNLENS_MODEL"
DEFAULT_MODEL_NAME = "minilm-sst2"


def attnlens_home() -> Path:
    """The attnlens cache folder: ``$ATTNLENS_HOME`` if set, else ``~/.cache/attnlens``."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attnlens"


def model_dir(name: str) -> Path:
    """Where `attnlens finetune` saves the classifier called `name` (``minilm-sst2``, ``mpnet-sst2``):
    ``<attnlens_home()>/models/<name>``; ``--model NAME`` finds it there.

    Example:
        >>> model_dir("mpnet-sst2").parts[-2:]
        ('models', 'mpnet-sst2')
    """
    return attnlens_home() / "models" / name


def default_model_dir() -> Path:
    """Where `attnlens finetune` saves the default SST-2 classifier, and where `attnlens sst2` looks for it.

    Example:
        >>> default_model_dir().parts[-2:]
        ('models', 'minilm-sst2')
    """
    return model_dir(DEFAULT_MODEL_NAME)
