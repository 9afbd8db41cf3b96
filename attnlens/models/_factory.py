"""Load any supported model by hub id or local folder, choosing its adapter from the config."""

from __future__ import annotations

import os

import torch

from attnlens._checks import ArgumentError, _check_device
from attnlens.models._registry import adapter_for_config


def _check_model_reference(name_or_path: str) -> None:
    """A reference that is clearly a path must exist (and is then never looked up on the hub)."""
    from pathlib import Path  # noqa: PLC0415

    text = str(name_or_path)
    if not text.strip():
        raise ArgumentError("Expected `model` to be a Hugging Face model id or a local model folder, but got ''.",
                            "model")
    looks_like_path = text.startswith(("/", ".", "~")) or os.sep in text.rstrip(os.sep) and text.count("/") > 1
    if looks_like_path and not Path(text).expanduser().exists():
        raise ArgumentError(f"Expected `model` to be a local model folder, but {text} does not exist.", "model")
    if not looks_like_path and not Path(text).expanduser().exists():
        _check_hub_reachable(text)


def hub_status(model_id: str, *, timeout: float = 10) -> str:
    """Where a hub id stands: ``"cached"``, ``"available"`` (the hub answers), ``"offline"``
    (``HF_HUB_OFFLINE`` is set and it is not cached), ``"unreachable"`` (no connection),
    ``"missing"`` (the hub does not know it, or it needs a login) or ``"unknown"`` (any other answer)."""
    try:
        from huggingface_hub import model_info, try_to_load_from_cache  # noqa: PLC0415

        if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
            return "cached"
    except Exception:  # noqa: BLE001 - an unusable id is reported by the loader
        return "unknown"
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false"):
        return "offline"
    try:
        model_info(model_id, timeout=timeout)
    except Exception as err:  # noqa: BLE001 - offline, DNS and HTTP errors of every kind
        names = {cls.__name__ for cls in type(err).__mro__}
        if names & {"ConnectError", "ConnectionError", "ConnectTimeout", "TimeoutException", "NetworkError"}:
            return "unreachable"
        return "missing" if "RepositoryNotFoundError" in names else "unknown"
    return "available"


def _check_hub_reachable(model_id: str) -> None:
    """Fail fast (instead of ~20 s of retries inside transformers) when a hub id is neither cached
    nor reachable; any other answer of the hub is left to the loader."""
    status = hub_status(model_id)
    if status == "offline":
        raise ArgumentError(f"Expected `model` to be a local folder or a cached hub model (HF_HUB_OFFLINE is set), but "
                            f"{model_id!r} is not in the Hugging Face cache.", "model")
    if status == "unreachable":
        raise ArgumentError(f"Expected `model` to be a local folder or a reachable hub model, but the Hugging Face "
                            f"hub cannot be reached and {model_id!r} is not in the local cache.", "model")
    if status == "missing":
        raise ArgumentError(f"Expected `model` to be a local folder or a hub model, but {model_id!r} does not exist "
                            f"on the Hugging Face hub (or needs a login).", "model")


def load_failure(name_or_path: str, err: Exception) -> ValueError:
    """One line saying why a model could not be loaded, with the first line of the cause."""
    from attnlens.models._loading import failure_cause  # noqa: PLC0415

    return ArgumentError(f"Expected `model` to be a Hugging Face model id or a local model folder, but "
                         f"{name_or_path!r} could not be loaded ({failure_cause(err)}).", "model")


def read_model_config(name_or_path: str, **kwargs: object) -> object:
    """The Hugging Face config of a model reference, after checking the reference (a path must exist; a
    hub id must be cached or reachable) — what every loader reads first.

    Raises:
        ArgumentError: (argument `model`) on a missing path, an unreachable hub id or an unreadable config.
    """
    _check_model_reference(name_or_path)
    from transformers import AutoConfig  # noqa: PLC0415

    try:
        return AutoConfig.from_pretrained(name_or_path, **kwargs)
    except Exception as err:  # noqa: BLE001 - hub, IO and format errors of every kind
        raise load_failure(name_or_path, err) from err


def load_adapter(name_or_path: str, *, device: str | torch.device = "cpu") -> object:
    """Read the model's Hugging Face config, pick the registered adapter family, and load it.

    Args:
        name_or_path: hub id or local folder, or a Vim spec (``vim-small=FILE.pth``, ``vim=DIR``), or a timm
            spec (``timm:MODEL_NAME[=FILE]``, needs ``pip install attnlens[timm]``).
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
        attnlens._checks.ArgumentError: Expected `model` to be a local model folder, but /no/such/model does not exist.
    """
    device = _check_device(device)
    from attnlens.models.vim_adapter import VimAdapter, parse_vim_spec  # noqa: PLC0415 - Vim has no HF config
    if (vim_spec := parse_vim_spec(name_or_path)) is not None:
        return VimAdapter.from_spec(*vim_spec, device=device)
    from attnlens.models.timm_vit import TimmViTAdapter, parse_timm_spec  # noqa: PLC0415 - timm has no HF config
    if (timm_spec := parse_timm_spec(name_or_path)) is not None:
        return TimmViTAdapter.from_spec(*timm_spec, device=device)
    config = read_model_config(name_or_path)
    return adapter_for_config(config).from_pretrained(name_or_path, device=device)
