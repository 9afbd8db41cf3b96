"""Adapter for attnlens's Mamba sequence classifier
(:class:`~attnlens.models.mamba_classifier.MambaForSequenceClassification`).

The hidden attention of every layer, its gradients, the left-padded batch and the readout at the
last token are those of :class:`~attnlens.models.hf_mamba.MambaAdapter` (Ali, Zimerman & Wolf,
"The Hidden Attention of Mamba Models", ACL 2025): texts run in groups of equal length, so the
model never sees padding. What differs is the output: the logits are the classifier head on the
last token's final hidden state (the token the model itself pools), the classes are the config's
``id2label``, targets are class indices or names, ``"gold"`` takes the labels, texts are truncated
at `max_length` when one is set (``--max-tokens``), and the trace marks the tokenizer's special
tokens (``[CLS]``, ``[SEP]``) in ``special_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from attnlens._checks import _check_device, _check_integer
from attnlens.models._factory import read_model_config
from attnlens.models._loading import failure_cause, quiet_transformers
from attnlens.models._registry import register_adapter
from attnlens.models._targets import ExplainError, class_from_name, label_indices, target_indices
from attnlens.models.hf_mamba import MambaAdapter
from attnlens.trace import Trace

ARCHITECTURE = "MambaForSequenceClassification"


@register_adapter("mamba_classifier")
class MambaClassifierAdapter(MambaAdapter):
    """Hidden-attention traces of a Mamba sequence classifier, read at the last token.

    Args:
        model: a :class:`~attnlens.models.mamba_classifier.MambaForSequenceClassification`.
        tokenizer: its tokenizer.
        device: where the model runs.
        max_length: truncate every text to this many tokens (None: never, Mamba has no position limit).

    Raises:
        ExplainError: when `model` has no classification head (`score`).

    Example:
        >>> from transformers import MambaConfig
        >>> MambaClassifierAdapter.accepts(MambaConfig(architectures=["MambaForSequenceClassification"]))
        True
    """

    task = "classification"

    def __init__(self, model: torch.nn.Module, tokenizer: object, *, device: str | torch.device = "cpu",
                 max_length: int | None = None) -> None:
        if not isinstance(getattr(model, "score", None), torch.nn.Module):
            raise ExplainError(f"Expected `model` to be a MambaForSequenceClassification (with a `score` head), but "
                               f"got {type(model).__name__}.")
        super().__init__(model, tokenizer, device=device)
        self.max_length = _check_integer(max_length, "max_length", low=1, allow_none=True,
                                         description="a positive integer")

    @classmethod
    def accepts(cls, config: object) -> bool:
        """Whether a Hugging Face `config` is a Mamba (v1) sequence classifier."""
        architectures = getattr(config, "architectures", None) or []
        return getattr(config, "model_type", None) == "mamba" and ARCHITECTURE in architectures

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> MambaClassifierAdapter:
        """Load a saved `MambaForSequenceClassification` (float32) and its tokenizer from a folder or hub id.

        Raises:
            ExplainError: when the reference, the config or the weights cannot be read, or the model
                is not a Mamba classifier.
        """
        device = _check_device(device)
        from transformers import AutoTokenizer  # noqa: PLC0415

        from attnlens.models.mamba_classifier import MambaForSequenceClassification  # noqa: PLC0415

        try:
            config = read_model_config(name_or_path)
        except ValueError as err:
            raise ExplainError(str(err)) from err
        if not cls.accepts(config):
            raise ExplainError(f"Expected `model` to be a Mamba sequence classifier ({ARCHITECTURE}), but "
                               f"{name_or_path!r} is a {', '.join(getattr(config, 'architectures', None) or ['?'])}.")
        try:
            with quiet_transformers():
                model = MambaForSequenceClassification.from_pretrained(name_or_path, dtype=torch.float32).eval()
                tokenizer = AutoTokenizer.from_pretrained(name_or_path)
                with torch.no_grad():  # the one-time "no CUDA kernels, PyTorch fallback" notices, silenced
                    model(input_ids=torch.tensor([[tokenizer.pad_token_id or 0]]))
        except Exception as err:  # noqa: BLE001 - IO and format errors of every kind
            raise ExplainError(f"Expected `model` {name_or_path!r} to load, but it failed ({failure_cause(err)}).") \
                from err
        return cls(model.eval(), tokenizer, device=device)

    # --- what the model is --------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """C, the classifier's number of labels."""
        return int(self.model.config.num_labels)

    def _vocab_size(self) -> int:
        """The logits' last dimension: the classes (MambaAdapter checks targets against it)."""
        return self.num_classes

    def _logits(self, hidden: Tensor) -> Tensor:
        """`(B, C)` the head on final hidden states `(B, d)` at the last token (what the model pools)."""
        return self.model.score(hidden)

    def label(self, class_index: int) -> str:
        """The ``id2label`` name of a class."""
        index = _check_integer(class_index, "class_index", low=0, high=self.num_classes - 1)
        return str((self.model.config.id2label or {}).get(index, index))

    def class_index(self, name: str) -> int:
        """The index of a class name (``id2label``; case-insensitive when unambiguous) or of a digit string.

        Raises:
            ExplainError: on an unknown name, listing the valid ones.
        """
        return class_from_name(name, [self.label(i) for i in range(self.num_classes)])

    # --- tokenizing ---------------------------------------------------------------------------
    def _encode(self, texts: str | Sequence[str]) -> list[list[int]]:
        """Token ids per text, special tokens included, truncated at `max_length` when set.

        Raises:
            ExplainError: on no texts, a blank text or a text without tokens.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ExplainError("Expected `texts` to hold at least one text, but got none.")
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ExplainError(f"Expected every text to be a non-empty string, but text {index} is {text!r}.")
        if self.max_length is None:
            return [self.tokenizer.encode(text) for text in texts]
        return [self.tokenizer.encode(text, truncation=True, max_length=self.max_length) for text in texts]

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """`input_ids` and `attention_mask` `(B, n)` on the CPU, left-padded as ``trace(texts)`` lays them out.

        For callers that run the model on a padded batch (captum references): the model zeroes the
        mixer inputs at padding (`attention_mask`), so with no `in_proj` bias (the Mamba default) a
        left-padded row gets the logits it gets alone.

        Raises:
            ExplainError: on no texts or a blank text.
        """
        input_ids, mask = self._left_padded(self._encode(texts))
        return {"input_ids": input_ids, "attention_mask": mask.long()}

    # --- running the model --------------------------------------------------------------------
    def trace(
        self,
        texts: str | Sequence[str],
        *,
        target: str | int | Sequence[int] | Tensor | None = "pred",
        labels: Sequence[int] | Tensor | None = None,
        saliency: str | None = "sum_abs",
        saliency_at: str = "layer_input",
        channels: str = "mean",
        form: str = "scan",
    ) -> Trace:
        """Run the classifier on `texts` and record hidden attention, logits, target and saliency.

        As :meth:`MambaAdapter.trace <attnlens.models.hf_mamba.MambaAdapter.trace>`, with classes
        instead of tokens: `target` is ``"pred"`` or None (the predicted class), ``"gold"`` (needs
        `labels`), a class index, B class indices, or a class name (:meth:`class_index`); `labels`
        are B class indices. `channels` and `form` (``"scan"`` or ``"unified"``) are MambaAdapter's.

        Returns:
            The `Trace` of :class:`~attnlens.models.hf_mamba.MambaAdapter` (left-padded, readout n - 1,
            extras ``hidden_attention``, ``hidden_attention_grad``, ``residual_grad``) with `logits (B, C)`
            of the head and `special_mask (B, n)` on the tokenizer's special tokens.

        Raises:
            ValueError: on an empty text, an unknown option, a badly shaped target, a class outside
                [0, C) or an unknown class name.
            TypeError: on a target or labels that are not class indices or a name.
        """
        batch = 1 if isinstance(texts, str) else len(texts)
        gold = label_indices(labels, batch)
        if gold is not None and bool(((gold < 0) | (gold >= self.num_classes)).any()):
            raise ExplainError(f"Expected `labels` to be class indices in [0, {self.num_classes - 1}], but got "
                               f"{gold.tolist()}.")
        chosen = target_indices(target, batch=batch, classes=self.num_classes, labels=gold, lookup=self.class_index)
        trace = super().trace(texts, target=chosen, labels=gold, saliency=saliency, saliency_at=saliency_at,
                              channels=channels, form=form)
        specials = sorted(set(getattr(self.tokenizer, "all_special_ids", ()) or ()))
        if specials:
            ids = torch.tensor(specials, dtype=trace.input_ids.dtype, device=trace.input_ids.device)
            trace.special_mask = torch.isin(trace.input_ids, ids) & trace.mask
        return trace


__all__ = ["ARCHITECTURE", "MambaClassifierAdapter"]
