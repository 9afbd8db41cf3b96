"""Adapter for Vision Mamba (:class:`~attnlens.models.vim.VisionMamba`): hidden attention of both directions.

Zhu et al. 2024, "Vision Mamba" (ICML); hidden attention: Ali, Zimerman & Wolf 2025, "The Hidden
Attention of Mamba Models" (ACL).

Vim has no Hugging Face config: it is loaded by spec (:func:`parse_vim_spec`):
``vim-tiny|vim-small|vim-tiny-stride8|vim-small-stride8=FILE`` for the official checkpoints, or
``vim=DIR`` for a folder with ``config.json`` (the constructor arguments, optional ``id2label`` and
``preprocessing``) and ``model.safetensors`` or one ``.pth``. ``load_adapter("vim=DIR")`` does the same.

Tokens. ``n = M + 1``: the M patches in row-major grid order with ``"[CLS]"`` inserted at
``p = M // 2`` (``patch_positions[m] = m`` for m < p, ``m + 1`` after); the readout is p. Every image
has the same n tokens (no padding).

Directions and ``combine``. Per layer, the forward branch's hidden attention α_f (channel mean,
signed) is lower-triangular in token order; the backward branch scans the flipped sequence, and its
α_b flipped back on both axes is upper-triangular. ``combine`` makes one matrix of the two:

* ``"sum"`` (default): α_f + α_b, Zimerman et al.'s unified representation of the bidirectional
  layer. Off the diagonal each entry comes from exactly one direction; the diagonal holds both
  directions' self terms (α_f[i, i] + α_b[i, i]). It is the default because it is the operator the
  layer applies to its scan inputs up to the factor 1/2 (and the D skip and the gate), for every
  row, not only the class token's.
* ``"mean"``: (α_f + α_b) / 2, the mixer's own averaging (``if_devide_out``). After the row
  normalisation of ``Trace.attentions`` it equals ``"sum"``; only the signed extras differ.
* ``"splice"``: the authors' released code (HiddenMambaAttn), generalised from the class-token row
  to every row: in every row, keys left of the class token (c < p) from α_f, keys right of it
  (c > p) from α_b, and the class token's column (c = p, the diagonal entry [p, p] included) 0, as
  the authors' class-token vector has 0 at p.

``Trace.attentions`` is ``norm_rows(|combined|)`` `(B, L, 1, n, n)` (absolute value, each row divided
by its sum, as :mod:`attnlens.models.hf_mamba` does). Extras, all float32:

* ``hidden_attention_fwd`` / ``hidden_attention_bwd`` `(B, L, n, n)`: the signed channel means of
  α_f and of α_b, in token order (lower / upper triangular).
* ``hidden_attention`` `(B, L, n, n)`: the signed combined matrix.
* ``readout_rows`` `(B, L, E, n)`: per layer and scan channel the class token's row of the combined
  per-channel α (signed). These are the exact rows ``α[p, c] = Σ_s C_p,s exp(A_s Σ_{k=c+1..p} Δ_k) Δ_c
  B_c,s``; the authors' helper (``compute_middle_attn_vector``) drops the factor of the class position
  itself, ``exp(Δ_p A)``, so its vector is not a row of α (attnlens does not reproduce that slip).
* ``residual_grad`` `(B, L, n)`: per layer the maximum over the D hidden dimensions of the positive
  part of ∂ target logit / ∂ residual stream entering block l (Mamba-Attr of Ali et al.).

One forward pass records what every scan saw (:class:`~attnlens.models.vim.ScanTensors`) and one
backward pass gives ``residual_grad`` and the saliency; the backward runs also with ``saliency=None``
(``residual_grad`` needs it) unless ``gradients=False`` asks for a forward-only trace.

Cost. The channel-mean hidden attention of one layer and direction is n²·E·N multiply-adds (Vim-S:
197² · 768 · 16 ≈ 0.48 G for the full square), more than the whole layer's forward pass (≈ 0.2 G), so
the 48 matrices of a Vim-S trace dominate it: on one CPU thread a trace takes about 14 times the
forward pass (``benchmarks/bench_vim.py``), the hidden attention being ~130 times faster than the
authors' per-(r, c) loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attnlens._checks import ArgumentError, _check_choice, _check_device, _check_integer
from attnlens.datasets.images import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing, as_pixel_values
from attnlens.methods._common import _normalize_rows
from attnlens.methods.hidden_attention import hidden_attention
from attnlens.models._hooks import eval_mode, frozen_parameters
from attnlens.models._perturb import PERTURB_MODES, check_keep_mask
from attnlens.models._registry import register_adapter, register_tiny_variant
from attnlens.models._saliency import SALIENCY_POSITIONS, SALIENCY_REDUCTIONS, reduce_saliency
from attnlens.models._targets import ExplainError, class_from_name, label_indices, resolve_target
from attnlens.models.base import Adapter
from attnlens.models.vim import VIM_CONFIGS, ScanTensors, VimConfig, VimLayerRecord, VisionMamba, load_vim_checkpoint
from attnlens.models.vim import read_vim_folder
from attnlens.trace import Trace

__all__ = ["COMBINE_MODES", "VimAdapter", "combine_directions", "parse_vim_spec", "readout_rows"]

COMBINE_MODES = ("sum", "mean", "splice")
_FOLDER_SPEC = "vim"


# --- specs --------------------------------------------------------------------------------------


def parse_vim_spec(text: object) -> tuple[VimConfig | None, Path] | None:
    """A Vim model spec: ``NAME=FILE`` (NAME one of :data:`~attnlens.models.vim.VIM_CONFIGS`) or ``vim=DIR``.

    Zhu et al. 2024, "Vision Mamba".

    Returns:
        ``(config, path)`` (config None for a folder), or None when `text` is not a Vim spec.

    Raises:
        ArgumentError: (argument `model`) on a spec without a path.

    Example:
        >>> parse_vim_spec("vim-small=vim_s_midclstok_80p5acc.pth")[0].embed_dim
        384
        >>> parse_vim_spec("bert-base-uncased") is None
        True
    """
    if not isinstance(text, str) or "=" not in text:
        return None
    name, _, path = text.partition("=")
    name = name.strip()
    if name != _FOLDER_SPEC and name not in VIM_CONFIGS:
        return None
    if not path.strip():
        raise ArgumentError(f"Expected `model` to be {name}=PATH with a path, but got {text!r}.", "model")
    return (None if name == _FOLDER_SPEC else VIM_CONFIGS[name]), Path(path.strip()).expanduser()


def _default_preprocessing(config: VimConfig) -> ImagePreprocessing:
    """timm's ImageNet evaluation defaults for 224-pixel models (Vim's own), else an exact bicubic resize."""
    if config.img_size == 224:
        return ImagePreprocessing.imagenet(224)
    side = config.img_size
    return ImagePreprocessing(size=(side, side), resize_to=(side, side), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                              resample="bicubic")


# --- pure helpers on the recorded scans --------------------------------------------------------


def combine_directions(forward: Tensor, backward: Tensor, *, position: int, combine: str = "sum") -> Tensor:
    """One matrix from the two directions' hidden attention of a bidirectional Vim layer, in token order.

    Zhu et al. 2024 (bidirectional scans); ``"sum"``: Zimerman et al.'s unified representation;
    ``"splice"``: Ali, Zimerman & Wolf 2025's released code (see the module docstring).

    Args:
        forward: `(..., n, n)` α_f, lower-triangular (or `(..., n)` rows).
        backward: `(..., n, n)` α_b flipped back to token order, upper-triangular (or `(..., n)` rows).
        position: p, the class token's index (``"splice"`` only).
        combine: ``"sum"``, ``"mean"`` or ``"splice"``.

    Returns:
        The combined tensor, shaped as the inputs.

    Example:
        >>> f = torch.tensor([[1.0, 0.0, 0.0], [2.0, 3.0, 0.0], [4.0, 5.0, 6.0]])
        >>> combine_directions(f, f.T, position=1, combine="splice")
        tensor([[1., 0., 4.],
                [2., 0., 5.],
                [4., 0., 6.]])
    """
    _check_choice(combine, "combine", COMBINE_MODES)
    if combine == "sum":
        return forward + backward
    if combine == "mean":
        return (forward + backward) / 2
    columns = torch.arange(forward.shape[-1], device=forward.device)
    zero = torch.zeros((), dtype=forward.dtype, device=forward.device)
    return torch.where(columns < position, forward, torch.where(columns > position, backward, zero))


def _scan_row(scan: ScanTensors, position: int) -> Tensor:
    """`(B, E, n)` row `position` (scan order) of the per-channel α of one direction, exact, zero after it."""
    delta, A, B, C = scan.delta.float(), scan.A.float(), scan.B.float(), scan.C.float()
    batch, channels, n = delta.shape
    head = delta[..., : position + 1]
    suffix = head.flip(-1).cumsum(-1).flip(-1)  # Σ_{k=c..p} Δ_k, a sum of non-negative terms
    gap = torch.cat([suffix[..., 1:], torch.zeros_like(suffix[..., :1])], dim=-1)  # Σ_{k=c+1..p} Δ_k
    decay = torch.exp(A[None, :, :, None] * gap[:, :, None, :])  # (B, E, N, p + 1), every factor in [0, 1]
    weights = C[:, :, position][:, None, :, None] * B[:, None, :, : position + 1]  # (B, 1, N, p + 1)
    row = (decay * weights).sum(dim=2) * head
    out = torch.zeros(batch, channels, n, dtype=row.dtype, device=row.device)
    out[..., : position + 1] = row
    return out


def readout_rows(record: VimLayerRecord, *, position: int, combine: str = "sum") -> Tensor:
    """The signed per-channel row of token `position` in one Vim layer's combined hidden attention.

    Ali, Zimerman & Wolf 2025, Eq. 11, per channel and direction, combined as
    :func:`combine_directions`; exact (the class position's own decay ``exp(Δ_p A)`` included).

    Args:
        record: the layer's :class:`~attnlens.models.vim.VimLayerRecord`.
        position: p, the readout token.
        combine: ``"sum"``, ``"mean"`` or ``"splice"``.

    Returns:
        `(B, E, n)` float32.
    """
    n = record.forward.delta.shape[-1]
    forward = _scan_row(record.forward, position)
    backward = _scan_row(record.backward, n - 1 - position).flip(-1)  # scan column s is token n - 1 - s
    return combine_directions(forward, backward, position=position, combine=combine)


def _layer_attention(record: VimLayerRecord) -> tuple[Tensor, Tensor]:
    """`(B, n, n)` signed channel means of α_f and of α_b, both in token order."""
    forward, backward = record.forward, record.backward
    alpha_f = hidden_attention(forward.delta, forward.A, forward.B, forward.C, channels="mean")
    alpha_b = hidden_attention(backward.delta, backward.A, backward.B, backward.C, channels="mean")
    return alpha_f, alpha_b.flip(-1, -2)


def _detached(record: VimLayerRecord) -> VimLayerRecord:
    def scan(s: ScanTensors) -> ScanTensors:
        return ScanTensors(*(t.detach() for t in s))

    return VimLayerRecord(record.residual.detach(), record.mixer_out.detach(), scan(record.forward),
                          scan(record.backward))


# --- the adapter --------------------------------------------------------------------------------


@register_adapter("vim")
class VimAdapter(Adapter):
    """Hidden-attention traces of a Vision Mamba image classifier (both scan directions per layer).

    Zhu et al. 2024, "Vision Mamba"; Ali, Zimerman & Wolf 2025 (hidden attention).

    Args:
        model: a :class:`~attnlens.models.vim.VisionMamba`.
        labels: C class names (default ``"0"`` … ``"C-1"``); ImageNet names are not packaged.
        preprocessing: how paths and PIL images become pixels; default timm's ImageNet evaluation
            transform (bicubic resize to 256, center crop 224, ImageNet mean/std) for 224-pixel
            models, an exact bicubic resize to ``img_size`` with ImageNet mean/std otherwise.
        device: where the model runs.

    Example:
        >>> VimAdapter.accepts(object())
        False
    """

    modality = "image"
    task = "classification"
    provides = frozenset({"attention", "residual_gradients", "readout_rows"})

    def __init__(self, model: VisionMamba, *, labels: Sequence[str] | None = None,
                 preprocessing: ImagePreprocessing | None = None, device: str | torch.device = "cpu") -> None:
        if not isinstance(model, VisionMamba):
            raise TypeError(f"Expected `model` to be a VisionMamba, but got {type(model).__name__}.")
        self.model = model.to(_check_device(device))
        config = model.config
        self.config = config
        if labels is None:
            labels = [str(i) for i in range(config.num_classes)]
        labels = [str(name) for name in labels]
        if len(labels) != config.num_classes:
            raise ValueError(f"Expected `labels` to hold {config.num_classes} names, but got {len(labels)}.")
        self.labels = labels
        self.preprocessing = preprocessing if preprocessing is not None else _default_preprocessing(config)
        if tuple(self.preprocessing.size) != (config.img_size, config.img_size):
            raise ExplainError(f"Expected `preprocessing` to make images of the model's size "
                               f"{(config.img_size, config.img_size)}, but it makes {self.preprocessing.size}.")
        self.grid = config.grid
        self.position = config.cls_position

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: object) -> bool:
        """Always False: Vim has no Hugging Face config (it is loaded by spec, see :func:`parse_vim_spec`)."""
        return False

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> VimAdapter:
        """Load a Vim by spec (``vim-small=FILE.pth``, ``vim=DIR``) or from a folder path.

        Raises:
            ArgumentError: (argument `model`) on a missing file or folder, an unreadable or
                mismatching checkpoint, or a bad config.json.
        """
        spec = parse_vim_spec(name_or_path)
        config, path = spec if spec is not None else (None, Path(str(name_or_path)).expanduser())
        return cls.from_spec(config, path, device=device)

    @classmethod
    def from_spec(cls, config: VimConfig | None, path: str | Path, *,
                  device: str | torch.device = "cpu") -> VimAdapter:
        """Load an official checkpoint file into `config`, or (config None) a Vim folder.

        Raises:
            ArgumentError: (argument `model`) as :meth:`from_pretrained` says.
        """
        path = Path(path).expanduser()
        labels, preprocessing = None, None
        if config is None:
            if not path.is_dir():
                raise ArgumentError(f"Expected `model` vim=DIR to name a Vim folder, but {path} is not a folder.",
                                    "model")
            config, weights, extras = read_vim_folder(path)
            labels = _folder_labels(extras.get("id2label"), config.num_classes, path)
            if extras.get("preprocessing") is not None:
                preprocessing = _folder_preprocessing(extras["preprocessing"], path)
        else:
            if not path.is_file():
                raise ArgumentError(f"Expected `model` to name a Vim checkpoint file, but {path} "
                                    f"{'is a folder' if path.is_dir() else 'does not exist'}.", "model")
            weights = path
        try:
            model = load_vim_checkpoint(weights, config)
        except ArgumentError as err:
            raise ArgumentError(err.render("model"), "model") from None
        return cls(model, labels=labels, preprocessing=preprocessing, device=device)

    # --- what the model is --------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.config.depth

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def layers(self) -> list[torch.nn.Module]:
        return list(self.model.layers)

    def label(self, class_index: int) -> str:
        index = _check_integer(class_index, "class_index", low=0, high=self.num_classes - 1)
        return self.labels[index]

    def class_index(self, name: str) -> int:
        """The index of a class name (case-insensitive when unambiguous) or of a digit string.

        Raises:
            ExplainError: on an unknown name, listing the valid ones (the first 20 of a large label set).
        """
        return class_from_name(name, list(self.labels))

    # --- inputs -------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """n = M + 1."""
        return self.config.seq_len

    def count_tokens(self, images: Tensor | Sequence[Any]) -> list[int]:
        """n for each image (the same for all: images are resized to the model's size)."""
        count = images.shape[0] if isinstance(images, Tensor) else len(images)
        return [self.num_tokens] * count

    def pixel_values(self, images: Tensor | Sequence[Any]) -> Tensor:
        """`(B, 3, H, W)` float pixels on the model's device (see :func:`~attnlens.datasets.images.as_pixel_values`)."""
        pixels = as_pixel_values(images, self.preprocessing)
        return pixels.to(self.device, next(self.model.parameters()).dtype, non_blocking=True)

    def tokens(self) -> list[str]:
        """The n token names: ``"patch(r,c)"`` in row-major order with ``"[CLS]"`` at the class position."""
        names = [f"patch({r},{c})" for r in range(self.grid[0]) for c in range(self.grid[1])]
        return names[: self.position] + ["[CLS]"] + names[self.position:]

    def patch_positions(self) -> Tensor:
        """`(M,)` token index of every patch in row-major order (the class token skipped)."""
        index = torch.arange(self.config.num_patches)
        return index + (index >= self.position).long()

    # --- running the model --------------------------------------------------------------------
    def trace(
        self,
        images: Tensor | Sequence[Any],
        *,
        target: str | int | Sequence[int] | Tensor | None = "pred",
        labels: Sequence[int] | Tensor | None = None,
        saliency: str | None = "sum_abs",
        saliency_at: str = "layer_input",
        combine: str = "sum",
        gradients: bool = True,
    ) -> Trace:
        """Run one batch: hidden attention of every layer and direction, logits, target, saliency, Mamba-Attr gradients.

        Zhu et al. 2024 (model); Ali, Zimerman & Wolf 2025 (hidden attention, Mamba-Attr).

        Args:
            images: `(B, 3, H, W)` preprocessed pixels, or B paths / PIL images.
            target: ``"pred"`` or None, ``"gold"`` (needs `labels`), a class index, B class indices, or a
                class name (see :meth:`class_index`).
            labels: B gold labels, optional.
            saliency: ``"sum_abs"``, ``"l2"``, ``"grad_x_input"`` of the gradient of the target logit w.r.t.
                the first block's input (the embedded tokens), or None (the backward pass still runs for
                ``residual_grad`` unless `gradients` is False).
            saliency_at: ``"layer_input"`` (the tokens entering block 0, position embedding added) or
                ``"word_embeddings"`` (the same gradient; for ``grad_x_input`` the embedding before the
                position embedding is added).
            combine: ``"sum"``, ``"mean"`` or ``"splice"`` (see the module docstring).
            gradients: run the backward pass for ``residual_grad``; with False and `saliency` None the trace
                is forward only (no ``residual_grad``: for the methods that need no gradients, about a
                third of the time at Vim-S shape).

        Returns:
            A :class:`Trace`: attentions `(B, L, 1, n, n)` = norm_rows(|combined|), mask `(B, n)` all True,
            logits `(B, C)`, target `(B,)`, readout `(B,)` = p, saliency `(B, n)` or None, special_mask (the
            class token), grid, patch_positions `(M,)`, extras ``hidden_attention_fwd``,
            ``hidden_attention_bwd``, ``hidden_attention`` `(B, L, n, n)`, ``readout_rows`` `(B, L, E, n)`,
            ``residual_grad`` `(B, L, n)` (not with ``gradients=False`` and no saliency).

        Raises:
            ExplainError: on bad images or a bad target (a ValueError).
            TypeError: on a target or labels that are not class indices or names.
        """
        if saliency is not None:
            _check_choice(saliency, "saliency", SALIENCY_REDUCTIONS)
        _check_choice(saliency_at, "saliency_at", SALIENCY_POSITIONS)
        _check_choice(combine, "combine", COMBINE_MODES)
        pixels = self.pixel_values(images)
        batch, n, position = pixels.shape[0], self.num_tokens, self.position
        gold = label_indices(labels, batch)
        record: list[VimLayerRecord] = []
        backward = gradients or saliency is not None
        with eval_mode(self.model), frozen_parameters(self.model), torch.set_grad_enabled(backward):
            tokens = self.model.embed(pixels).detach().requires_grad_(backward)
            logits = self.model.forward_tokens(tokens, record=record)
            chosen = resolve_target(target, logits=logits, labels=gold, lookup=self.class_index)
            picked = logits.gather(1, chosen[:, None]).sum()
            residual_grads = torch.autograd.grad(picked, [layer.residual for layer in record]) if backward else None
        with torch.no_grad():
            record = [_detached(layer) for layer in record]
            pairs = [_layer_attention(layer) for layer in record]
            forward = torch.stack([pair[0] for pair in pairs], dim=1)
            backward_attention = torch.stack([pair[1] for pair in pairs], dim=1)
            combined = combine_directions(forward, backward_attention, position=position, combine=combine)
            rows = torch.stack([readout_rows(layer, position=position, combine=combine) for layer in record], dim=1)
            extras = {"hidden_attention_fwd": forward, "hidden_attention_bwd": backward_attention,
                      "hidden_attention": combined, "readout_rows": rows}
            if residual_grads is not None:
                extras["residual_grad"] = torch.stack([g.clamp(min=0).amax(dim=-1) for g in residual_grads], dim=1)
            mask = torch.ones(batch, n, dtype=torch.bool, device=pixels.device)
            saliency_values = None
            if saliency is not None:
                embedded = tokens.detach()
                if saliency_at == "word_embeddings":
                    embedded = embedded - self.model.pos_embed.detach()
                saliency_values = reduce_saliency(residual_grads[0], embedded, mask, how=saliency)
        special = torch.zeros(batch, n, dtype=torch.bool, device=pixels.device)
        special[:, position] = True
        return Trace(
            tokens=[self.tokens() for _ in range(batch)], mask=mask,
            attentions=_normalize_rows(combined.abs())[:, :, None], logits=logits.detach(), target=chosen,
            saliency=saliency_values, labels=None if gold is None else gold.to(pixels.device), special_mask=special,
            extras=extras,
            readout=torch.full((batch,), position, dtype=torch.long, device=pixels.device), grid=self.grid,
            patch_positions=self.patch_positions().to(pixels.device),
        )

    def predict(self, images: Tensor | Sequence[Any]) -> Tensor:
        """The model's logits `(B, C)` (one batch, eval mode, no gradients)."""
        pixels = self.pixel_values(images)
        with eval_mode(self.model), torch.no_grad():
            return self.model(pixels)

    def perturb(self, images: Tensor | Sequence[Any], keep_mask: Tensor, *, mode: str = "remove") -> Tensor:
        """Logits `(B, C)` with the patches where `keep_mask` is False removed or masked.

        ``"mask"`` sets the pixels of every dropped patch (its ``patch_size`` window at ``(r·stride,
        c·stride)``; with overlapping stride-8 patches the union of the dropped windows) to 0 in
        normalised space (the dataset's mean colour) and runs the whole model, one batch.
        ``"remove"`` drops the patch tokens after the embedding (position embeddings already added, so the
        kept patches keep their positions) and runs the blocks on the shorter sequence: the kept tokens in
        their order, the class token kept where it was among them (not re-centred) and read there. Examples
        keeping the same number of patches run as one batch. The class token is always kept (its
        `keep_mask` entry is ignored); an example may keep no patch.

        Args:
            images: `(B, 3, H, W)` preprocessed pixels, or B paths / PIL images.
            keep_mask: `(B, n)` bool in the token positions of a trace.
            mode: ``"remove"`` or ``"mask"``.

        Raises:
            ExplainError: on a `keep_mask` of the wrong shape or an unknown mode (a `ValueError`).
            TypeError: on a `keep_mask` that is not a bool tensor.
        """
        _check_choice(mode, "mode", PERTURB_MODES)
        pixels = self.pixel_values(images)
        batch, n, position = pixels.shape[0], self.num_tokens, self.position
        keep = check_keep_mask(keep_mask, torch.ones(batch, n, dtype=torch.bool)).to(pixels.device)
        keep[:, position] = True
        with eval_mode(self.model), torch.no_grad():
            if mode == "mask":
                return self.model(pixels * self._pixel_keep(keep)[:, None])
            embedded = self.model.embed(pixels)
            counts = keep.sum(dim=-1)
            out = torch.empty(batch, self.num_classes, dtype=embedded.dtype, device=embedded.device)
            for count in counts.unique().tolist():
                members = (counts == count).nonzero().flatten()
                kept = keep[members]
                order = torch.argsort((~kept).to(torch.int8), dim=-1, stable=True)[:, :count]  # kept, in order
                hidden = embedded[members].gather(1, order[..., None].expand(-1, -1, embedded.shape[-1]))
                readout = kept[:, :position].sum(dim=-1)
                out[members] = self.model.forward_tokens(hidden, readout=readout)
            return out

    def _pixel_keep(self, keep: Tensor) -> Tensor:
        """`(B, H, W)` 1 where no dropped patch's window covers the pixel, else 0."""
        config = self.config
        batch = keep.shape[0]
        dropped = (~keep[:, self.patch_positions().to(keep.device)]).reshape(batch, 1, *self.grid).float()
        # a transposed convolution with a ones kernel spreads every dropped patch over its window
        kernel = torch.ones(1, 1, config.patch_size, config.patch_size, device=keep.device)
        covered = torch.nn.functional.conv_transpose2d(dropped, kernel, stride=config.stride)[:, 0]
        full = torch.zeros(batch, config.img_size, config.img_size, device=keep.device)
        full[:, : covered.shape[1], : covered.shape[2]] = covered
        return (full == 0).to(next(self.model.parameters()).dtype)


def _folder_labels(id2label: object, classes: int, folder: Path) -> list[str] | None:
    if id2label is None:
        return None
    if not isinstance(id2label, dict) or sorted(map(str, id2label)) != sorted(str(i) for i in range(classes)):
        raise ArgumentError(f"Expected `model` config.json's id2label to name the {classes} classes 0..{classes - 1}, "
                            f"but {folder / 'config.json'} has {id2label!r:.80}.", "model")
    return [str(id2label[key]) for key in sorted(id2label, key=int)]


def _folder_preprocessing(value: object, folder: Path) -> ImagePreprocessing:
    if not isinstance(value, dict):
        raise ArgumentError(f"Expected `model` config.json's preprocessing to be an object, but {folder} has "
                            f"{type(value).__name__}.", "model")
    fields = {key: tuple(v) if isinstance(v, list) else v for key, v in value.items()}
    try:
        return ImagePreprocessing(**fields)
    except TypeError as err:
        raise ArgumentError(f"Expected `model` config.json's preprocessing to hold ImagePreprocessing fields, but "
                            f"{folder} has {sorted(value)} ({err}).", "model") from None


# --- the tiny seeded variant -------------------------------------------------------------------

TINY_VIM_CONFIG = VimConfig(img_size=16, patch_size=4, stride=4, depth=2, embed_dim=32, num_classes=3, d_state=4)
TINY_VIM_LABELS = ("circle", "square", "triangle")


def tiny_vim(seed: int = 0, config: VimConfig = TINY_VIM_CONFIG) -> VisionMamba:
    """A seeded tiny :class:`~attnlens.models.vim.VisionMamba` with Δ, A, D, the class token and the position
    embedding moved off their initialisation (so every parameter matters), in eval mode; the global random
    state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VisionMamba(config)
        with torch.no_grad():
            for layer in model.layers:
                mixer = layer.mixer
                for name in ("A_log", "A_b_log", "D", "D_b"):
                    getattr(mixer, name).add_(0.5 * torch.randn_like(getattr(mixer, name)))
                for proj in (mixer.dt_proj, mixer.dt_proj_b):
                    proj.bias.add_(torch.randn_like(proj.bias))
                mixer.out_proj.weight.mul_(4)
            model.cls_token.normal_(0, 0.5)
            model.pos_embed.normal_(0, 0.2)
            model.head.weight.normal_(0, 0.3)
    return model.eval()


@register_tiny_variant("test_vim", family="vim")
def _test_vim() -> Adapter:
    return VimAdapter(tiny_vim(), labels=list(TINY_VIM_LABELS))
