"""Adapter for Hugging Face text classifiers (BERT, RoBERTa, DistilBERT, ELECTRA, ...).

Loads a sequence-classification model with eager attention so attention weights come back,
and records a batch as a :class:`~attnlens.trace.Trace`: attention of every layer and head,
logits, the explained target and the input-gradient saliency of its logit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from attnlens._checks import _check_choice, _check_device
from attnlens.models._factory import _check_model_reference, load_failure
from attnlens.models._hooks import eval_mode, frozen_parameters
from attnlens.models._registry import register_adapter
from attnlens.models._saliency import SALIENCY_REDUCTIONS, reduce_saliency
from attnlens.trace import Trace

SALIENCY_POSITIONS = ("layer_input", "word_embeddings")
_TEXT_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "camembert", "mpnet", "deberta",
     "deberta-v2", "ernie", "megatron-bert", "modernbert", "xlm"}
)


class ExplainError(ValueError):
    """A model or input that attnlens cannot explain (one-line message)."""


@register_adapter("text")
class TextClassifierAdapter:
    """Wraps a Hugging Face sequence classifier and its tokenizer.

    Args:
        model: a ``*ForSequenceClassification`` model.
        tokenizer: its tokenizer (fast or slow).
        max_length: truncation length; defaults to the model's maximum positions.
    """

    family = "text"

    def __init__(self, model: torch.nn.Module, tokenizer: object, *, max_length: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        config = model.config
        limit = getattr(config, "max_position_embeddings", None) or 512
        model_limit = getattr(tokenizer, "model_max_length", limit) or limit
        self.max_length = int(max_length or min(limit, model_limit))
        if getattr(config, "_attn_implementation", "eager") != "eager" and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: object) -> bool:
        architectures = getattr(config, "architectures", None) or []
        if any(a.endswith("ForSequenceClassification") for a in architectures):
            return True
        return getattr(config, "model_type", None) in _TEXT_MODEL_TYPES

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu",
                        local_files_only: bool = False) -> TextClassifierAdapter:
        """Load a classifier by hub id or local folder, float32, with eager attention.

        Raises:
            ExplainError: when the model cannot be loaded or is not a sequence classifier.
        """
        device = _check_device(device)
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            try:
                _check_model_reference(name_or_path)
            except ValueError as err:
                raise ExplainError(str(err)) from None
            try:
                config = AutoConfig.from_pretrained(name_or_path, local_files_only=local_files_only)
            except Exception as err:  # noqa: BLE001 - hub/IO errors of every kind
                raise ExplainError(str(load_failure(name_or_path, err))) from err
            architectures = getattr(config, "architectures", None) or []
            if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
                raise ExplainError(
                    f"Expected `model` to be a sequence classifier (…ForSequenceClassification), but {name_or_path!r} "
                    f"is a {', '.join(architectures)}."
                )
            try:
                model = AutoModelForSequenceClassification.from_pretrained(
                    name_or_path, dtype=torch.float32, attn_implementation="eager", local_files_only=local_files_only
                )
                tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
            except ValueError as err:
                raise ExplainError(
                    f"Expected `model` to be a sequence classifier with eager attention, but {name_or_path!r} "
                    f"failed: {str(err).splitlines()[0]}"
                ) from err
            except Exception as err:  # noqa: BLE001
                raise ExplainError(
                    f"Expected `model` {name_or_path!r} to load, but it failed ({type(err).__name__})."
                ) from err
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        model.to(device)
        return cls(model, tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    # --- tracing ------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize (on the CPU) with dynamic padding and truncation at `max_length`, warning per truncated text.

        Raises:
            ExplainError: on an empty list or an empty/blank text.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
            raise ExplainError("Expected `texts` to be a non-empty list of strings, but got "
                               f"{type(texts).__name__ if not isinstance(texts, Sequence) else 'an empty list'}.")
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ExplainError(f"Expected every text to be a non-empty string, but text {index} is {text!r}.")
        encoded = self.tokenizer(list(texts), padding=True, truncation=False, return_tensors="pt")
        if encoded["input_ids"].shape[1] > self.max_length:
            lengths = encoded["attention_mask"].sum(dim=-1).tolist()
            for index, length in enumerate(lengths):
                if length > self.max_length:
                    preview = texts[index][:40] + ("…" if len(texts[index]) > 40 else "")
                    warnings.warn(f"Text {index} ({preview!r}) has {length} tokens; truncated to {self.max_length}.",
                                  stacklevel=3)
            encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt")
        return dict(encoded)

    def trace(
        self,
        texts: Sequence[str],
        *,
        target: str | int | Sequence[int] | Tensor | None = "pred",
        labels: Sequence[int] | Tensor | None = None,
        saliency: str | None = "sum_abs",
        saliency_at: str = "layer_input",
    ) -> Trace:
        """Run one batch and record attention, logits, target and input-gradient saliency.

        Args:
            texts: B non-empty strings.
            target: ``"pred"`` or None (the predicted class), ``"gold"`` (needs `labels`), a class index,
                or B class indices.
            labels: B gold labels, optional.
            saliency: ``"sum_abs"``, ``"l2"``, ``"grad_x_input"``, or None to skip the backward pass.
            saliency_at: where the gradient is taken: ``"layer_input"`` (default), the embedding
                block's output that enters the first layer (word + position + type embeddings
                after LayerNorm), or ``"word_embeddings"``, the token embeddings before that
                LayerNorm. Beware: LayerNorm is invariant to adding a constant to every
                dimension, so the gradient w.r.t. its input sums to zero over d and
                ``sum_abs`` at ``"word_embeddings"`` is rounding noise (~1e-8 in float32) for
                BERT-style models; ``l2`` and ``grad_x_input`` are unaffected.

        Returns:
            A :class:`Trace` with attentions `(B, L, H, n, n)` (float, on the model's device).

        Raises:
            ExplainError: on empty texts, a bad target, or a model that returns no attention.
        """
        if saliency is not None:
            _check_choice(saliency, "saliency", SALIENCY_REDUCTIONS)
        _check_choice(saliency_at, "saliency_at", SALIENCY_POSITIONS)
        encoded = self.tokenize(texts)
        # token strings and special-token flags come from the CPU copy, so tracing never waits on the device
        cpu_ids, cpu_mask = encoded["input_ids"], encoded["attention_mask"].bool()
        tokens = [self.tokenizer.convert_ids_to_tokens(ids[m].tolist()) for ids, m in zip(cpu_ids, cpu_mask)]
        special = torch.isin(cpu_ids, torch.tensor(sorted(set(self.tokenizer.all_special_ids)), dtype=cpu_ids.dtype))
        encoded = {key: value.to(self.device, non_blocking=True) for key, value in encoded.items()}
        input_ids = encoded.pop("input_ids")
        mask = encoded["attention_mask"].bool()
        special = special.to(self.device, non_blocking=True) & mask
        batch = input_ids.shape[0]
        gold = None
        if labels is not None:
            gold = _as_class_indices(labels, "labels")
            if gold.shape[0] != batch:
                raise ExplainError(f"Expected `labels` to have {batch} entries, but got {gold.shape[0]}.")
        embedding_layer = self.model.get_input_embeddings()
        with eval_mode(self.model), frozen_parameters(self.model), torch.set_grad_enabled(saliency is not None):
            embeddings = embedding_layer(input_ids).detach()
            if saliency is not None:
                embeddings.requires_grad_(True)
            outputs = self.model(inputs_embeds=embeddings, output_attentions=True,
                                 output_hidden_states=saliency is not None and saliency_at == "layer_input", **encoded)
            grad_at = embeddings if saliency_at == "word_embeddings" else None
            if saliency is not None and grad_at is None:
                grad_at = outputs.hidden_states[0]
            attentions = outputs.attentions
            if not attentions or any(a is None for a in attentions):
                raise ExplainError(
                    "Expected the model to return attention weights, but it returned none (it needs "
                    "attn_implementation='eager')."
                )
            logits = outputs.logits
            chosen = self._resolve_target(target, logits, gold)
            gold = None if gold is None else gold.to(self.device, non_blocking=True)
            grads = None
            if saliency is not None:
                picked = logits.gather(1, chosen[:, None]).sum()
                (grads,) = torch.autograd.grad(picked, grad_at)
        stacked = torch.stack([a.detach() for a in attentions], dim=1)
        stacked = stacked * mask[:, None, None, None, :].to(stacked.dtype)
        sal = reduce_saliency(grads, grad_at.detach(), mask, how=saliency) if grads is not None else None
        return Trace(tokens=tokens, mask=mask, attentions=stacked, logits=logits.detach(), target=chosen,
                     saliency=sal, input_ids=input_ids, labels=gold, special_mask=special)

    def _resolve_target(self, target: object, logits: Tensor, gold: Tensor | None) -> Tensor:
        """The explained classes: the argmax on the device, or CPU-checked indices moved there."""
        batch, classes = logits.shape
        if target is None:
            target = "pred"
        if isinstance(target, str):
            _check_choice(target, "target", ("pred", "gold"))
            if target == "pred":
                return logits.argmax(dim=-1)
            if gold is None:
                raise ExplainError("Expected `labels` when `target` is 'gold', but got none.")
            chosen = gold
        else:
            chosen = _as_class_indices(target, "target")
            if chosen.numel() == 1:
                chosen = chosen.expand(batch)
        if chosen.shape[0] != batch or bool(((chosen < 0) | (chosen >= classes)).any()):
            raise ExplainError(f"Expected `target` to hold {batch} class indices in [0, {classes - 1}], but got "
                               f"{chosen.tolist()}.")
        return chosen.contiguous().to(logits.device, non_blocking=True)


def _as_class_indices(value: object, name: str) -> Tensor:
    """Class indices as a CPU long tensor; floats, bools and strings are refused with a clear error."""
    tensor = value if isinstance(value, Tensor) else None
    if tensor is None:
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise TypeError(f"Expected `{name}` to be class indices (int or list of ints), but got {value!r}.")
        tensor = torch.tensor(items, dtype=torch.long)
    elif tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"Expected `{name}` to be an integer tensor of class indices, but got {tensor.dtype}.")
    return tensor.detach().to("cpu", torch.long).reshape(-1)


def load_text_classifier(name_or_path: str, *, device: str | torch.device = "cpu") -> TextClassifierAdapter:
    """Load a Hugging Face sequence classifier as a :class:`TextClassifierAdapter`."""
    return TextClassifierAdapter.from_pretrained(name_or_path, device=device)
