"""The `Trace`: everything an adapter records about one batch, in model-agnostic tensors."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Trace:
    """What a model did on one batch, the input of every method and metric.

    Attributes:
        tokens: per example, the token strings of its valid positions (length = mask[b].sum()).
        mask: `(B, n)` bool, True on valid (non-padding) tokens.
        attentions: `(B, L, H, n, n)` attention per layer and head; rows are queries and sum to 1
            over valid keys (adapters of models whose attention is not row-stochastic say how
            they normalise it).
        logits: `(B, C)` model outputs for the explained position.
        target: `(B,)` long, the explained class.
        saliency: `(B, n)` input-gradient saliency of the target logit per token, 0 on padding,
            or None when gradients were not asked for.
        input_ids: `(B, n)` long token ids (padding included).
        labels: `(B,)` long gold labels when known, else None.
        special_mask: `(B, n)` bool, True on special tokens ([CLS], [SEP], ...), when known.
        extras: adapter-specific tensors (for example raw, unnormalised hidden attention).
        readout: `(B,)` long, per example the position whose row explains the output: 0 for
            [CLS] encoders, the last valid token for causal models (GPT-2, Llama, Mamba), Vision
            Mamba's middle class token. Filled with zeros on `mask`'s device when not given.
        grid: `(rows, columns)` of the patch grid for image models, None for text.
        patch_positions: `(rows * columns,)` long, for image models the token position of every
            patch in row-major grid order (patch ``r * columns + c`` sits at token
            ``patch_positions[r * columns + c]``; class and distillation tokens are not in it),
            None for text.
    """

    tokens: list[list[str]]
    mask: Tensor
    attentions: Tensor
    logits: Tensor
    target: Tensor
    saliency: Tensor | None = None
    input_ids: Tensor | None = None
    labels: Tensor | None = None
    special_mask: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    readout: Tensor | None = None
    grid: tuple[int, int] | None = None
    patch_positions: Tensor | None = None

    def __post_init__(self) -> None:
        if self.readout is None:
            self.readout = torch.zeros(self.mask.shape[0], dtype=torch.long, device=self.mask.device)

    @property
    def lengths(self) -> Tensor:
        """`(B,)` number of valid tokens per example."""
        return self.mask.sum(dim=-1)
