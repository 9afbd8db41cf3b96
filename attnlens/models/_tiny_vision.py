"""Tiny seeded vision variants for the image adapter contract test: ``test_vit`` and ``test_deit``.

16×16 RGB inputs, 4×4 patches (a 4×4 grid), 2 layers, 2 heads, hidden 32, 3 classes, random
weights from a fixed seed (the global random state is left untouched); the class and
distillation tokens are moved off their zero initialisation so that they differ.
``test_deit`` is a ``DeiTForImageClassificationWithTeacher`` (its logits average both heads).
"""

from __future__ import annotations

import torch

from attnlens.models._registry import register_tiny_variant
from attnlens.models._tiny import _seeded
from attnlens.models.base import Adapter
from attnlens.models.hf_vit import ViTAdapter

TINY_IMAGE_LABELS = {0: "circle", 1: "square", 2: "triangle"}
_VISION_SIZES = {"image_size": 16, "patch_size": 4, "num_channels": 3, "hidden_size": 32, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "intermediate_size": 64, "initializer_range": 0.1,
                 "id2label": TINY_IMAGE_LABELS, "label2id": {name: index for index, name in TINY_IMAGE_LABELS.items()}}


def tiny_vision_model(model_class: type, config_class: type, *, seed: int = 0, **sizes: object) -> torch.nn.Module:
    """A seeded tiny ViT/DeiT classifier (eager attention) with its special tokens moved off zero."""
    config = config_class(**{**_VISION_SIZES, **sizes})
    config._attn_implementation = "eager"

    def build() -> torch.nn.Module:
        model = model_class(config)
        with torch.no_grad():
            embeddings = model.base_model.embeddings
            for name in ("cls_token", "distillation_token"):
                if hasattr(embeddings, name):
                    getattr(embeddings, name).add_(0.5 * torch.randn_like(getattr(embeddings, name)))
        return model

    return _seeded(build, seed)


@register_tiny_variant("test_vit", family="vit")
def _test_vit() -> Adapter:
    from transformers import ViTConfig, ViTForImageClassification  # noqa: PLC0415

    return ViTAdapter(tiny_vision_model(ViTForImageClassification, ViTConfig))


@register_tiny_variant("test_deit", family="vit")
def _test_deit() -> Adapter:
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher  # noqa: PLC0415

    return ViTAdapter(tiny_vision_model(DeiTForImageClassificationWithTeacher, DeiTConfig))
