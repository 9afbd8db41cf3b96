"""Adapter for Hugging Face Vision Transformers with a classification head: ViT and DeiT.

ViT (Dosovitskiy et al., ICLR 2021, arXiv:2010.11929) reads a class token ``[CLS]`` (position 0)
prepended to the patch tokens; DeiT (Touvron et al., ICML 2021, arXiv:2012.12877) adds a
distillation token ``[DIST]`` at position 1. ``DeiTForImageClassificationWithTeacher`` averages
its two heads (class token and distillation token) as Hugging Face does; its readout is still the
class token, position 0.

Token layout of a trace: ``["[CLS]", ("[DIST]",) "patch(0,0)", "patch(0,1)", ...]``, the patches
in row-major order of the `(rows, columns)` grid; every image has the same n tokens (no padding).
Images are `(B, 3, H, W)` pixel values already preprocessed, or paths / PIL images read and
preprocessed as the model's ``preprocessor_config.json`` says
(:class:`~attnlens.datasets.images.ImagePreprocessing`).

One backward pass gives both the input-gradient saliency (w.r.t. the embeddings' output, the
first layer's input) and ``extras["attention_grad"]``, the gradient of the target logit w.r.t.
every layer's attention probabilities (eager attention keeps them in the autograd graph), for
gradient-weighted rollout (Chefer, Gur & Wolf, CVPR 2021).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from attnlens._checks import _check_choice, _check_device, _check_integer
from attnlens.datasets.images import ImagePreprocessing, as_pixel_values
from attnlens.models._factory import read_model_config
from attnlens.models._hooks import eval_mode, frozen_parameters
from attnlens.models._loading import failure_cause, quiet_transformers
from attnlens.models._perturb import PERTURB_MODES, check_keep_mask
from attnlens.models._registry import register_adapter
from attnlens.models._saliency import SALIENCY_POSITIONS, SALIENCY_REDUCTIONS, reduce_saliency
from attnlens.models._targets import ExplainError, class_from_name, label_indices, resolve_target
from attnlens.models.base import Adapter
from attnlens.trace import Trace

__all__ = ["ViTAdapter"]

_VISION_MODEL_TYPES = ("vit", "deit")
_HEAD_SUFFIXES = ("ForImageClassification", "ForImageClassificationWithTeacher")


@contextlib.contextmanager
def _output_leaf(module: torch.nn.Module) -> Iterator[list[Tensor]]:
    """Replace `module`'s output by a detached copy that requires gradients (removed on exit)."""
    leaves: list[Tensor] = []

    def hook(_: torch.nn.Module, args: tuple, output: Tensor) -> Tensor:
        leaf = output.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf

    handle = module.register_forward_hook(hook)
    try:
        yield leaves
    finally:
        handle.remove()


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


@register_adapter("vit")
class ViTAdapter(Adapter):
    """Traces of a Hugging Face ``ViTForImageClassification`` or ``DeiTForImageClassification(WithTeacher)``.

    ViT: Dosovitskiy et al., ICLR 2021; DeiT: Touvron et al., ICML 2021.

    Args:
        model: the classifier (switched to eager attention if it is not).
        preprocessing: how its images are resized and normalised; defaults to the model config's
            ``image_size`` with mean = std = 0.5 (see :meth:`ImagePreprocessing.from_hf`).

    Attributes:
        preprocessing: the :class:`~attnlens.datasets.images.ImagePreprocessing` applied to paths
            and PIL images.
        num_special: the class (and distillation) tokens before the patches: 1 for ViT, 2 for DeiT.
        grid: `(rows, columns)` of the patch grid.

    Example:
        >>> from transformers import ViTConfig
        >>> ViTAdapter.accepts(ViTConfig(architectures=["ViTForImageClassification"]))
        True
    """

    modality = "image"
    provides = frozenset({"attention", "attention_gradients"})

    def __init__(self, model: torch.nn.Module, *, preprocessing: ImagePreprocessing | None = None) -> None:
        self.model = model
        config = model.config
        if getattr(config, "_attn_implementation", "eager") != "eager" and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
        self.preprocessing = preprocessing if preprocessing is not None else ImagePreprocessing.from_hf(config)
        self._base = model.base_model
        self.num_special = 2 if hasattr(self._base.embeddings, "distillation_token") else 1
        height, width = _pair(config.image_size)
        patch = _pair(config.patch_size)
        self.patch_size = patch
        self.grid = (height // patch[0], width // patch[1])
        if self.preprocessing.size != (height, width):
            raise ExplainError(f"Expected `preprocessing` to make images of the model's size {(height, width)}, but it "
                               f"makes {self.preprocessing.size}.")

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: object) -> bool:
        """Whether `config` is a ViT or DeiT with an image-classification head (or no architecture named)."""
        if getattr(config, "model_type", None) not in _VISION_MODEL_TYPES:
            return False
        architectures = getattr(config, "architectures", None) or []
        return not architectures or any(a.endswith(_HEAD_SUFFIXES) for a in architectures)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> ViTAdapter:
        """Load a ViT/DeiT classifier by hub id or local folder (float32, eager attention) and its preprocessing.

        ViT: Dosovitskiy et al., ICLR 2021; DeiT: Touvron et al., ICML 2021.

        Raises:
            ExplainError: when the model cannot be loaded or has no image-classification head.
        """
        device = _check_device(device)
        from transformers import AutoModelForImageClassification  # noqa: PLC0415

        with quiet_transformers():
            try:
                config = read_model_config(name_or_path)
            except ValueError as err:
                raise ExplainError(str(err)) from err
            if not cls.accepts(config):
                raise ExplainError(f"Expected `model` to be a ViT or DeiT image classifier, but {name_or_path!r} is a "
                                   f"{', '.join(getattr(config, 'architectures', None) or [config.model_type])}.")
            architectures = getattr(config, "architectures", None) or []
            try:
                if "DeiTForImageClassificationWithTeacher" in architectures:
                    from transformers import DeiTForImageClassificationWithTeacher as loader  # noqa: PLC0415, N813
                else:
                    loader = AutoModelForImageClassification
                model = loader.from_pretrained(name_or_path, dtype=torch.float32, attn_implementation="eager")
            except Exception as err:  # noqa: BLE001
                raise ExplainError(f"Expected `model` {name_or_path!r} to load, but it failed "
                                   f"({failure_cause(err)}).") from err
            preprocessing = ImagePreprocessing.from_hf(_processor_source(name_or_path, model.config))
        return cls(model.to(device).eval(), preprocessing=preprocessing)

    # --- what the model is --------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    def layers(self) -> list[torch.nn.Module]:
        layers = getattr(self._base, "layers", None)
        return list(layers if layers is not None else self._base.encoder.layer)

    def label(self, class_index: int) -> str:
        index = _check_integer(class_index, "class_index", low=0, high=self.num_classes - 1)
        return str((self.model.config.id2label or {}).get(index, index))

    def class_index(self, name: str) -> int:
        """The index of a class name (``id2label``; case-insensitive when unambiguous) or of a digit string.

        Raises:
            ExplainError: on an unknown name, listing the valid ones (the first 20 of a large label set).
        """
        return class_from_name(name, [self.label(i) for i in range(self.num_classes)])

    # --- inputs -------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """n: the class (and distillation) tokens plus rows × columns patches."""
        return self.num_special + self.grid[0] * self.grid[1]

    def count_tokens(self, images: Tensor | Sequence[Any]) -> list[int]:
        """n for each image (the same for all: images are resized to the model's size)."""
        count = images.shape[0] if isinstance(images, Tensor) else len(images)
        return [self.num_tokens] * count

    def pixel_values(self, images: Tensor | Sequence[Any]) -> Tensor:
        """`(B, 3, H, W)` float pixel values on the model's device (:func:`~attnlens.datasets.images.as_pixel_values`)."""
        pixels = as_pixel_values(images, self.preprocessing)
        dtype = next(self.model.parameters()).dtype
        return pixels.to(self.device, dtype, non_blocking=True)

    def _tokens(self) -> list[str]:
        specials = ["[CLS]", "[DIST]"][: self.num_special]
        return specials + [f"patch({r},{c})" for r in range(self.grid[0]) for c in range(self.grid[1])]

    # --- the model's pieces (a subclass for another ViT implementation overrides these) -------
    def _logits(self, pixels: Tensor) -> Tensor:
        """The model's logits `(B, C)` on `(B, 3, H, W)` pixels."""
        return self.model(pixel_values=pixels).logits

    @contextlib.contextmanager
    def _recording(self, gradients: bool) -> Iterator[dict[str, Any]]:
        """While tracing: ``record["leaves"]`` gets the first layer's input as a leaf requiring gradients
        (when `gradients`); every hook and flag is restored on exit."""
        record: dict[str, Any] = {}
        if not gradients:
            yield record
            return
        with _output_leaf(self._base.embeddings) as leaves:
            record["leaves"] = leaves
            yield record

    def _traced_forward(self, pixels: Tensor, record: dict[str, Any]) -> tuple[Tensor, list[Tensor]]:
        """Logits `(B, C)` and the per-layer attention probabilities `(B, H, n, n)`, inside :meth:`_recording`."""
        outputs = self.model(pixel_values=pixels, output_attentions=True)
        return outputs.logits, list(outputs.attentions or [])

    def _position_embeddings(self) -> Tensor:
        """`(1, n, d)` position embeddings added to every token (class tokens too) before the first layer."""
        return self._base.embeddings.position_embeddings

    def _embed(self, pixels: Tensor) -> Tensor:
        """`(B, n, d)` the first layer's input: patch embeddings, class tokens, position embeddings."""
        return self._base.embeddings(pixels)

    def _final(self, hidden: Tensor) -> Tensor:
        """Logits `(B, C)` from the last layer's output `(B, n, d)`: final norm and head."""
        return self._head(self._base.layernorm(hidden))

    def _head(self, sequence_output: Tensor) -> Tensor:
        """Logits `(B, C)` from the final-norm output `(B, n, d)`: the class token's head, or the mean of both
        heads of a DeiT with teacher."""
        if hasattr(self.model, "distillation_classifier"):
            return (self.model.cls_classifier(sequence_output[:, 0]) +
                    self.model.distillation_classifier(sequence_output[:, 1])) / 2
        return self.model.classifier(sequence_output[:, 0])

    # --- running the model --------------------------------------------------------------------
    def trace(
        self,
        images: Tensor | Sequence[Any],
        *,
        target: str | int | Sequence[int] | Tensor | None = "pred",
        labels: Sequence[int] | Tensor | None = None,
        saliency: str | None = "sum_abs",
        saliency_at: str = "layer_input",
    ) -> Trace:
        """Run one batch and record attention, logits, target, readout, saliency and attention gradients.

        ViT: Dosovitskiy et al., ICLR 2021; gradients for Chefer, Gur & Wolf, CVPR 2021.

        Args:
            images: `(B, 3, H, W)` preprocessed pixels, or B paths / PIL images.
            target: ``"pred"`` or None, ``"gold"`` (needs `labels`), a class index, B class indices, or a
                class name (see :meth:`class_index`).
            labels: B gold labels, optional.
            saliency: ``"sum_abs"``, ``"l2"``, ``"grad_x_input"``, or None to skip the backward pass (and
                ``extras["attention_grad"]`` with it).
            saliency_at: ``"layer_input"``: the embeddings' output (patch embeddings, class and distillation
                tokens, position embeddings added) that enters the first layer; ``"word_embeddings"``: the
                same gradient, but the embedding (for ``grad_x_input``) is taken before the position
                embeddings are added.

        Returns:
            A :class:`Trace`: attentions `(B, L, H, n, n)`, mask `(B, n)` all True, logits `(B, C)`,
            target `(B,)`, readout `(B,)` zeros (the class token), saliency `(B, n)` or None, grid
            `(rows, columns)`, patch_positions `(rows * columns,)` = ``num_special + arange(rows * columns)``,
            special_mask True on the class and distillation tokens, and (when `saliency` is not None)
            ``extras["attention_grad"]`` `(B, L, H, n, n)`: ∂ target logit / ∂ attention probabilities.

        Raises:
            ExplainError: on bad images, a bad target, or a model that returns no attention.
            TypeError: on a target or labels that are not class indices or names.
        """
        if saliency is not None:
            _check_choice(saliency, "saliency", SALIENCY_REDUCTIONS)
        _check_choice(saliency_at, "saliency_at", SALIENCY_POSITIONS)
        pixels = self.pixel_values(images)
        batch = pixels.shape[0]
        gold = label_indices(labels, batch)
        gradients = saliency is not None
        with (eval_mode(self.model), frozen_parameters(self.model), torch.set_grad_enabled(gradients),
              self._recording(gradients) as record):
            logits, attentions = self._traced_forward(pixels, record)
            if len(attentions) != self.num_layers or any(a is None for a in attentions):
                raise ExplainError("Expected the model to return attention weights, but it returned none (it needs "
                                   "attn_implementation='eager').")
            leaves = record.get("leaves", [])
            chosen = resolve_target(target, logits=logits, labels=gold, lookup=self.class_index)
            grads = attention_grads = None
            if gradients:
                picked = logits.gather(1, chosen[:, None]).sum()
                grads, *attention_grads = torch.autograd.grad(picked, [leaves[0], *attentions], allow_unused=True)
                attention_grads = [torch.zeros_like(a) if g is None else g for a, g in zip(attentions, attention_grads)]
        n = self.num_tokens
        mask = torch.ones(batch, n, dtype=torch.bool, device=pixels.device)
        extras: dict[str, Tensor] = {}
        saliency_values = None
        if grads is not None:
            embedded = leaves[0].detach()
            if saliency_at == "word_embeddings":
                embedded = embedded - self._position_embeddings().detach()
            saliency_values = reduce_saliency(grads, embedded, mask, how=saliency)
            extras["attention_grad"] = torch.stack(attention_grads, dim=1)
        special = torch.zeros(batch, n, dtype=torch.bool, device=pixels.device)
        special[:, : self.num_special] = True
        rows, columns = self.grid
        return Trace(tokens=[self._tokens() for _ in range(batch)], mask=mask,
                     attentions=torch.stack([a.detach() for a in attentions], dim=1), logits=logits.detach(),
                     target=chosen, saliency=saliency_values,
                     labels=None if gold is None else gold.to(pixels.device, non_blocking=True), special_mask=special,
                     extras=extras, readout=torch.zeros(batch, dtype=torch.long, device=pixels.device),
                     grid=self.grid,
                     patch_positions=torch.arange(rows * columns, device=pixels.device) + self.num_special)

    def predict(self, images: Tensor | Sequence[Any]) -> Tensor:
        """The model's logits `(B, C)` on `(B, 3, H, W)` pixels or B paths / PIL images (one batch, eval mode, no
        gradients). ViT: Dosovitskiy et al., ICLR 2021."""
        pixels = self.pixel_values(images)
        with eval_mode(self.model), torch.no_grad():
            return self._logits(pixels)

    def perturb(self, images: Tensor | Sequence[Any], keep_mask: Tensor, *, mode: str = "remove") -> Tensor:
        """Logits `(B, C)` with the patches where `keep_mask` is False removed or masked, all in one batch.

        ViT: Dosovitskiy et al., ICLR 2021 (DeiT: Touvron et al., ICML 2021).

        ``"mask"`` sets every pixel of a dropped patch to 0 in normalised space (the dataset's mean
        colour) and runs the model on the image (exact per patch: ViT patches do not overlap).
        ``"remove"`` drops the patch tokens from the sequence after the embeddings (position
        embeddings already added, so the kept patches keep their positions), then runs the encoder
        layers, the final layer norm and the head on the shorter sequence; examples keeping fewer
        patches are padded and their padding masked out of attention. The class and distillation
        tokens are always kept (their `keep_mask` entries are ignored); an example may keep no patch.

        Args:
            images: `(B, 3, H, W)` preprocessed pixels, or B paths / PIL images.
            keep_mask: `(B, n)` bool in the token positions of a trace.
            mode: ``"remove"`` or ``"mask"``.

        Returns:
            `(B, C)` logits.

        Raises:
            ExplainError: on a `keep_mask` of the wrong shape or an unknown mode (a `ValueError`).
            TypeError: on a `keep_mask` that is not a bool tensor.
        """
        _check_choice(mode, "mode", PERTURB_MODES)
        pixels = self.pixel_values(images)
        batch, n = pixels.shape[0], self.num_tokens
        keep = check_keep_mask(keep_mask, torch.ones(batch, n, dtype=torch.bool)).to(pixels.device)
        keep[:, : self.num_special] = True
        with eval_mode(self.model), torch.no_grad():
            if mode == "mask":
                rows, columns = self.grid
                patches = keep[:, self.num_special:].reshape(batch, rows, columns).to(pixels.dtype)
                pixel_keep = patches.repeat_interleave(self.patch_size[0], 1).repeat_interleave(self.patch_size[1], 2)
                covered = torch.ones(batch, *pixels.shape[-2:], dtype=pixels.dtype, device=pixels.device)
                covered[:, : pixel_keep.shape[1], : pixel_keep.shape[2]] = pixel_keep
                return self._logits(pixels * covered[:, None])
            return self._removed_logits(self._embed(pixels), keep)

    def _removed_logits(self, embedded: Tensor, keep: Tensor) -> Tensor:
        """The encoder, final norm and head on the kept tokens of `embedded (B, n, d)`, packed left and padded."""
        counts = keep.sum(dim=-1)
        width = int(counts.max())
        order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)[:, :width]  # kept positions first, in order
        hidden = embedded.gather(1, order[..., None].expand(-1, -1, embedded.shape[-1]))
        valid = torch.arange(width, device=keep.device)[None] < counts[:, None]
        layers = self.layers()
        if bool(valid.all()):
            for layer in layers:
                hidden = _first(layer(hidden))
            return self._final(hidden)
        key_mask = self._key_mask_argument(layers[0])
        if key_mask is None:  # transformers 4: no key mask, one group per count
            out = torch.empty(keep.shape[0], self.num_classes, dtype=embedded.dtype, device=embedded.device)
            for count in counts.unique().tolist():
                rows = (counts == count).nonzero().flatten()
                out[rows] = self._removed_logits(embedded[rows], keep[rows])
            return out
        blocked = torch.zeros(valid.shape, dtype=hidden.dtype, device=hidden.device)
        blocked = blocked.masked_fill(~valid, torch.finfo(hidden.dtype).min)[:, None, None, :]
        for layer in layers:
            hidden = _first(layer(hidden, **{key_mask: blocked}))
        return self._final(hidden)


    @staticmethod
    def _key_mask_argument(layer: torch.nn.Module) -> str | None:
        """The name of a layer's additive attention-mask argument, None when it takes none."""
        parameters = inspect.signature(layer.forward).parameters
        return next((name for name in ("attention_mask", "attn_mask") if name in parameters), None)


def _first(output: Tensor | tuple) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _processor_source(name_or_path: str, config: object) -> object:
    """Where the preprocessing comes from: the local folder, the hub's cached ``preprocessor_config.json``,
    else the model config."""
    from pathlib import Path  # noqa: PLC0415

    if Path(name_or_path).expanduser().is_dir():
        return Path(name_or_path).expanduser()
    try:
        from transformers.utils import cached_file  # noqa: PLC0415

        found = cached_file(name_or_path, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    except Exception:  # noqa: BLE001 - no processor config on the hub: the model config says the size
        found = None
    return Path(found) if found else config
