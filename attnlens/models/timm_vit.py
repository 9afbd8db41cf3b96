"""Optional adapter for timm Vision Transformers (``timm.models.vision_transformer.VisionTransformer``).

ViT: Dosovitskiy et al., ICLR 2021 (arXiv:2010.11929); timm: Wightman, github.com/huggingface/pytorch-image-models.

**Untested in CI**: timm pulls torchvision and a CUDA build of torch, so it is not installed with
attnlens (``pip install attnlens[timm]``) and this module is exercised only by hand. Importing it
never imports timm; loading a model without timm raises a one-line error saying what to install.

Models are named by the spec ``timm:MODEL_NAME`` (pretrained weights through timm's own hub
download) or ``timm:MODEL_NAME=FILE`` (weights from a local file, timm's
``pretrained_cfg_overlay={"file": FILE}``), passed to :func:`~attnlens.models.load_adapter`.

Everything but the model's pieces is :class:`~attnlens.models.hf_vit.ViTAdapter`'s: tokens
``["[CLS]", (register tokens "[REG0]", ...) "patch(0,0)", ...]``, readout 0 (only class-token models,
``global_pool="token"``, are accepted), attention, saliency, ``extras["attention_grad"]``, and both
perturbation modes. Attention is captured by turning each block's ``attn.fused_attn`` off while
tracing (so timm materialises the softmax) and hooking ``attn.attn_drop``, whose output (the
attention probabilities; dropout is off in eval mode) is what multiplies the values; flags and
hooks are restored on exit. Preprocessing follows the model's ``pretrained_cfg`` (input size,
``crop_pct``, interpolation, mean, std) with a center crop.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from attnlens._checks import _check_device, _check_integer
from attnlens.datasets.images import ImagePreprocessing
from attnlens.models._targets import ExplainError
from attnlens.models.hf_vit import ViTAdapter

__all__ = ["TimmViTAdapter", "parse_timm_spec"]

_PREFIX = "timm:"
_INSTALL = "pip install attnlens[timm]"


def parse_timm_spec(spec: object) -> tuple[str, str | None] | None:
    """Split a ``timm:MODEL_NAME[=FILE]`` spec into the model name and the weights file; None for other specs.

    Example:
        >>> parse_timm_spec("timm:vit_small_patch16_224=weights.safetensors")
        ('vit_small_patch16_224', 'weights.safetensors')
        >>> parse_timm_spec("google/vit-base-patch16-224") is None
        True
    """
    if not isinstance(spec, str) or not spec.startswith(_PREFIX):
        return None
    name, _, file = spec[len(_PREFIX):].partition("=")
    if not name.strip():
        raise ExplainError(f"Expected `model` to be timm:MODEL_NAME or timm:MODEL_NAME=FILE, but got {spec!r}.")
    return name.strip(), (file.strip() or None)


def _preprocessing(config: dict[str, Any]) -> ImagePreprocessing:
    """The evaluation transform timm's ``resolve_data_config`` describes: shorter side to ``floor(size / crop_pct)``,
    center crop, mean and std."""
    height, width = (int(v) for v in config.get("input_size", (3, 224, 224))[1:])
    crop_pct = float(config.get("crop_pct") or 0.875)
    resample = config.get("interpolation", "bicubic")
    return ImagePreprocessing(size=(height, width), resize_to=math.floor(min(height, width) / crop_pct),
                              crop=(height, width), mean=tuple(config.get("mean", (0.485, 0.456, 0.406))),
                              std=tuple(config.get("std", (0.229, 0.224, 0.225))),
                              resample=resample if resample in ("bilinear", "bicubic") else "bicubic")


class TimmViTAdapter(ViTAdapter):
    """Traces of a timm ``VisionTransformer`` read at its class token (untested in CI; see the module docstring).

    Dosovitskiy et al., ICLR 2021.

    Args:
        model: a timm ``VisionTransformer`` with a class token and ``global_pool="token"``.
        preprocessing: defaults to the model's ``pretrained_cfg``.

    Raises:
        ExplainError: for a model without a class token or pooled otherwise (no readout row).
    """

    family = "timm_vit"  # not in the registry: reached through the timm: spec, timm models have no HF config

    def __init__(self, model: torch.nn.Module, *, preprocessing: ImagePreprocessing | None = None) -> None:
        if getattr(model, "cls_token", None) is None or getattr(model, "global_pool", "token") != "token":
            raise ExplainError(f"Expected a timm ViT read at its class token (global_pool='token'), but got "
                               f"{type(model).__name__} with global_pool={getattr(model, 'global_pool', None)!r}.")
        self.model = model
        self.preprocessing = preprocessing or _preprocessing(dict(getattr(model, "pretrained_cfg", None) or {}))
        self.num_special = int(getattr(model, "num_prefix_tokens", 1))
        self.patch_size = tuple(int(v) for v in model.patch_embed.patch_size)
        self.grid = tuple(int(v) for v in model.patch_embed.grid_size)
        size = (self.grid[0] * self.patch_size[0], self.grid[1] * self.patch_size[1])
        if self.preprocessing.size != size:
            raise ExplainError(f"Expected `preprocessing` to make images of the model's size {size}, but it makes "
                               f"{self.preprocessing.size}.")

    @classmethod
    def accepts(cls, config: object) -> bool:
        """Never: timm models have no Hugging Face config (load them by the ``timm:`` spec)."""
        return False

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> TimmViTAdapter:
        """Load ``name_or_path`` (a timm model name, or a ``timm:`` spec) with timm's pretrained weights."""
        parsed = parse_timm_spec(name_or_path) or (name_or_path, None)
        return cls.from_spec(*parsed, device=device)

    @classmethod
    def from_spec(cls, model_name: str, file: str | None = None, *, device: str | torch.device = "cpu"
                  ) -> TimmViTAdapter:
        """Create timm's `model_name` with its pretrained weights, or those of a local `file`.

        Raises:
            ExplainError: when timm is not installed (naming ``pip install attnlens[timm]``), the model or
                the file cannot be loaded, or it is not a class-token ViT.
        """
        device = _check_device(device)
        try:
            import timm  # noqa: PLC0415
        except ImportError:
            raise ExplainError(f"Expected the `timm` package for model 'timm:{model_name}', but it is not installed "
                               f"({_INSTALL}).") from None
        from pathlib import Path  # noqa: PLC0415

        if file is not None and not Path(file).expanduser().is_file():
            raise ExplainError(f"Expected `model` weights file {file} to exist, but it does not.")
        overlay = {"file": str(Path(file).expanduser())} if file is not None else None
        try:
            model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay)
        except Exception as err:  # noqa: BLE001 - unknown names, hub and file errors of every kind
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ExplainError(f"Expected `model` 'timm:{model_name}' to load, but it failed ({first}).") from err
        from timm.models.vision_transformer import VisionTransformer  # noqa: PLC0415

        if not isinstance(model, VisionTransformer):
            raise ExplainError(f"Expected `model` 'timm:{model_name}' to be a timm VisionTransformer, but it is a "
                               f"{type(model).__name__}.")
        return cls(model.to(device).eval())

    # --- what the model is --------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.model.blocks)

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)

    def layers(self) -> list[torch.nn.Module]:
        return list(self.model.blocks)

    def label(self, class_index: int) -> str:
        index = _check_integer(class_index, "class_index", low=0, high=self.num_classes - 1)
        names = (getattr(self.model, "pretrained_cfg", None) or {}).get("label_names")
        return str(names[index]) if names and len(names) == self.num_classes else str(index)

    def _tokens(self) -> list[str]:
        registers = [f"[REG{i}]" for i in range(self.num_special - 1)]
        return ["[CLS]", *registers] + [f"patch({r},{c})" for r in range(self.grid[0]) for c in range(self.grid[1])]

    # --- the model's pieces -------------------------------------------------------------------
    def _logits(self, pixels: Tensor) -> Tensor:
        return self.model(pixels)

    @contextlib.contextmanager
    def _recording(self, gradients: bool) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {"attentions": [], "leaves": []}
        handles, flags = [], []

        def capture(module: torch.nn.Module, args: tuple, output: Tensor) -> None:
            record["attentions"].append(output)

        def leaf(module: torch.nn.Module, args: tuple) -> tuple:
            first = args[0].detach().requires_grad_(True)
            record["leaves"].append(first)
            return (first, *args[1:])

        try:
            for block in self.model.blocks:
                flags.append((block.attn, getattr(block.attn, "fused_attn", False)))
                block.attn.fused_attn = False
                handles.append(block.attn.attn_drop.register_forward_hook(capture))
            if gradients:
                handles.append(self.model.blocks[0].register_forward_pre_hook(leaf))
            yield record
        finally:
            for handle in handles:
                handle.remove()
            for attention, flag in flags:
                attention.fused_attn = flag

    def _traced_forward(self, pixels: Tensor, record: dict[str, Any]) -> tuple[Tensor, list[Tensor]]:
        return self.model(pixels), record["attentions"]

    def _position_embeddings(self) -> Tensor:
        position = self.model.pos_embed
        missing = self.num_tokens - position.shape[1]  # no_embed_class models: none on the prefix tokens
        return torch.cat([position.new_zeros(1, missing, position.shape[2]), position], dim=1) if missing else position

    def _embed(self, pixels: Tensor) -> Tensor:
        hidden = self.model._pos_embed(self.model.patch_embed(pixels))
        return self.model.norm_pre(self.model.patch_drop(hidden))

    def _final(self, hidden: Tensor) -> Tensor:
        return self.model.forward_head(self.model.norm(hidden))
