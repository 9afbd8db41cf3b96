"""A Hugging Face text classifier as a function of its token ids, for reference attributions (captum).

Only ``models/`` knows a family: this gives experiments what captum needs — a forward function
of `(B, n)` ids returning `(B, C)` logits, the word-embedding layer that layer attributions hook,
and the batch's tensors in the positions of ``adapter.trace(texts).mask``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from attnlens.models._hooks import eval_mode


class EmbeddingForward(NamedTuple):
    """What captum needs to attribute one batch of texts at the word embeddings.

    Attributes:
        forward: ``forward(input_ids, attention_mask, token_type_ids)`` → `(B, C)` logits (eval mode).
        layer: the word-embedding module (its output is what layer attributions perturb).
        input_ids: `(B, n)` long ids on the model's device.
        attention_mask: `(B, n)` long.
        token_type_ids: `(B, n)` long (zeros when the model has none).
        replacement: the id that stands for a removed token (mask, else unknown, else padding).
    """

    forward: Callable[..., Tensor]
    layer: torch.nn.Module
    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor
    replacement: int


def embedding_forward(adapter: object, texts: Sequence[str]) -> EmbeddingForward:
    """The :class:`EmbeddingForward` of a Hugging Face text classifier adapter on `texts`.

    Raises:
        ValueError: when the adapter is not a Hugging Face text classifier (no tokenizer or input embeddings).
    """
    model = getattr(adapter, "model", None)
    if not hasattr(adapter, "tokenize") or model is None or not hasattr(model, "get_input_embeddings"):
        raise ValueError(f"Expected `model` to be a Hugging Face text classifier for captum reference attributions, "
                         f"but got a {getattr(adapter, 'family', type(adapter).__name__)!r} model.")
    encoded = adapter.tokenize(list(texts))
    device = adapter.device
    ids = encoded["input_ids"].to(device)
    attention = encoded["attention_mask"].to(device)
    types = encoded.get("token_type_ids")
    has_types = types is not None
    types = (types if has_types else torch.zeros_like(encoded["input_ids"])).to(device)
    tokenizer = adapter.tokenizer
    replacement = next((int(t) for t in (getattr(tokenizer, "mask_token_id", None),
                                         getattr(tokenizer, "unk_token_id", None),
                                         getattr(tokenizer, "pad_token_id", None)) if t is not None), 0)

    def forward(input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        extra = {"token_type_ids": token_type_ids} if has_types else {}
        with eval_mode(model):
            return model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return EmbeddingForward(forward, model.get_input_embeddings(), ids, attention, types, replacement)
