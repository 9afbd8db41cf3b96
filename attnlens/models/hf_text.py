"""Adapter for Hugging Face text encoders with a classification head (BERT, RoBERTa, DistilBERT,
ELECTRA, ALBERT, DeBERTa-v2, ...).

Loads a sequence-classification model with eager attention so attention weights come back,
and records a batch as a :class:`~attnlens.trace.Trace`: attention of every layer and head,
logits, the explained target, the readout row ([CLS], position 0) and the input-gradient
saliency of the target logit.

The model always gets `input_ids` and `attention_mask` (so it positions and pools by them);
the input gradient comes from a forward hook that turns the word-embedding output into a leaf
(:func:`~attnlens.models._hooks.input_embedding_leaf`). Causal classifiers (GPT-2, Llama) are
the subclass in :mod:`attnlens.models.hf_causal_text`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from attnlens._checks import _check_choice, _check_device, _check_integer
from attnlens.methods._common import _apply_mask
from attnlens.models._factory import read_model_config
from attnlens.models._hooks import eval_mode, frozen_parameters, input_embedding_leaf
from attnlens.models._loading import failure_cause, quiet_transformers
from attnlens.models._perturb import chunked_by_length, distinct_rows, gather_rows, perturbed_ids
from attnlens.models._registry import register_adapter
from attnlens.models._saliency import SALIENCY_POSITIONS, SALIENCY_REDUCTIONS, reduce_saliency
from attnlens.models._targets import ExplainError, class_from_name, label_indices, resolve_target
from attnlens.models.base import Adapter
from attnlens.trace import Trace

_STATE_SPACE_MODEL_TYPES = frozenset({"mamba", "mamba2", "falcon_mamba", "jamba"})  # their own families
_TEXT_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "camembert", "mpnet", "deberta",
     "deberta-v2", "ernie", "megatron-bert", "modernbert", "xlm"}
)


__all__ = ["SALIENCY_POSITIONS", "SALIENCY_REDUCTIONS", "ExplainError", "TextClassifierAdapter",
           "load_text_classifier"]


def _is_sequence_classifier(config: object) -> bool:
    architectures = getattr(config, "architectures", None) or []
    return any(a.endswith("ForSequenceClassification") for a in architectures)


def _layer_list(model: torch.nn.Module, count: int) -> list[torch.nn.Module]:
    """The first `ModuleList` of `count` blocks in the model; ALBERT's shared groups, expanded."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return list(module)
    groups = next((m.albert_layer_groups for m in model.modules() if hasattr(m, "albert_layer_groups")), None)
    if groups is not None:  # ALBERT: layer i runs group i * groups // count
        return [groups[i * len(groups) // count] for i in range(count)]
    raise ExplainError(f"Expected {type(model).__name__} to hold its {count} layers in a ModuleList, but found none.")


@register_adapter("text")
class TextClassifierAdapter(Adapter):
    """Wraps a Hugging Face sequence classifier (an encoder read at [CLS]) and its tokenizer.

    Args:
        model: a ``*ForSequenceClassification`` model.
        tokenizer: its tokenizer (fast or slow).
        max_length: truncation length; defaults to the model's maximum positions.
    """

    provides = frozenset({"attention", "attention_gradients"})

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
        """Whether `config` is a sequence classifier or a known encoder, and no subclass family
        (the causal classifiers) claims it."""
        if cls._family_for(config) is not cls or getattr(config, "model_type", None) in _STATE_SPACE_MODEL_TYPES:
            return False  # a Mamba sequence classifier has no attention: the mamba_classifier family takes it
        return _is_sequence_classifier(config) or getattr(config, "model_type", None) in _TEXT_MODEL_TYPES

    @classmethod
    def _family_for(cls, config: object) -> type[TextClassifierAdapter]:
        """The most specific subclass whose family accepts `config` (this class if none does)."""
        for subclass in cls.__subclasses__():
            if subclass.accepts(config):
                return subclass._family_for(config)
        return cls

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu",
                        local_files_only: bool = False) -> TextClassifierAdapter:
        """Load a classifier by hub id or local folder, float32, with eager attention.

        Raises:
            ExplainError: when the model cannot be loaded or is not a sequence classifier.
        """
        device = _check_device(device)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415

        with quiet_transformers():
            try:
                config = read_model_config(name_or_path, local_files_only=local_files_only)
            except ValueError as err:
                raise ExplainError(str(err)) from err
            architectures = getattr(config, "architectures", None) or []
            if architectures and not _is_sequence_classifier(config):
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
                    f"Expected `model` {name_or_path!r} to load, but it failed ({failure_cause(err)})."
                ) from err
        model.to(device)
        return cls._family_for(config)(model, tokenizer)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    def layers(self) -> list[torch.nn.Module]:
        return _layer_list(self.model, self.num_layers)

    def label(self, class_index: int) -> str:
        index = _check_integer(class_index, "class_index", low=0, high=self.num_classes - 1)
        return str((self.model.config.id2label or {}).get(index, index))

    def class_index(self, name: str) -> int:
        """The index of a class name (``id2label``; case-insensitive when unambiguous) or of a digit string.

        Raises:
            ExplainError: on an unknown name, listing the valid ones.
        """
        return class_from_name(name, [self.label(i) for i in range(self.num_classes)])

    # --- tokenizing ---------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize (on the CPU) with dynamic padding and truncation at `max_length`, warning per truncated text.

        Raises:
            ExplainError: on an empty list or an empty/blank text.
        """
        self._check_texts(texts)
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

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> None:
        if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
            raise ExplainError("Expected `texts` to be a non-empty list of strings, but got "
                               f"{type(texts).__name__ if not isinstance(texts, Sequence) else 'an empty list'}.")
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ExplainError(f"Expected every text to be a non-empty string, but text {index} is {text!r}.")

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text after truncation at `max_length` (special tokens included)."""
        self._check_texts(texts)
        return [min(len(ids), self.max_length) for ids in self.tokenizer(list(texts))["input_ids"]]

    def _pad(self, rows: dict[str, list[list[int]]]) -> dict[str, Tensor]:
        """Re-pad token rows (input ids, token types) on the tokenizer's padding side."""
        width = max(len(row) for row in rows["input_ids"])
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        fills = {"input_ids": self.tokenizer.pad_token_id or 0, "attention_mask": 0}
        rows = {**rows, "attention_mask": [[1] * len(row) for row in rows["input_ids"]]}
        padded = {}
        for key, values in rows.items():
            fill = fills.get(key, getattr(self.tokenizer, "pad_token_type_id", 0))
            padded[key] = torch.tensor([[fill] * (width - len(v)) + v if left else v + [fill] * (width - len(v))
                                        for v in values], dtype=torch.long)
        return padded

    def _model_inputs(self, encoded: dict[str, Tensor]) -> dict[str, Tensor]:
        """What the model is called with: the tokenizer's tensors on the model's device."""
        return {key: value.to(self.device, non_blocking=True) for key, value in encoded.items()}

    def _readout(self, mask: Tensor) -> Tensor:
        """`(B,)` the row that explains the output: [CLS], position 0."""
        return torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)

    def _logits(self, encoded: dict[str, Tensor]) -> Tensor:
        with eval_mode(self.model), torch.no_grad():
            return self.model(**self._model_inputs(encoded)).logits

    # --- running the model --------------------------------------------------------------------
    def trace(
        self,
        texts: Sequence[str],
        *,
        target: str | int | Sequence[int] | Tensor | None = "pred",
        labels: Sequence[int] | Tensor | None = None,
        saliency: str | None = "sum_abs",
        saliency_at: str = "layer_input",
    ) -> Trace:
        """Run one batch and record attention, logits, target, readout and input-gradient saliency.

        Args:
            texts: B non-empty strings.
            target: ``"pred"`` or None (the predicted class), ``"gold"`` (needs `labels`), a class index,
                B class indices, or a class name (see :meth:`class_index`).
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
            A :class:`Trace` with attentions `(B, L, H, n, n)` (zero on padded rows and columns),
            mask `(B, n)`, logits `(B, C)`, target `(B,)`, readout `(B,)` and saliency `(B, n)`
            (float, on the model's device); when `saliency` is not None also
            ``extras["attention_grad"]`` `(B, L, H, n, n)`, the gradient of the target logit w.r.t.
            each layer's attention probabilities (zero on padding), from the same backward pass, for
            gradient-weighted rollout (Chefer, Gur & Wolf, CVPR 2021).

        Raises:
            ExplainError: on empty texts, a bad target, or a model that returns no attention.
            TypeError: on a target or labels that are not class indices or names.
        """
        if saliency is not None:
            _check_choice(saliency, "saliency", SALIENCY_REDUCTIONS)
        _check_choice(saliency_at, "saliency_at", SALIENCY_POSITIONS)
        encoded = self.tokenize(texts)
        # token strings and special-token flags come from the CPU copy, so tracing never waits on the device
        cpu_ids, cpu_mask = encoded["input_ids"], encoded["attention_mask"].bool()
        tokens = [self.tokenizer.convert_ids_to_tokens(ids[m].tolist()) for ids, m in zip(cpu_ids, cpu_mask)]
        special = torch.isin(cpu_ids, torch.tensor(sorted(set(self.tokenizer.all_special_ids)), dtype=cpu_ids.dtype))
        inputs = self._model_inputs(encoded)
        mask = inputs["attention_mask"].bool()
        special = special.to(self.device, non_blocking=True) & mask
        gold = label_indices(labels, cpu_ids.shape[0])
        gradients = saliency is not None
        leaf = input_embedding_leaf(self.model) if gradients else contextlib.nullcontext([])
        with eval_mode(self.model), frozen_parameters(self.model), torch.set_grad_enabled(gradients), leaf as leaves:
            outputs = self.model(**inputs, output_attentions=True,
                                 output_hidden_states=gradients and saliency_at == "layer_input")
            attentions = outputs.attentions
            if not attentions or any(a is None for a in attentions):
                raise ExplainError(
                    "Expected the model to return attention weights, but it returned none (it needs "
                    "attn_implementation='eager')."
                )
            logits = outputs.logits
            chosen = resolve_target(target, logits=logits, labels=gold, lookup=self.class_index)
            grads = grad_at = None
            extras: dict[str, Tensor] = {}
            if gradients:  # one backward pass: the input gradient and every layer's attention gradient
                grad_at = leaves[0] if saliency_at == "word_embeddings" else outputs.hidden_states[0]
                picked = logits.gather(1, chosen[:, None]).sum()
                grads, *attention_grads = torch.autograd.grad(picked, [grad_at, *attentions], allow_unused=True)
                if all(g is not None for g in attention_grads):
                    extras["attention_grad"] = _apply_mask(torch.stack(attention_grads, dim=1), mask)
        stacked = _apply_mask(torch.stack([a.detach() for a in attentions], dim=1), mask)
        sal = reduce_saliency(grads, grad_at.detach(), mask, how=saliency) if grads is not None else None
        return Trace(tokens=tokens, mask=mask, attentions=stacked, logits=logits.detach(), target=chosen,
                     saliency=sal, input_ids=inputs["input_ids"], extras=extras,
                     labels=None if gold is None else gold.to(self.device, non_blocking=True),
                     special_mask=special, readout=self._readout(mask))

    def predict(self, texts: Sequence[str]) -> Tensor:
        """The model's logits `(B, C)` on `texts` (one batch, eval mode, no gradients)."""
        return self._logits(self.tokenize(texts))

    def perturb(self, texts: Sequence[str], keep_mask: Tensor, *, mode: str = "remove") -> Tensor:
        """Logits `(B, C)` with the tokens where `keep_mask` is False removed or replaced by the mask token.

        Args:
            texts: B non-empty strings.
            keep_mask: `(B, n)` bool in the positions of ``trace(texts).mask`` (padding ignored);
                special tokens ([CLS], [SEP]) are removed too when it says so.
            mode: ``"remove"`` (the kept tokens re-packed and re-padded) or ``"mask"`` (the
                tokenizer's mask token, else its unknown token).

        Identical perturbed inputs run once, and the distinct ones in batches of similar length
        (:func:`attnlens.models._perturb.distinct_rows`).

        Returns:
            `(B, C)` logits.

        Raises:
            ExplainError: as :meth:`attnlens.models.base.Adapter.perturb` says (a `ValueError`).
            TypeError: on a `keep_mask` that is not a bool tensor.
        """
        encoded = self.tokenize(texts)
        mask = encoded.pop("attention_mask").bool()
        encoded["input_ids"], keep = perturbed_ids(encoded["input_ids"], mask, keep_mask, mode=mode,
                                                   tokenizer=self.tokenizer)
        rows, slots = distinct_rows({key: gather_rows(value, keep) for key, value in encoded.items()})
        logits = torch.cat([self._logits(self._pad({key: value[part] for key, value in rows.items()}))
                            for part in chunked_by_length(rows)])
        return logits[torch.tensor(slots, device=logits.device)]


def load_text_classifier(name_or_path: str, *, device: str | torch.device = "cpu") -> TextClassifierAdapter:
    """Load a Hugging Face sequence classifier as a :class:`TextClassifierAdapter` (or its causal subclass)."""
    return TextClassifierAdapter.from_pretrained(name_or_path, device=device)
