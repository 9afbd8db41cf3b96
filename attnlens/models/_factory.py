"""Load any supported model by hub id or local folder, choosing its adapter from the config."""

from __future__ import annotations

import torch

from attnlens._checks import _check_device
from attnlens.models._registry import adapter_for_config


def load_adapter(name_or_path: str, *, device: str | torch.device = "cpu") -> object:
    """Read the model's Hugging Face config, pick the registered adapter family, and load it.

    Args:
        name_or_path: hub id or local folder.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        The family's adapter (for example a text-classifier or Mamba adapter).

    Raises:
        ValueError: when the device is unavailable, the config cannot be read, or no adapter
            family accepts the model.

    Example:
        >>> load_adapter("/no/such/model")
        Traceback (most recent call last):
        ...
        ValueError: Expected `model` to be a Hugging Face model id or a local model folder, but '/no/such/model' could not be loaded (OSError).
    """
    device = _check_device(device)
    from transformers import AutoConfig  # noqa: PLC0415

    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except Exception as err:  # noqa: BLE001 - hub, IO and format errors of every kind
        raise ValueError(
            f"Expected `model` to be a Hugging Face model id or a local model folder, but {name_or_path!r} could not "
            f"be loaded ({type(err).__name__})."
        ) from err
    return adapter_for_config(config).from_pretrained(name_or_path, device=device)
