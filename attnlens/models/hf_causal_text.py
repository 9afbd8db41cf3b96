"""Adapter for Hugging Face causal classifiers (GPT-2, Llama, Mistral, Qwen, ... ``ForSequenceClassification``).

A causal classifier reads its class from the last valid token (Radford et al. 2018, "Improving
Language Understanding by Generative Pre-Training"), so the trace's readout is that token, on
either padding side (the tokenizer's `padding_side` decides). The model gets `input_ids` and
`attention_mask`, so transformers pools at the last non-padding token, and position ids counted
over valid tokens, so a left-padded example gets the positions it gets alone. Everything else
(attention, saliency, predict, perturb) is the encoder adapter's, by inheritance.

Saliency. GPT-2 is pre-LayerNorm with a final LayerNorm, so every path from a layer input to
the logits passes a LayerNorm and the gradient sums to zero over d: ``saliency="sum_abs"`` is
rounding noise there (as at BERT's word embeddings); use ``"l2"`` or ``"grad_x_input"``.
RMSNorm models (Llama) are unaffected.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlens.models._registry import register_adapter
from attnlens.models._targets import ExplainError
from attnlens.models.hf_text import TextClassifierAdapter

_CAUSAL_MODEL_TYPES = frozenset(
    {"gpt2", "gpt_neo", "gpt_neox", "gptj", "gpt_bigcode", "openai-gpt", "ctrl", "biogpt", "bloom", "falcon", "opt",
     "mpt", "llama", "mistral", "mixtral", "ministral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
     "gemma3_text", "phi", "phi3", "stablelm", "starcoder2", "olmo", "olmo2", "persimmon", "smollm3", "helium", "glm",
     "nemotron"}
)


@register_adapter("causal_text")
class CausalTextClassifierAdapter(TextClassifierAdapter):
    """Wraps a decoder-only sequence classifier read at its last valid token, and its tokenizer.

    A tokenizer without a padding token pads with its end-of-text (else unknown) token, and a
    model config without `pad_token_id` gets the tokenizer's, so batches of more than one text work.

    Args:
        model: a causal ``*ForSequenceClassification`` model (GPT-2, Llama, ...).
        tokenizer: its tokenizer.
        max_length: truncation length; defaults to the model's maximum positions.

    Raises:
        ExplainError: when the tokenizer has neither a padding, an end-of-text nor an unknown token.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: object, *, max_length: int | None = None) -> None:
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.unk_token
            if fallback is None:
                raise ExplainError("Expected the tokenizer to have a padding, end-of-text or unknown token, but it "
                                   "has none.")
            tokenizer.pad_token = fallback
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        super().__init__(model, tokenizer, max_length=max_length)

    @classmethod
    def accepts(cls, config: object) -> bool:
        """Whether `config` is a decoder-only model type (GPT-2, Llama, ...)."""
        return getattr(config, "model_type", None) in _CAUSAL_MODEL_TYPES

    def _model_inputs(self, encoded: dict[str, Tensor]) -> dict[str, Tensor]:
        """The tokenizer's tensors plus position ids counted over valid tokens (0 on left padding)."""
        inputs = super()._model_inputs(encoded)
        inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(dim=-1) - 1).clamp(min=0)
        return inputs

    def _readout(self, mask: Tensor) -> Tensor:
        """`(B,)` the last valid position of every row, on either padding side."""
        positions = torch.arange(mask.shape[1], device=mask.device)
        return (positions * mask.long()).argmax(dim=-1)
