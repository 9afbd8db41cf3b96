"""The adapter contract: the only way experiments talk to models.

Every model family implements :class:`Adapter` in one file of ``attnlens/models/`` and registers
it with :func:`~attnlens.models.register_adapter`; tiny seeded variants of every family
(:func:`~attnlens.models.list_tiny_variants`) feed one contract test.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from attnlens.trace import Trace

TargetLike = str | int | Sequence[int] | Tensor | None


class Adapter(abc.ABC):
    """A model family's view of its models: traces, predictions and perturbations in shared tensors.

    Inputs are whatever the family explains (a list of texts for text models), passed
    positionally. Token positions and padding of :meth:`perturb`'s `keep_mask` are those of
    ``trace(inputs).mask``.

    Attributes:
        family: the registered family name (set by ``register_adapter``).
        modality: ``"text"`` or ``"image"``. Image adapters take a `(B, 3, H, W)` float tensor
            already preprocessed, or B images (paths or PIL images) that they read and preprocess
            as the model's own preprocessing config says (their ``preprocessing`` attribute, an
            :class:`~attnlens.datasets.images.ImagePreprocessing`); their traces fill ``grid`` and
            ``patch_positions``.
        task: ``"classification"`` (classes are labels) or ``"language_modeling"`` (classes are
            the vocabulary, read at the next-token position).
        provides: what its traces hold for methods (the ``needs`` of the method registry):
            ``"attention"`` (always); ``"attention_gradients"``: ``extras["attention_grad"]``
            `(B, L, H, n, n)`, the gradient of the target logit w.r.t. the attention
            probabilities of ``attentions`` (softmax models, for gradient-weighted rollout);
            ``"hidden_attention_gradients"``: ``extras["hidden_attention_grad"]`` `(B, L, n, n)`,
            w.r.t. a Mamba layer's hidden attention with its channels tied;
            ``"residual_gradients"``: ``extras["residual_grad"]`` `(B, L, n)`, per layer and token
            the maximum over hidden dimensions of the positive part of the gradient of the target
            logit w.r.t. the residual stream entering the layer (Mamba-Attr);
            ``"readout_rows"``: ``extras["readout_rows"]`` `(B, L, E, n)`, per layer and channel
            the signed readout row of the hidden attention (the Vim authors' conventions).
        model: the wrapped ``torch.nn.Module``.
    """

    family: ClassVar[str]
    modality: ClassVar[str] = "text"
    task: ClassVar[str] = "classification"
    provides: ClassVar[frozenset[str]] = frozenset({"attention"})
    model: torch.nn.Module

    # --- construction -------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def accepts(cls, config: object) -> bool:
        """Whether a Hugging Face `config` belongs to this family (families never overlap)."""

    @classmethod
    @abc.abstractmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> Adapter:
        """Load a model of this family by hub id or local folder."""

    # --- what the model is --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.model.parameters()).device

    @property
    @abc.abstractmethod
    def num_layers(self) -> int:
        """L, the number of attention (or mixer) layers traced."""

    @property
    @abc.abstractmethod
    def num_classes(self) -> int:
        """C, the number of classifier classes (the vocabulary size for a language model)."""

    @abc.abstractmethod
    def layers(self) -> list[torch.nn.Module]:
        """The model's layers, first to last (``len == num_layers``), for model-randomisation checks."""

    @abc.abstractmethod
    def label(self, class_index: int) -> str:
        """The name of a class: its ``id2label`` name for a classifier, the decoded token for a language model.

        Raises:
            ValueError: when `class_index` is not in [0, C).
        """

    @abc.abstractmethod
    def class_index(self, name: str) -> int:
        """The index of a class given by name (inverse of :meth:`label`); a string of digits is an index.

        Raises:
            ValueError: on an unknown name (listing the valid ones; for a language model, one that
                is not exactly one token).
        """

    # --- running the model --------------------------------------------------------------------
    @abc.abstractmethod
    def count_tokens(self, inputs: Any) -> list[int]:
        """Tokens per input after truncation (the `n` each gets alone), for grouping by length."""

    @abc.abstractmethod
    def trace(self, inputs: Any, *, target: TargetLike = "pred", labels: Sequence[int] | Tensor | None = None,
              saliency: str | None = "sum_abs", saliency_at: str = "layer_input") -> Trace:
        """Run one batch and record attention, logits, target, readout and input-gradient saliency.

        Args:
            inputs: B inputs.
            target: ``"pred"`` or None (the predicted class), ``"gold"`` (needs `labels`), a class
                index, B class indices (list or `(B,)` integer tensor), or a class name
                (see :meth:`class_index`).
            labels: B gold labels, optional.
            saliency: ``"sum_abs"``, ``"l2"``, ``"grad_x_input"``, or None to skip the backward pass.
            saliency_at: ``"layer_input"`` (the first layer's input) or ``"word_embeddings"``.

        Returns:
            A :class:`~attnlens.trace.Trace`: attentions `(B, L, H, n, n)` row-stochastic on valid
            keys and zero on padding, mask `(B, n)`, logits `(B, C)`, target `(B,)`, readout `(B,)`,
            saliency `(B, n)` (0 on padding) or None.
        """

    @abc.abstractmethod
    def predict(self, inputs: Any) -> Tensor:
        """The model's logits `(B, C)` at the readout: no attentions, no gradients, eval mode
        (the training flag is restored), one batch."""

    @abc.abstractmethod
    def perturb(self, inputs: Any, keep_mask: Tensor, *, mode: str = "remove") -> Tensor:
        """Logits `(B, C)` of the model on the inputs with the tokens where `keep_mask` is False
        removed (``"remove"``: the kept tokens re-packed and re-padded) or replaced (``"mask"``: by
        the tokenizer's mask token, else its unknown token).

        Args:
            inputs: B inputs.
            keep_mask: `(B, n)` bool in the positions and padding of ``trace(inputs).mask``; its
                values on padding are ignored.
            mode: ``"remove"`` or ``"mask"``.

        Raises:
            ValueError: on a `keep_mask` of the wrong shape, an example left without tokens, or
                ``"mask"`` with a tokenizer that has neither a mask nor an unknown token.
            TypeError: on a `keep_mask` that is not bool.
        """
